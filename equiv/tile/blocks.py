"""Block and task identity: SPMD dispatch in its three forms, block and lane indices, AIV
split regions, task ids and on-core arrays.

How the forms run (pypto's ``pl.spmd`` documentation is the source of the semantics):

* ``for i in pl.spmd(n):`` — `n` blocks, each a race domain, in a seeded shuffled order
  (`equiv.tile.context.RunContext.block_order`); ``i`` is the block index.
* ``with pl.spmd(n, ...) [as tid]:`` — the body is the per-block program; it reads its
  index with ``pl.tile.get_block_idx()``; ``tid`` is the dispatch's task id. Python runs a
  ``with`` body once, so kernel files are rewritten when loaded (`equiv.tile.rewrite`): the
  statement becomes ``for tid in pl.spmd(n, ...).blocks():`` (or, when the body holds a
  ``pl.system.syncall`` barrier, a per-block function run by `SpmdDispatch.run_barriered`).
  Entering the context manager without that rewrite raises `UnsupportedOpError` instead
  of silently running one block.
* ``out, tid = pl.spmd_submit(kernel, *args, core_num=n)`` — `kernel` called once per block.

``pl.tile.get_block_idx()`` is the index of the innermost enclosing SPMD block (0 outside
any, as a single-block launch). ``pl.split_aiv(n, mode=...)`` runs its `n` AIV lanes as
parallel blocks too; ``pl.aiv_shard`` gives each lane its half of a tile along the split
axis (``UP_DOWN`` rows, ``LEFT_RIGHT`` columns, ``NONE`` the whole tile).

Task ids and dependency edges (``deps=``, ``pl.system.task_dummy``) are scheduling: the
emulator runs every task to completion in program order, which is one order the runtime
may choose, so they are recorded and otherwise ignored.
"""

from __future__ import annotations

import contextvars
import itertools
import threading
from typing import Any, Callable, Iterator, Sequence

import torch

from equiv.dtypes import DType
from equiv.tile.context import BlockNode, RunContext, current
from equiv.tile.errors import KernelError, UnsupportedOpError
from equiv.tile.sites import kernel_site
from equiv.tile.batch import deferred as _deferred
from equiv.tile.lanes import Lanes
from equiv.tile.batch.stages import Stage
from equiv.tile.turns import Abandoned as _Abandoned, await_turn, hand_over_failure, run_in_turns
from equiv.tile.values import Tile, _scalar_to

_range = range

# ``pl.TASK_ID``: the element type of task-id scalars and arrays (an opaque 64-bit handle).
TASK_ID = DType("TASK_ID", torch.int64, False, 64)

_STAGE_KINDS_ATTR = "_equiv_stage_kinds"


def _stage_kinds(ctx: RunContext) -> dict[int, tuple[str, Any]]:
    """Per-run map stage -> (kind, info) for the stages this module opens."""
    kinds = getattr(ctx, _STAGE_KINDS_ATTR, None)
    if kinds is None:
        kinds = {}
        setattr(ctx, _STAGE_KINDS_ATTR, kinds)
    return kinds


def _enclosing(kind: str) -> tuple[BlockNode, Any] | None:
    """The innermost block node of a stage of `kind` around the running code, and its info."""
    ctx = current()
    kinds = _stage_kinds(ctx)
    node = ctx.current
    while node is not None:
        entry = kinds.get(node.stage)
        if entry is not None and entry[0] == kind:
            return node, entry[1]
        node = node.parent
    return None


def _blocks(n: int, name: str, kind: str, info: Any) -> Iterator[int]:
    """`n` parallel blocks of one new stage (a race domain), in the run's shuffled order."""
    ctx = current()
    stage = ctx.new_stage()
    _stage_kinds(ctx)[stage] = (kind, info)
    for b in ctx.block_order(int(n)):
        with ctx.block(stage, b, name):
            yield b


