"""Global memory of the emulator: tensors with written-masks, poison, bounds and race checks.

A `Tensor` is a region of device global memory (an input, an output, or ``pl.create_tensor``
scratch). It remembers which elements were ever written and, per element, which parallel
block wrote it last, so the runner can report unwritten output, the emulator can report two
blocks of one stage writing the same element, and every access outside the tensor is caught
with the kernel's file and line.
"""

from __future__ import annotations

import contextvars
import hashlib
import math
import numbers
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import torch

from equiv import dtypes, rounding
from equiv.dtypes import DType
from equiv.options import Options

# The package directory: frames in its files are the emulator's own, not the kernel's.
_EQUIV_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class KernelError(Exception):
    """An error in a kernel program, located at the kernel's source line."""

    def __init__(self, message: str, site: str | None = None):
        self.site = site or kernel_site()
        super().__init__(f"{self.site}: {message}")


class OutOfBoundsError(KernelError):
    pass


class UnsupportedOpError(KernelError):
    """The kernel uses a DSL name or form the emulator does not cover: the run cannot be
    judged (never a verdict). ``op`` names the construct, the message adds the kernel's line."""

    def __init__(self, op: str, site: str | None = None, detail: str = ""):
        self.op = op
        extra = f" ({detail})" if detail else ""
        super().__init__(f"{op} is not covered by the emulator{extra}; the DSL table is "
                         f"equiv/tile/table.py", site)


_SITE_OVERRIDE: contextvars.ContextVar[str | None] = contextvars.ContextVar("equiv_site", default=None)


@contextmanager
def site_override(site: str) -> Iterator[None]:
    """Within the block, `kernel_site()` is `site` (a batched stage replays its stores after
    the kernel line that made them has passed)."""
    token = _SITE_OVERRIDE.set(site)
    try:
        yield
    finally:
        _SITE_OVERRIDE.reset(token)


def kernel_site() -> str:
    """file:line of the innermost frame outside the emulator (the kernel's own line)."""
    override = _SITE_OVERRIDE.get()
    if override is not None:
        return override
    frame = sys._getframe(1)
    cwd = os.getcwd()
    while frame is not None:
        shown = _kernel_file(frame.f_code.co_filename, cwd)
        if shown is not None:
            return f"{shown}:{frame.f_lineno}"
        frame = frame.f_back
    return "<unknown>"


_KERNEL_FILES: dict[tuple[str, str], str | None] = {}


def _kernel_file(co_filename: str, cwd: str) -> str | None:
    """How a code file is shown in sites, or None for the emulator's own files (cached: the
    walk runs for every store of every block)."""
    key = (co_filename, cwd)
    try:
        return _KERNEL_FILES[key]
    except KeyError:
        pass
    fname = os.path.abspath(co_filename)
    shown = None if fname.startswith(_EQUIV_DIR + os.sep) or "contextlib" in fname else short_path(fname)
    _KERNEL_FILES[key] = shown
    return shown


def short_path(path: str) -> str:
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return path if rel.startswith("..") else rel


