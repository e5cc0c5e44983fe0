"""``equiv compare PRE_RUN RETILED_RUN``: verdicts for two saved device runs (docs/device-runs.md)."""

from __future__ import annotations

import argparse
import shlex
import time

from equiv import registry
from equiv.errors import RunMismatch, ShapeError, UnknownPairError, UsageError
from equiv.results import CaseResult, CheckResult, OutputResult
from equiv.commands.outputs import write_results
from equiv.device_runs import UNWRITTEN_MODES, compare_runs, load_run
from equiv.pair import Contract
from equiv.summary import per_output, wrap, wrap_command


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare", help="compare two saved device runs of the pre and retiled kernel",
        description="Compare two runs saved in the golden-harness layout (<dir>/data/in/<name>.pt, "
                    "<dir>/data/out/<name>.pt) of the pre and the retiled kernel on the same inputs: check the "
                    "inputs are identical, then give the verdict per output as `equiv check` does. Exit 1 on a "
                    "regression, 2 on unusable runs.")
    p.add_argument("pre_run", metavar="PRE_RUN", help="saved run of the pre-retile kernel")
    p.add_argument("retiled_run", metavar="RETILED_RUN", help="saved run of the retiled kernel")
    p.add_argument("--pair", metavar="NAME",
                   help="registered pair whose contract and float64 reference (computed from the saved inputs) "
                        "to use")
    p.add_argument("--shapes", "--shape", dest="shape", metavar="'T=8,...'",
                   help="the runs' shape in the pair's dimensions (with --pair); its inputs are checked against "
                        "the pair's declaration")
    p.add_argument("--contract", metavar="bit-exact|N[:DTYPE]",
                   help="contract between the runs (default: the pair's, else bit-exact)")
    p.add_argument("--unwritten", choices=UNWRITTEN_MODES, default="sentinel",
                   help="how unwritten output is recognised: 'sentinel' (default) elements holding equiv's "
                        "sentinel pre-fill; 'prefill' elements still equal to data/in/<output>.pt; 'none' off")
    p.add_argument("--json", metavar="PATH", help="also write the result as JSON")
    p.add_argument("--report", metavar="PATH", help="also write a self-contained HTML report")
    p.set_defaults(func=run)


def _repro(args: argparse.Namespace) -> str:
    parts = ["equiv", "compare", args.pre_run, args.retiled_run]
    for opt, flag in (("pair", "--pair"), ("shape", "--shapes"), ("contract", "--contract")):
        if getattr(args, opt):
            parts += [flag, getattr(args, opt)]
    if args.unwritten != "sentinel":
        parts += ["--unwritten", args.unwritten]
    return " ".join(shlex.quote(p) for p in parts)


def _histogram(h: dict[str, int]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in h.items()) or "-"


def render_output(o: OutputResult) -> list[str]:
    lines = [f"  {o.name}: {o.verdict} — {o.compared} elements compared, {o.differing} differ, max ULP {o.max_ulp}"]
    lines.append(f"    pre↔retiled ULP distance histogram: {_histogram(o.ulp_hist)}")
    for side, e in o.error_vs_ref.items():
        lines.append(f"    {side} error vs float64 reference (ULP): max {e['max']:.3g}, mean {e['mean']:.3g}; "
                     f"{_histogram(e['hist'])}")
    for reason in o.reasons:
        lines.append(f"    - {reason}")
    return [w for line in lines for w in wrap(line.lstrip(" "), line[:len(line) - len(line.lstrip(" "))])]


def run(args: argparse.Namespace) -> int:
    from equiv.commands.common import check_output_paths
    from equiv.pair import parse_contract

    check_output_paths({"--json": args.json, "--report": args.report})
    try:
        contract: Contract | None = parse_contract(args.contract) if args.contract else None
    except ValueError as exc:
        raise UsageError(f"--{exc}") from None
    pair = None
    shape = None
    if args.shape and not args.pair:
        raise UsageError("--shapes goes with --pair (the shape of the pair's dimensions the runs used)")
    if args.pair:
        try:
            pair = registry.get(args.pair)
        except UnknownPairError as exc:
            raise UsageError(str(exc)) from None
        if not args.shape:
            raise UsageError(f"--pair {args.pair} needs --shapes, e.g. --shapes "
                             f"'{','.join(f'{k}={v}' for k, v in pair.shapes.base().items())}'")
        try:
            shape = pair.shapes.parse(args.shape)
        except ShapeError as exc:
            raise UsageError(str(exc)) from None
    t0 = time.perf_counter()
    try:
        pre, retiled = load_run(args.pre_run), load_run(args.retiled_run)
        result = compare_runs(pre, retiled, pair=pair, shape=shape, contract=contract, unwritten=args.unwritten)
    except RunMismatch as exc:
        raise UsageError(str(exc)) from None
    used = contract or (pair.contract if pair else Contract())
    check = as_check_result(result, str(used), time.perf_counter() - t0)
    data = check.to_dict()
    for r in data["results"] + data["counterexamples"]:
        r["repro"] = _repro(args)  # not `equiv check`: these cases come from saved runs
    write_results([data], args.json, args.report)  # files first, then print
    print("\n".join(wrap(f"equiv compare — {args.pre_run} (pre) vs {args.retiled_run} (retiled) — contract {used}"
                         + (f" — reference {pair.name} at {shape}" if pair else " — no reference"))))
    plain = sorted(n for n in pre.inputs if n not in pre.outputs)
    fills = sorted(n for n in pre.inputs if n in pre.outputs)
    print("\n".join(wrap(f"inputs identical: {len(plain)} tensor(s) ({', '.join(plain) or 'none'})"
                         + (f", and the pre-fill of {', '.join(fills)}" if fills else ""))))
    print()
    print(per_output(check))
    print()
    for o in result.outputs.values():
        print("\n".join(render_output(o)))
    print()
    if result.worst != "equivalent":
        print("\n".join(wrap_command(f"repro: {_repro(args)}")))
    print(f"result: {'REGRESSION' if check.regressions else 'OK (no regression)'}")
    return 1 if check.regressions else 0


def as_check_result(result: CaseResult, contract: str, seconds: float) -> CheckResult:
    """One compared pair of runs as a one-case `CheckResult` (for tables, JSON and reports)."""
    cx = [result] if result.worst != "equivalent" else []
    return CheckResult(result.pair, contract, str(result.case.shape) or "saved runs", 0, [result], cx, seconds,
                       {"device": "saved device runs"})