# ----------------------------------------------------------------------------------------
# Task ids
# ----------------------------------------------------------------------------------------
class TaskId:
    """A task's producer id (``pl.Scalar[pl.TASK_ID]``): a name for dependency edges."""

    _ids = itertools.count(1)
    __slots__ = ("id", "name", "deps")

    def __init__(self, name: str, deps: Sequence[Any] | None = None):
        self.id = next(TaskId._ids)
        self.name = name
        self.deps = tuple(d for d in (deps or ()) if d is not None)

    def __repr__(self) -> str:
        return f"TaskId({self.name}#{self.id})"


def _check_deps(deps: Any, where: str) -> tuple:
    if deps is None:
        return ()
    if not isinstance(deps, (list, tuple)):
        raise KernelError(f"{where}: deps must be a list of task ids, got {type(deps).__name__}")
    for d in deps:
        if d is not None and not isinstance(d, (TaskId, Array, int)):
            raise KernelError(f"{where}: deps holds a {type(d).__name__}, not a task id")
    return tuple(deps)


# ----------------------------------------------------------------------------------------
# SPMD
# ----------------------------------------------------------------------------------------
class SpmdDispatch:
    """What ``pl.spmd(...)`` returns: iterable (loop form) and, after the load-time rewrite,
    a source of per-block task ids (``with`` form)."""

    def __init__(self, core_num: int, name_hint: str, sync_start: bool, deps: tuple, predicate: Any):
        self.core_num = core_num
        self.name = name_hint or "spmd"
        self.sync_start = sync_start
        self.task = TaskId(self.name, deps)
        self.predicate = predicate

    def _enabled(self) -> bool:
        # ``predicate=`` retires the whole dispatch when false (evaluated at dispatch).
        p = self.predicate
        if p is None:
            return True
        if isinstance(p, Tile):
            if p.data.numel() != 1:
                raise KernelError(f"pl.spmd predicate is a {p.shape} tile, not one element")
            return bool(p.data.reshape(()).item())
        return bool(p)

    def __iter__(self) -> Iterator[int]:
        if not self._enabled():
            return iter(())
        return _blocks(self.core_num, self.name, "spmd", self)

    def batch_stage(self) -> Any:
        """The stage of a batched run (`equiv.tile.batch.stages.Stage`), or None where there is
        nothing to batch (a retired dispatch or a single block)."""
        if self.core_num <= 1 or not self._enabled():
            return None
        ctx = current()
        stage = ctx.new_stage()
        _stage_kinds(ctx)[stage] = ("spmd", self)
        return Stage(stage, ctx.block_order(self.core_num), self.name, int)

    def blocks(self) -> "_WithBlocks":
        """The ``with`` form after rewriting: one iteration per block, each yielding the task id."""
        return _WithBlocks(self)

    def run_barriered(self, body: Callable[[], Any]) -> TaskId:
        """Run `body` once per block with ``pl.system.syncall`` barriers between phases.

        Blocks run as cooperating threads, one at a time, in the shuffled order; a block
        that reaches a barrier waits until every block has, and the phase after a barrier
        is a new race domain (writes on either side of a barrier do not race).
        """
        if self._enabled() and self.core_num > 0:
            _Barriered(self, body).run()
        return self.task

    def __enter__(self) -> Any:
        raise UnsupportedOpError(
            "with pl.spmd(...)", kernel_site(),
            "its body is the per-block program; load the kernel file through equiv.source "
            "(which rewrites the with-statement into a loop over blocks) or write "
            "`for i in pl.spmd(n):`")

    def __exit__(self, *exc: Any) -> bool:
        return False


class _WithBlocks:
    """The blocks of a ``with pl.spmd(...) as tid`` dispatch: each iteration binds the task id."""

    def __init__(self, dispatch: SpmdDispatch):
        self.dispatch = dispatch

    def __iter__(self) -> Iterator[TaskId]:
        for _ in self.dispatch:
            yield self.dispatch.task

    def batch_stage(self) -> Any:
        stage = self.dispatch.batch_stage()
        if stage is None:
            return None
        task = self.dispatch.task
        # Every block binds the same task id; the block index comes from get_block_idx.
        return stage._replace(value_of=lambda _b: task, shared=task)


