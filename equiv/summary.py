"""Plain-text rendering of check results: verdict tables, findings, counterexamples."""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

from equiv.check import CheckResult
from equiv.compare import VERDICTS


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for n, r in enumerate(cells):
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def per_output(result: CheckResult) -> str:
    rows = []
    for name, counts in result.counts.items():
        cases = sum(counts.values())
        differing = sum(r.outputs[name].differing for r in result.results)
        rows.append([name, cases, *[counts[v] for v in VERDICTS], result.max_ulp(name), differing])
    return table(["output", "cases", *VERDICTS, "max ULP", "differing elems"], rows)


def per_variant(result: CheckResult) -> str | None:
    """Per option variant (e.g. row_sum order model): cases, differing elements, max ULP."""
    groups: dict[str, list] = defaultdict(list)
    for r in result.results:
        groups[r.case.variant_label].append(r)
    if len(groups) < 2 and "default" in groups:
        return None
    rows = []
    for label, rs in sorted(groups.items()):
        outs = [o for r in rs for o in r.outputs.values() if o.verdict != "rejected"]
        verdicts = defaultdict(int)
        for o in outs:
            verdicts[o.verdict] += 1
        rows.append([label, len(rs), sum(o.differing for o in outs), max((o.max_ulp for o in outs), default=0),
                     ", ".join(f"{v} {n}" for v, n in sorted(verdicts.items()))])
    return table(["variant", "cases", "differing elems", "max ULP", "verdicts"], rows)


def render(result: CheckResult, max_findings: int = 12, max_cases: int = 40) -> str:
    head = (f"{result.pair} — contract {result.contract} — shapes {result.shapes} — seed {result.seed} — "
            f"{len(result.results)} cases in {result.seconds:.1f} s on {result.options.get('device', 'cpu')}")
    parts = [head, "", per_output(result)]
    pv = per_variant(result)
    if pv:
        parts += ["", pv]
    findings = result.findings()
    if findings:
        parts += ["", "Findings:"]
        parts += [f"  {f}" for f in findings[:max_findings]]
        if len(findings) > max_findings:
            parts.append(f"  … {len(findings) - max_findings} more (see --json / --report)")
    if result.counterexamples:
        parts += ["", "Counterexamples (shrunk):"]
        for cx in result.counterexamples:
            c = cx.case
            for name, o in cx.outputs.items():
                if o.verdict == "equivalent":
                    continue
                parts.append(f"  {o.verdict} on {name} at {c.shape} (recipe {c.recipe}, seed {c.seed}"
                             + (f", {c.variant_label}" if c.variant else "") + ")")
                for reason in o.reasons[:4]:
                    parts.append(f"    - {reason}")
            parts.append(f"    repro: {cx.repro()}")
    failing = [r for r in result.results if any(v != "equivalent" for v in r.verdicts.values())]
    if failing:
        parts += ["", f"Non-equivalent cases ({len(failing)}):"]
        for r in failing[:max_cases]:
            verdicts = ", ".join(f"{k} {v}" for k, v in r.verdicts.items() if v != "equivalent")
            parts.append(f"  {verdicts}: {r.repro()}")
        if len(failing) > max_cases:
            parts.append(f"  … {len(failing) - max_cases} more (see --json / --report)")
    parts += ["", f"result: {'REGRESSION' if result.regressions else 'OK (no regression)'}"]
    return "\n".join(parts)


def render_summary(results: Sequence[CheckResult]) -> str:
    rows = []
    for r in results:
        totals = {v: 0 for v in VERDICTS}
        for counts in r.counts.values():
            for v, n in counts.items():
                totals[v] += n
        rows.append([r.pair, r.contract, len(r.results), *[totals[v] for v in VERDICTS], r.max_ulp(),
                     len(r.findings()), f"{r.seconds:.1f}"])
    return table(["pair", "contract", "cases", *VERDICTS, "max ULP", "findings", "seconds"], rows)
