"""Tile-level emulator of the ``pypto.language`` subset used by tile kernels.

Kernels import this module as ``pl`` and read like PyPTO source::

    from equiv import tile as pl

    for t in pl.spmd(T, name_hint="shared_routed"):
        acc = pl.cast(sh[t:t + 1, :], target_type=pl.FP32)
        ffn_out[t:t + 1, :] = pl.cast(acc, target_type=pl.BF16, mode="rint")

Semantics that decide bit-exactness (see docs/arithmetic.md):

* every op rounds its result once to the tile's element type (no fused multiply-add);
  floating ops are computed in float64, which is exact or correctly rounded for
  add/sub/mul/div/sqrt, so the single rounding to fp32/bf16/fp16 is the IEEE result;
* ``exp`` is float64 ``exp`` rounded once to the element type (deterministic across devices
  except in astronomically rare last-bit cases of the float64 libm);
* integer matmul is exact; floating matmul accumulates in fp32 sequentially over K;
* ``row_sum`` follows ``Options.row_sum_order``; max/min reductions are exact;
* tiles carry a ``valid_shape``; loads fill the part beyond it with poison, stores write only
  the valid part.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from equiv import rounding
from equiv.dtypes import BF16, FP16, FP32, INDEX, INT8, INT16, INT32, INT64, UINT8, DType  # noqa: F401
from equiv.memory import KernelError, Tensor, current

__all__ = [
    "Tensor", "Tile", "Out", "InOut", "Scalar", "Level", "jit",
    "INT8", "INT16", "INT32", "INT64", "UINT8", "FP16", "BF16", "FP32", "INDEX",
    "spmd", "parallel", "range", "pipeline", "at",
    "create_tensor", "full", "arange", "slice", "reshape", "read", "write", "cast",
    "matmul", "matmul_acc", "row_max", "row_min", "row_sum", "row_expand_mul", "col_expand_mul",
    "row_expand_add", "row_expand_sub", "row_expand_div", "col_expand_add", "gather",
    "add", "sub", "mul", "div", "maximum", "minimum", "neg", "abs", "exp", "recip", "sqrt", "rsqrt",
    "min", "max",
]

_range = range  # the builtin; ``range`` below is the DSL's


# ----------------------------------------------------------------------------------------
# Tiles
# ----------------------------------------------------------------------------------------
class Tile:
    """An on-chip value: a container tensor, an element type and a valid shape."""

    __slots__ = ("data", "dtype", "valid")

    def __init__(self, data: torch.Tensor, dtype: DType, valid: Sequence[int] | None = None):
        self.data = data
        self.dtype = dtype
        self.valid = tuple(int(v) for v in (valid if valid is not None else data.shape))

    @property
    def shape(self) -> list[int]:
        return list(self.data.shape)

    def valid_mask(self) -> torch.Tensor | None:
        if self.valid == tuple(self.data.shape):
            return None
        mask = torch.zeros(self.data.shape, dtype=torch.bool, device=self.data.device)
        mask[tuple(_slice_type(0, v) for v in self.valid)] = True
        return mask

    def __getitem__(self, key) -> "Tile":
        if not isinstance(key, tuple):
            key = (key,)
        sl, valid = [], []
        for dim, n in enumerate(self.data.shape):
            k = key[dim] if dim < len(key) else slice(None)
            if not isinstance(k, _slice_type):
                k = _slice_type(int(k), int(k) + 1)
            a = 0 if k.start is None else int(k.start)
            b = n if k.stop is None else int(k.stop)
            if a < 0 or b > n or b < a:
                raise KernelError(f"tile slice [{a}:{b}] outside a tile dimension of {n}")
            sl.append(_slice_type(a, b))
            valid.append(max(0, min(b, self.valid[dim]) - a))
        return Tile(self.data[tuple(sl)], self.dtype, valid)

    def __repr__(self) -> str:
        return f"Tile({self.shape}, {self.dtype!r}, valid={list(self.valid)})"


_slice_type = __builtins__["slice"] if isinstance(__builtins__, dict) else __builtins__.slice


def _load(tensor: Tensor, key) -> Tile:
    return Tile(tensor.load(tensor.window(key)), tensor.dtype)


def _tensor_getitem(self: Tensor, key) -> Tile:
    return _load(self, key)


def _tensor_setitem(self: Tensor, key, value) -> None:
    win = self.window(key)
    shape = [b - a for a, b in win]
    if isinstance(value, Tile):
        tile = value
        if tile.dtype != self.dtype:
            raise KernelError(f"store of a {tile.dtype!r} tile into {self.name} of {self.dtype!r}; "
                              f"cast it first")
        if list(tile.shape) == shape:
            self.store(win, tile.data, tile.valid_mask())
            return
        if [int(v) for v in tile.valid] == shape:
            self.store(win, tile[tuple(_slice_type(0, v) for v in tile.valid)].data)
            return
        raise KernelError(f"store of a {tile.shape} tile (valid {list(tile.valid)}) into window "
                          f"{shape} of {self.name}")
    data = torch.full(shape, 0, dtype=self.dtype.container, device=self.data.device)
    data[...] = _scalar_to(value, self.dtype)
    self.store(win, data)


Tensor.__getitem__ = _tensor_getitem  # type: ignore[assignment]
Tensor.__setitem__ = _tensor_setitem  # type: ignore[assignment]


# ----------------------------------------------------------------------------------------
# Annotations and decorators (accepted, not enforced)
# ----------------------------------------------------------------------------------------
class _Annotation:
    def __class_getitem__(cls, item):
        return (cls, item)


class Out(_Annotation):
    pass


class InOut(_Annotation):
    pass


class Scalar(_Annotation):
    pass


def _tensor_class_getitem(cls, item):
    return (Tensor, item)


Tensor.__class_getitem__ = classmethod(_tensor_class_getitem)  # type: ignore[attr-defined]


class Level:
    CORE_GROUP = "CORE_GROUP"
    CORE = "CORE"
    HOST = "HOST"


class _Jit:
    """``@pl.jit`` and friends run the function eagerly."""

    def __call__(self, fn=None, **_kw):
        if fn is None:
            return lambda f: f
        return fn

    def inline(self, fn=None, **_kw):
        return self(fn)

    def host(self, fn=None, **_kw):
        return self(fn)


jit = _Jit()


# ----------------------------------------------------------------------------------------
# Control constructs
# ----------------------------------------------------------------------------------------
def _parallel_blocks(n: int, name: str) -> Iterator[int]:
    ctx = current()
    stage = ctx.new_stage()
    for b in ctx.block_order(int(n)):
        with ctx.block(stage, b, name):
            yield b


def spmd(n: int, name_hint: str = "spmd", **_hints) -> Iterator[int]:
    """``n`` independent blocks, run in a seeded shuffled order; each is a race domain."""
    return _parallel_blocks(n, name_hint)


def parallel(start: int, stop: int | None = None, step: int = 1, name_hint: str = "parallel",
             **_hints) -> Iterator[int]:
    """Independent iterations (``pl.parallel``); run shuffled like ``spmd`` blocks."""
    values = list(_range(start) if stop is None else _range(start, stop, step))
    for i in _parallel_blocks(len(values), name_hint):
        yield values[i]


def range(start: int, stop: int | None = None, step: int = 1, **_hints) -> Iterator[int]:  # noqa: A001
    """Sequential ascending loop."""
    return iter(_range(int(start)) if stop is None else _range(int(start), int(stop), int(step)))


def pipeline(start: int, stop: int | None = None, step: int = 1, stage: int = 1, **_hints) -> Iterator[int]:
    """``pl.pipeline`` has exactly the iterations of ``range``; ``stage`` only overlaps loads."""
    return range(start, stop, step)


@contextmanager
def at(level: Any = None, name_hint: str = "", **_hints) -> Iterator[None]:
    """A single-task scope: the body runs once."""
    yield


# ----------------------------------------------------------------------------------------
# Creation, movement, shape
# ----------------------------------------------------------------------------------------
def create_tensor(shape: Sequence[int], dtype: DType, name: str | None = None) -> Tensor:
    """Uninitialised global scratch: poison-filled, nothing marked written."""
    return Tensor(name or f"scratch{list(shape)}", shape, dtype)


def full(shape: Sequence[int], dtype: DType, value: float | int) -> Tile:
    data = torch.zeros([int(s) for s in shape], dtype=dtype.container, device=current().device)
    data[...] = _scalar_to(value, dtype)
    return Tile(data, dtype)


def arange(start: int, shape: Sequence[int], dtype: DType = INT32, step: int = 1) -> Tile:
    """Consecutive values along the last axis, repeated over the leading ones."""
    shape = [int(s) for s in shape]
    ramp = start + step * torch.arange(shape[-1], dtype=torch.int64, device=current().device)
    data = ramp.expand(*shape).clone()
    return Tile(rounding.convert(data, dtype, "rint") if dtype.is_float else data, dtype)


def slice(src: Tensor | Tile, shape: Sequence[int], offset: Sequence[int],  # noqa: A001
          valid_shape: Sequence[int] | None = None) -> Tile:
    """A ``shape`` window at ``offset``; only ``valid_shape`` of it is loaded, the rest is poison."""
    shape = [int(s) for s in shape]
    valid = [int(v) for v in (valid_shape or shape)]
    if len(shape) != len(offset) or len(valid) != len(shape):
        raise KernelError(f"slice: shape {shape}, offset {list(offset)}, valid {valid} differ in rank")
    if isinstance(src, Tile):
        key = tuple(_slice_type(int(o), int(o) + s) for o, s in zip(offset, shape))
        t = src[key]
        return Tile(t.data, t.dtype, [min(v, tv) for v, tv in zip(valid, t.valid)])
    ctx = current()
    data = ctx.poison(shape, src.dtype)
    win = tuple((int(o), int(o) + v) for o, v in zip(offset, valid))
    if all(v > 0 for v in valid):
        data[tuple(_slice_type(0, v) for v in valid)] = src.load(win)
    return Tile(data, src.dtype, valid)


def reshape(tile: Tile | Tensor, shape: Sequence[int]) -> Tile | Tensor:
    shape = [int(s) for s in shape]
    if isinstance(tile, Tensor):
        return _tensor_view(tile, shape)
    if math.prod(shape) != math.prod(tile.shape):
        raise KernelError(f"reshape of a {tile.shape} tile to {shape}")
    valid = shape if tile.valid == tuple(tile.shape) else None
    if valid is None:
        # Valid region survives a reshape only when it is a whole prefix of rows.
        nvalid = math.prod(tile.valid)
        valid = [nvalid // math.prod(shape[1:])] + shape[1:] if len(shape) > 1 else [nvalid]
    return Tile(tile.data.reshape(shape), tile.dtype, valid)


def _tensor_view(src: Tensor, shape: list[int]) -> Tensor:
    """``pl.reshape`` of a global tensor: a view of the same memory under another shape.

    Data, written-mask and last-writer map are shared with `src` (same name in findings),
    so stores through the view count as writes of `src` and bounds are checked against
    the view's shape.
    """
    if math.prod(shape) != math.prod(src.shape):
        raise KernelError(f"reshape of tensor {src.name} {list(src.shape)} to {shape}")
    try:
        data, written, writer = (t.view(shape) for t in (src.data, src.written, src.writer))
    except RuntimeError as exc:
        raise KernelError(f"reshape of tensor {src.name}: its memory is not contiguous ({exc})") from None
    view = Tensor.__new__(Tensor)
    view.__dict__.update(src.__dict__)
    view.shape, view.data, view.written, view.writer = tuple(shape), data, written, writer
    return view


def read(src: Tensor | Tile, indices: Sequence[int]) -> int | float:
    """One element as a Python scalar."""
    idx = [int(i) for i in indices]
    if isinstance(src, Tile):
        value = src.data[tuple(idx)]
    else:
        value = src.load(tuple((i, i + 1) for i in idx)).reshape(())
    return float(value) if src.dtype.is_float else int(value)


def write(dst: Tensor, indices: Sequence[int], value: int | float) -> None:
    """Store one scalar element."""
    idx = [int(i) for i in indices]
    data = torch.zeros([1] * len(idx), dtype=dst.dtype.container, device=dst.data.device)
    data[...] = _scalar_to(value, dst.dtype)
    dst.store(tuple((i, i + 1) for i in idx), data)


def _scalar_to(value: Any, dtype: DType, mode: str = "rint") -> int | float:
    if isinstance(value, Tile):
        raise KernelError("expected a scalar, got a tile")
    if dtype.is_float:
        return float(rounding.to_float(torch.tensor(float(value), dtype=torch.float64), dtype, mode))
    if isinstance(value, float):
        return int(rounding.to_int(torch.tensor(value, dtype=torch.float64), dtype, mode))
    return int(rounding.wrap_int(torch.tensor(int(value)), dtype))


# Float conversions where every value of the source type (±0, ±inf and NaN included) is a
# value of the target type: exact under every cast mode, so the container is reused as is.
_EXACT_FLOAT_CASTS = frozenset({(BF16, FP32), (FP16, FP32), (BF16, BF16), (FP16, FP16), (FP32, FP32)})


def cast(x: Tile | int | float, target_type: DType, mode: str = "round") -> Tile | int | float:
    """Convert to ``target_type`` under cast ``mode`` (default ``round``: ties away from zero)."""
    if not isinstance(x, Tile):
        if target_type is INDEX:
            return int(x)
        return _scalar_to(x, target_type, mode)
    if (x.dtype, target_type) in _EXACT_FLOAT_CASTS and mode in rounding.CAST_MODES:
        return Tile(x.data, target_type, x.valid)
    return Tile(rounding.convert(x.data, target_type, mode), target_type, x.valid)


# ----------------------------------------------------------------------------------------
# Elementwise arithmetic
# ----------------------------------------------------------------------------------------
def _result(values: torch.Tensor, dtype: DType, valid) -> Tile:
    if dtype.is_float:
        return Tile(rounding.to_float(values, dtype, "rint"), dtype, valid)
    return Tile(rounding.wrap_int(values, dtype), dtype, valid)


def _operand(x: Tile | int | float, like: Tile) -> torch.Tensor:
    if isinstance(x, Tile):
        if x.dtype != like.dtype:
            raise KernelError(f"operands of types {like.dtype!r} and {x.dtype!r}; cast one first")
        if x.shape != like.shape:
            raise KernelError(f"operands of shapes {like.shape} and {x.shape}")
        return x.data
    return torch.tensor(_scalar_to(x, like.dtype), dtype=like.dtype.container, device=like.data.device)


def _binary(a: Tile | int | float, b: Tile | int | float, fn) -> Tile:
    like = a if isinstance(a, Tile) else b
    if not isinstance(like, Tile):
        raise KernelError("elementwise op on two scalars; use Python arithmetic")
    x, y = _operand(a, like), _operand(b, like)
    valid = like.valid
    if isinstance(a, Tile) and isinstance(b, Tile):
        valid = tuple(min(p, q) for p, q in zip(a.valid, b.valid))
    return _result(fn(x, y), like.dtype, valid)


def add(a, b) -> Tile:
    return _binary(a, b, torch.add)


def sub(a, b) -> Tile:
    return _binary(a, b, torch.sub)


def mul(a, b) -> Tile:
    return _binary(a, b, torch.mul)


def div(a, b) -> Tile:
    like = a if isinstance(a, Tile) else b
    if not like.dtype.is_float:
        return _binary(a, b, lambda x, y: torch.div(x, y, rounding_mode="trunc"))
    return _binary(a, b, torch.div)


def _nan_max(x, y):
    # The vector unit's max propagates NaN, like torch.maximum.
    return torch.maximum(x, y)


def maximum(a, b) -> Tile:
    return _binary(a, b, _nan_max)


def minimum(a, b) -> Tile:
    return _binary(a, b, torch.minimum)


def _unary(x: Tile, fn) -> Tile:
    if not x.dtype.is_float and fn not in (torch.neg, torch.abs):
        raise KernelError(f"{fn.__name__} of an integer tile")
    return _result(fn(x.data), x.dtype, x.valid)


def neg(x: Tile) -> Tile:
    return _unary(x, torch.neg)


def abs(x: Tile) -> Tile:  # noqa: A001
    return _unary(x, torch.abs)


def exp(x: Tile) -> Tile:
    return _unary(x, torch.exp)


def sqrt(x: Tile) -> Tile:
    return _unary(x, torch.sqrt)


def recip(x: Tile, **_hints) -> Tile:
    return _unary(x, torch.reciprocal)


def rsqrt(x: Tile) -> Tile:
    """1/sqrt as two rounded ops (sqrt, then reciprocal), the vector unit's composition."""
    return recip(sqrt(x))


