"""The ops of ``pld``: ``pld.system`` (sizes, ranks, notify/wait), ``pld.tensor`` (window
buffers, put/get, remote stores, collectives) and ``pld.tile`` remote loads and stores."""

from __future__ import annotations

import linecache
import math
import re
from typing import Any, Mapping, Sequence
from typing import TYPE_CHECKING

import torch

from equiv.dtypes import DType
from equiv.tile.errors import KernelError
from equiv.tile.memory import Tensor
from equiv.tile.sites import kernel_site
from equiv.tile import access
from equiv.tile.values import Tile, _result, _scalar_to, read_whole
from equiv.tile.distributed.dsl_types import (AtomicType, CommCtx, NotifyOp, ReduceOp, WaitCmp, WindowBuffer, WindowRef)
from equiv.tile.distributed.world import DistributedTensor, ACTIVE, WORLD_SIZE, element_bytes, running_world

if TYPE_CHECKING:
    from equiv.tile.distributed.world import World


def _assigned_name(default: str) -> str:
    """The name a host line assigns to (``buf = pld.alloc_window_buffer(...)`` -> ``buf``)."""
    site = kernel_site()
    path, _, line = site.rpartition(":")
    text = linecache.getline(path, int(line)) if line.isdigit() else ""
    m = re.match(r"\s*([A-Za-z_]\w*)\s*=", text)
    return m.group(1) if m else default


# ----------------------------------------------------------------------------------------
# pld.system
# ----------------------------------------------------------------------------------------
def world_size() -> int:
    """Number of ranks (host side; inside a rank too)."""
    world = ACTIVE.get()
    if world is None:
        size = WORLD_SIZE.get()
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
    world = running_world("pld.system.notify")
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
    world = running_world("pld.system.wait")
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
def _atomic_add(world: World, dst: DistributedTensor, win, values: torch.Tensor,
                mask: torch.Tensor | None = None) -> None:
    """``dst[win] += values`` (one rounding to dst's type) as an atomic remote write."""
    inside, clipped = dst._clip(win, "oob-write", mask)
    if not all(b > a for a, b in inside):
        return
    sl = Tensor._slices(inside)
    src = values[Tensor._slices(inside, win)] if clipped else values
    m = mask[Tensor._slices(inside, win)] if (mask is not None and clipped) else mask
    src = src.to(dst.data.device, dst.dtype.container)
    world.ctx.atomic(dst, inside, m, remote=True)  # the cross-rank race detector judges it
    dst.check_initialised(inside, m)  # an add reads what it adds to
    summed = _result(dst.data[sl] + src, dst.dtype, list(src.shape)).data
    world.ctx.note_order_dependent("remote atomic add", dst.name, dst.dtype, world.running)
    keep = torch.ones_like(dst.written[sl]) if m is None else m
    world.ctx.before_write(dst.data)
    dst.data[sl] = torch.where(keep, summed, dst.data[sl])
    dst.written[sl] |= keep
    dst.writer[sl] = torch.where(keep, torch.full_like(dst.writer[sl], world.ctx.current.token), dst.writer[sl])


def _window(offsets: Sequence[int], shape: Sequence[int]) -> tuple[tuple[int, int], ...]:
    return tuple((int(o), int(o) + int(n)) for o, n in zip(offsets, shape))


def _write(world: World, dst: DistributedTensor, offsets: Sequence[int], tile: Tile, atomic: str | None,
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
    world = running_world("pld.tile.remote_load")
    shape = [int(s) for s in shape]
    return access.load_window(world.peer(target, peer), shape, offsets,
                              [int(v) for v in (valid_shape or shape)])


def tile_remote_store(src_tile: Tile, target: DistributedTensor, peer: int, offsets: Sequence[int], *,
                      atomic: str = AtomicType.None_) -> None:
    """Write `src_tile` into rank `peer`'s `target` at `offsets` (``atomic=Add`` accumulates)."""
    world = running_world("pld.tile.remote_store")
    _write(world, world.peer(target, peer), offsets, src_tile, atomic, "pld.tile.remote_store")


def tensor_remote_store(src: Tensor | Tile, target: DistributedTensor, peer: int, offsets: Sequence[int], *,
                        atomic: str = AtomicType.None_) -> None:
    """Tensor-level twin of ``pld.tile.remote_store``: the whole `src` goes to the peer."""
    world = running_world("pld.tensor.remote_store")
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
    world = running_world("pld.tensor.put")
    _transfer_checks("pld.tensor.put", shape, dst_offsets, src_offsets, chunk_rows, chunk_cols, pipeline)
    tile = _as_tile(src, src_offsets, shape)
    remote = world.peer(dst, peer)
    _write(world, remote, dst_offsets if dst_offsets is not None else [0] * len(remote.shape), tile, atomic,
           "pld.tensor.put")


def get(dst: Tensor, peer: int, src: DistributedTensor, dst_offsets: Sequence[int] | None = None,
        src_offsets: Sequence[int] | None = None, shape: Sequence[int] | None = None, *,
        chunk_rows: int = 0, chunk_cols: int = 0, pipeline: bool = False) -> None:
    """Read rank `peer`'s `src` (region `src_offsets`/`shape`) into this rank's `dst`."""
    world = running_world("pld.tensor.get")
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
        nbytes = math.prod(int(s) for s in size) * element_bytes(dtype)
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
    world = ACTIVE.get()
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
    world = running_world("pld.tensor.allreduce")
    target = _local(target, "pld.tensor.allreduce")
    if mode not in ("mesh", "ring"):
        raise KernelError(f"pld.tensor.allreduce: mode {mode!r}")
    parts = world.rendezvous("allreduce", target.data.clone())
    target.store(tuple((0, n) for n in target.shape), _mesh_reduce(parts, world.running, op, target.dtype))
    return target


def barrier(signal: DistributedTensor) -> DistributedTensor:
    """Every rank waits for every other."""
    running_world("pld.tensor.barrier").rendezvous("barrier", None)
    return signal


def broadcast(target: DistributedTensor, signal: DistributedTensor, *, root: int) -> DistributedTensor:
    """Every rank's `target` becomes rank `root`'s."""
    world = running_world("pld.tensor.broadcast")
    target = _local(target, "pld.tensor.broadcast")
    parts = world.rendezvous(f"broadcast(root={int(root)})", target.data.clone())
    if int(root) not in parts:
        raise KernelError(f"pld.tensor.broadcast: root {root} is not a rank of this run")
    target.store(tuple((0, n) for n in target.shape), parts[int(root)])
    return target


def allgather(local_data: Tensor, target: DistributedTensor, signal: DistributedTensor) -> DistributedTensor:
    """Row block ``src`` of every rank's `target` becomes rank ``src``'s `local_data`."""
    world = running_world("pld.tensor.allgather")
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
    world = running_world("pld.tensor.reduce_scatter")
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
    world = running_world("pld.tensor.all_to_all")
    target = _local(target, "pld.tensor.all_to_all")
    me = world.running
    parts = world.rendezvous("all_to_all", _as_tile(input).data.clone())
    for src, data in parts.items():
        target.store(((src, src + 1),) + tuple((0, n) for n in target.shape[1:]),
                     data[me:me + 1].reshape([1, *target.shape[1:]]))
    return target
