"""Data movement within tiles: gathers by index."""

from __future__ import annotations

import math
from typing import Any, Iterator, Sequence

import torch

from equiv import rounding
from equiv.dtypes import BF16, FP16, FP32, INDEX, INT8, INT16, INT32, INT64, UINT8, DType  # noqa: F401
from equiv.memory import KernelError, Tensor, current

from equiv.memory import OutOfBoundsError
from equiv.tile.values import Tile

# ----------------------------------------------------------------------------------------
# Gather
# ----------------------------------------------------------------------------------------
def gather(x: Tile, dim: int = -1, index: Tile | None = None) -> Tile:
    """``out[r, k] = x[r, index[r, k]]`` (torch.gather along the last axis)."""
    if index is None or index.dtype.is_float:
        raise KernelError("gather needs an integer index tile")
    if dim not in (-1, len(x.shape) - 1):
        raise KernelError("gather is supported along the last axis only")
    idx = index.data
    if idx.shape[0] != x.data.shape[0]:
        raise KernelError(f"gather index rows {idx.shape[0]} != source rows {x.data.shape[0]}")
    n = x.data.shape[-1]
    bad = (idx < 0) | (idx >= n)
    if bool(bad.any()):
        ctx = current()
        hit = bad.nonzero()
        first = hit[0].tolist()
        if ctx.options.out_of_bounds == "raise":
            from equiv.memory import OutOfBoundsError
            raise OutOfBoundsError(f"gather index {int(idx[tuple(first)])} at {first} outside [0, {n})")
        ctx.record("oob-read", "gather source", f"gather index {int(idx[tuple(first)])} at {first} "
                   f"outside [0, {n})", [(int(hit[:, 0].min()), int(hit[:, 0].max()) + 1),
                                          (int(hit[:, 1].min()), int(hit[:, 1].max()) + 1)],
                   count=int(hit.shape[0]))
    out = torch.gather(x.data, -1, idx.clamp(0, n - 1))
    if bool(bad.any()):
        out = torch.where(bad, current().poison(out.shape, x.dtype), out)
    return Tile(out, x.dtype, index.valid)


