"""A pair-free case judged by the file's own contract (called by the runner for each case).

After the verdicts of registered pairs are computed, a model file's case is refined by what the
file itself says:

* a case whose golden raises is reported as such: ``rejected`` when it is the golden's own
  assert (the file does not support the shape), else ``cannot judge`` — never a kernel verdict
  resting on a reference that did not run;
* an unwritten region is **unwritten by contract** (informational) when the golden leaves it at
  its initial value too, or the file's comparison passes whatever it holds; the verdict is then
  decided as if it held that initial value (the harness's zero fill), and retiled leaving such a
  region where pre writes it is still a regression;
* the file's own test, predicted per version (`contract.file_test`): retiled failing it where
  pre passes is a regression, whatever the contract between pre and retiled says;
* the direction of a difference: retiled that passes the file's test where pre fails, and is
  closer to the golden and to the float64 reference, is a fix (``pre-defect``), not a regression;
* a version that rejects the shape while the other runs: the other is judged on its own.
"""

from __future__ import annotations

import copy
from typing import Any, Mapping

import torch

from equiv import numerics
from equiv.results import OutputResult
from equiv.compare import SideRun, compare_output, region
from equiv.pairfree import contract as fc
from equiv.pairfree.reference import Reference

SIDES = ("pre", "retiled")


def _names(mask: torch.Tensor) -> tuple[str, ...]:
    return ("rows", "cols") if mask.dim() == 2 else ()


def _ran(run: SideRun) -> bool:
    return not (run.rejected or run.gap or run.error) and bool(run.outputs)


def _as_written(pair: Any, call: Any, inputs: Mapping[str, Any], ref: Mapping[str, torch.Tensor] | None
                ) -> dict[str, torch.Tensor] | None:
    """The golden as the harness computes it (each output in its own dtype)."""
    specs = fc.output_specs(call)
    golden = getattr(pair, "golden", None)
    if golden is None or call.golden_fn is None:
        return None
    if golden.how != "float64" and ref is not None:
        return {n: ref[n].to(s.dtype) for n, s in specs.items() if n in ref}
    try:
        got = Reference(call.golden_fn, "as written")(call, inputs)
    except Exception:  # noqa: BLE001 - the promoted golden ran; the as-written one is only for the file's test
        return None
    return {n: got[n].to(s.dtype) for n, s in specs.items() if n in got}


def _readers(run: SideRun) -> str:
    """Whether the program reads memory it never wrote: written elements that depend on it."""
    hit = {n: int((run.poisoned[n] & run.written[n]).sum()) for n in run.outputs}
    hit = {n: c for n, c in hit.items() if c}
    if not hit:
        return "nothing the program writes depends on it (no output reads uninitialised memory)"
    return ("the program reads uninitialised memory: " + ", ".join(f"{c} elements of {n}" for n, c in hit.items())
            + " depend on it or on another unwritten region")


def _own_call(pair: Any, side: str, shape: Any, fallback: Any) -> Any:
    try:
        return pair.entry.call(side, shape).call
    except Exception:  # noqa: BLE001 - a side that does not load here is judged by the other's call
        return fallback


