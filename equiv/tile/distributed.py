"""``pypto.language.distributed`` (``pld``): the ranks of a multi-rank program, run in one process.

A multi-rank PyPTO program has three levels: a ``@pl.jit.host`` orchestrator allocates
window buffers (``pld.alloc_window_buffer``), takes typed views of them (``pld.window``)
and, in a loop over ``pld.world_size()``, dispatches a per-device program with
``device=r``; each rank's program then exchanges data with its peers through the windows
(``pld.tensor.put``, ``pld.tile.remote_store``, ``pld.tile.remote_load``) and orders the
exchanges with signals (``pld.system.notify`` / ``pld.system.wait``) or collectives.

The emulation:

* **Each rank has its own memory.** A window buffer has one zero-filled instance per rank
  (the runtime zeroes freshly allocated windows); ``x[r]`` of a host tensor is the rank's
  slice of it (a view: writes land in the caller's tensor).
* **Ranks run as cooperating threads, one at a time.** Ranks start in a seeded shuffled
  order (`equiv.memory.RunContext.block_order`, like SPMD blocks); a rank runs until it
  finishes or waits on a signal that is not yet satisfied, then the next rank (in that
  order) that can run does. A wait no rank can ever satisfy is reported as a deadlock
  with the waiting sites.
* **Remote writes are stores into the peer's instance** with the usual bounds checks,
  written-masks and last-writer tokens; ``AtomicAdd`` notifies and ``atomic=Add`` stores
  add with one rounding to the element type.
* **Cross-rank races are found with vector clocks.** A notify releases everything its rank
  wrote before it; a wait that sees the signal acquires it. A window element written by two
  ranks, or by a rank and its owner, with no notify→wait chain between the two writes is
  recorded as a ``race`` finding, like two SPMD blocks writing one element. Atomic adds do
  not race with each other. Within one rank the SPMD rules hold unchanged.
* **Collectives** (``pld.tensor.allreduce``, ``barrier``, ``broadcast``, ``allgather``,
  ``reduce_scatter``, ``all_to_all``) are a rendezvous of every rank followed by each rank
  computing its result from the others' data as it was on arrival; reductions follow the
  mesh order (own data first, then peers in ascending rank, one rounding per step).

The world size comes from the run (``DistributedConfig(device_ids=...)`` of the file's
``golden.run_jit`` call): run the host entry under ``configured(n)``.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import linecache
import math
import re
import threading
import types
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch

from equiv.dtypes import DType
from equiv.tile import memory, races
from equiv.tile.errors import KernelError, UnsupportedOpError
from equiv.tile.memory import Tensor
from equiv.tile.context import current
from equiv.tile.sites import kernel_site
from equiv.tile import access
from equiv.tile.turns import Abandoned as _Abandoned, await_turn, run_in_turns
from equiv.tile.namespace import build, report_gaps
from equiv.tile.values import Tile, _result, _scalar_to, read_whole


# ----------------------------------------------------------------------------------------
# Enumerations and types
# ----------------------------------------------------------------------------------------
class NotifyOp:
    """How ``pld.system.notify`` deposits its value: add to the peer's slot, or set it."""

    AtomicAdd = "atomic_add"
    Set = "set"


class WaitCmp:
    """The predicate of ``pld.system.wait``: slot == expected, or slot >= expected."""

    Eq = "eq"
    Ge = "ge"


class AtomicType:
    """Remote-store combine mode: plain store (``None_``) or atomic add (``Add``)."""

    None_ = "none"
    Add = "add"


class ReduceOp:
    """Reduction of the collectives."""

    Sum = "sum"
    Max = "max"
    Min = "min"
    Prod = "prod"


class DistributedTensor(Tensor):
    """One rank's instance of a window (``pld.DistributedTensor[[shape], dtype]`` annotates one).

    Besides the `Tensor` state it remembers per element the rank that last wrote it, that
    rank's epoch (number of notifies it had issued) at the time, and whether the write was
    an atomic add: what the cross-rank race check needs.
    """

    rank: int
    world: "_World"
    ref: "WindowRef"

    def __class_getitem__(cls, item):
        return (DistributedTensor, item)

    def _check_race(self, win, sl, mask) -> None:
        world = _ACTIVE.get()
        if world is None or world.running is None:
            return races.check_store(self, win, sl, mask)
        world.check_window_write(self, win, sl, mask)

    def load(self, win):
        out = Tensor.load(self, win)
        world = _ACTIVE.get()
        if world is not None and world.running is not None and world.ctx.options.detect_races:
            world.check_window_read(self, win)
        return out


@dataclass
class CommCtx:
    """``pld.get_comm_ctx(t)``: the rank and world of a window instance."""

    rank: int
    nranks: int


@dataclass
class WindowBuffer:
    """``pld.alloc_window_buffer(size)``: a per-rank region of `nbytes` bytes."""

    nbytes: int
    name: str
    views: dict = field(default_factory=dict)


@dataclass(frozen=True)
class WindowRef:
    """``pld.window(buf, shape, dtype=)`` in the host: the same view on every rank's buffer."""

    buffer: WindowBuffer = field(compare=False)
    shape: tuple[int, ...]
    dtype: DType
    name: str


class DistributedConfig:
    """Stand-in for ``pypto.ir.distributed_compiled_program.DistributedConfig``: records the
    devices of a run; ``world_size_from`` reads the world size off it."""

    def __init__(self, device_ids: Sequence[int] = (), num_sub_workers: int = 0, **options: Any):
        self.device_ids = [int(d) for d in device_ids]
        self.num_sub_workers = num_sub_workers
        self.options = options

    def __repr__(self) -> str:
        return f"DistributedConfig(device_ids={self.device_ids})"


