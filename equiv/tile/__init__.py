"""Tile-level emulator of the ``pypto.language`` DSL.

Kernels import this package as ``pl`` and read like PyPTO source::

    from equiv import tile as pl

    for t in pl.spmd(T, name_hint="shared_routed"):
        acc = pl.cast(sh[t:t + 1, :], target_type=pl.FP32)
        ffn_out[t:t + 1, :] = pl.cast(acc, target_type=pl.BF16, mode="rint")

The names come from one table, `equiv.tile.table.NAMES`; the implementations live in one
file per family:

========================  ===========================================================
``values``                tiles, element types, casts, the single rounding of a result
``access``                global tensors: windows, loads, moves, views, reshapes
``assembly``              stores, assemble, valid shapes and padding
``scratch``               scratch tensors and tiles, memory spaces, dynamic dimensions
``elements``              scalar reads and writes
``control``               annotations, ``jit``, loops, scopes and scheduling hints
``blocks``                SPMD forms, block/lane indices, split_aiv, task ids, arrays
``rewrite``               load-time rewrite of ``with pl.spmd`` bodies (per block)
``elementwise``           arithmetic, min/max, broadcasts (row/col expand)
``reductions``            row reductions under the ``row_sum`` order model
``matmul``                integer-exact and fp32-accumulating matrix multiply
``movement``              gathers and other data movement inside tiles
``sort``                  sorting and merging
``distributed``           ``pypto.language.distributed`` (``pld``): ranks, collectives
========================  ===========================================================

Under them, the emulator's foundation: ``context`` (one run's state and block tree),
``memory`` (global tensors), ``poison``, ``races``, ``sites``, ``findings``, ``errors``,
``scalars`` (traced scalars), ``lanes`` (per-block scalars) and ``batch/`` (stages run as one batched computation).

Semantics that decide bit-exactness are documented in docs/arithmetic.md: every op rounds
its result once to the tile's element type (no fused multiply-add); floating ops are
computed in float64, exact or correctly rounded before that one rounding (+ - * / run
natively in float32, which gives the same bits: see docs/arithmetic.md); integer matmul
is exact; ``row_sum`` follows ``Options.row_sum_order``; tiles carry a ``valid_shape``.
"""

from __future__ import annotations

from equiv.tile import namespace as _namespace
from equiv.tile.reductions import _fadd, _native_fp32_exact, _reduce_sum, reduce_sum  # noqa: F401 - tests
from equiv.tile.table import NAMES
from equiv.tile.errors import KernelError, OutOfBoundsError, UnsupportedOpError  # noqa: F401
from equiv.tile.values import Tile  # noqa: F401

globals().update(_namespace.build(NAMES))
__all__ = sorted({key.partition(".")[0] for key in NAMES})


def covers(dotted: str) -> bool:
    """True when ``pl.<dotted>`` is in the emulator's table (``dotted`` without ``pl.``)."""
    return _namespace.resolve({k: globals()[k] for k in __all__}, dotted)
