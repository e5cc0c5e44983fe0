"""Vector clocks of a multi-rank run: what each rank has seen of every rank's writes.

Rank `r`'s clock counts, per rank, the notifies whose effects `r` has acquired (its own entry
is its epoch: the notifies it issued). A notify publishes the notifier's clock on the signal;
a wait that sees the signal, and every rank leaving a collective, joins the published clock
into its own. An access made at epoch `e` of rank `q` is ordered before the running rank
exactly when that rank's clock has ``clock[q] > e``.
"""

from __future__ import annotations

from typing import Sequence

import torch


def join(a: Sequence[int], b: Sequence[int]) -> list[int]:
    """The clock that has seen everything `a` or `b` has seen (element-wise max)."""
    return [max(x, y) for x, y in zip(a, b)]


def unordered(clock: Sequence[int], ranks: torch.Tensor, epochs: torch.Tensor,
              candidates: torch.Tensor) -> torch.Tensor:
    """Elements of `candidates` whose access by rank `ranks` at epoch `epochs` a rank with
    `clock` has not acquired (no notify→wait chain from that access to it)."""
    seen = torch.tensor(list(clock), dtype=torch.int64, device=ranks.device)
    return candidates & (epochs >= seen[ranks.clamp(min=0)])
