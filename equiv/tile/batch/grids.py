"""Window grids: the windows of a batched stage's lanes as one strided view of a tensor,
where their starts form a regular grid (one gather instead of one per lane)."""

from __future__ import annotations

import math

import torch


def lane_grid(starts: list[list[int]], extent: tuple, distinct: bool = True) -> tuple[list, list, list, list[int]] | None:
    """When windows of `extent` starting at ``starts[d][k]`` lie on a full, evenly spaced grid
    (every combination of the starts along each dimension is a window): the grid's first
    start, spacing and number of windows per dimension and each window's row-major position
    in it; else None.
    `distinct` (stores): no two windows may share an element.

    Per dimension, `c` distinct starts from `lo` to `hi` that are all ``lo`` modulo
    ``(hi - lo) / (c - 1)`` are exactly that evenly spaced progression (no sort needed)."""
    lanes = len(starts[0]) if starts else 1
    first, steps, counts = [], [], []
    ranks: list[int] | None = None
    for col, n in zip(starts, extent):
        lo, hi = min(col), max(col)
        if lo == hi:  # one start along this dimension: every lane's position is 0
            first.append(lo)
            steps.append(n)
            counts.append(1)
            continue
        axis = set(col)
        c = len(axis)
        step, rest = divmod(hi - lo, c - 1)
        if rest or (distinct and step < n) or any((a - lo) % step for a in axis):
            return None
        first.append(lo)
        steps.append(step)
        counts.append(c)
        ranks = ([(a - lo) // step for a in col] if ranks is None
                 else [r * c + (a - lo) // step for r, a in zip(ranks, col)])
    count = math.prod(counts)
    if ranks is None:
        ranks = [0] * lanes
    if count > lanes or (distinct and count != lanes) or len(set(ranks)) != count:
        return None
    return first, steps, counts, ranks


# From this many lanes on, a read whose windows are not a full grid reads a grid with holes
# that holds them all (`read_grid`); fewer lanes gather their windows by index.
READ_GRID_LANES = 64


def read_grid(starts: list[list[int]], extent: tuple) -> tuple[list, list, list, list[int]] | None:
    """For reads by many lanes: an evenly spaced grid that holds every lane's window, with
    holes (positions no lane reads) allowed up to as many windows again as there are lanes:
    reading the whole grid and picking the lanes' windows is one strided copy and one
    single-index gather (qkv's head chunks skip every eighth)."""
    lanes = len(starts[0]) if starts else 1
    ranks = [0] * lanes
    first, steps, counts = [], [], []
    for col, n in zip(starts, extent):
        lo = min(col)
        step = math.gcd(*(a - lo for a in set(col))) or n
        count = (max(col) - lo) // step + 1
        first.append(lo)
        steps.append(step)
        counts.append(count)
        ranks = [r * count + (a - lo) // step for r, a in zip(ranks, col)]
    if math.prod(counts) > 2 * lanes:
        return None
    return first, steps, counts, ranks


def grid_view(x: torch.Tensor, first: list, steps: list, counts: list, extent: tuple) -> torch.Tensor:
    """The grid's windows of `x` as one view [*counts, *extent] (writes through it land in `x`)."""
    x = x[tuple(slice(a, a + (g - 1) * s + n) for a, s, g, n in zip(first, steps, counts, extent))]
    for d, (n, s) in enumerate(zip(extent, steps)):
        x = x.unfold(d, n, s)
    return x