def min(a, b):  # noqa: A001
    """Scalar minimum (``pl.min`` on index/scalar values)."""
    return a if a <= b else b


def max(a, b):  # noqa: A001
    return a if a >= b else b


# ----------------------------------------------------------------------------------------
# Broadcasts
# ----------------------------------------------------------------------------------------
def _expand(tile: Tile, vec: Tile, fn, axis: str) -> Tile:
    rows, cols = tile.shape
    want = [rows, 1] if axis == "row" else [1, cols]
    if vec.shape != want:
        raise KernelError(f"{axis}_expand of a {tile.shape} tile needs a {want} operand, got {vec.shape}")
    if vec.dtype != tile.dtype:
        raise KernelError(f"{axis}_expand operands of types {tile.dtype!r} and {vec.dtype!r}")
    return _result(fn(tile.data, vec.data), tile.dtype, tile.valid)


def row_expand_mul(tile: Tile, col: Tile) -> Tile:
    """Multiply row r by ``col[r, 0]``."""
    return _expand(tile, col, torch.mul, "row")


def row_expand_add(tile: Tile, col: Tile) -> Tile:
    return _expand(tile, col, torch.add, "row")


def row_expand_sub(tile: Tile, col: Tile) -> Tile:
    return _expand(tile, col, torch.sub, "row")