def spmd(core_num: int, name_hint: str = "", *, sync_start: bool = False, optimizations: Any = None,
         deps: Sequence[Any] | None = None, allow_early_resolve: bool = False, predicate: Any = None,
         **_hints: Any) -> SpmdDispatch:
    """``pl.spmd(n, ...)``: `n` independent blocks (see the module docstring for the forms).

    ``optimizations``, ``allow_early_resolve`` and ``deps`` are scheduling hints (ignored).
    """
    n = int(core_num)
    # pypto rejects a literal count <= 0 when it parses the kernel; a count computed at run
    # time (from tensor data) can be 0, and then no block runs.
    if n < 0:
        raise KernelError(f"pl.spmd: core_num must not be negative, got {n}")
    return SpmdDispatch(n, name_hint or "spmd", sync_start, _check_deps(deps, "pl.spmd"), predicate)


def spmd_submit(kernel: Callable, *args: Any, core_num: int, sync_start: bool = False,
                deps: Sequence[Any] | None = None, allow_early_resolve: bool = False,
                predicate: Any = None, **kwargs: Any) -> tuple[Any, TaskId]:
    """``out, tid = pl.spmd_submit(kernel, *args, core_num=n)``: `kernel(*args)` once per block.

    Returns the kernel's result (the last block's; blocks return the tensors they were
    given) and the dispatch's task id.
    """
    name = getattr(kernel, "__name__", "spmd_submit")
    dispatch = spmd(core_num, name, sync_start=sync_start, deps=deps, predicate=predicate)
    result = None
    for _ in dispatch:
        result = kernel(*args, **kwargs)
    return result, dispatch.task


class _Barriered:
    """Blocks of one dispatch as threads taking turns, with ``syncall`` as a barrier."""

    _active: contextvars.ContextVar["_Barriered | None"] = contextvars.ContextVar("equiv_barriered", default=None)

    def __init__(self, dispatch: SpmdDispatch, body: Callable[[], Any]):
        self.dispatch = dispatch
        self.body = body
        self.ctx = current()
        self.cond = threading.Condition()
        self.order = self.ctx.block_order(dispatch.core_num)
        self.turn: int | None = None
        self.arrived: set[int] = set()
        self.finished: set[int] = set()
        self.failure: BaseException | None = None
        self.abort = False
        self.saved: dict[int, BlockNode] = {}
        self.parent = self.ctx.current
        self.stage = self._new_stage()
        self.phase = 0

    def _new_stage(self) -> int:
        stage = self.ctx.new_stage()
        _stage_kinds(self.ctx)[stage] = ("spmd", self.dispatch)
        return stage

    def run(self) -> None:
        run_in_turns(self, self.order, self._main, "block")
        self.ctx.current = self.parent
        if self.failure is not None:
            raise self.failure

    def _await(self, b: int) -> None:
        await_turn(self, b)

    def _enter_phase_node(self, b: int) -> None:
        node = BlockNode(self.ctx._next_token, self.parent, self.stage, b, self.dispatch.name)
        self.ctx.nodes[node.token] = node
        self.ctx._next_token += 1
        self.ctx.current = node

    def _main(self, b: int) -> None:
        self._active.set(self)
        try:
            with self.cond:
                self._await(b)
            self._enter_phase_node(b)
            self.body()
        except _Abandoned:
            return
        except BaseException as exc:  # noqa: BLE001 - re-raised by the dispatching thread
            hand_over_failure(self, exc)
            return
        with self.cond:
            self.finished.add(b)
            if self.arrived and self.arrived | self.finished == set(self.order) and \
                    len(self.finished) < len(self.order):
                self.failure = KernelError(
                    f"pl.system.syncall: block {b} of {self.dispatch.name} finished while "
                    f"{len(self.arrived)} block(s) wait at the barrier (a block skipped it): "
                    f"on the device this deadlocks", kernel_site())
            self._pass_turn(b)
            self.cond.notify_all()

    def _pass_turn(self, b: int) -> None:
        i = self.order.index(b)
        for k in _range(1, len(self.order) + 1):
            cand = self.order[(i + k) % len(self.order)]
            if cand not in self.finished and cand not in self.arrived:
                self.turn = cand
                return
        self.turn = None

    def barrier(self) -> None:
        """The running block waits until every block has reached the barrier."""
        node = self.ctx.current
        b = next(n.block for n in node.chain() if n.stage == self.stage)
        with self.cond:
            self.arrived.add(b)
            self.saved[b] = node
            if self.arrived == set(self.order):
                # Everyone is here: a new phase (a new race domain) starts in shuffled order.
                for client in self.ctx.fan.barrier:
                    client.on_barrier(self.ctx, self.stage)
                self.arrived.clear()
                self.phase += 1
                self.stage = self._new_stage()
                self.saved.clear()
                self.turn = self.order[0]
                self.cond.notify_all()
            elif self.finished:
                self.failure = KernelError(
                    f"pl.system.syncall: a block of {self.dispatch.name} finished without reaching "
                    f"the barrier block {b} waits at: on the device this deadlocks", kernel_site())
                self.cond.notify_all()
                raise _Abandoned()
            else:
                self._pass_turn(b)
                self.cond.notify_all()
            self._await(b)
        self._enter_phase_node(b)


