"""The file's own golden function as the reference of a pair-free check.

The golden harness calls ``golden_fn(tensors)`` with every spec by name (inputs cloned,
outputs zero-filled or at their initial value, scalars as Python numbers) and the golden
writes its outputs in place. That is done here as written. It is also run **promoted to
float64** (floating inputs and outputs as float64) when that is faithful: when neither the
golden nor a module-level function it calls narrows precision itself (``.float()``,
``.to(...)``, ``dtype=``, ``torch.float32``/``bfloat16``/``float16``, ``.half()``); then the
promoted result is the reference, else the result as written is. `Reference.how` says which.
Promotion is also skipped (and the reason says how much it would take) when the promoted
tensors would exceed a fixed memory budget (`float64_budget`): Pro-size weights widened to
float64 take 8 bytes an element.
"""

from __future__ import annotations

import inspect
import math
import os
import re
import types
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch

from equiv.pairfree.golden import RunCall, TensorSpec
from equiv.pairfree.specs import INITIAL_PREFIX

NARROWING = re.compile(r"\.float\(\)|\.half\(\)|\.bfloat16\(\)|\.to\(|dtype\s*=|torch\.(float32|bfloat16|float16|half)"
                       r"|\.type\(")


def _source(fn: Callable) -> str:
    try:
        return inspect.getsource(fn)
    except (OSError, TypeError):
        return ""


def faithful_in_float64(golden: Callable) -> tuple[bool, str]:
    """Whether running `golden` on float64 tensors computes its math in float64 (no explicit
    narrowing in it or the module-level functions it calls), and why not."""
    module_globals = getattr(golden, "__globals__", {})
    seen: set[str] = set()
    todo: list[Callable] = [golden]
    while todo:
        fn = todo.pop()
        name = getattr(fn, "__name__", "?")
        if name in seen:
            continue
        seen.add(name)
        text = _source(fn)
        if not text:
            return False, f"the source of {name} is not available"
        m = NARROWING.search(text)
        if m:
            return False, f"{name} narrows precision itself ({m.group(0)})"
        for ident in set(re.findall(r"\b([A-Za-z_]\w*)\s*\(", text)):
            obj = module_globals.get(ident)
            if isinstance(obj, types.FunctionType) and obj.__globals__ is module_globals:
                todo.append(obj)
    return True, ""


def _tensors(call: RunCall, inputs: Mapping[str, Any], promote: bool) -> dict[str, Any]:
    tensors: dict[str, Any] = {}
    for s in call.specs:
        if isinstance(s, TensorSpec) and s.is_output:
            init = inputs.get(INITIAL_PREFIX + s.name)
            t = init if isinstance(init, torch.Tensor) else torch.zeros(s.shape, dtype=s.dtype)
        else:
            t = inputs[s.name]
        if isinstance(t, torch.Tensor):
            # One copy each (the golden may write any of them): promoted, or cloned as is.
            widen = promote and t.dtype.is_floating_point
            t = t.to(torch.float64) if widen and t.dtype != torch.float64 else t.clone()
        tensors[s.name] = t
    return tensors


@dataclass
class Reference:
    """The golden of one entry, and how it is used (``as written`` or ``float64``)."""

    golden: Callable
    how: str
    why: str = ""

    def __call__(self, call: RunCall, inputs: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        promote = self.how == "float64"
        tensors = _tensors(call, inputs, promote)
        # The golden of the call's own module: the file loaded at this case's shape (its sizes).
        (call.golden_fn or self.golden)(tensors)
        return {s.name: tensors[s.name].to(torch.float64) for s in call.specs
                if isinstance(s, TensorSpec) and s.is_output}


# The most the promoted tensors of one reference run may take (bytes); above it the golden runs
# as written (EQUIV_FLOAT64_BUDGET_GB overrides). Fixed, not read from the machine's free
# memory, so the same check decides the same way everywhere.
DEFAULT_FLOAT64_BUDGET = 4 * 2**30


def float64_budget() -> int:
    text = os.environ.get("EQUIV_FLOAT64_BUDGET_GB")
    return int(float(text) * 2**30) if text else DEFAULT_FLOAT64_BUDGET


def promoted_bytes(call: RunCall) -> int:
    """Bytes of the call's tensors as the promoted golden holds them (floating ones as float64)."""
    total = 0
    for s in call.specs:
        if isinstance(s, TensorSpec):
            n = math.prod(s.shape)
            total += n * (8 if s.dtype.is_floating_point else s.dtype.itemsize)
    return total


def _gb(n: int) -> str:
    return f"{n / 2**30:.1f} GB" if n >= 2**30 else f"{n / 2**20:.0f} MB"


def reference_for(call: RunCall) -> Reference | None:
    if call.golden_fn is None:
        return None
    ok, why = faithful_in_float64(call.golden_fn)
    if ok:
        need, budget = promoted_bytes(call), float64_budget()
        if need > budget:
            ok, why = False, (f"promoted inputs and outputs would need {_gb(need)}, over the "
                              f"{_gb(budget)} budget (EQUIV_FLOAT64_BUDGET_GB)")
    return Reference(call.golden_fn, "float64" if ok else "as written", why)
