"""A Markdown verdict document over check results: one claim per pair, with the evidence."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from typing import Sequence

from equiv.results import CheckResult, VERDICTS
from equiv.summary import case_verdict, per_output, per_variant


def _claim_status(r: CheckResult) -> str:
    counts = Counter(case_verdict(res.verdicts) for res in r.results)  # cases, by their worst output
    if counts["regression"]:
        return "**refuted**"
    notes = [f"{counts[v]} {v} case{'s' if counts[v] != 1 else ''}" for v in ("pre-defect", "both-defect", "rejected")
             if counts[v]]
    return "holds" + (f" where both versions cover ({', '.join(notes)})" if notes else "")


_SIZE_DETAILS = (re.compile(r" \(\d+ elements\)"), re.compile(r" but \w+ has shape \[[^\]]*\]"))


def _findings_by_reason(r: CheckResult) -> dict[str, list[str]]:
    """reason, with shape-dependent sizes left out -> shapes where it occurs."""
    out: dict[str, list[str]] = defaultdict(list)
    for res in r.results:
        for o in res.outputs.values():
            for reason in o.reasons:
                if reason.startswith("note: ") or o.verdict != "equivalent":
                    for pattern in _SIZE_DETAILS:
                        reason = pattern.sub("", reason)
                    shape = str(res.case.shape)
                    if shape not in out[reason]:
                        out[reason].append(shape)
    return out


def render_markdown(results: Sequence[CheckResult], command: str, title: str = "Verdict") -> str:
    lines = [f"# {title}", "", f"Produced by `{command}`.", "",
             "Each row is one claim: the contract the pair declares between its pre-retile and retiled "
             "kernels. Verdict columns count cases, each by the worst verdict of its outputs (they add up to "
             "`cases`); a claim is refuted by any `regression`.", "",
             "| pair | claim | verdict | cases | " + " | ".join(VERDICTS) + " | max ULP |",
             "| --- | --- | --- | --- | " + " | ".join("---" for _ in VERDICTS) + " | --- |"]
    for r in results:
        worst = Counter(case_verdict(res.verdicts) for res in r.results)
        totals = {v: worst[v] for v in VERDICTS}
        lines.append(f"| `{r.pair}` | {r.contract} | {_claim_status(r)} | {len(r.results)} | "
                     + " | ".join(str(totals[v]) for v in VERDICTS) + f" | {r.max_ulp()} |")
    for r in results:
        lines += ["", f"## `{r.pair}` — claim: {r.contract}", "", f"Verdict: {_claim_status(r)}.", "",
                  "```", per_output(r), "```"]
        pv = per_variant(r)
        if pv:
            lines += ["", "Per option variant:", "", "```", pv, "```"]
        by_reason = _findings_by_reason(r)
        if by_reason:
            lines += ["", "Findings (and the shapes that trigger them):", ""]
            for reason, shapes in sorted(by_reason.items()):
                more = f" … and {len(shapes) - 6} more" if len(shapes) > 6 else ""
                lines.append(f"- {reason} — at {', '.join(f'`{s}`' for s in shapes[:6])}{more}")
        if r.counterexamples:
            lines += ["", "Minimal counterexamples:", ""]
            for cx in r.counterexamples:
                v = ", ".join(f"{k}: {val}" for k, val in cx.verdicts.items())
                lines.append(f"- `{cx.case.shape}` ({cx.case.recipe}, seed {cx.case.seed}"
                             + (f", {cx.case.variant_label}" if cx.case.variant else "") + f") → {v}  ")
                lines.append(f"  `{cx.repro()}`")
    return "\n".join(lines) + "\n"
