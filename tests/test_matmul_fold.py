"""The fp32 matmul fold with few outputs (one numpy accumulate over K) gives the bits of the
sequential fold, product by product, that it replaces: specials, -0.0 and a carried acc included."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch

matmul = importlib.import_module("equiv.tile.matmul")  # (equiv.tile.matmul is also pl.matmul)


def _sequential(acc, x, y):
    xs, ys = x.numpy().astype(np.float32), y.numpy().astype(np.float32)
    out = None if acc is None else acc.numpy().astype(np.float32).copy()
    for k in range(xs.shape[-1]):
        prod = np.multiply(xs[:, k:k + 1], ys[k:k + 1, :], dtype=np.float32)
        out = prod.copy() if out is None else np.add(out, prod, dtype=np.float32)
    return out


@pytest.mark.parametrize("m,k,n", [(1, 512, 64), (2, 300, 8), (1, 2000, 1), (4, 64, 32), (16, 40, 16)])
@pytest.mark.parametrize("carried", [False, True])
def test_small_fold_is_the_sequential_fold(m, k, n, carried):
    g = torch.Generator().manual_seed(m * 1000 + k + n)
    x = torch.randn(m, k, generator=g) * torch.exp2(torch.randint(-20, 20, (m, k), generator=g).float())
    y = torch.randn(k, n, generator=g)
    x[0, 0], y[1, 0] = -0.0, float("inf")
    if k > 3:
        x[0, 3] = float("nan")
    acc = torch.randn(m, n, generator=g) if carried else None
    got = matmul._mm_fp32_native(acc, x, y).numpy().astype(np.float32)
    want = _sequential(acc, x, y)
    assert np.array_equal(got.view(np.int32), want.view(np.int32))