def row_expand_div(tile: Tile, col: Tile) -> Tile:
    return _expand(tile, col, torch.div, "row")


def col_expand_mul(tile: Tile, row: Tile) -> Tile:
    """Multiply column c by ``row[0, c]``."""
    return _expand(tile, row, torch.mul, "col")


def col_expand_add(tile: Tile, row: Tile) -> Tile:
    return _expand(tile, row, torch.add, "col")


# ----------------------------------------------------------------------------------------
# Reductions
# ----------------------------------------------------------------------------------------
def _reduce_input(x: Tile) -> torch.Tensor:
    if len(x.shape) != 2:
        raise KernelError(f"row reduction of a {x.shape} tile; expected 2-d")
    return x.data[:, : x.valid[1]]


def row_max(x: Tile) -> Tile:
    return Tile(torch.amax(_reduce_input(x), dim=1, keepdim=True), x.dtype, [x.valid[0], 1])


def row_min(x: Tile) -> Tile:
    return Tile(torch.amin(_reduce_input(x), dim=1, keepdim=True), x.dtype, [x.valid[0], 1])


def _fadd(dtype: DType):
    return lambda p, q: rounding.to_float(p + q, dtype, "rint")


def _tree(cols: list[torch.Tensor], add) -> torch.Tensor:
    """Adjacent-pair tree: (0,1),(2,3),... level by level; an odd last element moves up."""
    while len(cols) > 1:
        nxt = [add(cols[i], cols[i + 1]) for i in _range(0, len(cols) - 1, 2)]
        if len(cols) % 2:
            nxt.append(cols[-1])
        cols = nxt
    return cols[0]