def syncall(*, core_type: str = "mix", mode: str = "hard", gm_workspace: Any = None,
            used_cores: Any = None) -> None:
    """``pl.system.syncall``: a barrier across every block of the enclosing SPMD dispatch."""
    runner = _Barriered._active.get()
    if runner is None or _enclosing("spmd") is None:
        raise UnsupportedOpError(
            "pl.system.syncall", kernel_site(),
            "outside a `with pl.spmd(...)` body loaded through equiv.source, blocks run one "
            "after another and cannot meet at a barrier")
    runner.barrier()


def task_dummy(*, deps: Sequence[Any]) -> TaskId:
    """``pl.system.task_dummy(deps=[...])``: a task id that depends on `deps` (no work)."""
    return TaskId("task_dummy", _check_deps(list(deps), "pl.system.task_dummy"))


# ----------------------------------------------------------------------------------------
# Block and lane indices
# ----------------------------------------------------------------------------------------
def _batched_spmd() -> tuple[Any, Any] | None:
    """(batch, dispatch) when the running code is a batched stage of an SPMD dispatch."""
    running = _deferred.active()
    if running is None:
        return None
    entry = _stage_kinds(current()).get(running.stage)
    return (running, entry[1]) if entry is not None and entry[0] == "spmd" else None


def get_block_idx() -> Any:
    """Index of the innermost enclosing SPMD block (0 outside any: a one-block launch); in a
    batched stage, every block's index (`equiv.tile.lanes.Lanes`)."""
    batched = _batched_spmd()
    if batched is not None:
        running = batched[0]
        return running.order[running.lane] if running.lane is not None else Lanes(list(running.order))
    found = _enclosing("spmd")
    return 0 if found is None else int(found[0].block)


def get_block_num() -> int:
    """Number of blocks of the innermost enclosing SPMD dispatch (1 outside any)."""
    batched = _batched_spmd()
    if batched is not None:
        return int(batched[1].core_num)
    found = _enclosing("spmd")
    return 1 if found is None else int(found[1].core_num)


def get_subblock_idx() -> int:
    """AIV lane of the innermost enclosing ``pl.split_aiv`` region (0 outside any)."""
    found = _enclosing("split_aiv")
    return 0 if found is None else int(found[0].block)


class SplitMode:
    """``pl.SplitMode``: how a split region divides vector work between the two AIV lanes."""

    NONE = "NONE"
    UP_DOWN = "UP_DOWN"
    LEFT_RIGHT = "LEFT_RIGHT"


