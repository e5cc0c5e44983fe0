"""The state of one kernel execution: options, the tree of parallel blocks, block orders,
findings, the event stream's clients and the batched stage running now.

Every op reaches it through `current()`; a harness run installs its own with `running`.
"""

from __future__ import annotations

import contextvars
import math
import os
import sys
from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator, Sequence

import torch

from equiv import rounding
from equiv.dtypes import DType
from equiv.options import Options
from equiv.tile import hazards
from equiv.tile.errors import PerBlockPoison
from equiv.tile.events import Client, Fan
from equiv.tile.findings import Finding
from equiv.tile.poison import pattern_key, poison_pattern
from equiv.tile.sites import _EQUIV_DIR, kernel_site, short_path

if TYPE_CHECKING:
    from equiv.tile.memory import Tensor, Window


class BlockNode:
    """One iteration of a parallel construct; nodes form a tree rooted at the kernel body."""

    __slots__ = ("token", "parent", "stage", "block", "name", "site")

    def __init__(self, token: int, parent: "BlockNode | None", stage: int, block: int, name: str,
                 site: str = ""):
        self.token, self.parent, self.stage, self.block, self.name = token, parent, stage, block, name
        self.site = site  # kernel line of the parallel loop (writer attribution names it)

    def chain(self) -> list["BlockNode"]:
        out, node = [], self
        while node is not None:
            out.append(node)
            node = node.parent
        return out[::-1]


# Elements of an atomic-add target up to which the blocks adding to each element are tracked
# (a bool and an int32 per element); larger targets are named without the per-element mask.
_FREE_ORDER_LIMIT = 1 << 26


