"""Element races: two blocks of one parallel stage writing the same element of a tensor.

A client of the run's event stream (`equiv.tile.events`): at every store it compares the
tensor's last-writer map with the running block; the block tree (`RunContext.races_with`)
says whether two writers are siblings of one stage. A window of a multi-rank world written
while its ranks run is judged by the cross-rank client (`equiv.tile.rank_races`),
same-rank writes included.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from equiv.tile.events import STORE, Client

if TYPE_CHECKING:
    from equiv.tile.context import RunContext
    from equiv.tile.memory import Tensor, Window


class ElementRaces(Client):
    """Reports ``race``: an element stored by two sibling blocks of one parallel stage."""

    events = frozenset({STORE})
    per_element = False  # a batched stage replays block by block where a race could occur

    def on_store(self, ctx: "RunContext", tensor: "Tensor", window: "Window", mask, scalar: bool) -> None:
        if tensor.race_world() is not None:
            return
        check_store(ctx, tensor, window, tuple(slice(a, b) for a, b in window), mask)

    def on_store_element(self, ctx: "RunContext", tensor: "Tensor", idx: tuple[int, ...], prev: int) -> None:
        check_element(ctx, tensor.name, idx, prev)


def check_store(ctx: "RunContext", tensor: "Tensor", win: "Window", sl: tuple[slice, ...],
                mask: torch.Tensor | None) -> None:
    """Record a race where the running block stores `win` (`sl` of `tensor`, where `mask`)
    over elements a sibling block of the same parallel stage wrote last."""
    prev = tensor.writer[sl]
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
        ctx.record("race", tensor.name,
                   f"element {list(first)} written by {ctx.block_label(other)} and "
                   f"{ctx.block_label(ctx.current)} of the same parallel stage",
                   region, count=int(hit.shape[0]))


def check_element(ctx: "RunContext", name: str, idx: tuple[int, ...], prev: int) -> None:
    """Record a race where the running block writes element `idx` of tensor `name` whose last
    writer `prev` is a sibling block of the same parallel stage (``pl.write``'s hot path)."""
    if prev >= 0 and prev != ctx.current.token:
        other = ctx.races_with(prev)
        if other is not None:
            ctx.record("race", name,
                       f"element {list(idx)} written by {ctx.block_label(other)} and "
                       f"{ctx.block_label(ctx.current)} of the same parallel stage",
                       [(i, i + 1) for i in idx], count=1)
