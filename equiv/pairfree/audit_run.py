"""``equiv audit-golden``: the golden audit run over a model file's entries at one revision,
in each mode at the file's own shapes (`equiv.pairfree.audit` judges each output)."""

from __future__ import annotations

from typing import Any

from equiv.pairfree import contract as fc
from equiv.pairfree.reference import Reference
from equiv.options import Options
from equiv.pairfree.audit import (AuditResult, Suspect, float64_run, float_bit_views, judge_output, pre_rounding,
                                  rounds_by_hand)
from equiv.pairfree.pair import Revisions, build_pair, entries_of
from equiv.results import Case
from equiv.runner import _run_once, make_inputs
from equiv.shapes import Shape
from equiv.source.ref import SourceRef


def audit_case(pair: Any, case: Any, options: Any = None) -> AuditResult:
    """Audit the golden of `pair` (a same-revision pair-free pair) at one case."""
    mode = pair.entry.mode(case.shape)
    try:
        call = pair.call_at(case.shape)
        inputs = make_inputs(pair, case)
        # One run on NaN poison: an element that is unwritten or depends on uninitialised memory
        # is not finite, and is left out of the comparison.
        opts = (options or Options()).replace(poison="nan", seed=case.seed * 2 + 1)
        outs, _hazards, error = _run_once(pair.kernel("pre"), pair, case, inputs, opts, "pre")
        if error:
            return AuditResult(pair.entry.name, mode, "", error=f"the kernel did not run: {error}")
        kernel_out = {n: t.to_torch().cpu() for n, t in outs.items()}
        written = {n: t.written.cpu() for n, t in outs.items()}
        by_hand = rounds_by_hand(call.golden_fn)
        with float_bit_views() as seen:
            golden = Reference(call.golden_fn, "as written")(call, inputs)
    except Exception as exc:  # noqa: BLE001 - reported on the entry's line
        return AuditResult(pair.entry.name, mode, "", error=f"{type(exc).__name__}: {exc}")
    how = pair.golden.how if pair.golden is not None else "as written"
    wide, label = float64_run(call, inputs, how)
    res = AuditResult(pair.entry.name, mode, label)
    for name in fc.output_specs(call):
        if name not in kernel_out or name not in golden:
            continue
        n, s = judge_output(name, golden[name], kernel_out[name], None if wide is None else wide.get(name),
                            written.get(name), by_hand, pre_rounding(golden[name].to(
                                fc.output_specs(call)[name].dtype), seen) if by_hand else None)
        res.differing[name] = n
        if s is not None:
            res.suspects.append(s)
    return res


def merged(results: list[AuditResult]) -> AuditResult:
    """One result for several seeds of one entry and mode: counts summed, findings per output
    joined (elements named as ``seed N [i, j]``), the largest gap kept."""
    first = results[0]
    out = AuditResult(first.entry, first.mode, first.reference, error=next((r.error for r in results if r.error), ""))
    by_output: dict[str, Suspect] = {}
    for seed, r in enumerate(results):
        for name, n in r.differing.items():
            out.differing[name] = out.differing.get(name, 0) + n
        for s in r.suspects:
            cur = by_output.get(s.output)
            elements = [f"seed {seed} {e}" for e in s.elements] if len(results) > 1 else list(s.elements)
            if cur is None:
                by_output[s.output] = Suspect(s.output, s.count, elements, s.gap, s.cause, s.gap_text)
            else:
                cur.count += s.count
                cur.elements += elements
                cur.gap = max(cur.gap, s.gap) if cur.gap == cur.gap else s.gap
                cur.gap_text = cur.gap_text or s.gap_text
    out.suspects = list(by_output.values())
    if len(results) > 1:
        out.mode += f", seeds 0..{len(results) - 1}"
    return out


def audit_file(path: str, rev: str, repo: str, model: str | None = None, options: Any = None,
               log: Any = lambda s: None, seeds: int = 1) -> list[AuditResult]:
    """Audit every entry of the model file `path` at `rev`, in each mode at the file's own shapes
    (the realistic inputs, seeds 0..`seeds`-1: a tie is a rare event, one in about 10^5
    elements)."""
    ref = SourceRef(path, "", rev, repo)
    revisions = Revisions(ref, ref, model=model)
    out = []
    for entry in entries_of(revisions, "pre"):
        pair, _ = build_pair(revisions, entry)
        for i, _mode in enumerate(entry.modes):
            shape = Shape(pair.shapes.preset("nominal")[i])
            res = merged([audit_case(pair, Case(shape, "realistic", seed), options) for seed in range(seeds)])
            log(res.line())
            out.append(res)
    return out