def _lane_tree(v: torch.Tensor, add) -> torch.Tensor:
    """Adjacent-pair tree over the columns of ``v`` [rows, n], vectorised over rows."""
    while v.shape[1] > 1:
        n = v.shape[1]
        even = add(v[:, 0 : n - 1 : 2], v[:, 1:n:2])
        v = torch.cat([even, v[:, n - 1 :]], dim=1) if n % 2 else even
    return v[:, 0]


_SUBNORMAL_PROBE = torch.tensor([2.0**-149], dtype=torch.float32)


def _native_fp32_exact() -> bool:
    """True while the CPU's fp32 adds keep subnormals (no flush-to-zero / denormals-are-zero)."""
    return bool((_SUBNORMAL_PROBE + _SUBNORMAL_PROBE != 0).all())


def reduce_sum(v: torch.Tensor, dtype: DType, order: str) -> torch.Tensor:
    """Sum the columns of container ``v`` [rows, n] in ``dtype`` under an order model."""
    if dtype is FP32 and v.device.type == "cpu" and _native_fp32_exact():
        # Native fp32 adds are IEEE RNE, the same bits as _fadd's float64 add rounded once to
        # fp32 (binary64 has >= 2*24+2 bits, so that double rounding is innocuous); much faster.
        return _reduce_sum(v.to(torch.float32), torch.add, order).to(torch.float64)
    return _reduce_sum(v, _fadd(dtype), order)