def _views(call: Any, run: SideRun, inputs: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    specs = fc.output_specs(call)
    return {n: fc.harness_view(run.outputs[n], run.written[n], specs[n].dtype, fc.initial_value(call, n, inputs))
            for n in specs if n in run.outputs}


def _adjusted(run: SideRun, name: str, covered: torch.Tensor, view: torch.Tensor) -> SideRun:
    """`run` with the region `covered` counted as written, holding the harness's value there."""
    new = copy.copy(run)
    new.outputs, new.written, new.poisoned = dict(run.outputs), dict(run.written), dict(run.poisoned)
    new.outputs[name] = view.to(run.outputs[name].dtype)
    new.written[name] = run.written[name] | covered
    new.poisoned[name] = run.poisoned[name] & ~covered
    return new


def _max_err(x: torch.Tensor, ref: torch.Tensor, mask: torch.Tensor) -> float:
    if not bool(mask.any()):
        return 0.0
    if x.dtype.is_floating_point:
        e = numerics.ulp_error(x[mask], ref[mask].to(torch.float64), numerics.format_of(x.dtype))
    else:
        e = (x[mask].to(torch.float64) - ref[mask].to(torch.float64)).abs()
    return float(e.max())


def judge_case(pair: Any, case: Any, runs: dict[str, SideRun], inputs: Mapping[str, Any],
               ref: Mapping[str, torch.Tensor] | None, ref_error: str | None,
               outputs: dict[str, OutputResult]) -> None:
    """Refine `outputs` (the verdicts of one case) by the file's own contract, in place."""
    if ref_error:
        rejects = "GoldenRejects" in ref_error
        for o in outputs.values():
            if o.verdict in ("rejected", "cannot judge", "regression"):
                continue
            if rejects:
                o.verdict = "rejected"
                o.reasons.append("the file's golden rejects this shape (its own assert): "
                                 + ref_error.split("GoldenRejects: ", 1)[-1])
            else:
                o.verdict = "cannot judge"
                o.reasons.append(f"cannot judge: the file's golden at this shape raised — "
                                 f"{ref_error.removeprefix('reference raised ')}")
        return
    try:
        call = pair.call_at(case.shape)
    except Exception:  # noqa: BLE001 - neither side loads at this shape: nothing more to say
        return
    golden = _as_written(pair, call, inputs, ref)
    if golden is None:
        return
    specs = fc.output_specs(call)
    views = {s: _views(call, runs[s], inputs) for s in SIDES if _ran(runs[s])}
    # Each version is held to its own file's comparison (its run_jit call at this shape).
    calls = {s: _own_call(pair, s, case.shape, call) for s in views}
    tests = {s: fc.file_test(calls[s], v, golden, inputs) for s, v in views.items()}
    from equiv.pairfree import audit

    by_hand = audit.rounds_by_hand(call.golden_fn) if call.golden_fn is not None else ""
    promoted = ref if getattr(pair.golden, "how", "") == "float64" else None
    for name, o in outputs.items():
        if name not in specs or name not in golden:
            continue
        for s, t in tests.items():
            if name in t:
                o.file_test[s] = t[name].to_dict()
        # The golden audit against each version (informational: the golden may be the one off).
        for s in views:
            good = runs[s].written[name] & ~runs[s].poisoned[name]
            _, suspect = audit.judge_output(name, golden[name], runs[s].outputs[name],
                                            None if promoted is None else promoted.get(name), good, by_hand)
            if suspect is not None:
                o.reasons.append(f"note: golden suspect against {s}: {suspect.text()}")
                o.golden_suspect[s] = suspect.text()
        if o.verdict in ("cannot judge",):
            continue
        # Unwritten by contract, per side.
        covered: dict[str, torch.Tensor] = {}
        for s in views:
            unwritten = ~runs[s].written[name]
            if not bool(unwritten.any()):
                continue
            why = fc.unwritten_by_contract(calls[s], name, unwritten, views[s], golden, inputs,
                                           fc.initial_value(call, name, inputs))
            if why:
                covered[s] = unwritten
                r = region(unwritten, _names(unwritten))
                o.unwritten_by_contract[s] = {**r, "why": why}
        lone = [s for s in SIDES if runs[s].rejected] and len(views) == 1
        if covered and not lone:
            kept_attr, kept_why = o.attribution, [x for x in o.reasons if x.startswith("why ")]
            adj = {s: _adjusted(runs[s], name, covered[s], views[s][name]) if s in covered else runs[s]
                   for s in SIDES}
            contract = pair.contract_for(name) if hasattr(pair, "contract_for") else pair.contract
            new = compare_output(name, adj["pre"], adj["retiled"], None if ref is None else ref.get(name),
                                 contract, pair.accuracy_slack, ("rows", "cols") if len(specs[name].shape) == 2 else ())
            new.file_test, new.unwritten_by_contract = o.file_test, o.unwritten_by_contract
            new.attribution = kept_attr
            o.__dict__.update(new.__dict__)
            o.reasons += kept_why
            if "retiled" in covered and "pre" in views:
                pre_wrote = covered["retiled"] & runs["pre"].written[name]
                if bool(pre_wrote.any()):
                    o.verdict = "regression"
                    o.reasons.append(f"retiled leaves {region(pre_wrote, _names(pre_wrote))['text']} of {name} unwritten "
                                     f"({int(pre_wrote.sum())} elements) where pre writes it")
        for s in views:
            left = ~runs[s].written[name] & ~covered.get(s, torch.zeros_like(runs[s].written[name]))
            if bool(left.any()):
                o.reasons.append(f"note: {s}'s unwritten {region(left, _names(left))['text']} of {name} is a defect "
                                 f"(the golden writes it and the file's comparison reads it); {_readers(runs[s])}")
        for s, info in o.unwritten_by_contract.items():
            o.reasons.append(f"note: {s} leaves {info['text']} of {name} unwritten ({info['count']} elements) — "
                             f"unwritten by contract: {info['why']}")
        if lone:
            _judge_alone(pair, name, o, runs, views, tests, ref, covered)
            continue
        _file_test_rule(name, o, tests)
        if o.verdict == "regression" and not any(x.endswith("where pre writes it") for x in o.reasons):
            _direction(name, o, runs, views, golden, ref, tests)


def _test_text(t: Mapping[str, Any]) -> str:
    if t.get("passed") is None:
        return f"not predicted ({t.get('detail')})"
    return "PASS" if t["passed"] else f"FAIL ({t.get('detail')})"


def _file_test_rule(name: str, o: OutputResult, tests: Mapping[str, Mapping[str, fc.OutputTest]]) -> None:
    pre, ret = (tests.get(s, {}).get(name) for s in SIDES)
    for s, t in (("pre", pre), ("retiled", ret)):
        if t is not None and t.passed is False:
            o.reasons.append(f"file's test on {s}: FAIL — {t.detail}")
    if pre is not None and ret is not None and pre.passed is True and ret.passed is False:
        o.verdict = "regression"
        o.reasons.append(f"retiled fails the file's own test of {name} where pre passes")


def _direction(name: str, o: OutputResult, runs: Mapping[str, SideRun], views: Mapping[str, Mapping[str, torch.Tensor]],
               golden: Mapping[str, torch.Tensor], ref: Mapping[str, torch.Tensor] | None,
               tests: Mapping[str, Mapping[str, fc.OutputTest]]) -> None:
    """A regression that is a fix: retiled passes the file's test where pre fails, adds no hazard
    or defect of its own, and is closer to the golden and to the float64 reference."""
    if set(views) != set(SIDES):
        return
    pre_t, ret_t = tests["pre"].get(name), tests["retiled"].get(name)
    if not (pre_t is not None and ret_t is not None and pre_t.passed is False and ret_t.passed is True):
        return
    pre, ret = runs["pre"], runs["retiled"]
    if {(h["kind"], h["tensor"]) for h in ret.hazards} - {(h["kind"], h["tensor"]) for h in pre.hazards}:
        return
    bad_ret = ~ret.written[name] | (ret.poisoned[name] & ret.written[name])
    bad_pre = ~pre.written[name] | (pre.poisoned[name] & pre.written[name])
    for s, info in o.unwritten_by_contract.items():
        mask = ~runs[s].written[name]
        if s == "retiled":
            bad_ret = bad_ret & ~mask
        else:
            bad_pre = bad_pre & ~mask
    if bool((bad_ret & ~bad_pre).any()):
        return
    a, b = views["pre"][name], views["retiled"][name]
    differ = ~bad_ret & (a.to(torch.float64) != b.to(torch.float64))
    g = golden[name].to(torch.float64)
    ge_pre, ge_ret = _max_err(a, g, differ), _max_err(b, g, differ)
    if ge_ret > ge_pre:
        return
    line = (f"retiled fixes pre on {name}: pre fails the file's test, retiled passes it and is closer to the "
            f"golden where they differ (max {ge_ret:.3g} vs pre's {ge_pre:.3g} ULP")
    if ref is not None and name in ref:
        fe_pre, fe_ret = _max_err(a, ref[name], differ), _max_err(b, ref[name], differ)
        if fe_ret > fe_pre:
            return
        line += f"; to the float64 reference {fe_ret:.3g} vs {fe_pre:.3g} ULP"
    o.verdict = "pre-defect"
    o.reasons.append(line + ")")


def _judge_alone(pair: Any, name: str, o: OutputResult, runs: Mapping[str, SideRun],
                 views: Mapping[str, Mapping[str, torch.Tensor]], tests: Mapping[str, Mapping[str, fc.OutputTest]],
                 ref: Mapping[str, torch.Tensor] | None, covered: Mapping[str, torch.Tensor]) -> None:
    """One version rejects the shape, the other ran: judge that one on its own."""
    (side,) = views
    other = "pre" if side == "retiled" else "retiled"
    run = runs[side]
    problems = []
    unwritten = ~run.written[name] & ~covered.get(side, torch.zeros_like(run.written[name]))
    poisoned = run.poisoned[name] & run.written[name]
    if bool(unwritten.any()):
        problems.append(f"leaves {region(unwritten, _names(unwritten))['text']} of {name} unwritten ({int(unwritten.sum())} elements)")
    if bool(poisoned.any()):
        problems.append(f"output {region(poisoned, _names(poisoned))['text']} of {name} depends on uninitialised memory")
    if run.hazards:
        problems += [f"{h['kind']} on {h['tensor']} at {h['site']}" for h in run.hazards]
    t = tests.get(side, {}).get(name)
    if t is not None and t.passed is False:
        problems.append(f"fails the file's test: {t.detail}")
    acc = ""
    if ref is not None and name in ref:
        err = _max_err(views[side][name], ref[name], run.written[name] & ~poisoned)
        o.error_vs_ref[side] = {"max": err, "hist": {}, "mean": 0.0}
        acc = f", max error vs reference {err:.3g} ULP"
    verdict_text = "; ".join(problems) if problems else "no defect"
    ft = f", file's test {_test_text(t.to_dict())}" if t is not None else ""
    o.reasons.append(f"{side} judged alone ({other} rejects this shape): {verdict_text}{ft}{acc}")
    if problems and side == "retiled":
        o.verdict = "regression"
        o.reasons.insert(0, "retiled accepts a shape pre rejects and computes it wrong")


def file_test_summary(result: Any) -> dict[str, str]:
    """Per version, the file's own test over every case: FAIL (the first failing output, its
    case and how far), else not predicted (why), else PASS; absent where it never ran."""
    verdict: dict[str, str] = {}
    for side in SIDES:
        fail = unknown = None
        passed = False
        for r in result.results:
            for name, o in r.outputs.items():
                t = o.file_test.get(side)
                if t is None:
                    continue
                if t["passed"] is False and fail is None:
                    fail = f"FAIL ({name} at {r.case.shape}, recipe {r.case.recipe}: {t['detail']})"
                elif t["passed"] is None and unknown is None:
                    unknown = f"not predicted ({name}: {t['detail']})"
                elif t["passed"]:
                    passed = True
        text = fail or unknown or ("PASS" if passed else None)
        if text:
            verdict[side] = text
    return verdict
