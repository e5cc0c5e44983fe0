"""Cross-rank races: an access to a rank's window that another rank's write (or read, for a
write) reaches with no notify→wait chain ordering the two, judged by vector clocks
(`equiv.tile.clocks`).

A client of the run's event stream: it sees the loads, stores and atomic adds of window
tensors (`DistributedTensor`) while the world's ranks run, and keeps per element the last
writing rank, its epoch and whether the write was an atomic add, and the last reading rank
and its epoch (maps of the window instance, made by `World`). Writes of the same rank are
judged as element races between its blocks (`equiv.tile.races.check_store`).
"""

from __future__ import annotations

from typing import Any

import torch

from equiv.tile import races
from equiv.tile import clocks
from equiv.tile.events import ATOMIC, LOAD, STORE, Client


class RankRaces(Client):
    """Reports ``race`` findings between ranks (and between blocks of one rank) on windows."""

    events = frozenset({LOAD, STORE, ATOMIC})
    per_element = False  # windows are not written by batched stages

    def on_load(self, ctx: Any, tensor: Any, window: tuple) -> None:
        world = tensor.race_world()
        if world is not None:
            check_read(world, tensor, window)

    def on_store(self, ctx: Any, tensor: Any, window: tuple, mask: Any, scalar: bool) -> None:
        world = tensor.race_world()
        if world is not None:
            check_write(world, tensor, window, tuple(slice(a, b) for a, b in window), mask)

    def on_store_element(self, ctx: Any, tensor: Any, idx: tuple[int, ...], prev: int) -> None:
        pass  # the one-element hot path is a plain tensor's, never a window's

    def on_atomic(self, ctx: Any, tensor: Any, window: tuple, mask: Any, remote: bool) -> None:
        world = tensor.race_world() if remote else None
        if world is not None:
            check_write(world, tensor, window, tuple(slice(a, b) for a, b in window), mask, atomic=True)


def _unordered(world: Any, ranks: torch.Tensor, epochs: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """Elements of `candidates` whose access by rank `ranks` at epoch `epochs` the running
    rank has not acquired (no notify→wait chain from that access to here)."""
    return clocks.unordered(world.clock[world.running], ranks, epochs, candidates)


def _report(world: Any, inst: Any, win, hits: torch.Tensor, ranks: torch.Tensor, what: str) -> None:
    hit = hits.nonzero()
    idx = hit + torch.tensor([a for a, _ in win], device=hit.device)
    first = [int(v) for v in idx[0].tolist()]
    other = int(ranks[tuple(hit[0].tolist())])
    region = [(int(idx[:, d].min()), int(idx[:, d].max()) + 1) for d in range(idx.shape[1])]
    world.ctx.record("race", inst.name,
                     f"element {first} of rank {inst.rank}'s window {what.format(other=other, me=world.running)} "
                     f"with no notify/wait ordering the two (cross-rank race)", region, count=int(hit.shape[0]))


def check_read(world: Any, inst: Any, win) -> None:
    """A read by rank `running` of `inst`[win]: a race with another rank's write that no
    notify→wait chain orders before it; remembered for the write check."""
    inside = tuple((max(a, 0), min(b, n)) for (a, b), n in zip(win, inst.shape))
    if not all(b > a for a, b in inside):
        return
    sl = tuple(slice(a, b) for a, b in inside)
    r = world.running
    prev_rank = inst.wrank[sl]
    unordered = _unordered(world, prev_rank, inst.wepoch[sl], (prev_rank >= 0) & (prev_rank != r))
    if bool(unordered.any()):
        _report(world, inst, inside, unordered, prev_rank, "written by rank {other} and read by rank {me}")
    inst.rrank[sl] = r
    inst.repoch[sl] = world.clock[r][r]


def check_write(world: Any, inst: Any, win, sl, mask, atomic: bool = False) -> None:
    """Record the write of rank `running` into `inst`[sl] (where `mask`), reporting a race
    with an earlier write or read of another rank that no notify→wait chain orders before it."""
    r = world.running
    m = torch.ones_like(inst.wrank[sl], dtype=torch.bool) if mask is None else mask
    prev_rank, prev_epoch, prev_atomic = inst.wrank[sl], inst.wepoch[sl], inst.watomic[sl]
    both_atomic = prev_atomic & atomic
    unordered = _unordered(world, prev_rank, prev_epoch, m & (prev_rank >= 0) & (prev_rank != r) & ~both_atomic)
    if bool(unordered.any()):
        _report(world, inst, win, unordered, prev_rank, "written by rank {other} and rank {me}")
    reader = inst.rrank[sl]
    unread = _unordered(world, reader, inst.repoch[sl], m & (reader >= 0) & (reader != r))
    if bool(unread.any()):
        _report(world, inst, win, unread, reader, "read by rank {other} and written by rank {me}")
    same = m & (prev_rank == r) & ~both_atomic
    if bool(same.any()):
        races.check_store(world.ctx, inst, win, sl, same)
    epoch = world.clock[r][r]
    inst.wrank[sl] = torch.where(m, torch.full_like(prev_rank, r), prev_rank)
    inst.wepoch[sl] = torch.where(m, torch.full_like(prev_epoch, epoch), prev_epoch)
    inst.watomic[sl] = torch.where(m, torch.full_like(prev_atomic, atomic), prev_atomic)