def _reduce_sum(v: torch.Tensor, add, order: str) -> torch.Tensor:
    n = v.shape[1]
    if n == 0:
        return torch.zeros(v.shape[0], dtype=v.dtype, device=v.device)
    if order == "sequential":
        if add is torch.add and v.dtype == torch.float32 and v.device.type == "cpu":
            # numpy's accumulate is the left-to-right fold, one native fp32 add per step.
            with np.errstate(all="ignore"):  # inf / NaN sums are results, not errors
                return torch.from_numpy(np.add.accumulate(v.numpy(), axis=1)[:, -1].copy())
        acc = v[:, 0]
        for j in _range(1, n):
            acc = add(acc, v[:, j])
        return acc
    if order == "pairwise":
        return _lane_tree(v, add)
    if order == "a2a3":
        lanes = 64
        k = -(-n // lanes)
        pad = k * lanes - n
        if pad:
            v = torch.cat([v, torch.zeros(v.shape[0], pad, dtype=v.dtype, device=v.device)], dim=1)
        repeats = [v[:, i * lanes : (i + 1) * lanes] for i in _range(k)]
        if k > 1:
            # Repeats are added lane-wise in pairs (0,1),(2,3),...; an odd last repeat is added
            # into the first pair; the pair sums are then folded left to right.
            # (For 7 repeats: (((Q0+Q1)+Q6)+(Q2+Q3))+(Q4+Q5), read from the a2a3 lowering.)
            pairs = [add(repeats[i], repeats[i + 1]) for i in _range(0, k - 1, 2)]
            if k % 2:
                pairs[0] = add(pairs[0], repeats[-1])
            acc = pairs[0]
            for p in pairs[1:]:
                acc = add(acc, p)
        else:
            acc = repeats[0]
        return _lane_tree(acc, add)
    raise ValueError(f"unknown row_sum order {order!r}")


def row_sum(x: Tile) -> Tile:
    """Row sums in the element type, in the order ``Options.row_sum_order`` models."""
    if not x.dtype.is_float:
        return Tile(_reduce_input(x).sum(dim=1, keepdim=True), x.dtype, [x.valid[0], 1])
    out = reduce_sum(_reduce_input(x), x.dtype, current().options.row_sum_order)
    return Tile(out.unsqueeze(1), x.dtype, [x.valid[0], 1])


# ----------------------------------------------------------------------------------------
# Matmul
# ----------------------------------------------------------------------------------------
def _mm_operands(a: Tile, b: Tile, a_trans: bool, b_trans: bool) -> tuple[torch.Tensor, torch.Tensor]:
    x = a.data.transpose(0, 1) if a_trans else a.data
    y = b.data.transpose(0, 1) if b_trans else b.data
    if x.shape[1] != y.shape[0]:
        raise KernelError(f"matmul of {list(x.shape)} by {list(y.shape)} (after transposes)")
    return x, y


def _mm_float(acc: torch.Tensor | None, x: torch.Tensor, y: torch.Tensor, out: DType) -> torch.Tensor:
    # fp32 accumulation, sequential over K: acc = (((acc + x0*y0) + x1*y1) + ...), products exact.
    add = _fadd(out)
    for k in _range(x.shape[1]):
        prod = rounding.to_float(x[:, k : k + 1] * y[k : k + 1, :], out, "rint")
        acc = prod if acc is None else add(acc, prod)
    return acc


def matmul(a: Tile, b: Tile, a_trans: bool = False, b_trans: bool = False, out_dtype: DType | None = None,
           **_hints) -> Tile:
    """``a @ b`` (optionally transposed). int8 x int8 -> exact int32; floats accumulate in fp32."""
    x, y = _mm_operands(a, b, a_trans, b_trans)
    if not a.dtype.is_float:
        out = out_dtype or INT32
        # Integer products summed in float64 are exact while |sum| < 2**53 (int8: K < 5.5e11).
        exact = (x.to(torch.float64) @ y.to(torch.float64)).to(torch.int64)
        return Tile(rounding.wrap_int(exact, out), out, [a.valid[1] if a_trans else a.valid[0],
                                                          b.valid[0] if b_trans else b.valid[1]])
    out = out_dtype or FP32
    return Tile(_mm_float(None, x, y, out), out)


def matmul_acc(acc: Tile, a: Tile, b: Tile, a_trans: bool = False, b_trans: bool = False, **_hints) -> Tile:
    """``acc + a @ b`` accumulated in ``acc``'s type."""
    x, y = _mm_operands(a, b, a_trans, b_trans)
    if not acc.dtype.is_float:
        exact = (x.to(torch.float64) @ y.to(torch.float64)).to(torch.int64)
        return Tile(rounding.wrap_int(acc.data + exact, acc.dtype), acc.dtype, acc.valid)
    return Tile(_mm_float(acc.data, x, y, acc.dtype), acc.dtype, acc.valid)


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


# ========================================================================================
# Source mode: further DSL names used by unmodified PyPTO files (see equiv/source.py and
# docs/source-mode.md). Kept in one section so the core subset above stays readable.
# ========================================================================================
class DynDim:
    """``pl.dynamic("T_DYN")``: a symbolic dimension of a tensor annotation.

    It has no value of its own: a kernel reads the actual size with ``pl.tensor.dim``.
    equiv.source binds it from the tensors a kernel receives and checks it is consistent.
    """

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = str(name)

    def __repr__(self) -> str:
        return f"pl.dynamic({self.name!r})"


def dynamic(name: str) -> DynDim:
    return DynDim(name)


class _TensorNamespace:
    """``pl.tensor.*``: queries on global tensors."""

    @staticmethod
    def dim(t: Tensor | Tile, axis: int) -> int:
        """Size of axis `axis` (negative counts from the end) as a Python int."""
        shape = list(t.shape)
        if not -len(shape) <= int(axis) < len(shape):
            raise KernelError(f"pl.tensor.dim: axis {axis} of a {len(shape)}-d tensor {shape}")
        return int(shape[int(axis)])


tensor = _TensorNamespace()


def _tensor_bind_dynamic(self: Tensor, axis: int, dim: DynDim | int) -> None:
    """``t.bind_dynamic(axis, T_DYN)``: declares axis `axis` dynamic; nothing to do eagerly."""
    if not -len(self.shape) <= int(axis) < len(self.shape):
        raise KernelError(f"bind_dynamic: axis {axis} of {self.name} with shape {list(self.shape)}")
    if isinstance(dim, int) and dim != self.shape[int(axis)]:
        raise KernelError(f"bind_dynamic: {self.name} axis {axis} has size {self.shape[int(axis)]}, not {dim}")


Tensor.bind_dynamic = _tensor_bind_dynamic  # type: ignore[attr-defined]


def const(value: int | float, dtype: DType = INDEX) -> int | float:
    """A scalar constant of `dtype` (a Python number, rounded to the type)."""
    if dtype is INDEX:
        return int(value)
    return _scalar_to(value, dtype)


class AtomicType:
    """Store modes of ``pl.assemble``."""

    NONE = "none"
    Add = "add"


class PadValue:
    """Fill values of ``pl.fillpad``: ``zero``, ``min`` (-inf / the integer minimum), ``max``."""

    zero = "zero"
    min = "min"
    max = "max"


def set_validshape(tile: Tile, *valid: int) -> Tile:
    """The same tile with valid region `valid` (one size per dimension, each ≤ the tile's)."""
    if not isinstance(tile, Tile):
        raise KernelError("set_validshape needs a tile")
    vals = [int(v) for v in valid]
    if len(vals) != len(tile.shape):
        raise KernelError(f"set_validshape: {len(vals)} sizes for a {len(tile.shape)}-d tile {tile.shape}")
    if any(v < 0 or v > n for v, n in zip(vals, tile.shape)):
        raise KernelError(f"set_validshape: valid shape {vals} outside tile shape {tile.shape}")
    return Tile(tile.data, tile.dtype, vals)


def _pad_scalar(pad_value: str, dtype: DType) -> float | int:
    if pad_value in (PadValue.zero, None):
        return 0.0 if dtype.is_float else 0
    if pad_value not in (PadValue.min, PadValue.max):
        raise KernelError(f"fillpad: unknown pad value {pad_value!r}")
    if dtype.is_float:
        return float("-inf") if pad_value == PadValue.min else float("inf")
    lo, hi = dtype.int_range
    return lo if pad_value == PadValue.min else hi


def fillpad(tile: Tile, pad_value: str = PadValue.zero) -> Tile:
    """Fill the part of `tile` beyond its valid shape with `pad_value`; the result is all valid."""
    if not isinstance(tile, Tile):
        raise KernelError("fillpad needs a tile")
    data = tile.data.clone()
    mask = tile.valid_mask()
    if mask is not None:
        data[~mask] = _pad_scalar(pad_value, tile.dtype)
    return Tile(data, tile.dtype)


def assemble(target: Tensor, tile: Tile, offset: Sequence[int], atomic: str | None = None) -> Tensor:
    """Store `tile` into global tensor `target` at `offset` and return `target`.

    ``atomic=pl.AtomicType.Add`` adds the tile to what `target` holds (one rounding to
    `target`'s type per add). Atomic adds from different blocks are not races; their order
    is the blocks' (shuffled) order, so a sum whose bits depend on it shows up as an
    output that differs between the two runs of a case.
    """
    if not isinstance(target, Tensor):
        raise KernelError("assemble into a tile is not covered; assemble targets a global tensor")
    if not isinstance(tile, Tile):
        raise KernelError("assemble needs a tile to store")
    if len(offset) != len(tile.shape):
        raise KernelError(f"assemble: offset {list(offset)} for a {len(tile.shape)}-d tile")
    key = tuple(_slice_type(int(o), int(o) + int(n)) for o, n in zip(offset, tile.shape))
    if atomic in (None, AtomicType.NONE):
        _tensor_setitem(target, key, tile)
        return target
    if atomic != AtomicType.Add:
        raise KernelError(f"assemble: atomic mode {atomic!r} is not covered (only pl.AtomicType.Add)")
    if tile.dtype != target.dtype:
        raise KernelError(f"atomic add of a {tile.dtype!r} tile into {target.name} of {target.dtype!r}")
    win = target.window(key)
    inside, clipped = target._clip(win, "oob-write")
    if not all(b > a for a, b in inside):
        return target
    sl = Tensor._slices(inside)
    src = tile.data[Tensor._slices(inside, win)] if clipped else tile.data
    mask = tile.valid_mask()
    if mask is not None and clipped:
        mask = mask[Tensor._slices(inside, win)]
    summed = _result(target.data[sl] + src, target.dtype, src.shape).data
    token = current().current.token
    if mask is None:
        target.data[sl] = summed
        target.written[sl] = True
        target.writer[sl] = token
    else:
        target.data[sl] = torch.where(mask, summed, target.data[sl])
        target.written[sl] |= mask
        target.writer[sl] = torch.where(mask, torch.full_like(target.writer[sl], token), target.writer[sl])
    return target


__all__ += ["DynDim", "dynamic", "tensor", "const", "AtomicType", "PadValue", "set_validshape", "fillpad",
            "assemble"]
