"""Values of uninitialised memory: per-draw keys and the pattern tables they index.

A draw's pattern is a function of the seed, the drawing block and how many patterns that
block drew before, so blocks draw the same whether run one after another or batched.
"""

from __future__ import annotations

import hashlib
import math

import torch

from equiv import rounding
from equiv.dtypes import DType


def pattern_key(seed: int, chain: tuple, n: int) -> int:
    digest = hashlib.blake2b(repr((seed, chain, n)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


_U64 = 2**64


def _signed(v: int) -> int:
    return v - _U64 if v >= 2**63 else v


_GOLDEN, _MIX1, _MIX2 = (_signed(v) for v in (0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB))


def _shr(x: torch.Tensor, k: int) -> torch.Tensor:
    """Logical right shift of int64 bit patterns."""
    return (x >> k) & ((1 << (64 - k)) - 1)


def _splitmix64(x: torch.Tensor) -> torch.Tensor:
    """SplitMix64 of each int64 counter value: 64 pseudo-random bits."""
    x = x * _GOLDEN
    x = (x ^ _shr(x, 30)) * _MIX1
    x = (x ^ _shr(x, 27)) * _MIX2
    return x ^ _shr(x, 31)


PATTERN_PERIOD = 1 << 20  # values in each dtype's pattern table
_PATTERNS: dict[tuple, torch.Tensor] = {}


def _pattern_table(dtype: DType, device: torch.device | str) -> torch.Tensor:
    """`PATTERN_PERIOD` poison values of `dtype`: from the bits of SplitMix64(i), finite
    floats ±[1, 2)·2^[-8, 8] rounded to `dtype`, or integers over its range (at most int32's)."""
    key = (dtype.name, str(device))
    table = _PATTERNS.get(key)
    if table is None:
        x = _splitmix64(torch.arange(PATTERN_PERIOD, dtype=torch.int64))
        if dtype.is_float:
            mant = _shr(x, 11).to(torch.float64) * 2.0**-53 + 1.0
            sign = (x & 1).to(torch.float64) * 2 - 1
            exp = ((_shr(x, 1) & 0x3FF) % 17 - 8).to(torch.float64)
            table = rounding.to_float(sign * mant * torch.exp2(exp), dtype)
        else:
            lo, hi = dtype.int_range
            lo, hi = max(lo, -(2**31)), min(hi, 2**31 - 1)
            table = lo + _shr(x, 11) % (hi - lo + 1)
        table = _PATTERNS[key] = table.to(device)
    return table


def poison_pattern(shape: tuple, dtype: DType, key: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The pattern of draw `key`: `dtype`'s pattern table read from position ``key mod
    PATTERN_PERIOD`` on (wrapping around), one value per element in row-major order. One
    table read, so a draw costs a copy, however many blocks draw."""
    n = math.prod(shape)
    table = _pattern_table(dtype, device)
    start = key % PATTERN_PERIOD
    if start + n <= PATTERN_PERIOD:
        flat = table[start : start + n].clone()
    else:
        flat = table[(start + torch.arange(n, device=table.device)) % PATTERN_PERIOD]
    return flat.reshape(shape)
