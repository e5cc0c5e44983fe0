"""The world of a multi-rank run: each rank's window memory, the ranks as cooperating
threads taking turns, signals, collectives' rendezvous and deadlocks. Cross-rank races are
judged by a client of the run's event stream (`equiv.tile.rank_races`)."""

from __future__ import annotations

import contextvars
import functools
import inspect
import math
import threading
import types
from collections import defaultdict
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Mapping

import torch

from equiv.dtypes import DType
from equiv.tile import memory
from equiv.tile.errors import KernelError, UnsupportedOpError
from equiv.tile.memory import Tensor
from equiv.tile.context import current
from equiv.tile.sites import kernel_site
from equiv.tile import access
from equiv.tile.turns import Abandoned as _Abandoned, await_turn, hand_over_failure, run_in_turns
from equiv.tile import clocks
from equiv.tile.distributed.dsl_types import WindowRef


class DistributedTensor(Tensor):
    """One rank's instance of a window (``pld.DistributedTensor[[shape], dtype]`` annotates one).

    Besides the `Tensor` state it remembers per element the rank that last wrote it, that
    rank's epoch (number of notifies it had issued) at the time, and whether the write was
    an atomic add: what the cross-rank race detector (`equiv.tile.rank_races`) needs.
    """

    rank: int
    world: "World"
    ref: "WindowRef"

    def __class_getitem__(cls, item):
        return (DistributedTensor, item)

    def race_world(self) -> "World | None":
        world = ACTIVE.get()
        return world if world is not None and world.running is not None else None


def world_size_from(compile_cfg: Mapping[str, Any] | None) -> int | None:
    """The world size a ``run_jit(compile_cfg=dict(distributed_config=...))`` asks for."""
    cfg = (compile_cfg or {}).get("distributed_config")
    ids = getattr(cfg, "device_ids", None)
    return len(ids) if ids else None


WORLD_SIZE: contextvars.ContextVar[int | None] = contextvars.ContextVar("equiv_world_size", default=None)
ACTIVE: contextvars.ContextVar["World | None"] = contextvars.ContextVar("equiv_world", default=None)


@contextmanager
def configured(world_size: int) -> Iterator[None]:
    """Run host entries within with a world of `world_size` ranks."""
    if int(world_size) < 1:
        raise ValueError(f"world size {world_size} < 1")
    token = WORLD_SIZE.set(int(world_size))
    try:
        yield
    finally:
        WORLD_SIZE.reset(token)


# ----------------------------------------------------------------------------------------
# The world: ranks, their windows, clocks and scheduling
# ----------------------------------------------------------------------------------------
class World:
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
                "run the host entry under equiv.tile.distributed.world.configured(n); source mode takes n "
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
            count = ref.buffer.nbytes // element_bytes(ref.dtype)
            flat = self._new_instance(f"{ref.buffer.name}@rank{rank}", [count], ref.dtype, rank)
            self.instances[key] = flat
        numel = math.prod(ref.shape)
        if numel * element_bytes(ref.dtype) > ref.buffer.nbytes:
            raise KernelError(f"pld.window: a {list(ref.shape)} {ref.dtype!r} view needs "
                              f"{numel * element_bytes(ref.dtype)} bytes; {ref.buffer.name} has {ref.buffer.nbytes}")
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

    # -- clocks --------------------------------------------------------------------------
    def release(self, signal_key: tuple[int, int, int]) -> None:
        r = self.running
        self.clock[r][r] += 1
        known = self.signal_clock.setdefault(signal_key, [0] * self.nranks())
        self.signal_clock[signal_key] = clocks.join(known, self.clock[r])
        for client in self.ctx.fan.rank_message:
            client.on_rank_message(self.ctx, "release", r, signal_key)

    def acquire(self, signal_key: tuple[int, int, int]) -> None:
        r = self.running
        seen = self.signal_clock.get(signal_key)
        if seen is not None:
            self.clock[r] = clocks.join(self.clock[r], seen)
        for client in self.ctx.fan.rank_message:
            client.on_rank_message(self.ctx, "acquire", r, signal_key)

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
        if isinstance(value, RankIndexed):  # a whole host tensor: ordinary indexing in the rank
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
            hand_over_failure(self, exc)
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
            self.clock[r] = clocks.join(self.clock[r], clock)
        return {rank: p for rank, (_, _, p) in meeting.items()}


def element_bytes(dtype: DType) -> int:
    return max(dtype.bits // 8, 1)


def running_world(op: str) -> World:
    from equiv.tile.batch import deferred

    deferred.forbid(f"{op}: a rank's communication is per block")
    world = ACTIVE.get()
    if world is None or world.running is None:
        raise KernelError(f"{op} outside a rank: run the program through a @pl.jit.host entry that "
                          f"dispatches it with device=r")
    return world


# ----------------------------------------------------------------------------------------
# Host orchestrators (@pl.jit.host)
# ----------------------------------------------------------------------------------------
class RankIndexed(Tensor):
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

    def __init__(self, fn: Callable, world: World):
        self.fn, self.world = fn, world
        functools.update_wrapper(self, fn)

    def __call__(self, *args: Any, device: Any = None, **kwargs: Any) -> Any:
        if device is None:  # a helper of the host: its own calls may dispatch too
            return self.world.host_call(self.fn, args, kwargs)
        self.world.dispatch(self.fn, args, kwargs, device)
        return None