class RunContext:
    """State of one kernel execution: options, poison generator, block tree, findings."""

    def __init__(self, options: Options, kernel_name: str = "kernel", clients: list[Client] | None = None):
        self.options = options
        self.kernel_name = kernel_name
        self.device = torch.device(options.device)
        order_seed = options.seed if options.order_seed is None else options.order_seed
        self.gen = torch.Generator(device="cpu").manual_seed(order_seed * 7919 + 17)  # block orders
        # Order-dependent operations this run executed (equiv.schedules.note_order_dependent).
        self.order_dependent: dict[tuple[str, str, str], dict] = {}
        self._poison_counts: dict[tuple, int] = {}  # patterns drawn so far, per block chain
        self.root = BlockNode(0, None, -1, 0, "<kernel>")
        self.current = self.root
        self.nodes: dict[int, BlockNode] = {0: self.root}
        self._next_token = 1
        self._next_stage = 0
        self.findings: dict[tuple[str, str, str], Finding] = {}
        # Clients of the run's event stream (equiv.tile.events), fanned out per event; by
        # default the hazard detectors `options.detectors` selects.
        self.set_clients(hazards.make(options) if clients is None else clients)
        self._decision_sites: dict = {}  # caller code location -> kernel site (cached walk)
        # The batched stage running now (equiv.tile.batch.deferred.Batch), if any; its hooks below
        # defer stores and stop the attempt where a batched run could differ.
        self.batch = None
        self.batch_error: BaseException | None = None  # why the running attempt gave up
        # Stages run batched ("batched": count) and the reasons others ran one by one.
        self.batch_stats: dict[str, int] = {}
        # Sequential loops inside batched stages whose iterations ran as lanes ("as lanes":
        # count), and the reasons others ran one iteration after another.
        self.loop_stats: dict[str, int] = {}
        # Caller's tensors lent to the run (`Tensor.from_torch(borrow=True)`), by storage:
        # [the caller's tensor, its pristine copy once something writes it, else None].
        self.borrowed: dict[int, list] = {}
        # The first read of uninitialised memory the run made (what, where), or None: a run
        # that read none computes the same bits under any poison (equiv.runner then leaves
        # out its patterned-poison run).
        self.uninitialised: str | None = None
        rounding.refresh_native_probe()  # the flush mode decides whether native rounding is exact

    # -- the event stream ---------------------------------------------------------------
    def set_clients(self, clients: list[Client]) -> None:
        """The run's clients: each event goes to those that declared it, in this order."""
        self.fan = Fan(clients)
        # Whether a client needs every event of every block: the run then leaves the batched
        # and untraced fast paths (blocks one at a time, scalars read traced, site maps kept).
        self.observed = self.fan.per_element

    def attach(self, *clients: Client) -> None:
        """Add clients after the ones the run has."""
        self.set_clients(self.fan.clients + list(clients))

    @property
    def clients(self) -> list[Client]:
        return self.fan.clients

    # -- inputs lent by the caller --------------------------------------------------------
    def before_write(self, data: torch.Tensor) -> None:
        """Every write into a global tensor's `data` comes here first: a caller's tensor lent
        to the run is copied once, before its first write, and put back by `give_back`."""
        if self.borrowed:
            entry = self.borrowed.get(data.untyped_storage().data_ptr())
            if entry is not None and entry[1] is None:
                entry[1] = entry[0].clone()

    def give_back(self) -> None:
        """Restore every lent tensor the run wrote (the run is over)."""
        for caller, pristine in self.borrowed.values():
            if pristine is not None:
                caller.copy_(pristine)
        self.borrowed.clear()

    # -- parallel structure -------------------------------------------------------------
    def new_stage(self) -> int:
        if self.batch is not None:
            self.batch.stop("a parallel stage nested in a batched one")
        self._next_stage += 1
        return self._next_stage

    @contextmanager
    def block(self, stage: int, index: int, name: str) -> Iterator[None]:
        node = BlockNode(self._next_token, self.current, stage, index, name,
                         kernel_site() if self.observed else "")
        self.nodes[node.token] = node
        self._next_token += 1
        saved, self.current = self.current, node
        for client in self.fan.block_start:
            client.on_block_start(self, node)
        try:
            yield
        finally:
            for client in self.fan.block_end:
                client.on_block_end(self, node)
            self.current = saved

    def block_order(self, n: int) -> list[int]:
        if n <= 1 or not self.options.shuffle_blocks:
            order = list(range(n))
        else:
            order = torch.randperm(n, generator=self.gen).tolist()
        return order[::-1] if self.options.reverse_order else order

    def note_order_dependent(self, op: str, tensor: str, dtype: DType, rank: int | None = None,
                             shape: Sequence[int] | None = None, sl: tuple | None = None, mask=None) -> None:
        """The running block adds into `tensor` (of `shape`, the elements `sl` where `mask`) in
        an order the device leaves free (`op`: ``"atomic add"``, ``"remote atomic add"``);
        equiv.schedules names it when an output differs between schedules, and counts an
        element added to by two or more blocks as one whose sum order is free. Integer adds
        wrap in two's complement, which is associative and commutative: every order gives the
        same bits, so they are not recorded."""
        if not dtype.is_float:
            return
        site = kernel_site()
        entry = self.order_dependent.get((op, tensor, site))
        if entry is None:
            entry = self.order_dependent[(op, tensor, site)] = {
                "op": op, "tensor": tensor, "site": site, "blocks": set(), "ranks": set(), "count": 0}
            if shape is not None and math.prod(shape) <= _FREE_ORDER_LIMIT:
                entry["free"] = torch.zeros(tuple(shape), dtype=torch.bool)
                entry["last"] = torch.full(tuple(shape), -1, dtype=torch.int32)
        entry["count"] += 1
        if sl is not None and "free" in entry:
            token = self.current.token
            last = entry["last"][sl]
            m = torch.ones_like(last, dtype=torch.bool) if mask is None else mask.cpu()
            entry["free"][sl] |= m & (last >= 0) & (last != token)
            entry["last"][sl] = torch.where(m, torch.full_like(last, token), last)
        if self.current.token:
            entry["blocks"].add(self.block_label(self.current))
        if rank is not None:
            entry["ranks"].add(int(rank))

    def races_with(self, token: int, node: BlockNode | None = None) -> BlockNode | None:
        """The conflicting sibling block if the last writer `token` races with `node` (default:
        the current block)."""
        node = node or self.current
        if token < 0 or token == node.token:
            return None
        a, b = self.nodes[token].chain(), node.chain()
        for x, y in zip(a, b):
            if x is y:
                continue
            return x if (x.stage == y.stage and x.block != y.block) else None
        return None

    def block_label(self, node: BlockNode) -> str:
        return "/".join(f"{n.name}[{n.block}]" for n in node.chain()[1:]) or "<kernel>"

    # -- findings -----------------------------------------------------------------------
    def record(self, kind: str, tensor: str, detail: str, region: Sequence[tuple[int, int]],
               count: int = 1, site: str | None = None) -> None:
        if self.batch is not None:
            self.batch.stop(f"a {kind} finding on {tensor}")
        site = site or kernel_site()
        key = (kind, tensor, site)
        f = self.findings.get(key)
        if f is None:
            self.findings[key] = Finding(kind, tensor, site, detail, count, list(region))
        else:
            f.count += count
            f.region = [(min(a, c), max(b, d)) for (a, b), (c, d) in zip(f.region, region)]

    # -- poison -------------------------------------------------------------------------
    def decision(self, op: str, outcomes: dict, site: str | None = None) -> None:
        """A value decision taken by an op: ``outcomes`` maps an outcome name (``"first won"``,
        ``"true"``, ``"saturated"``) to a bool tensor (per element) or bool. Observers of the run
        (decision coverage) receive it; without clients of decisions it costs nothing."""
        fan = self.fan.decision
        if not fan:
            return
        if site is None:
            site = self.site_of_caller()
        for client in fan:
            client.on_decision(self, site, op, outcomes)

    def site_of_caller(self) -> str:
        """`kernel_site()`, cached per calling code location (the walk costs more than a dict hit)."""
        frame = sys._getframe(2)
        key = []
        while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_EQUIV_DIR + os.sep):
            key.append((frame.f_code, frame.f_lineno))
            frame = frame.f_back
        if frame is None:
            return "<unknown>"
        key.append((frame.f_code, frame.f_lineno))
        k = tuple(key)
        site = self._decision_sites.get(k)
        if site is None:
            site = self._decision_sites[k] = kernel_site()
        return site

    def out_of_range(self, kind: str, tensor: str, detail: str, region: list, count: int = 1,
                     site: str | None = None) -> None:
        """An access reached outside `tensor` (``"oob-read"`` / ``"oob-write"``; the access path
        clipped it): its clients record it, or raise (`equiv.tile.bounds`)."""
        for client in self.fan.out_of_range:
            client.on_out_of_range(self, kind, tensor, detail, region, count, site)

    def atomic(self, tensor: "Tensor", win: "Window", mask, remote: bool = False) -> None:
        """The running block (or rank, `remote`) atomically adds into `win` of `tensor`."""
        for client in self.fan.atomic:
            client.on_atomic(self, tensor, win, mask, remote)

    def read_uninitialised(self, what: str) -> None:
        """The running code read uninitialised memory (`what`: which, as text); the first
        such read of the run is kept, with the kernel line that made it."""
        if self.uninitialised is None:
            self.uninitialised = f"{what} at {short_path(kernel_site())}"

    def poison(self, shape: Sequence[int], dtype: DType, into: str | None = "a value") -> torch.Tensor:
        """Values of uninitialised memory: NaN for floats in the ``nan`` run; otherwise a
        pattern (finite floats over many binades, or integers over the type's range) that is
        a function of the seed, the drawing block and how many patterns that block drew
        before — not of a shared generator, so blocks draw the same whether they run one
        after another or batched.

        `into` names what the poison fills when it goes straight into a value the kernel
        computes with (a tile's unread part, a read past a tensor): that counts as a read of
        uninitialised memory. ``None``: it fills memory (a new `Tensor`), whose reads of
        elements never written are checked where they happen (`Tensor.check_initialised`)."""
        shape = tuple(int(s) for s in shape)
        if into is not None and math.prod(shape):
            self.read_uninitialised(into)
        if dtype.is_float and self.options.poison == "nan":
            return torch.full(shape, float("nan"), dtype=dtype.container, device=self.device)
        return poison_pattern(shape, dtype, self._poison_key(), self.device)

    def _poison_key(self) -> int:
        """The key of the next pattern the running block draws (and count it)."""
        chain = tuple((n.stage, n.block) for n in self.current.chain()[1:])
        counts = self._poison_counts
        if self.batch is not None:
            if self.batch.depth:
                # Iterations drawn as lanes would count their draws in another order.
                self.batch.stop("patterned poison drawn in loop iterations run as lanes")
            if self.batch.lane is None:
                # Drawn once for every block of the stage: each block needs its own pattern.
                raise PerBlockPoison("patterned poison drawn for every block at once")
            chain += ((self.batch.stage, self.batch.order[self.batch.lane]),)
            counts = self.batch.poison_counts
        n = counts.get(chain, 0)
        counts[chain] = n + 1
        return pattern_key(self.options.seed, chain, n)


_CURRENT: contextvars.ContextVar[RunContext | None] = contextvars.ContextVar("equiv_run", default=None)
# How many kernel tasks (``pl.at`` bodies, incore functions) enclose the running code. A
# context variable, not a RunContext field: the ranks of a multi-rank program run in their own
# threads, and one rank suspended inside a task must not make another's code kernel code.
KERNEL_TASK_DEPTH: contextvars.ContextVar[int] = contextvars.ContextVar("equiv_kernel_task_depth", default=0)


def current() -> RunContext:
    ctx = _CURRENT.get()
    if ctx is None:
        # Outside a harness run (e.g. a kernel called from a REPL): default options.
        ctx = RunContext(Options())
        _CURRENT.set(ctx)
    return ctx


@contextmanager
def running(ctx: RunContext) -> Iterator[RunContext]:
    token = _CURRENT.set(ctx)
    try:
        yield ctx
    finally:
        _CURRENT.reset(token)
