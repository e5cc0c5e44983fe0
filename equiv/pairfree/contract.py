"""A model file's own contract: its harness, its comparison, its golden.

pypto-lib's harness decides a device test with the comparison its ``run_jit`` call names —
``rtol``/``atol`` (``torch.allclose``) and per-output ``compare_fn``s — against the golden,
with every output that has no ``init_value`` zero-filled on both the device and the golden side.
This module predicts that test on emulated outputs:

* `harness_view` — an emulated output as the harness would read it: elements the kernel never
  wrote hold the output's initial value (zero), as device memory would;
* `file_test` — the recorded comparison run per output: `OutputTest` (passed, detail, the
  worst element); ``passed`` is None when the comparison is one equiv does not model;
* `unwritten_by_contract` — whether an unwritten region is what the file itself expects: the
  golden leaves it at its initial value too, or the file's comparison passes whatever the
  region holds (tried with two different fillings);
* `declared_contract` — a ``# equiv: contract ...`` comment of the file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch

from equiv.pair import Contract, parse_contract
from equiv.pairfree.golden import RunCall, ScalarSpec, TensorSpec
from equiv.pairfree.specs import INITIAL_PREFIX


@dataclass
class OutputTest:
    """The file's test of one output on one version: PASS, FAIL (with how far), or not predicted."""

    output: str
    passed: bool | None
    how: str            # the comparison: "allclose(rtol=…, atol=…)" or the compare_fn's name
    detail: str = ""    # why it fails (count, worst element), or why it is not predicted

    def text(self) -> str:
        if self.passed is None:
            return f"{self.output}: not predicted ({self.detail})"
        return f"{self.output}: PASS" if self.passed else f"{self.output}: FAIL ({self.detail})"

    def to_dict(self) -> dict:
        return {"output": self.output, "passed": self.passed, "how": self.how, "detail": self.detail}


def output_specs(call: RunCall) -> dict[str, TensorSpec]:
    return {s.name: s for s in call.specs if isinstance(s, TensorSpec) and s.is_output}