def world_size_from(compile_cfg: Mapping[str, Any] | None) -> int | None:
    """The world size a ``run_jit(compile_cfg=dict(distributed_config=...))`` asks for."""
    cfg = (compile_cfg or {}).get("distributed_config")
    ids = getattr(cfg, "device_ids", None)
    return len(ids) if ids else None


_WORLD_SIZE: contextvars.ContextVar[int | None] = contextvars.ContextVar("equiv_world_size", default=None)
_ACTIVE: contextvars.ContextVar["_World | None"] = contextvars.ContextVar("equiv_world", default=None)


@contextmanager
def configured(world_size: int) -> Iterator[None]:
    """Run host entries within with a world of `world_size` ranks."""
    if int(world_size) < 1:
        raise ValueError(f"world size {world_size} < 1")
    token = _WORLD_SIZE.set(int(world_size))
    try:
        yield
    finally:
        _WORLD_SIZE.reset(token)


def _assigned_name(default: str) -> str:
    """The name a host line assigns to (``buf = pld.alloc_window_buffer(...)`` -> ``buf``)."""
    site = kernel_site()
    path, _, line = site.rpartition(":")
    text = linecache.getline(path, int(line)) if line.isdigit() else ""
    m = re.match(r"\s*([A-Za-z_]\w*)\s*=", text)
    return m.group(1) if m else default


