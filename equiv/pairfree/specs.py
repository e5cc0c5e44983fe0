"""Inputs of a pair-free case, from the specs the file hands to ``run_jit``.

Inputs are created by the file's own ``build_tensor_specs`` and ``init_value``s (every form
the golden harness accepts: None = zeros, a number, a tensor, a zero-argument callable,
``torch.randn/rand/zeros/ones``), with torch's generator seeded per case, from one revision
only, so pre and retiled see the same bits. The adversarial recipes of `equiv.inputs`
replace the floating inputs that are data (not index-like: not integer-valued, not named
like a position, index, mask or table, more than one element).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import torch

from equiv import dtypes
from equiv.inputs import ADVERSARIAL, adversarial_values
from equiv.pairfree.golden import RunCall, ScalarSpec, TensorSpec

# An output that also has an initial value (a KV cache updated in place) travels to the kernel
# under this prefix: the kernel side fills its output with it, the reference starts from it.
INITIAL_PREFIX = "__initial__"
INDEX_LIKE = re.compile(r"(idx|index|indices|pos|mask|table|offset|len|count|cos|sin|rope|block|slot|seq_)",
                        re.IGNORECASE)


@dataclass(frozen=True)
class Param:
    """One spec as an interface item: tensor or scalar, its shape and dtype, output or not."""

    name: str
    kind: str           # "tensor" | "scalar"
    shape: tuple
    dtype: str
    output: bool
    initial: bool       # an output with an initial value (in-out)

    def text(self) -> str:
        role = "in-out" if self.output and self.initial else ("output" if self.output else "input")
        dims = f"[{', '.join(map(str, self.shape))}]" if self.kind == "tensor" else "scalar"
        return f"{self.name} {dims} {self.dtype} ({role})"


def interface(call: RunCall) -> list[Param]:
    out = []
    for s in call.specs:
        if isinstance(s, ScalarSpec):
            out.append(Param(s.name, "scalar", (), str(s.dtype).removeprefix("torch."), False, False))
        elif isinstance(s, TensorSpec):
            out.append(Param(s.name, "tensor", tuple(s.shape), str(s.dtype).removeprefix("torch."),
                             bool(s.is_output), bool(s.is_output) and s.init_value is not None))
    return out


def interface_changes(pre: list[Param], retiled: list[Param]) -> list[str]:
    """What differs between two interfaces, one line each (empty: the same)."""
    a, b = {p.name: p for p in pre}, {p.name: p for p in retiled}
    lines = []
    for name in a:
        if name not in b:
            lines.append(f"{a[name].text()} removed")
    for name in b:
        if name not in a:
            lines.append(f"{b[name].text()} added")
    for name in a:
        if name in b and a[name] != b[name]:
            lines.append(f"{name}: {a[name].text()} -> {b[name].text()}")
    if not lines and [p.name for p in pre] != [p.name for p in retiled]:
        lines.append(f"parameter order {', '.join(a)} -> {', '.join(b)}")
    return lines


def outputs(call: RunCall) -> dict[str, tuple[list[int], Any]]:
    return {s.name: (list(s.shape), dtypes.from_torch(s.dtype)) for s in call.specs
            if isinstance(s, TensorSpec) and s.is_output}


def inputs_of(call: RunCall) -> dict[str, Any]:
    """The case's inputs from a materialized call: inputs by name, and each in-out output's
    initial value under `INITIAL_PREFIX`."""
    values = call.materialized or {}
    out: dict[str, Any] = {}
    for s in call.specs:
        if isinstance(s, TensorSpec) and s.is_output:
            if s.init_value is not None:
                out[INITIAL_PREFIX + s.name] = values[s.name]
            continue
        out[s.name] = values[s.name]
    return out


def integer_valued(v: torch.Tensor, chunk: int = 1 << 20) -> bool:
    """Whether every element of `v` is a whole number, looked at `chunk` elements at a time (a
    whole Pro weight rounded at once took 1.5 times its bytes again); stops at the first chunk
    that is not."""
    flat = v.reshape(-1)
    for a in range(0, flat.numel(), chunk):
        part = flat[a:a + chunk]
        if not bool(torch.all(part == torch.round(part))):
            return False
    return True


def adversarial_inputs(call: RunCall) -> list[str]:
    """The floating inputs adversarial recipes may replace (data, not index-like)."""
    names = []
    values = call.materialized or {}
    for s in call.specs:
        if not isinstance(s, TensorSpec) or s.is_output or not s.dtype.is_floating_point:
            continue
        v = values.get(s.name)
        if INDEX_LIKE.search(s.name) or v is None or v.numel() <= 1:
            continue
        if s.dtype not in (torch.bfloat16, torch.float16, torch.float32):
            continue
        if integer_valued(v) and v.numel() > 1:
            continue  # integer-valued: positions or counts stored as floats
        names.append(s.name)
    return names


def adversarial(kind: str, call: RunCall, gen: torch.Generator) -> dict[str, Any]:
    if kind not in ADVERSARIAL:
        raise ValueError(f"unknown adversarial recipe {kind!r}")
    inputs = inputs_of(call)
    for name in adversarial_inputs(call):
        inputs[name] = adversarial_values(kind, inputs[name], gen)
    return inputs
