"""Real device runs: compare two saved runs (NPU or simulator) of the pre and retiled kernel.

A saved run is a directory in the layout of pypto-lib's golden harness: one ``torch.save``
file per tensor (dtype and shape embedded), inputs under ``data/in/<name>.pt`` and outputs
under ``data/out/<name>.pt`` (the directory given may be the work dir holding ``data/`` or
the ``data/`` directory itself). Scalars are 0-dim tensors under ``data/in``. An output that
also has ``data/in/<name>.pt`` is an in/out tensor: that file holds its value *before* the
kernel ran (its pre-fill).

`compare_runs` checks the two runs saw bit-identical inputs, then judges every output with
the same `compare.compare_output` an emulated check uses (verdicts, ULP histograms, coverage
regions, optionally the error of each run against a registered float64 reference).

Unwritten output: on a device nothing records which elements a kernel wrote, so the
harness pre-fills outputs and an element still holding the pre-fill afterwards was not
written. The convention here (docs/device-runs.md) is to pre-fill with a *sentinel*: a NaN
with a payload arithmetic on real data never produces (for integers, the type's minimum), see
`SENTINEL_BITS`. `capture` prepares a pypto-lib golden-harness run that way and saves the
device's outputs in the layout above.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import torch

from equiv.compare import SideRun, compare_output
from equiv.pair import BIT_EXACT, Contract, KernelPair
from equiv.results import Case, CaseResult
from equiv.shapes import Shape
from equiv.errors import RunMismatch

# Bit patterns of the "never written" pre-fill, per dtype. Floats: quiet NaNs with a payload
# (0x55 / 0xD5 patterns) that arithmetic on real data never returns (an invalid operation
# gives the platform's default NaN; only an operation on the sentinel itself may carry its
# payload on); integers: the type's minimum.
SENTINEL_BITS: dict[torch.dtype, int] = {
    torch.bfloat16: 0x7FD5,
    torch.float16: 0x7ED5,
    torch.float32: 0x7FD5D5D5,
    torch.float64: 0x7FFAD5D5D5D5D5D5,
    torch.int8: -(2**7),
    torch.int16: -(2**15),
    torch.int32: -(2**31),
    torch.int64: -(2**63),
    torch.uint8: 2**8 - 1,
}
_INT_OF = {torch.bfloat16: torch.int16, torch.float16: torch.int16, torch.float32: torch.int32,
           torch.float64: torch.int64}
UNWRITTEN_MODES = ("sentinel", "prefill", "none")


# ----------------------------------------------------------------------------------------
# Sentinel
# ----------------------------------------------------------------------------------------
def _as_bits(t: torch.Tensor) -> torch.Tensor:
    """The tensor's raw bits as an integer tensor (floats reinterpreted, ints as they are)."""
    if t.dtype in _INT_OF:
        return t.view(_INT_OF[t.dtype])
    if t.dtype == torch.bool:
        return t.to(torch.int8)
    return t


def _sentinel_value(dtype: torch.dtype) -> int:
    if dtype not in SENTINEL_BITS:
        raise TypeError(f"no sentinel for {dtype}")
    bits = SENTINEL_BITS[dtype]
    if dtype in _INT_OF:
        width = torch.iinfo(_INT_OF[dtype]).bits
        if bits >= 2 ** (width - 1):
            bits -= 2**width
    return bits


def sentinel(shape: Sequence[int], dtype: torch.dtype) -> torch.Tensor:
    """A tensor of `shape` and `dtype` filled with the unwritten-output sentinel."""
    value = _sentinel_value(dtype)
    if dtype in _INT_OF:
        return torch.full(list(shape), value, dtype=_INT_OF[dtype]).view(dtype)
    return torch.full(list(shape), value, dtype=dtype)


def is_sentinel(t: torch.Tensor) -> torch.Tensor:
    """Elementwise: does `t` hold the sentinel bits of its dtype?"""
    if t.dtype not in SENTINEL_BITS:
        return torch.zeros(t.shape, dtype=torch.bool)
    return _as_bits(t) == _sentinel_value(t.dtype)