@dataclass
class Finding:
    """A memory hazard seen while running one kernel: out-of-range access or a race."""

    kind: str  # "oob-read" | "oob-write" | "race"
    tensor: str
    site: str
    detail: str
    count: int = 1
    # Bounding box (per dimension [lo, hi)) of the offending element indices.
    region: list[tuple[int, int]] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "tensor": self.tensor, "site": self.site, "detail": self.detail,
                "count": self.count, "region": [list(r) for r in self.region]}

    def describe(self) -> str:
        box = " × ".join(f"[{lo}, {hi})" for lo, hi in self.region)
        return f"{self.kind} on {self.tensor} at {self.site}: {self.detail}" + (f" (region {box})" if box else "")


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

    def __init__(self, options: Options, kernel_name: str = "kernel"):
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
        # Clients of the run's event stream (equiv.observe): decisions, stores, blocks.
        self.observers: list = []
        self._decision_sites: dict = {}  # caller code location -> kernel site (cached walk)
        # The batched stage running now (equiv.tile.batch.Batch), if any; its hooks below
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
        rounding.refresh_native_probe()  # the flush mode decides whether native rounding is exact

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
                         kernel_site() if self.observers else "")
        self.nodes[node.token] = node
        self._next_token += 1
        saved, self.current = self.current, node
        try:
            yield
        finally:
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
        (decision coverage) receive it; without observers it costs nothing."""
        if not self.observers:
            return
        if site is None:
            site = self.site_of_caller()
        for obs in self.observers:
            obs.on_decision(self, site, op, outcomes)

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

    def emit_store(self, tensor: "Tensor", win: "Window", mask, scalar: bool = False) -> None:
        """Tell the observers that the current block wrote `win` of `tensor` (``scalar``: one
        element through the core's data cache, ``pl.write``; else a tile store / DMA)."""
        for obs in self.observers:
            obs.on_store(self, tensor, win, mask, scalar)

    def poison(self, shape: Sequence[int], dtype: DType) -> torch.Tensor:
        """Values of uninitialised memory: NaN for floats in the ``nan`` run; otherwise a
        pattern (finite floats over many binades, or integers over the type's range) that is
        a function of the seed, the drawing block and how many patterns that block drew
        before — not of a shared generator, so blocks draw the same whether they run one
        after another or batched."""
        shape = tuple(int(s) for s in shape)
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
                from equiv.tile.batch import PerBlockPoison

                raise PerBlockPoison("patterned poison drawn for every block at once")
            chain += ((self.batch.stage, self.batch.order[self.batch.lane]),)
            counts = self.batch.poison_counts
        n = counts.get(chain, 0)
        counts[chain] = n + 1
        return _key(self.options.seed, chain, n)


def _key(seed: int, chain: tuple, n: int) -> int:
    digest = hashlib.blake2b(repr((seed, chain, n)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


_U64 = 2**64


def _signed(v: int) -> int:
    return v - _U64 if v >= 2**63 else v


_GOLDEN, _MIX1, _MIX2 = (_signed(v) for v in (0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB))


def _shr(x: torch.Tensor, k: int) -> torch.Tensor:
    """Logical right shift of int64 bit patterns."""
    return (x >> k) & ((1 << (64 - k)) - 1)


def _splitmix64(x: torch.Tensor) -> torch.Tensor:
    """SplitMix64 of each int64 counter value: 64 pseudo-random bits."""
    x = x * _GOLDEN
    x = (x ^ _shr(x, 30)) * _MIX1
    x = (x ^ _shr(x, 27)) * _MIX2
    return x ^ _shr(x, 31)


PATTERN_PERIOD = 1 << 20  # values in each dtype's pattern table
_PATTERNS: dict[tuple, torch.Tensor] = {}


def _pattern_table(dtype: DType, device: torch.device | str) -> torch.Tensor:
    """`PATTERN_PERIOD` poison values of `dtype`: from the bits of SplitMix64(i), finite
    floats ±[1, 2)·2^[-8, 8] rounded to `dtype`, or integers over its range (at most int32's)."""
    key = (dtype.name, str(device))
    table = _PATTERNS.get(key)
    if table is None:
        x = _splitmix64(torch.arange(PATTERN_PERIOD, dtype=torch.int64))
        if dtype.is_float:
            mant = _shr(x, 11).to(torch.float64) * 2.0**-53 + 1.0
            sign = (x & 1).to(torch.float64) * 2 - 1
            exp = ((_shr(x, 1) & 0x3FF) % 17 - 8).to(torch.float64)
            table = rounding.to_float(sign * mant * torch.exp2(exp), dtype)
        else:
            lo, hi = dtype.int_range
            lo, hi = max(lo, -(2**31)), min(hi, 2**31 - 1)
            table = lo + _shr(x, 11) % (hi - lo + 1)
        table = _PATTERNS[key] = table.to(device)
    return table


def poison_pattern(shape: tuple, dtype: DType, key: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The pattern of draw `key`: `dtype`'s pattern table read from position ``key mod
    PATTERN_PERIOD`` on (wrapping around), one value per element in row-major order. One
    table read, so a draw costs a copy, however many blocks draw."""
    n = math.prod(shape)
    table = _pattern_table(dtype, device)
    start = key % PATTERN_PERIOD
    if start + n <= PATTERN_PERIOD:
        flat = table[start : start + n].clone()
    else:
        flat = table[(start + torch.arange(n, device=table.device)) % PATTERN_PERIOD]
    return flat.reshape(shape)


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


Window = tuple[tuple[int, int], ...]  # per dimension [start, stop)

# Kernel sites interned process-wide, so an int32 per element names the line that wrote it
# and ids compare across the runs of a check.
SITES: list[str] = []
_SITE_IDS: dict[str, int] = {}


def intern_site(site: str) -> int:
    sid = _SITE_IDS.get(site)
    if sid is None:
        sid = _SITE_IDS[site] = len(SITES)
        SITES.append(site)
    return sid


class _LazyMap:
    """A per-element bookkeeping map of a `Tensor` (written-mask, last writer), made filled with
    `fill` at its first use, so inputs that are only read never pay for it. The map sits in a
    box shared by shallow copies (``__dict__.update``): a copy and its source see one map;
    assigning the attribute (a view of another map) gives the tensor its own box."""

    def __init__(self, dtype: torch.dtype, fill: int | bool):
        self.dtype, self.fill = dtype, fill

    def __set_name__(self, owner: type, name: str) -> None:
        self.box = f"_{name}_box"

    def __get__(self, tensor: "Tensor | None", owner: type) -> torch.Tensor:
        if tensor is None:
            return self  # type: ignore[return-value]
        box = tensor.__dict__[self.box]
        value = box[0]
        if value is None:
            value = box[0] = torch.full(tensor.shape, self.fill, dtype=self.dtype, device=tensor.data.device)
        elif type(value) is _Derived:
            value = box[0] = value.fn(self.__get__(value.source, owner))
        return value

    def __set__(self, tensor: "Tensor", value: torch.Tensor) -> None:
        tensor.__dict__[self.box] = [value]

    def derive(self, view: "Tensor", source: "Tensor", fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """`view`'s map is ``fn(source's map)``, made when first used (a view of a Pro weight
        must not make the weight's maps: 5 bytes an element)."""
        view.__dict__[self.box] = [_Derived(source, fn)]

    def made(self, tensor: "Tensor") -> bool:
        value = tensor.__dict__[self.box][0]
        return self.made(value.source) if type(value) is _Derived else value is not None


class _Derived:
    """A view's bookkeeping map not made yet: `fn` of `source`'s map."""

    __slots__ = ("source", "fn")

    def __init__(self, source: "Tensor", fn: Callable[[torch.Tensor], torch.Tensor]):
        self.source, self.fn = source, fn


def view_tensor(source: "Tensor", data: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor],
                cls: type | None = None) -> "Tensor":
    """A tensor over part of `source`'s memory: ``data = fn(source.data)``; its written-mask,
    last-writer and site maps are `fn` of `source`'s, made only when first used."""
    view = (cls or type(source)).__new__(cls or type(source))
    view.__dict__.update(source.__dict__)
    view.__dict__.pop("_scalar_views", None)
    view.data = data
    Tensor.written.derive(view, source, fn)  # type: ignore[attr-defined]
    Tensor.writer.derive(view, source, fn)  # type: ignore[attr-defined]
    if "site_ids" in source.__dict__:
        view.site_ids = fn(source.site_ids)
    return view


# Inputs at least this large are lent to a kernel run rather than copied (`Tensor.from_torch`).
BORROW_BYTES = 64 << 20


class Tensor:
    """A global-memory tensor of the emulator (what a kernel receives and ``create_tensor`` makes)."""

    # Block tokens of each element's last writer (4 bytes an element: more than int8 weights).
    writer = _LazyMap(torch.int32, -1)
    # Whether each element was ever written; a fully written tensor (an input) starts all True,
    # made at its first use (1 byte an element: as much as int8 weights themselves).
    written = _LazyMap(torch.bool, True)

    def __init__(self, name: str, shape: Sequence[int], dtype: DType, data: torch.Tensor | None = None,
                 written: bool = False):
        ctx = current()
        self.name = name
        self.shape = tuple(int(s) for s in shape)
        self.dtype = dtype
        if ctx.batch is not None:
            # One tensor per block, not one shared: the stage runs one block at a time. (Run
            # batched, such stages measured no faster: their cost is arithmetic, not dispatch.)
            ctx.batch.stop(f"tensor {name} allocated by each block")
        # Stored narrow (bf16 as float32, int8 as int8, ...): exact, and Pro-size weights fit.
        self.data = (ctx.poison(self.shape, dtype) if data is None else data).to(ctx.device, dtype.storage)
        if tuple(self.data.shape) != self.shape:
            raise ValueError(f"{name}: data shape {tuple(self.data.shape)} != declared {self.shape}")
        self.__dict__["_written_box"] = [None if written else
                                         torch.zeros(self.shape, dtype=torch.bool, device=ctx.device)]
        self.__dict__["_writer_box"] = [None]
        if ctx.observers:
            # Per element, the interned kernel site of its last store (writer attribution),
            # kept only in observed runs; a fully written tensor (an input) gets it at its first
            # store (4 bytes an element: Pro int8 weights would need 13 GB of it).
            if written:
                self.__dict__["_site_ids_lazy"] = True
            else:
                self.site_ids = torch.full(self.shape, -1, dtype=torch.int32, device=ctx.device)

    @property
    def written_allocated(self) -> bool:
        """Whether the written-mask exists yet (a fully written tensor makes it at first use)."""
        return Tensor.written.made(self)  # type: ignore[attr-defined]

    @classmethod
    def from_torch(cls, name: str, value: torch.Tensor, borrow: bool = False) -> "Tensor":
        """A global tensor holding `value`: a copy (the kernel may write its inputs, and the
        caller reuses them). With `borrow`, a large `value` already in storage form is used
        in place: the run copies it before its first write and restores it when it ends
        (`RunContext.before_write`, `give_back`), so Pro-size weights are held once."""
        dt = dtypes.from_torch(value.dtype)
        ctx = current()
        if (borrow and value.dtype == dt.storage and value.device == ctx.device and value.is_contiguous()
                and value.storage_offset() == 0 and value.nbytes == value.untyped_storage().nbytes()
                and value.nbytes >= BORROW_BYTES and value.untyped_storage().data_ptr() not in ctx.borrowed):
            ctx.borrowed[value.untyped_storage().data_ptr()] = [value, None]
            return cls(name, value.shape, dt, value, written=True)
        return cls(name, value.shape, dt, value.to(dt.storage, copy=True), written=True)

    def to_torch(self) -> torch.Tensor:
        return self.data.to(self.dtype.torch_dtype)

    def __repr__(self) -> str:
        return f"Tensor({self.name}, {list(self.shape)}, {self.dtype!r})"

    # -- windows --------------------------------------------------------------------------
    def window(self, key) -> Window:
        """Turn an index key (slices / ints, missing trailing dims = full) into a window.

        Like the DSL, the extent of ``a:b`` is ``b - a``; it is NOT clipped to the tensor.
        """
        return tuple((int(a), int(b)) for a, b in self.bounds(key))

    def bounds(self, key) -> list[tuple]:
        """Per dimension (start, stop) of an index key, as the kernel computed them (a batched
        stage's per-block values stay `equiv.tile.batch.Lanes`); `window` makes them ints."""
        if not isinstance(key, tuple):
            key = (key,)
        if len(key) > len(self.shape):
            raise KernelError(f"{self.name}: {len(key)} indices for a {len(self.shape)}-d tensor")
        out = []
        for dim, size in enumerate(self.shape):
            k = key[dim] if dim < len(key) else slice(None)
            if isinstance(k, slice):
                if k.step not in (None, 1):
                    raise KernelError(f"{self.name}: strided slices are not supported")
                out.append((0 if k.start is None else k.start, size if k.stop is None else k.stop))
            else:
                if isinstance(k, numbers.Real):
                    k = int(k)  # an element index: the one element at int(k)
                out.append((k, k + 1))
        return out

    def _clip(self, win: Window, kind: str, mask: torch.Tensor | None = None) -> tuple[Window, bool]:
        """`win` cut to the tensor, and whether it was cut. Elements outside the tensor are an
        out-of-range access only where `mask` (the part of the window the device actually
        reads or writes: a tile's valid shape) selects them."""
        clipped = tuple((max(a, 0), min(b, n)) for (a, b), n in zip(win, self.shape))
        if clipped == win:
            return win, False
        total = 1
        inside = 1
        for (a, b), (c, d) in zip(win, clipped):
            total *= max(b - a, 0)
            inside *= max(d - c, 0)
        if mask is not None:
            # Count only the selected elements past the edge: a tile whose valid rows end at
            # the tensor's edge touches nothing outside it, however large the tile.
            extent = [max(b - a, 0) for a, b in win]
            sel = mask.reshape([-1] + extent).any(0) if mask.dim() > len(extent) else mask.expand(extent)
            total = int(sel.sum())
            inside = int(sel[self._slices(clipped, win)].sum()) if all(d > c for c, d in clipped) else 0
            if total == inside:
                return clipped, True
        ctx = current()
        site = kernel_site()
        idx = ", ".join(f"{a}:{b}" for a, b in win)
        detail = (f"{'read of' if kind == 'oob-read' else 'write to'} {self.name}[{idx}] "
                  f"but {self.name} has shape {list(self.shape)}")
        if ctx.options.out_of_bounds == "raise":
            raise OutOfBoundsError(detail, site)
        ctx.record(kind, self.name, detail, list(win), count=total - inside, site=site)
        return clipped, True

    @staticmethod
    def _slices(win: Window, origin: Window | None = None) -> tuple[slice, ...]:
        if origin is None:
            return tuple(slice(a, b) for a, b in win)
        return tuple(slice(a - o, b - o) for (a, b), (o, _) in zip(win, origin))

    def load(self, win: Window) -> torch.Tensor:
        """Container values of `win`; parts outside the tensor read as poison."""
        shape = [b - a for a, b in win]
        if any(s < 0 for s in shape):
            raise KernelError(f"{self.name}: empty or negative window {win}")
        inside, clipped = self._clip(win, "oob-read")
        batch = current().batch
        if batch is not None:
            batch.on_load(self, clipped)
        if not clipped:
            return self.data[self._slices(win)].to(self.dtype.container, copy=True)
        out = current().poison(shape, self.dtype)
        if all(b > a for a, b in inside):
            out[self._slices(inside, win)] = self.data[self._slices(inside)]
        return out

    def store(self, win: Window, values: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        """Write container `values` (shape of `win`) where `mask` (default all) is set."""
        batch = current().batch
        if batch is not None:
            batch.on_store(self, win, values, mask)  # applied per block when the stage ends
            return
        inside, clipped = self._clip(win, "oob-write", mask)
        if not all(b > a for a, b in inside):
            return
        src = values[self._slices(inside, win)] if clipped else values
        m = None if mask is None else (mask[self._slices(inside, win)] if clipped else mask)
        sl = self._slices(inside)
        ctx = current()
        if ctx.options.detect_races:
            self._check_race(inside, sl, m)
        site_ids = self.__dict__.get("site_ids")
        if site_ids is None and ctx.observers and self.__dict__.get("_site_ids_lazy"):
            site_ids = self.site_ids = torch.full(self.shape, -1, dtype=torch.int32, device=self.data.device)
        if site_ids is not None and site_ids.shape != self.writer.shape:
            site_ids = None  # a view made without its own site map
        site_id = intern_site(kernel_site()) if site_ids is not None else -1
        ctx.before_write(self.data)
        if m is None:
            self.data[sl] = src
            self.written[sl] = True
            self.writer[sl] = ctx.current.token
            if site_ids is not None:
                site_ids[sl] = site_id
        else:
            self.data[sl] = torch.where(m, src, self.data[sl])
            self.written[sl] |= m
            self.writer[sl] = torch.where(m, torch.full_like(self.writer[sl], ctx.current.token),
                                          self.writer[sl])
            if site_ids is not None:
                site_ids[sl] = torch.where(m, torch.full_like(site_ids[sl], site_id), site_ids[sl])
        if ctx.observers:
            ctx.emit_store(self, inside, m, scalar=bool(getattr(ctx, "_scalar_store", False)))

    def store_element(self, idx: tuple[int, ...], value: int | float) -> bool:
        """Write one in-range element (``pl.write``) with `store`'s written-mask, last-writer
        and race bookkeeping, without tensor temporaries (a scalar loop's hot path). Returns
        False, writing nothing, where `store` must do it (outside the tensor, observers or a
        batched stage watching, a tensor type with its own rules)."""
        ctx = current()
        if (ctx.batch is not None or ctx.observers or type(self) is not Tensor
                or any(not 0 <= i < n for i, n in zip(idx, self.shape))):
            return False
        token = ctx.current.token
        data, written, writer = self.scalar_views()
        if ctx.options.detect_races:
            prev = int(writer[idx])
            if prev >= 0 and prev != token:
                other = ctx.races_with(prev)
                if other is not None:
                    ctx.record("race", self.name,
                               f"element {list(idx)} written by {ctx.block_label(other)} and "
                               f"{ctx.block_label(ctx.current)} of the same parallel stage",
                               [(i, i + 1) for i in idx], count=1)
        ctx.before_write(self.data)
        data[idx] = value
        written[idx] = True
        writer[idx] = token
        return True

    def scalar_views(self) -> tuple:
        """(data, written-mask, last writers) for one-element reads and writes: on the CPU,
        NumPy views of the same memory (indexing one element is ~20× cheaper than in torch),
        made again whenever the tensors behind them change."""
        data, written, writer = self.data, self.written, self.writer
        if data.device.type != "cpu":
            return data, written, writer
        cached = self.__dict__.get("_scalar_views")
        if cached is None or cached[0] is not data or cached[1] is not written or cached[2] is not writer:
            cached = self.__dict__["_scalar_views"] = (data, written, writer,
                                                       data.numpy(), written.numpy(), writer.numpy())
        return cached[3:]

    def read_element(self, idx: tuple[int, ...]) -> int | float | None:
        """One in-range element as a Python number (``pl.read``'s hot path), or None where
        `load` must read it (outside the tensor, a batched stage watching, another type)."""
        if (type(self) is not Tensor or current().batch is not None
                or any(not 0 <= i < n for i, n in zip(idx, self.shape))):
            return None
        value = self.scalar_views()[0][idx]
        return float(value) if self.dtype.is_float else int(value)

    def _check_race(self, win: Window, sl: tuple[slice, ...], mask: torch.Tensor | None) -> None:
        ctx = current()
        prev = self.writer[sl]
        if mask is not None:
            prev = torch.where(mask, prev, torch.full_like(prev, -1))
        lo, hi = (int(v) for v in torch.aminmax(prev))
        if hi < 0 or (lo == hi == ctx.current.token):
            return  # never written, or only by this block: no race (one op instead of a sort)
        for token in torch.unique(prev).tolist():
            other = ctx.races_with(int(token))
            if other is None:
                continue
            hit = (prev == token).nonzero()
            offs = torch.tensor([a for a, _ in win], device=hit.device)
            idx = hit + offs
            region = [(int(idx[:, d].min()), int(idx[:, d].max()) + 1) for d in range(idx.shape[1])]
            first = tuple(int(v) for v in idx[0].tolist())
            ctx.record("race", self.name,
                       f"element {list(first)} written by {ctx.block_label(other)} and "
                       f"{ctx.block_label(ctx.current)} of the same parallel stage",
                       region, count=int(hit.shape[0]))
