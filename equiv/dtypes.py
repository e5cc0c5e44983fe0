"""PyPTO element types as the emulator sees them.

Every value is held in a *container* (float32 for the floating types, int64 for integer
types) whose contents are always exactly representable in the element type; global tensors
store them in the narrowest exact dtype (`DType.storage`) and widen on load. Arithmetic is
done in the container, or in float64 where the container's own arithmetic would not give
the exact result rounded once, and rounded once to the element type, which is how the
emulator gets IEEE results that are identical on CPU and CUDA.

Floating tiles stay in float32 because a native float32 add, subtract, multiply or divide of
values of the type *is* the exact result rounded once to nearest-even (FP32), or rounds
to a float32 value whose nearest-even rounding to BF16 or FP16 is the exact result's
(float32's 24 bits are at least 2p + 2 for BF16's p = 8 and FP16's p = 11, which makes
rounding twice innocuous for those four operations and square root). The ops that are
not one such operation (exp, log, reciprocals, matmul folds in other types, bit
reinterpretations) widen to float64 first. Where the CPU flushes subnormals (FTZ/DAZ),
native float32 results are not IEEE, and floating tiles fall back to float64 containers
(`set_float32_containers`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from equiv import numerics


# Whether floating containers are float32 (see the module docstring); `rounding` sets it from
# its flush-mode probe, once per kernel run.
_floats_in_float32 = True


def set_float32_containers(native: bool) -> None:
    """Hold floating values in float32 containers (`native`: the CPU's float32 arithmetic
    keeps subnormals) or in float64 ones."""
    global _floats_in_float32
    _floats_in_float32 = bool(native)


@dataclass(frozen=True)
class DType:
    name: str
    torch_dtype: torch.dtype
    is_float: bool
    bits: int

    @property
    def container(self) -> torch.dtype:
        if self.is_float:
            return torch.float32 if _floats_in_float32 else torch.float64
        return torch.int64

    @property
    def storage(self) -> torch.dtype:
        """The narrowest torch dtype that holds every value of this type exactly: how global
        tensors are stored (bf16/fp16/fp32 in float32, int8 in int8, ...); loads widen to
        `container`. uint32 stays in int64 (torch's uint32 has few kernels)."""
        if self.is_float:
            return torch.float32
        return self.torch_dtype if self.torch_dtype in (torch.int8, torch.int16, torch.int32, torch.int64,
                                                         torch.uint8) else torch.int64

    @property
    def fmt(self) -> numerics.FloatFormat:
        if not self.is_float:
            raise TypeError(f"{self.name} is not a floating type")
        return numerics.format_of(self.torch_dtype)

    @functools.cached_property  # asked on every scalar write of a kernel's scalar loops
    def int_range(self) -> tuple[int, int]:
        if self.is_float:
            raise TypeError(f"{self.name} is not an integer type")
        if self.name == "BOOL":
            return 0, 1
        if self.name.startswith("UINT"):
            return 0, 2**self.bits - 1
        return -(2 ** (self.bits - 1)), 2 ** (self.bits - 1) - 1

    def __repr__(self) -> str:
        return f"pl.{self.name}"


INT8 = DType("INT8", torch.int8, False, 8)
INT16 = DType("INT16", torch.int16, False, 16)
INT32 = DType("INT32", torch.int32, False, 32)
INT64 = DType("INT64", torch.int64, False, 64)
UINT8 = DType("UINT8", torch.uint8, False, 8)
# UINT32 holds sort32's index lanes and pl.arange index ramps; torch's uint32 is a storage
# type with few kernels, which is fine: values live in the int64 container.
UINT32 = DType("UINT32", torch.uint32, False, 32)
FP16 = DType("FP16", torch.float16, True, 16)
BF16 = DType("BF16", torch.bfloat16, True, 16)
FP32 = DType("FP32", torch.float32, True, 32)
# The OCP FP8 E4M3 "fn" type (no infinities, largest finite 448); casts to it saturate
# (see `equiv.rounding`).
FP8E4M3FN = DType("FP8E4M3FN", torch.float8_e4m3fn, True, 8)
# INDEX is the scalar index type of the DSL; scalars are plain Python ints here.
INDEX = DType("INDEX", torch.int64, False, 64)
# BOOL types flags (``pl.Scalar[pl.BOOL]``); values 0 and 1, held as integers.
BOOL = DType("BOOL", torch.bool, False, 8)

ALL: dict[str, DType] = {d.name: d for d in (INT8, INT16, INT32, INT64, UINT8, UINT32, FP16, BF16, FP32,
                                             FP8E4M3FN, INDEX, BOOL)}


def from_torch(dtype: torch.dtype) -> DType:
    for d in ALL.values():
        if d.torch_dtype == dtype and d is not INDEX:
            return d
    raise TypeError(f"no PyPTO element type for torch dtype {dtype}")