def split_aiv(n: int, *, mode: str = SplitMode.NONE) -> Iterator[int]:
    """``for aiv_id in pl.split_aiv(n, mode=...)``: `n` AIV lanes, run as parallel blocks."""
    if mode not in (SplitMode.NONE, SplitMode.UP_DOWN, SplitMode.LEFT_RIGHT):
        raise KernelError(f"pl.split_aiv: unknown mode {mode!r}")
    if int(n) <= 0:
        raise KernelError(f"pl.split_aiv: {n} lanes")
    return _blocks(int(n), "aiv", "split_aiv", (int(n), mode))


def aiv_shard(x: Tile) -> Tile:
    """The running lane's part of `x`: its 1/n of the rows (``UP_DOWN``) or columns
    (``LEFT_RIGHT``); the whole of `x` under ``NONE``."""
    found = _enclosing("split_aiv")
    if found is None:
        raise KernelError("pl.aiv_shard outside a `for aiv_id in pl.split_aiv(...)` region")
    node, (lanes, mode) = found
    if not isinstance(x, Tile):
        raise UnsupportedOpError("pl.aiv_shard of a tensor", kernel_site(), "only tiles are covered")
    if mode == SplitMode.NONE:
        return x
    axis = len(x.shape) - 2 if mode == SplitMode.UP_DOWN else len(x.shape) - 1
    size = x.shape[axis]
    if size % lanes:
        raise KernelError(f"pl.aiv_shard: axis of {size} does not split into {lanes} lanes")
    part = size // lanes
    key = [slice(None)] * len(x.shape)
    key[axis] = slice(node.block * part, (node.block + 1) * part)
    return x[tuple(key)]


def aic_gather(x: Tile) -> Tile:
    """AIV -> AIC crossing; only the ``NONE`` mode (shape kept) is covered."""
    found = _enclosing("split_aiv")
    if found is None:
        raise KernelError("pl.aic_gather outside a `for aiv_id in pl.split_aiv(...)` region")
    if found[1][1] != SplitMode.NONE:
        raise UnsupportedOpError("pl.aic_gather in a data-parallel split region", kernel_site())
    return x


# ----------------------------------------------------------------------------------------
# On-core arrays
# ----------------------------------------------------------------------------------------
class _ArrayMeta(type):
    def __getitem__(cls, item: Any) -> tuple:
        # ``pl.Array[extent, dtype]`` is an annotation only.
        return (cls, item)


class Array(metaclass=_ArrayMeta):
    """``pl.array.create(n, dtype)``: a small zero-initialised on-core array of integers or
    task ids; ``arr[i]`` reads, ``arr[i] = v`` writes (wrapped to the element type)."""

    __slots__ = ("dtype", "values")

    def __init__(self, extent: int, dtype: DType):
        if int(extent) <= 0:
            raise KernelError(f"pl.array.create: extent {extent}")
        if dtype.is_float:
            raise KernelError(f"pl.array.create: element type {dtype!r} (arrays hold integers or task ids)")
        self.dtype = dtype
        # Zero-initialised (``dtype arr[N] = {0}``); for task ids zero is "no task".
        self.values: list[Any] = [None if dtype is TASK_ID else 0] * int(extent)

    def _index(self, index: Any) -> int:
        i = int(index)
        if not 0 <= i < len(self.values):
            raise KernelError(f"array index {i} outside an array of {len(self.values)}")
        return i

    def __getitem__(self, index: Any) -> Any:
        return self.values[self._index(index)]

    def __setitem__(self, index: Any, value: Any) -> None:
        i = self._index(index)
        if self.dtype is TASK_ID:
            if value is not None and not isinstance(value, TaskId):
                raise KernelError(f"a task-id array holds task ids, not {type(value).__name__}")
            self.values[i] = value
        else:
            self.values[i] = _scalar_to(int(value), self.dtype)

    def __len__(self) -> int:
        return len(self.values)

    def __repr__(self) -> str:
        return f"Array({self.values}, {self.dtype!r})"


def array_create(extent: int, dtype: DType) -> Array:
    return Array(extent, dtype)


def array_get_element(array: Array, index: int) -> Any:
    return array[index]


def array_update_element(array: Array, index: int, value: Any) -> Array:
    """Functional update in the DSL; the emulator updates in place and returns the array."""
    array[index] = value
    return array