def bits_equal(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Elementwise bit equality (NaN payloads and signed zeros distinguished)."""
    return _as_bits(a) == _as_bits(b)


# ----------------------------------------------------------------------------------------
# Saved runs
# ----------------------------------------------------------------------------------------
@dataclass
class SavedRun:
    """One saved run: tensors of ``data/in`` and ``data/out``."""

    path: str
    inputs: dict[str, torch.Tensor] = field(default_factory=dict)
    outputs: dict[str, torch.Tensor] = field(default_factory=dict)

    def prefill(self, name: str) -> torch.Tensor | None:
        """The pre-fill of output `name` if the run recorded one (``data/in/<name>.pt``)."""
        return self.inputs.get(name)


def _data_dir(path: str) -> str:
    for cand in (os.path.join(path, "data"), path):
        if os.path.isdir(os.path.join(cand, "in")) or os.path.isdir(os.path.join(cand, "out")):
            return cand
    raise RunMismatch(f"{path}: not a saved run (expected data/in/*.pt and data/out/*.pt, "
                      f"or in/ and out/ directly under it)")


def _load_dir(path: str) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    if not os.path.isdir(path):
        return out
    for fname in sorted(os.listdir(path)):
        if not fname.endswith(".pt"):
            continue
        full = os.path.join(path, fname)
        try:
            value = torch.load(full, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
            raise RunMismatch(f"{full}: cannot load ({type(exc).__name__}: {exc})") from None
        if not isinstance(value, torch.Tensor):
            raise RunMismatch(f"{full}: holds a {type(value).__name__}, not a tensor")
        out[fname[:-3]] = value
    return out


def load_run(path: str) -> SavedRun:
    data = _data_dir(path)
    run = SavedRun(path, _load_dir(os.path.join(data, "in")), _load_dir(os.path.join(data, "out")))
    if not run.outputs:
        raise RunMismatch(f"{path}: no outputs under {os.path.join(data, 'out')}")
    return run


def _describe(t: torch.Tensor) -> str:
    return f"{str(t.dtype).removeprefix('torch.')}{list(t.shape)}"


def _first_difference(a: torch.Tensor, b: torch.Tensor) -> str:
    diff = ~bits_equal(a, b)
    n = int(diff.sum())
    idx = [int(i) for i in diff.nonzero()[0].tolist()] if a.dim() else []
    ix = tuple(idx)
    return f"{n} of {a.numel()} elements differ, first at {idx}: {a[ix].item()!r} vs {b[ix].item()!r}"


def check_same_inputs(pre: SavedRun, retiled: SavedRun) -> None:
    """Raise `RunMismatch` unless both runs saved the same input tensors, bit for bit."""
    problems = []
    only_pre = sorted(set(pre.inputs) - set(retiled.inputs))
    only_ret = sorted(set(retiled.inputs) - set(pre.inputs))
    if only_pre:
        problems.append(f"only the pre run has inputs {', '.join(only_pre)}")
    if only_ret:
        problems.append(f"only the retiled run has inputs {', '.join(only_ret)}")
    for name in sorted(set(pre.inputs) & set(retiled.inputs)):
        a, b = pre.inputs[name], retiled.inputs[name]
        if a.dtype != b.dtype or a.shape != b.shape:
            problems.append(f"input {name} is {_describe(a)} in the pre run but {_describe(b)} in the retiled run")
        elif not bool(bits_equal(a, b).all()):
            problems.append(f"input {name}: {_first_difference(a, b)}")
    if problems:
        raise RunMismatch("the two runs did not see the same inputs:\n  " + "\n  ".join(problems)
                          + "\n(replay the pre run's data/in into the retiled run, see docs/device-runs.md)")


def _unwritten(run: SavedRun, name: str, mode: str) -> torch.Tensor:
    out = run.outputs[name]
    if mode == "none":
        return torch.zeros(out.shape, dtype=torch.bool)
    prefill = run.prefill(name)
    if prefill is not None and (prefill.shape != out.shape or prefill.dtype != out.dtype):
        raise RunMismatch(f"{run.path}: data/in/{name}.pt is {_describe(prefill)} but data/out/{name}.pt is "
                          f"{_describe(out)}; an output's pre-fill must have its shape and dtype")
    if mode == "prefill":
        if prefill is None:
            raise RunMismatch(f"--unwritten prefill: {run.path} has no data/in/{name}.pt (the pre-fill of "
                              f"output {name})")
        return bits_equal(out, prefill)
    if mode != "sentinel":
        raise ValueError(f"unwritten mode {mode!r}; expected one of {', '.join(UNWRITTEN_MODES)}")
    hit = is_sentinel(out)
    return hit if prefill is None else hit & is_sentinel(prefill)


def side_run(run: SavedRun, side: str, names: Sequence[str], unwritten: str) -> SideRun:
    s = SideRun(side)
    for name in names:
        out = run.outputs[name]
        s.outputs[name] = out
        s.written[name] = ~_unwritten(run, name, unwritten)
        s.poisoned[name] = torch.zeros(out.shape, dtype=torch.bool)
    return s


def reference_inputs(run: SavedRun) -> dict[str, Any]:
    """Saved inputs as a reference takes them: tensors, and 0-dim tensors as Python numbers."""
    return {k: (v.item() if v.dim() == 0 else v.clone()) for k, v in run.inputs.items()}


def declared_inputs(pair: KernelPair, shape: Shape) -> dict[str, tuple[tuple[int, ...], torch.dtype | None]]:
    """name -> (shape, dtype) of the inputs `pair` takes at `shape` (dtype None: a Python scalar), from
    its first (realistic) recipe, which is the pair's declaration of what it is called with."""
    from equiv.runner import generator

    recipe = next(iter(pair.recipes.values()))
    made = recipe(shape, generator(0))
    return {k: ((tuple(v.shape), v.dtype) if isinstance(v, torch.Tensor) else ((), None)) for k, v in made.items()}


def check_declared_inputs(run: SavedRun, pair: KernelPair, shape: Shape) -> None:
    """Raise `RunMismatch` unless the run's saved inputs are the ones `pair` declares at `shape`
    (same names, shapes and dtypes): a run saved at another shape, or with an input in another
    dtype, would otherwise be judged against a reference it never computed."""
    declared = declared_inputs(pair, shape)
    problems = []
    for name, (dims, dtype) in declared.items():
        saved = run.inputs.get(name)
        if saved is None:
            problems.append(f"input {name} is not saved")
        elif dtype is None:
            if saved.dim() != 0:
                problems.append(f"input {name} is a scalar in {pair.name} but saved as {_describe(saved)}")
        elif tuple(saved.shape) != dims or saved.dtype != dtype:
            problems.append(f"input {name} is {str(dtype).removeprefix('torch.')}{list(dims)} in {pair.name} "
                            f"at {shape} but saved as {_describe(saved)}")
    extra = sorted(set(run.inputs) - set(declared) - set(run.outputs))
    if extra:
        problems.append(f"saved input(s) {', '.join(extra)} that {pair.name} does not take")
    if problems:
        raise RunMismatch(f"the saved runs do not match {pair.name} at {shape}: " + "; ".join(problems)
                          + " (check --pair and --shapes)")


def compare_runs(pre: SavedRun, retiled: SavedRun, pair: KernelPair | None = None, shape: Shape | None = None,
                 contract: Contract | None = None, unwritten: str = "sentinel",
                 accuracy_slack: float | None = None, name: str | None = None) -> CaseResult:
    """Judge two saved runs like one emulated case (`CaseResult` with recipe ``saved``)."""
    if unwritten not in UNWRITTEN_MODES:
        raise ValueError(f"unwritten mode {unwritten!r}; expected one of {', '.join(UNWRITTEN_MODES)}")
    check_same_inputs(pre, retiled)
    names = sorted(pre.outputs)
    if set(names) != set(retiled.outputs):
        raise RunMismatch(f"the runs saved different outputs: pre {', '.join(names)}; retiled "
                          f"{', '.join(sorted(retiled.outputs))}")
    for n in names:
        a, b = pre.outputs[n], retiled.outputs[n]
        if a.dtype != b.dtype or a.shape != b.shape:
            raise RunMismatch(f"output {n} is {_describe(a)} in the pre run but {_describe(b)} in the retiled run")
    ref = None
    ref_error = None
    if pair is not None:
        if shape is None:
            raise RunMismatch(f"a reference of {pair.name} needs the run's shape (--shape "
                              f"'{','.join(f'{k}=…' for k in pair.shapes.dims)}')")
        declared = {k: (tuple(int(x) for x in s), dt.torch_dtype) for k, (s, dt) in pair.outputs(shape).items()}
        saved = {k: (tuple(pre.outputs[k].shape), pre.outputs[k].dtype) for k in names}
        if declared != saved:
            raise RunMismatch(f"{pair.name} at {shape} declares outputs "
                              + ", ".join(f"{k} {str(dt).removeprefix('torch.')}{list(s)}" for k, (s, dt) in declared.items())
                              + " but the runs saved " + ", ".join(f"{k} {str(dt).removeprefix('torch.')}{list(s)}"
                                                                    for k, (s, dt) in saved.items())
                              + "; check --shape")
        check_declared_inputs(pre, pair, shape)
        try:
            ref = pair.reference(reference_inputs(pre), shape)
        except Exception as exc:  # noqa: BLE001 - reported next to the verdicts, like the runner does
            ref_error = f"reference raised {type(exc).__name__}: {exc}"
        contract = contract or pair.contract
        accuracy_slack = pair.accuracy_slack if accuracy_slack is None else accuracy_slack
    contract = contract or BIT_EXACT
    accuracy_slack = 1.0 if accuracy_slack is None else accuracy_slack
    pre_side = side_run(pre, "pre", names, unwritten)
    ret_side = side_run(retiled, "retiled", names, unwritten)
    outputs = {}
    for n in names:
        dims = ("rows", "cols") if pre.outputs[n].dim() == 2 else ()
        outputs[n] = compare_output(n, pre_side, ret_side, None if ref is None else ref.get(n), contract,
                                    accuracy_slack, dims)
        if ref_error:
            outputs[n].reasons.append(ref_error)
    label = name or (pair.name if pair is not None else "saved runs")
    return CaseResult(label, Case(shape or Shape(), "saved", 0), outputs)


# ----------------------------------------------------------------------------------------
# Capturing a run from a pypto-lib golden-harness script
# ----------------------------------------------------------------------------------------
def save_tensors(directory: str, tensors: Mapping[str, torch.Tensor]) -> None:
    os.makedirs(directory, exist_ok=True)
    for name, t in tensors.items():
        torch.save(t.detach().cpu().clone(), os.path.join(directory, f"{name}.pt"))


def save_run(dest: str, inputs: Mapping[str, torch.Tensor], outputs: Mapping[str, torch.Tensor]) -> None:
    """Write a saved run: ``dest/data/in/<name>.pt`` and ``dest/data/out/<name>.pt``."""
    save_tensors(os.path.join(dest, "data", "in"), inputs)
    save_tensors(os.path.join(dest, "data", "out"), outputs)


def _default_compare(actual, expected, *, rtol, atol, **_):
    ok = bool(torch.allclose(actual.float(), expected.float(), rtol=rtol, atol=atol))
    return ok, "" if ok else f"    not allclose (rtol={rtol}, atol={atol})"


def capture(specs: Sequence[Any], dest: str, then: Mapping[str, Callable] | None = None,
            prefill: bool = True) -> tuple[list[Any], dict[str, Callable]]:
    """Prepare a pypto-lib golden-harness run so the device's outputs are saved under `dest`.

    `specs` are the harness's tensor/scalar specs (objects with ``name``, ``shape``,
    ``dtype``, ``is_output``, ``init_value``; scalars with ``value``). Returns
    ``(specs, compare_fn)`` to pass to the harness's run function:

    * with `prefill`, every output without an initial value is given the sentinel as one
      (the harness then records that pre-fill as ``data/in/<name>.pt`` of its own work dir,
      and the device starts from it);
    * ``compare_fn`` holds, per output, a comparator that saves the inputs, the pre-fills and
      the device's output into ``dest/data/{in,out}`` and then defers to ``then[name]`` (or
      to allclose with the harness's rtol/atol).
    """
    new_specs: list[Any] = []
    fills: dict[str, torch.Tensor] = {}
    scalars: dict[str, torch.Tensor] = {}
    outputs: list[str] = []
    for spec in specs:
        if getattr(spec, "is_output", False):
            outputs.append(spec.name)
            if prefill and getattr(spec, "init_value", None) is None:
                fill = sentinel(spec.shape, spec.dtype)
                fills[spec.name] = fill
                spec = dataclasses.replace(spec, init_value=fill.clone())
        elif hasattr(spec, "value") and not hasattr(spec, "is_output"):
            scalars[spec.name] = torch.as_tensor(spec.value)
        new_specs.append(spec)
    then = dict(then or {})

    def make(name: str) -> Callable:
        def cmp(actual, expected, *, actual_outputs=None, expected_outputs=None, inputs=None, rtol=1e-5,
                atol=1e-5, **kw):
            save_run(dest, {**(inputs or {}), **scalars, **fills}, {name: actual})
            fn = then.get(name, _default_compare)
            return fn(actual, expected, actual_outputs=actual_outputs, expected_outputs=expected_outputs,
                      inputs=inputs, rtol=rtol, atol=atol, **kw)

        cmp.__name__ = f"capture[{getattr(then.get(name), '__name__', 'allclose')}]"
        return cmp

    return new_specs, {name: make(name) for name in outputs}


__all__ = ["SENTINEL_BITS", "UNWRITTEN_MODES", "RunMismatch", "SavedRun", "sentinel", "is_sentinel", "bits_equal",
           "load_run", "check_same_inputs", "compare_runs", "save_run", "capture", "reference_inputs"]