# ----------------------------------------------------------------------------------------
# The world: ranks, their windows, clocks and scheduling
# ----------------------------------------------------------------------------------------
class _World:
    def __init__(self, size: int | None):
        self.ctx = current()
        self.size = size
        self.programs: dict[int, list[tuple[Callable, tuple, dict]]] = defaultdict(list)
        self.scopes: dict[int, dict[str, Any]] = {}
        self.instances: dict[tuple[int, int, str], DistributedTensor] = {}
        self.running: int | None = None
        self.clock: dict[int, list[int]] = {}
        self.signal_clock: dict[tuple[int, int, int], list[int]] = {}
        self.meetings: dict[int, dict[int, tuple[str, list[int], Any]]] = defaultdict(dict)
        self.calls: dict[int, int] = defaultdict(int)
        self.cond = threading.Condition()
        self.turn: int | None = None
        self.blocked: dict[int, tuple[Callable[[], bool], str, str]] = {}
        self.saved: dict[int, Any] = {}
        self.finished: set[int] = set()
        self.failure: BaseException | None = None
        self.abort = False

    # -- sizes ---------------------------------------------------------------------------
    def nranks(self) -> int:
        if self.size is None:
            # The harness did not say how many ranks run: the check cannot be judged.
            raise UnsupportedOpError("pld.world_size() without a world size", detail=(
                "run the host entry under equiv.tile.distributed.configured(n); source mode takes n "
                "from the DistributedConfig(device_ids=...) of the file's run_jit call"))
        return self.size

    # -- memory --------------------------------------------------------------------------
    def instance(self, ref: WindowRef, rank: int) -> DistributedTensor:
        """Rank `rank`'s memory for window `ref` (created zero-filled on first use)."""
        n = self.nranks()
        if not 0 <= int(rank) < n:
            raise KernelError(f"rank {rank} outside the world of {n} ranks")
        rank = int(rank)
        key = (id(ref.buffer), rank, ref.dtype.name)
        flat = self.instances.get(key)
        if flat is None:
            others = [k for k in self.instances if k[0] == key[0] and k[2] != key[2]]
            if others:
                raise UnsupportedOpError("pld.window", detail=f"views of one window buffer with two element "
                                         f"types ({others[0][2]} and {key[2]}) alias bytes")
            count = ref.buffer.nbytes // _bytes(ref.dtype)
            flat = self._new_instance(f"{ref.buffer.name}@rank{rank}", [count], ref.dtype, rank)
            self.instances[key] = flat
        numel = math.prod(ref.shape)
        if numel * _bytes(ref.dtype) > ref.buffer.nbytes:
            raise KernelError(f"pld.window: a {list(ref.shape)} {ref.dtype!r} view needs "
                              f"{numel * _bytes(ref.dtype)} bytes; {ref.buffer.name} has {ref.buffer.nbytes}")
        view = DistributedTensor.__new__(DistributedTensor)
        view.__dict__.update(flat.__dict__)
        view.name = f"{ref.name}@rank{rank}"
        view.shape = tuple(ref.shape)
        view.ref = ref
        for attr in ("data", "written", "writer", "wrank", "wepoch", "watomic", "rrank", "repoch"):
            setattr(view, attr, getattr(flat, attr)[:numel].view(ref.shape))
        return view

    def _new_instance(self, name: str, shape: list[int], dtype: DType, rank: int) -> DistributedTensor:
        t = DistributedTensor.__new__(DistributedTensor)
        Tensor.__init__(t, name, shape, dtype,
                        data=torch.zeros(shape, dtype=dtype.container, device=self.ctx.device))
        dev = t.data.device
        t.rank, t.world = rank, self
        t.wrank = torch.full(shape, -1, dtype=torch.int64, device=dev)
        t.wepoch = torch.zeros(shape, dtype=torch.int64, device=dev)
        t.watomic = torch.zeros(shape, dtype=torch.bool, device=dev)
        # The last reading rank and its epoch: a later write by another rank must be ordered after it.
        t.rrank = torch.full(shape, -1, dtype=torch.int64, device=dev)
        t.repoch = torch.zeros(shape, dtype=torch.int64, device=dev)
        return t

    def peer(self, local: DistributedTensor, peer: int) -> DistributedTensor:
        """Rank `peer`'s instance of the window `local` is a view of."""
        if not isinstance(local, DistributedTensor):
            raise KernelError(f"{getattr(local, 'name', local)!r} is not a window-bound pld.DistributedTensor "
                              f"(cross-rank ops need pld.window(...) views)")
        return self.instance(local.ref, int(peer))

    # -- race checks ---------------------------------------------------------------------
    def _unordered(self, ranks: torch.Tensor, epochs: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """Elements of `candidates` whose access by rank `ranks` at epoch `epochs` the running
        rank has not acquired (no notify→wait chain from that access to here)."""
        seen = torch.tensor(self.clock[self.running], dtype=torch.int64, device=ranks.device)
        return candidates & (epochs >= seen[ranks.clamp(min=0)])

    def _report(self, inst: DistributedTensor, win, hits: torch.Tensor, ranks: torch.Tensor, what: str) -> None:
        hit = hits.nonzero()
        idx = hit + torch.tensor([a for a, _ in win], device=hit.device)
        first = [int(v) for v in idx[0].tolist()]
        other = int(ranks[tuple(hit[0].tolist())])
        region = [(int(idx[:, d].min()), int(idx[:, d].max()) + 1) for d in range(idx.shape[1])]
        self.ctx.record("race", inst.name,
                        f"element {first} of rank {inst.rank}'s window {what.format(other=other, me=self.running)} "
                        f"with no notify/wait ordering the two (cross-rank race)", region, count=int(hit.shape[0]))

    def check_window_read(self, inst: DistributedTensor, win) -> None:
        """A read by rank `running` of `inst`[win]: a race with another rank's write that no
        notify→wait chain orders before it; remembered for the write check."""
        inside = tuple((max(a, 0), min(b, n)) for (a, b), n in zip(win, inst.shape))
        if not all(b > a for a, b in inside):
            return
        sl = Tensor._slices(inside)
        r = self.running
        prev_rank = inst.wrank[sl]
        unordered = self._unordered(prev_rank, inst.wepoch[sl], (prev_rank >= 0) & (prev_rank != r))
        if bool(unordered.any()):
            self._report(inst, inside, unordered, prev_rank, "written by rank {other} and read by rank {me}")
        inst.rrank[sl] = r
        inst.repoch[sl] = self.clock[r][r]

    def check_window_write(self, inst: DistributedTensor, win, sl, mask, atomic: bool = False) -> None:
        """Record the write of rank `running` into `inst`[sl] (where `mask`), reporting a race
        with an earlier write or read of another rank that no notify→wait chain orders before it."""
        r = self.running
        m = torch.ones_like(inst.wrank[sl], dtype=torch.bool) if mask is None else mask
        prev_rank, prev_epoch, prev_atomic = inst.wrank[sl], inst.wepoch[sl], inst.watomic[sl]
        both_atomic = prev_atomic & atomic
        unordered = self._unordered(prev_rank, prev_epoch, m & (prev_rank >= 0) & (prev_rank != r) & ~both_atomic)
        if bool(unordered.any()):
            self._report(inst, win, unordered, prev_rank, "written by rank {other} and rank {me}")
        reader = inst.rrank[sl]
        unread = self._unordered(reader, inst.repoch[sl], m & (reader >= 0) & (reader != r))
        if bool(unread.any()):
            self._report(inst, win, unread, reader, "read by rank {other} and written by rank {me}")
        same = m & (prev_rank == r) & ~both_atomic
        if bool(same.any()):
            races.check_store(inst, win, sl, same)
        epoch = self.clock[r][r]
        inst.wrank[sl] = torch.where(m, torch.full_like(prev_rank, r), prev_rank)
        inst.wepoch[sl] = torch.where(m, torch.full_like(prev_epoch, epoch), prev_epoch)
        inst.watomic[sl] = torch.where(m, torch.full_like(prev_atomic, atomic), prev_atomic)

    # -- clocks --------------------------------------------------------------------------
    def release(self, signal_key: tuple[int, int, int]) -> None:
        r = self.running
        self.clock[r][r] += 1
        known = self.signal_clock.setdefault(signal_key, [0] * self.nranks())
        self.signal_clock[signal_key] = [max(a, b) for a, b in zip(known, self.clock[r])]

    def acquire(self, signal_key: tuple[int, int, int]) -> None:
        r = self.running
        seen = self.signal_clock.get(signal_key)
        if seen is not None:
            self.clock[r] = [max(a, b) for a, b in zip(self.clock[r], seen)]

    # -- dispatch and scheduling ---------------------------------------------------------
    def host_call(self, fn: Callable, args: tuple, kwargs: dict) -> Any:
        """Run host code `fn` with its module's functions seen through `_Dispatcher`, so that
        ``f(..., device=r)`` anywhere in it (or in the helpers it calls) dispatches to rank r."""
        scope = self.scopes.get(id(fn.__globals__))
        if scope is None:
            scope = {k: (_Dispatcher(v, self) if inspect.isfunction(v) else v) for k, v in fn.__globals__.items()}
            self.scopes[id(fn.__globals__)] = scope
        body = types.FunctionType(fn.__code__, scope, fn.__name__, fn.__defaults__, fn.__closure__)
        body.__kwdefaults__ = fn.__kwdefaults__
        return body(*args, **kwargs)

    def dispatch(self, fn: Callable, args: tuple, kwargs: dict, rank: Any) -> None:
        self.programs[int(rank)].append((fn, args, kwargs))

    def _resolve(self, value: Any, rank: int) -> Any:
        if isinstance(value, WindowRef):
            return self.instance(value, rank)
        if isinstance(value, _RankIndexed):  # a whole host tensor: ordinary indexing in the rank
            plain = Tensor.__new__(Tensor)
            plain.__dict__.update(value.__dict__)
            return plain
        if isinstance(value, (list, tuple)) and any(isinstance(v, WindowRef) for v in value):
            return type(value)(self._resolve(v, rank) for v in value)
        return value

    def run(self) -> None:
        ranks = sorted(self.programs)
        if not ranks:
            return
        n = self.nranks() if self.size is not None else max(ranks) + 1
        self.size = n
        for r in ranks:
            if not 0 <= r < n:
                raise KernelError(f"dispatch with device={r} in a world of {n} ranks")
        self.clock = {r: [0] * n for r in range(n)}
        self.order = [ranks[i] for i in self.ctx.block_order(len(ranks))]
        self.stage = self.ctx.new_stage()
        self.parent = self.ctx.current
        run_in_turns(self, self.order, self._rank_main, "rank")
        self.ctx.current = self.parent
        self.running = None
        if self.failure is not None:
            raise self.failure

    def _await_turn(self, r: int) -> None:
        await_turn(self, r)
        self.running = r

    def _rank_main(self, r: int) -> None:
        try:
            with self.cond:
                self._await_turn(r)
            with self.ctx.block(self.stage, r, "rank"):
                for fn, args, kwargs in self.programs[r]:
                    fn(*(self._resolve(a, r) for a in args),
                       **{k: self._resolve(v, r) for k, v in kwargs.items()})
        except _Abandoned:
            return
        except BaseException as exc:  # noqa: BLE001 - handed to the host thread
            with self.cond:
                if self.failure is None:
                    self.failure = exc
                self.cond.notify_all()
            return
        with self.cond:
            self.finished.add(r)
            if not self._pass_turn(r) and len(self.finished) < len(self.programs):
                self._deadlock()
            self.cond.notify_all()

    def _pass_turn(self, r: int) -> bool:
        """Give the turn to the next rank after `r` (in the shuffled order) that can run."""
        i = self.order.index(r)
        for k in range(1, len(self.order) + 1):
            cand = self.order[(i + k) % len(self.order)]
            if cand in self.finished:
                continue
            waiting = self.blocked.get(cand)
            if waiting is None or waiting[0]():
                self.turn = cand
                return True
        return False

    def _deadlock(self) -> None:
        waits = "; ".join(f"rank {r} at {site} waits for {what}" for r, (_, what, site) in sorted(self.blocked.items()))
        site = next(iter(sorted(self.blocked.items())))[1][2] if self.blocked else None
        self.failure = KernelError(f"the ranks deadlock: {waits}", site)

    def block(self, ready: Callable[[], bool], what: str) -> None:
        """Suspend the running rank until `ready()`; the other ranks run meanwhile."""
        r = self.running
        if ready():
            return
        with self.cond:
            self.blocked[r] = (ready, what, kernel_site())
            self.saved[r] = self.ctx.current
            if not self._pass_turn(r):
                self._deadlock()
                self.cond.notify_all()
                raise _Abandoned()
            self.cond.notify_all()
            self._await_turn(r)
            del self.blocked[r]

    def rendezvous(self, op: str, payload: Any) -> dict[int, Any]:
        """Every rank's `payload` for this rank's next collective, once all have arrived."""
        r = self.running
        seq = self.calls[r]
        self.calls[r] += 1
        meeting = self.meetings[seq]
        meeting[r] = (op, list(self.clock[r]), payload)
        ops = {o for o, _, _ in meeting.values()}
        if len(ops) > 1:
            raise KernelError(f"collective #{seq + 1} differs between ranks: {sorted(ops)}")
        n = len(self.programs)
        self.block(lambda: len(meeting) == n, f"every rank to reach {op} (#{seq + 1})")
        for _, clock, _ in meeting.values():
            self.clock[r] = [max(a, b) for a, b in zip(self.clock[r], clock)]
        return {rank: p for rank, (_, _, p) in meeting.items()}


def _bytes(dtype: DType) -> int:
    return max(dtype.bits // 8, 1)


def _world(op: str) -> _World:
    from equiv.tile.batch import deferred

    deferred.forbid(f"{op}: a rank's communication is per block")
    world = _ACTIVE.get()
    if world is None or world.running is None:
        raise KernelError(f"{op} outside a rank: run the program through a @pl.jit.host entry that "
                          f"dispatches it with device=r")
    return world


# ----------------------------------------------------------------------------------------
# Host orchestrators (@pl.jit.host)
# ----------------------------------------------------------------------------------------
class _RankIndexed(Tensor):
    """A host tensor whose ``x[r]`` is rank r's slice of it (a view sharing its memory)."""

    def __getitem__(self, key):
        if isinstance(key, int) or (hasattr(key, "__index__") and not isinstance(key, (slice, tuple))):
            r = int(key)
            if not 0 <= r < self.shape[0]:
                raise KernelError(f"{self.name}[{r}]: leading dimension has {self.shape[0]} entries")
            view = memory.view_tensor(self, self.data[r], lambda m: m[r], cls=Tensor)
            view.name = f"{self.name}[{r}]"
            view.shape = self.shape[1:]
            return view
        return access._tensor_getitem(self, key)


class _Dispatcher:
    """A function seen from a host body: ``f(..., device=r)`` dispatches it to rank r."""

    def __init__(self, fn: Callable, world: _World):
        self.fn, self.world = fn, world
        functools.update_wrapper(self, fn)

    def __call__(self, *args: Any, device: Any = None, **kwargs: Any) -> Any:
        if device is None:  # a helper of the host: its own calls may dispatch too
            return self.world.host_call(self.fn, args, kwargs)
        self.world.dispatch(self.fn, args, kwargs, device)
        return None


class HostFunction:
    """``@pl.jit.host``: runs the body once, collecting ``device=r`` dispatches, then runs the
    ranks (see the module docstring)."""

    def __init__(self, fn: Callable):
        self.fn = fn
        functools.update_wrapper(self, fn)
        self.__code__ = fn.__code__
        self.__globals__ = fn.__globals__
        self.last_order: list[int] = []

    def __get__(self, obj, objtype=None):
        return self if obj is None else types.MethodType(self, obj)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if _ACTIVE.get() is not None:  # a host called from a host: one world
            return self.fn(*args, **kwargs)
        world = _World(_WORLD_SIZE.get())
        token = _ACTIVE.set(world)
        try:
            result = world.host_call(self.fn, tuple(_host_view(a) for a in args),
                                     {k: _host_view(v) for k, v in kwargs.items()})
            world.run()
        finally:
            _ACTIVE.reset(token)
            self.last_order = list(getattr(world, "order", []))  # the ranks' start order, for tests and reports
        return result


def _host_view(value: Any) -> Any:
    if isinstance(value, Tensor) and not isinstance(value, (DistributedTensor, _RankIndexed)) and value.shape:
        view = _RankIndexed.__new__(_RankIndexed)
        view.__dict__.update(value.__dict__)
        return view
    return value


def host(fn: Callable | None = None, **_options: Any) -> Any:
    """``@pl.jit.host`` / ``@pl.jit.host(...)``."""
    if fn is None:
        return lambda f: HostFunction(f)
    return HostFunction(fn)


# ----------------------------------------------------------------------------------------
# pld.system
# ----------------------------------------------------------------------------------------
def world_size() -> int:
    """Number of ranks (host side; inside a rank too)."""
    world = _ACTIVE.get()
    if world is None:
        size = _WORLD_SIZE.get()
        if size is None:
            raise KernelError("pld.world_size() outside a @pl.jit.host entry and with no world size set")
        return size
    return world.nranks()


def get_comm_ctx(dist_tensor: DistributedTensor) -> CommCtx:
    if not isinstance(dist_tensor, DistributedTensor):
        raise KernelError("pld.get_comm_ctx needs a window-bound pld.DistributedTensor")
    return CommCtx(dist_tensor.rank, dist_tensor.world.nranks())


def rank(ctx: CommCtx) -> int:
    return ctx.rank


def nranks(ctx: CommCtx) -> int:
    return ctx.nranks


def _index(t: Tensor, offsets: Sequence[int], op: str) -> tuple[int, ...]:
    idx = tuple(int(o) for o in offsets)
    if len(idx) != len(t.shape):
        raise KernelError(f"{op}: {len(idx)} offsets for the {len(t.shape)}-d {t.name}")
    return idx


def notify(target: DistributedTensor, peer: int, offsets: Sequence[int], value: int, *, op: str) -> None:
    """Deposit `value` in rank `peer`'s slot `offsets` of `target` (add or set), releasing
    every write this rank made before it to whoever waits on that slot."""
    world = _world("pld.system.notify")
    remote = world.peer(target, peer)
    idx = _index(remote, offsets, "pld.system.notify")
    win = tuple((i, i + 1) for i in idx)
    if op == NotifyOp.AtomicAdd:
        _atomic_add(world, remote, win, torch.tensor([int(value)]).reshape([1] * len(idx)))
    elif op == NotifyOp.Set:
        data = torch.full([1] * len(idx), 0, dtype=remote.dtype.container, device=remote.data.device)
        data[...] = _scalar_to(value, remote.dtype)
        remote.store(win, data)
    else:
        raise KernelError(f"pld.system.notify: op {op!r} is not a pld.NotifyOp")
    world.release(_slot_key(remote, idx))


def _slot_key(t: DistributedTensor, idx: tuple[int, ...]) -> tuple[int, int, int]:
    """A signal slot by buffer, rank and element offset: views of one buffer with other
    shapes name the same slot."""
    return id(t.ref.buffer), t.rank, sum(i * st for i, st in zip(idx, t.data.stride()))


def _signal_value(signal: DistributedTensor, idx: tuple[int, ...]) -> int:
    inside = all(0 <= i < n for i, n in zip(idx, signal.shape))
    return int(signal.data[idx]) if inside else 0


def wait(signal: DistributedTensor, offsets: Sequence[int], expected: int, *, cmp: str) -> None:
    """Block until this rank's slot `offsets` of `signal` equals (``Eq``) or reaches (``Ge``)
    `expected`; acquires what the notifies that landed there released."""
    world = _world("pld.system.wait")
    if not isinstance(signal, DistributedTensor):
        raise KernelError("pld.system.wait needs a window-bound pld.DistributedTensor signal")
    idx = _index(signal, offsets, "pld.system.wait")
    signal._clip(tuple((i, i + 1) for i in idx), "oob-read")  # bounds check (a wait is no racy read)
    want = int(expected)
    if cmp == WaitCmp.Ge:
        ready = lambda: _signal_value(signal, idx) >= want  # noqa: E731
        what = f"{signal.name}{list(idx)} >= {want}"
    elif cmp == WaitCmp.Eq:
        ready = lambda: _signal_value(signal, idx) == want  # noqa: E731
        what = f"{signal.name}{list(idx)} == {want}"
    else:
        raise KernelError(f"pld.system.wait: cmp {cmp!r} is not a pld.WaitCmp")
    world.block(ready, what)
    world.acquire(_slot_key(signal, idx))


def defer_wait(signal: DistributedTensor, offsets: Sequence[int], expected: int, *, cmp: str) -> None:
    """A deferred completion condition: emulated as a wait at this point (the task's
    consumers run after it either way)."""
    wait(signal, offsets, expected, cmp=cmp)


# ----------------------------------------------------------------------------------------
# Remote reads and writes
# ----------------------------------------------------------------------------------------
def _atomic_add(world: _World, dst: DistributedTensor, win, values: torch.Tensor,
                mask: torch.Tensor | None = None) -> None:
    """``dst[win] += values`` (one rounding to dst's type) as an atomic remote write."""
    inside, clipped = dst._clip(win, "oob-write", mask)
    if not all(b > a for a, b in inside):
        return
    sl = Tensor._slices(inside)
    src = values[Tensor._slices(inside, win)] if clipped else values
    m = mask[Tensor._slices(inside, win)] if (mask is not None and clipped) else mask
    src = src.to(dst.data.device, dst.dtype.container)
    if world.ctx.options.detect_races:
        world.check_window_write(dst, inside, sl, m, atomic=True)
    summed = _result(dst.data[sl] + src, dst.dtype, list(src.shape)).data
    world.ctx.note_order_dependent("remote atomic add", dst.name, dst.dtype, world.running)
    keep = torch.ones_like(dst.written[sl]) if m is None else m
    world.ctx.before_write(dst.data)
    dst.data[sl] = torch.where(keep, summed, dst.data[sl])
    dst.written[sl] |= keep
    dst.writer[sl] = torch.where(keep, torch.full_like(dst.writer[sl], world.ctx.current.token), dst.writer[sl])


def _window(offsets: Sequence[int], shape: Sequence[int]) -> tuple[tuple[int, int], ...]:
    return tuple((int(o), int(o) + int(n)) for o, n in zip(offsets, shape))


def _write(world: _World, dst: DistributedTensor, offsets: Sequence[int], tile: Tile, atomic: str | None,
           op: str) -> None:
    if type(tile) is Tensor:  # a window of a tensor in orchestration code: its values
        tile = read_whole(tile)
    if not isinstance(tile, Tile):
        raise KernelError(f"{op}: the source must be a tile or tensor, not {type(tile).__name__}")
    if len(offsets) != len(tile.shape) or len(offsets) != len(dst.shape):
        raise KernelError(f"{op}: offsets {list(offsets)} for a {len(tile.shape)}-d tile into the "
                          f"{len(dst.shape)}-d {dst.name}")
    if tile.dtype != dst.dtype:
        raise KernelError(f"{op}: a {tile.dtype!r} source into {dst.name} of {dst.dtype!r}")
    win = _window(offsets, tile.shape)
    if atomic in (None, AtomicType.None_):
        dst.store(win, tile.data, tile.valid_mask())
    elif atomic == AtomicType.Add:
        _atomic_add(world, dst, win, tile.data, tile.valid_mask())
    else:
        raise KernelError(f"{op}: atomic {atomic!r} is not a pld.AtomicType")


def _as_tile(src: Tile | Tensor, offsets: Sequence[int] | None = None, shape: Sequence[int] | None = None) -> Tile:
    if isinstance(src, Tile):
        return src
    if not isinstance(src, Tensor):
        raise KernelError(f"expected a tensor or tile, got {type(src).__name__}")
    offsets = [0] * len(src.shape) if offsets is None else offsets
    shape = list(src.shape) if shape is None else shape
    return Tile(src.load(_window(offsets, shape)), src.dtype)


def remote_load(target: DistributedTensor, peer: int, offsets: Sequence[int], shape: Sequence[int],
                valid_shape: Sequence[int] | None = None) -> Tile:
    """A `shape` tile of rank `peer`'s `target` at `offsets` (only `valid_shape` of it read)."""
    world = _world("pld.tile.remote_load")
    shape = [int(s) for s in shape]
    return access.load_window(world.peer(target, peer), shape, offsets,
                              [int(v) for v in (valid_shape or shape)])


def tile_remote_store(src_tile: Tile, target: DistributedTensor, peer: int, offsets: Sequence[int], *,
                      atomic: str = AtomicType.None_) -> None:
    """Write `src_tile` into rank `peer`'s `target` at `offsets` (``atomic=Add`` accumulates)."""
    world = _world("pld.tile.remote_store")
    _write(world, world.peer(target, peer), offsets, src_tile, atomic, "pld.tile.remote_store")


def tensor_remote_store(src: Tensor | Tile, target: DistributedTensor, peer: int, offsets: Sequence[int], *,
                        atomic: str = AtomicType.None_) -> None:
    """Tensor-level twin of ``pld.tile.remote_store``: the whole `src` goes to the peer."""
    world = _world("pld.tensor.remote_store")
    _write(world, world.peer(target, peer), offsets, _as_tile(src), atomic, "pld.tensor.remote_store")


def remote_store(src: Tensor | Tile, target: DistributedTensor, peer: int, offsets: Sequence[int], *,
                 atomic: str = AtomicType.None_) -> None:
    """``pld.remote_store``: the tile or the tensor form, by the operand."""
    return tensor_remote_store(src, target, peer, offsets, atomic=atomic)


def _transfer_checks(op: str, shape, dst_offsets, src_offsets, chunk_rows: int, chunk_cols: int,
                     pipeline: bool) -> None:
    given = [x is not None for x in (dst_offsets, src_offsets, shape)]
    if any(given) and not all(given):
        raise KernelError(f"{op}: dst_offsets, src_offsets and shape go together")
    if chunk_rows < 0 or chunk_cols < 0:
        raise KernelError(f"{op}: chunk sizes must be >= 0")
    if pipeline and not (chunk_rows > 0 and chunk_cols > 0):
        raise KernelError(f"{op}: pipeline=True needs chunk_rows > 0 and chunk_cols > 0")


def put(dst: DistributedTensor, peer: int, src: Tensor, dst_offsets: Sequence[int] | None = None,
        src_offsets: Sequence[int] | None = None, shape: Sequence[int] | None = None, *,
        atomic: str = AtomicType.None_, chunk_rows: int = 0, chunk_cols: int = 0, pipeline: bool = False) -> None:
    """Write this rank's `src` (region `src_offsets`/`shape`) into rank `peer`'s `dst` at
    `dst_offsets`; chunking and pipelining change the schedule, not the values."""
    world = _world("pld.tensor.put")
    _transfer_checks("pld.tensor.put", shape, dst_offsets, src_offsets, chunk_rows, chunk_cols, pipeline)
    tile = _as_tile(src, src_offsets, shape)
    remote = world.peer(dst, peer)
    _write(world, remote, dst_offsets if dst_offsets is not None else [0] * len(remote.shape), tile, atomic,
           "pld.tensor.put")


def get(dst: Tensor, peer: int, src: DistributedTensor, dst_offsets: Sequence[int] | None = None,
        src_offsets: Sequence[int] | None = None, shape: Sequence[int] | None = None, *,
        chunk_rows: int = 0, chunk_cols: int = 0, pipeline: bool = False) -> None:
    """Read rank `peer`'s `src` (region `src_offsets`/`shape`) into this rank's `dst`."""
    world = _world("pld.tensor.get")
    _transfer_checks("pld.tensor.get", shape, dst_offsets, src_offsets, chunk_rows, chunk_cols, pipeline)
    tile = _as_tile(world.peer(src, peer), src_offsets, shape)
    offsets = dst_offsets if dst_offsets is not None else [0] * len(dst.shape)
    dst.store(_window(offsets, tile.shape), tile.data)


# ----------------------------------------------------------------------------------------
# Window buffers (host)
# ----------------------------------------------------------------------------------------
def alloc_window_buffer(size: int | Sequence[int], *, dtype: DType | None = None, name: str = "") -> WindowBuffer:
    """A per-rank window buffer of `size` bytes, or of ``prod(size) * bytes(dtype)``."""
    if isinstance(size, (list, tuple)):
        if dtype is None:
            raise KernelError("pld.alloc_window_buffer(shape, dtype=...): a shape needs a dtype")
        nbytes = math.prod(int(s) for s in size) * _bytes(dtype)
    else:
        nbytes = int(size)
    if nbytes <= 0:
        raise KernelError(f"pld.alloc_window_buffer: {nbytes} bytes")
    return WindowBuffer(nbytes, name or _assigned_name("window_buffer"))


def window(buf: WindowBuffer, shape: Sequence[int], *, dtype: DType) -> WindowRef | DistributedTensor:
    """A typed `shape` view of `buf`: in the host, the view on every rank (each rank's program
    receives its own instance); inside a rank, that rank's instance."""
    if not isinstance(buf, WindowBuffer):
        raise KernelError("pld.window needs a buffer from pld.alloc_window_buffer")
    ref = WindowRef(buf, tuple(int(s) for s in shape), dtype, _assigned_name(buf.name))
    world = _ACTIVE.get()
    if world is not None and world.running is not None:
        return world.instance(ref, world.running)
    return ref


# ----------------------------------------------------------------------------------------
# Collectives: a rendezvous, then each rank computes its own result
# ----------------------------------------------------------------------------------------
def _combine(acc: torch.Tensor, other: torch.Tensor, op: str, dtype: DType) -> torch.Tensor:
    if op == ReduceOp.Sum:
        out = acc + other
    elif op == ReduceOp.Prod:
        out = acc * other
    elif op == ReduceOp.Max:
        out = torch.maximum(acc, other)
    elif op == ReduceOp.Min:
        out = torch.minimum(acc, other)
    else:
        raise KernelError(f"reduce op {op!r} is not a pld.ReduceOp")
    return _result(out, dtype, list(out.shape)).data


def _mesh_reduce(parts: Mapping[int, torch.Tensor], me: int, op: str, dtype: DType) -> torch.Tensor:
    """Own data first, then each peer in ascending rank, rounding after every step."""
    acc = parts[me].clone()
    for r in sorted(parts):
        if r != me:
            acc = _combine(acc, parts[r], op, dtype)
    return acc


def _local(t: Any, op: str) -> DistributedTensor:
    if not isinstance(t, DistributedTensor):
        raise KernelError(f"{op}: needs a window-bound pld.DistributedTensor")
    return t


def allreduce(target: DistributedTensor, signal: DistributedTensor | None = None, *, op: str = ReduceOp.Sum,
              mode: str = "mesh", core_num: int = 1) -> DistributedTensor:
    """Every rank's `target` becomes the reduction of all ranks' `target` (mesh order)."""
    world = _world("pld.tensor.allreduce")
    target = _local(target, "pld.tensor.allreduce")
    if mode not in ("mesh", "ring"):
        raise KernelError(f"pld.tensor.allreduce: mode {mode!r}")
    parts = world.rendezvous("allreduce", target.data.clone())
    target.store(tuple((0, n) for n in target.shape), _mesh_reduce(parts, world.running, op, target.dtype))
    return target


def barrier(signal: DistributedTensor) -> DistributedTensor:
    """Every rank waits for every other."""
    _world("pld.tensor.barrier").rendezvous("barrier", None)
    return signal


def broadcast(target: DistributedTensor, signal: DistributedTensor, *, root: int) -> DistributedTensor:
    """Every rank's `target` becomes rank `root`'s."""
    world = _world("pld.tensor.broadcast")
    target = _local(target, "pld.tensor.broadcast")
    parts = world.rendezvous(f"broadcast(root={int(root)})", target.data.clone())
    if int(root) not in parts:
        raise KernelError(f"pld.tensor.broadcast: root {root} is not a rank of this run")
    target.store(tuple((0, n) for n in target.shape), parts[int(root)])
    return target


def allgather(local_data: Tensor, target: DistributedTensor, signal: DistributedTensor) -> DistributedTensor:
    """Row block ``src`` of every rank's `target` becomes rank ``src``'s `local_data`."""
    world = _world("pld.tensor.allgather")
    target = _local(target, "pld.tensor.allgather")
    parts = world.rendezvous("allgather", _as_tile(local_data).data.clone())
    rows = target.shape[0]
    for src, data in parts.items():
        if src >= rows or data.numel() != math.prod(target.shape[1:]):
            raise KernelError(f"pld.tensor.allgather: rank {src}'s {list(data.shape)} chunk does not fit row "
                              f"{src} of {target.name} {list(target.shape)}")
        target.store(((src, src + 1),) + tuple((0, n) for n in target.shape[1:]),
                     data.reshape([1, *target.shape[1:]]))
    return target


def reduce_scatter(target: DistributedTensor, signal: DistributedTensor, *, op: str = ReduceOp.Sum) -> DistributedTensor:
    """Row ``my_rank`` of `target` becomes the reduction of that row over all ranks (mesh order)."""
    world = _world("pld.tensor.reduce_scatter")
    target = _local(target, "pld.tensor.reduce_scatter")
    me = world.running
    parts = world.rendezvous("reduce_scatter", target.data.clone())
    if me >= target.shape[0]:
        raise KernelError(f"pld.tensor.reduce_scatter: {target.name} has {target.shape[0]} rows for rank {me}")
    rows = {r: d[me:me + 1] for r, d in parts.items()}
    target.store(((me, me + 1),) + tuple((0, n) for n in target.shape[1:]),
                 _mesh_reduce(rows, me, op, target.dtype))
    return target


def all_to_all(input: Tensor, target: DistributedTensor, signal: DistributedTensor) -> DistributedTensor:  # noqa: A002
    """Row ``src`` of this rank's `target` becomes row ``my_rank`` of rank ``src``'s `input`."""
    world = _world("pld.tensor.all_to_all")
    target = _local(target, "pld.tensor.all_to_all")
    me = world.running
    parts = world.rendezvous("all_to_all", _as_tile(input).data.clone())
    for src, data in parts.items():
        target.store(((src, src + 1),) + tuple((0, n) for n in target.shape[1:]),
                     data[me:me + 1].reshape([1, *target.shape[1:]]))
    return target


# ----------------------------------------------------------------------------------------
# The table (``pld.*``) and source mode's modules
# ----------------------------------------------------------------------------------------
NAMES: dict[str, Any] = {
    "DistributedTensor": DistributedTensor, "CommCtx": CommCtx,
    "NotifyOp": NotifyOp, "NotifyOp.AtomicAdd": NotifyOp.AtomicAdd, "NotifyOp.Set": NotifyOp.Set,
    "WaitCmp": WaitCmp, "WaitCmp.Eq": WaitCmp.Eq, "WaitCmp.Ge": WaitCmp.Ge,
    "AtomicType": AtomicType, "AtomicType.None_": AtomicType.None_, "AtomicType.Add": AtomicType.Add,
    "ReduceOp": ReduceOp, "ReduceOp.Sum": ReduceOp.Sum, "ReduceOp.Max": ReduceOp.Max,
    "ReduceOp.Min": ReduceOp.Min, "ReduceOp.Prod": ReduceOp.Prod,
    # short forms
    "world_size": world_size, "get_comm_ctx": get_comm_ctx, "rank": rank, "nranks": nranks,
    "alloc_window_buffer": alloc_window_buffer, "window": window,
    "remote_load": remote_load, "remote_store": remote_store,
    # pld.system
    "system.world_size": world_size, "system.get_comm_ctx": get_comm_ctx, "system.rank": rank,
    "system.nranks": nranks, "system.notify": notify, "system.wait": wait, "system.defer_wait": defer_wait,
    # pld.tensor
    "tensor.alloc_window_buffer": alloc_window_buffer, "tensor.window": window, "tensor.put": put,
    "tensor.get": get, "tensor.remote_store": tensor_remote_store,
    "tensor.allreduce": allreduce, "tensor.barrier": barrier, "tensor.broadcast": broadcast,
    "tensor.allgather": allgather, "tensor.reduce_scatter": reduce_scatter, "tensor.all_to_all": all_to_all,
    # pld.tile
    "tile.remote_load": remote_load, "tile.remote_store": tile_remote_store,
}

# pypto modules besides the language that source mode provides (for `import` statements).
IMPORTABLE: frozenset[str] = frozenset({"pypto.ir.distributed_compiled_program"})


def namespace() -> dict[str, Any]:
    """Top-level members of ``pld`` built from `NAMES`."""
    return build(NAMES, prefix="pld")


def make_shim() -> types.ModuleType:
    """A fresh ``pypto.language.distributed`` module exposing the names of `NAMES` only."""
    mod = types.ModuleType("pypto.language.distributed", "equiv.tile.distributed seen as pld (source mode)")
    mod.__dict__.update(namespace())
    report_gaps(mod, "pld")
    return mod


def _ir_shim() -> types.ModuleType:
    ir = types.ModuleType("pypto.ir", "shim: only pypto.ir.distributed_compiled_program is provided")
    ir.__path__ = []  # type: ignore[attr-defined]
    compiled = types.ModuleType("pypto.ir.distributed_compiled_program")
    compiled.DistributedConfig = DistributedConfig  # type: ignore[attr-defined]
    ir.distributed_compiled_program = compiled  # type: ignore[attr-defined]
    report_gaps(ir, "pypto.ir")
    return ir


def attach(pypto: types.ModuleType) -> None:
    """Give source mode's ``pypto`` shim the distributed language and ``pypto.ir`` modules."""
    pypto.language.distributed = make_shim()  # type: ignore[attr-defined]
    pypto.ir = _ir_shim()  # type: ignore[attr-defined]


def import_module(pypto: types.ModuleType, name: str, fromlist: Sequence[str] | None) -> types.ModuleType | None:
    """What ``__import__(name, fromlist=...)`` returns for the pypto modules this file provides
    (None for any other name): the ``pypto`` package without a fromlist, else the module."""
    if "distributed" not in pypto.language.__dict__:
        attach(pypto)
    modules = {"pypto.language.distributed": pypto.language.distributed,
               "pypto.ir": pypto.ir, "pypto.ir.distributed_compiled_program": pypto.ir.distributed_compiled_program}
    if name not in modules:
        return None
    return modules[name] if fromlist else pypto
