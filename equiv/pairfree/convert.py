"""Comparing across an interface change: an input whose dtype changed is converted where the
conversion is exact (every value of the old dtype is a value of the new one: BF16 → FP32,
FP16 → FP32, FP32 → FP64, INT8 → INT32, …), so both sides run on inputs both can take and
their outputs, where shape and dtype are kept, are compared under the contract.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

# old dtype -> the dtypes that hold every one of its values exactly
EXACT = {
    "bfloat16": {"float32", "float64"},
    "float16": {"float32", "float64"},
    "float32": {"float64"},
    "int8": {"int16", "int32", "int64"},
    "uint8": {"int16", "int32", "int64"},
    "int16": {"int32", "int64"},
    "int32": {"int64"},
    "bool": {"int8", "int16", "int32", "int64"},
}


def conversions(pre: list, retiled: list) -> dict[str, torch.dtype] | None:
    """Input name -> the retiled dtype, when the interfaces differ only by input dtypes changed
    exactly (same names, shapes, outputs); None when anything else differs or a conversion is
    not exact. `pre`, `retiled`: `specs.Param` lists."""
    a, b = {p.name: p for p in pre}, {p.name: p for p in retiled}
    if set(a) != set(b):
        return None
    out: dict[str, torch.dtype] = {}
    for name, p in a.items():
        q = b[name]
        if p == q:
            continue
        if p.kind != "tensor" or p.output or q.output or p.shape != q.shape or p.initial != q.initial:
            return None
        if q.dtype not in EXACT.get(p.dtype, ()):
            return None
        out[name] = getattr(torch, q.dtype)
    return out or None


def convert_args(args: Mapping[str, Any], to: Mapping[str, torch.dtype]) -> dict[str, Any]:
    """The kernel arguments with each named input converted to its new dtype (values kept)."""
    from equiv.tile.memory import Tensor

    out = dict(args)
    for name, dtype in to.items():
        v = out.get(name)
        if isinstance(v, Tensor):
            out[name] = Tensor.from_torch(name, v.to_torch().to(dtype))
        elif isinstance(v, torch.Tensor):
            out[name] = v.to(dtype)
    return out