def compare_inputs(call: RunCall, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """What the harness hands a ``compare_fn`` as ``inputs``: the input tensors and scalar values."""
    out: dict[str, Any] = {}
    for s in call.specs:
        if isinstance(s, ScalarSpec) or (isinstance(s, TensorSpec) and not s.is_output):
            if s.name in inputs:
                out[s.name] = inputs[s.name]
    return out


def initial_value(call: RunCall, name: str, inputs: Mapping[str, Any]) -> torch.Tensor | None:
    """The value an output starts at on the device: its ``init_value``, or None for zeros."""
    v = inputs.get(INITIAL_PREFIX + name)
    return v if isinstance(v, torch.Tensor) else None


def harness_view(out: torch.Tensor, written: torch.Tensor, dtype: torch.dtype,
                 initial: torch.Tensor | None = None) -> torch.Tensor:
    """`out` as the harness reads it back: unwritten elements at their initial value (zero)."""
    base = torch.zeros(out.shape, dtype=dtype) if initial is None else initial.to(dtype).reshape(out.shape)
    return torch.where(written, out.to(dtype), base)


def _comparator(call: RunCall, name: str) -> tuple[Callable | None, str]:
    cmp = (call.compare_fn or {}).get(name) if isinstance(call.compare_fn, Mapping) else None
    if cmp is None:
        return None, f"allclose(rtol={call.rtol:g}, atol={call.atol:g})"
    return cmp, getattr(cmp, "__name__", type(cmp).__name__)


def file_test(call: RunCall, outputs: Mapping[str, torch.Tensor], golden: Mapping[str, torch.Tensor],
              inputs: Mapping[str, Any], only: str | None = None) -> dict[str, OutputTest]:
    """The file's own comparison of `outputs` (as the harness reads them) against `golden` (as
    written, in each output's dtype), per output (or `only` that one)."""
    from equiv.pairfree.comparators import allclose

    specs = output_specs(call)
    given = compare_inputs(call, inputs)
    result: dict[str, OutputTest] = {}
    for name, spec in specs.items():
        if only is not None and name != only:
            continue
        if name not in outputs or name not in golden:
            continue
        actual, expected = outputs[name], golden[name].to(spec.dtype)
        cmp, how = _comparator(call, name)
        if cmp is None:
            ok, detail = allclose(actual, expected, call.rtol, call.atol)
            result[name] = OutputTest(name, ok, how, detail)
            continue
        try:
            got = cmp(actual, expected, actual_outputs=dict(outputs), expected_outputs=dict(golden),
                      inputs=given, rtol=call.rtol, atol=call.atol)
        except Exception as exc:  # noqa: BLE001 - a comparator that cannot run on these values
            result[name] = OutputTest(name, None, how, f"{how} raised {type(exc).__name__}: {exc}")
            continue
        if not (isinstance(got, tuple) and len(got) == 2 and isinstance(got[0], (bool, torch.Tensor))):
            result[name] = OutputTest(name, None, how, f"{how} is a comparison equiv does not model")
            continue
        ok, detail = bool(got[0]), " ".join(str(got[1]).split())
        result[name] = OutputTest(name, ok, how, "" if ok else f"{how}: {detail}")
    return result


def _filled(out: torch.Tensor, region: torch.Tensor, value: float) -> torch.Tensor:
    x = out.clone()
    if x.dtype.is_floating_point:
        x[region] = value
    else:
        x[region] = torch.iinfo(x.dtype).max if x.dtype != torch.bool else True
    return x


SECOND_FILL = 4096.0  # exact in bf16 and fp16, far from typical outputs


def unwritten_by_contract(call: RunCall, name: str, region: torch.Tensor, outputs: Mapping[str, torch.Tensor],
                          golden: Mapping[str, torch.Tensor], inputs: Mapping[str, Any],
                          initial: torch.Tensor | None = None) -> str | None:
    """Why an unwritten `region` of output `name` is what the file expects (None: it is not).

    `outputs` are the harness views (unwritten elements at their initial value); `golden` is
    the golden as written."""
    g = golden[name].to(torch.float64)
    start = torch.zeros_like(g) if initial is None else initial.to(torch.float64).reshape(g.shape)
    same = (g == start) | (torch.isnan(g) & torch.isnan(start))
    if bool(same[region].all()):
        what = "zero" if initial is None else "its initial value"
        return f"the golden leaves it at {what} too"
    # The file's comparison ignores the region if it passes with two different fillings.
    verdicts = []
    # Two finite fillings: the harness's zero and another value (a comparator may refuse any
    # non-finite value in the whole tensor without comparing the region).
    for value in (0.0, SECOND_FILL):
        trial = dict(outputs)
        trial[name] = _filled(outputs[name], region, value)
        t = file_test(call, trial, golden, inputs, only=name).get(name)
        verdicts.append(t.passed if t is not None else None)
    if verdicts == [True, True]:
        return "the file's own comparison passes whatever it holds"
    return None


DECLARED = re.compile(r"^\s*#\s*equiv:\s*contract\s+(.+?)\s*$", re.MULTILINE)


@dataclass
class Declared:
    """A contract a file declares: one for every output, and per-output ones; where it is written."""

    default: Contract | None
    per_output: dict[str, Contract]
    origin: str

    def for_output(self, name: str, fallback: Contract) -> Contract:
        return self.per_output.get(name, self.default or fallback)

    def text(self) -> str:
        parts = [str(self.default)] if self.default else []
        parts += [f"{k} {v}" for k, v in self.per_output.items()]
        return ", ".join(parts)


def declared_contract(source: str, where: str) -> Declared | None:
    """The ``# equiv: contract SPEC`` comment of a file (SPEC: ``2:bf16``, ``bit-exact``, or
    per output ``kv=2:bf16 score=bit-exact``, separated by spaces or commas); `where` names the
    file for the origin. ValueError names the line of a malformed one."""
    m = DECLARED.search(source)
    if not m:
        return None
    line = source.count("\n", 0, m.start(1)) + 1
    default, per = None, {}
    for item in re.split(r"[,\s]+", m.group(1).strip()):
        if not item:
            continue
        try:
            if "=" in item:
                out, spec = item.split("=", 1)
                per[out.strip()] = parse_contract(spec)
            else:
                default = parse_contract(item)
        except ValueError as exc:
            raise ValueError(f"{where}:{line}: # equiv: contract: {exc}") from None
    return Declared(default, per, f"declared at {where}:{line}")
