"""Plain-text rendering of check results: verdict tables, findings, counterexamples.

Everything fits the terminal: `width()` is the terminal's width when stdout is one, else 80
(``COLUMNS`` overrides both). Tables left-align text and right-align numbers; a table wider
than the width wraps its widest text column onto continuation lines. Long prose lines wrap
with a hanging indent; repro commands wrap at spaces with a trailing `` \\`` so they still
paste into a shell. Count columns are labelled with what they count — cases, or outputs of
cases — and never mix the two.
"""

from __future__ import annotations

import os
import sys
import textwrap
from collections import Counter, defaultdict
from typing import TYPE_CHECKING, Any, Iterable, Sequence

if TYPE_CHECKING:
    from equiv.results import CheckResult  # summary renders a CheckResult; check imports summary

DEFAULT_WIDTH = 80
MIN_WIDTH = 40
# worst first: a case's verdict is the worst verdict of its outputs
SEVERITY = ("cannot judge", "regression", "rejected", "both-defect", "pre-defect", "equivalent")


def width() -> int:
    """Columns to fit: ``COLUMNS`` if set, else the terminal's when stdout (as it is now, not as
    the process started) is one, else 80 — so captured or piped output is always 80 wide."""
    env = os.environ.get("COLUMNS", "")
    if env.isdigit() and int(env) > 0:
        return max(MIN_WIDTH, int(env))
    try:
        if sys.stdout.isatty():
            return max(MIN_WIDTH, os.get_terminal_size(sys.stdout.fileno()).columns)
    except (OSError, ValueError, AttributeError):
        pass
    return DEFAULT_WIDTH


def _is_number(text: str) -> bool:
    t = text.replace(".", "", 1).replace("-", "", 1).replace(",", "")
    return t.isdigit() or text in ("-", "")


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], max_width: int | None = None) -> str:
    """Columns separated by two spaces, numbers right-aligned, text left-aligned, at most
    `max_width` (default `width()`) columns wide: the widest text column wraps when needed."""
    return "\n".join(line for group in table_rows(headers, rows, max_width) for line in group)


def table_rows(headers: Sequence[str], rows: Sequence[Sequence[object]],
               max_width: int | None = None) -> list[list[str]]:
    """`table` as groups of lines: the header (with its rule), then one group per row."""
    max_width = max_width or width()
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    n = len(headers)
    numeric = [all(_is_number(r[i]) for r in cells[1:]) and bool(rows) for i in range(n)]
    widths = [max(len(r[i]) for r in cells) for i in range(n)]
    values = [max((len(r[i]) for r in cells[1:]), default=0) for i in range(n)]
    word = [max(len(w) for w in (cells[0][i].split() or [""])) for i in range(n)]
    total = sum(widths) + 2 * (n - 1)
    wrap_cols: dict[int, int] = {}

    def shrink(floors: list[int]) -> None:
        nonlocal total
        while total > max_width:
            slack = [i for i in range(n) if widths[i] > floors[i]]
            if not slack:
                return
            i = max(slack, key=lambda k: widths[k] - floors[k])
            new = max(floors[i], widths[i] - (total - max_width))
            total -= widths[i] - new
            widths[i] = wrap_cols[i] = new

    # first headers longer than their values wrap (onto a second header line), then text columns
    shrink([max(values[i], word[i]) for i in range(n)])
    shrink([widths[i] if numeric[i] else max(word[i], min(values[i], 8)) for i in range(n)])
    groups: list[list[str]] = []
    for row_no, row in enumerate(cells):
        lines: list[str] = []
        groups.append(lines)
        pieces = [textwrap.wrap(c, widths[i], break_long_words=True, break_on_hyphens=False) or [""]
                  if i in wrap_cols and len(c) > widths[i] else [c] for i, c in enumerate(row)]
        for k in range(max(len(p) for p in pieces)):
            parts = []
            for i, p in enumerate(pieces):
                c = p[k] if k < len(p) else ""
                parts.append(c.rjust(widths[i]) if numeric[i] else c.ljust(widths[i]))
            lines.append("  ".join(parts).rstrip())
        if row_no == 0:
            lines.append("  ".join("-" * w for w in widths))
    return groups


def wrap(text: str, indent: str = "", hanging: str = "  ", max_width: int | None = None) -> list[str]:
    """Prose wrapped to the width, continuation lines indented by `hanging` more."""
    max_width = max_width or width()
    return textwrap.wrap(text, max_width, initial_indent=indent, subsequent_indent=indent + hanging,
                         break_long_words=True, break_on_hyphens=False) or [indent]


def wrap_command(command: str, indent: str = "", max_width: int | None = None) -> list[str]:
    """A shell command wrapped at spaces with `` \\`` continuations (still pastes into a shell).
    Quoted words are never split."""
    max_width = max_width or width()
    words = command.split(" ")
    lines: list[str] = []
    current = indent
    for w in words:
        candidate = (current + " " + w) if current.strip() else current + w
        if len(candidate) + 2 > max_width and current.strip():
            lines.append(current + " \\")
            current = indent + "    " + w
        else:
            current = candidate
    lines.append(current)
    return lines


def _counts_text(counts: Counter | dict) -> str:
    return ", ".join(f"{v} {counts[v]}" for v in SEVERITY if counts.get(v)) or "-"


def case_verdict(verdicts: dict[str, str]) -> str:
    """The worst of a case's output verdicts."""
    return next((v for v in SEVERITY if v in verdicts.values()), "equivalent")


def per_output(result: CheckResult, max_width: int | None = None) -> str:
    """Per output: how many cases gave each verdict on it, max ULP and differing elements."""
    rows = []
    for name, counts in result.counts.items():
        cases = sum(counts.values())
        differing = sum(r.outputs[name].differing for r in result.results)
        rows.append([name, cases, _counts_text(counts), result.max_ulp(name), differing,
                     f"{defective(result, name, 'retiled')}/{defective(result, name, 'pre')}"])
    return table(["output", "cases", "verdicts (cases)", "max ULP", "differing", "unwritten ret/pre"], rows,
                 max_width)


def defective(result: CheckResult, output: str, side: str) -> int:
    """Elements of `output` that `side` left unwritten or computed from uninitialised memory,
    summed over cases (what "differing" cannot show: those elements are not compared)."""
    total = 0
    for r in result.results:
        o = r.outputs[output]
        total += int(o.unwritten.get(side, {}).get("count", 0)) + int(o.poisoned.get(side, {}).get("count", 0))
    return total


def per_variant(result: CheckResult, max_width: int | None = None) -> str | None:
    """Per option variant (e.g. row_sum order model): cases by worst verdict, differing elements, max ULP."""
    groups: dict[str, list] = defaultdict(list)
    for r in result.results:
        groups[r.case.variant_label].append(r)
    if len(groups) < 2 and "default" in groups:
        return None
    rows = []
    for label, rs in sorted(groups.items()):
        outs = [o for r in rs for o in r.outputs.values() if o.verdict != "rejected"]
        worst = Counter(case_verdict(r.verdicts) for r in rs)
        rows.append([label, len(rs), _counts_text(worst), max((o.max_ulp for o in outs), default=0),
                     sum(o.differing for o in outs)])
    return table(["variant", "cases", "verdicts (cases)", "max ULP", "differing elems"], rows, max_width)


def resolved_shapes(result: CheckResult, limit: int = 4) -> str:
    """The shapes the cases actually ran at (every dimension), in order of first use."""
    seen: dict[str, None] = {}
    for r in result.results:
        seen.setdefault(str(r.case.shape), None)
    shapes = list(seen)
    if not shapes:
        return "none"
    text = "; ".join(shapes[:limit])
    return text + (f"; … {len(shapes) - limit} more ({len(shapes)} shapes)" if len(shapes) > limit else "")


def header(result: CheckResult, max_width: int | None = None) -> list[str]:
    first = (f"{result.pair} — contract {result.contract} — {len(result.results)} case"
             f"{'s' if len(result.results) != 1 else ''} in {result.seconds:.1f} s on "
             f"{result.options.get('device', 'cpu')} — seed {result.seed}")
    asked = result.shapes
    shapes = resolved_shapes(result)
    text = f"shapes {asked}: {shapes}" if asked != shapes else f"shapes {shapes}"
    return wrap(first, max_width=max_width) + wrap(text, max_width=max_width)


def own_contract_lines(result: CheckResult, max_width: int | None = None) -> list[str]:
    """A model file's own contract: where the contract came from, and its own test per version."""
    return [x for line in own_contract_text(result) for x in wrap(line, max_width=max_width)]


def own_contract_text(result: object) -> list[str]:
    """The contract a check held an entry to (and where it came from) and the file's own test,
    one line each, from a `CheckResult` (empty for anything else)."""
    own = getattr(result, "own_contract", None) or {}
    lines = [f"contract {own['contract']}"] if own.get("contract") else []
    tests = own.get("file_test") or {}
    if tests:
        lines.append("file's test: " + "; ".join(f"{side} {text}" for side, text in tests.items()))
    lines += [f"unwritten by contract: {x}" for x in own.get("unwritten_by_contract") or []]
    lines += [f"golden suspect {x}" for x in own.get("golden_suspect") or []]
    return lines


def status_line(results: Sequence[CheckResult]) -> str:
    """One line: the result of the whole run (the same rule as the exit code and the gate)."""
    regressed = [r.pair for r in results if r.regressions]
    narrowed = [r.pair for r in results if not r.regressions and r.narrowed]
    unjudged = [r for r in results if getattr(r, "unjudged", None)]
    n = len(results)
    if unjudged and not regressed:
        # Never OK about what did not run: the emulator lacks something a kernel uses.
        gaps = [g.removeprefix("cannot judge: ") for r in unjudged for g in r.gaps()[:2]]
        return (f"result: CANNOT JUDGE — {', '.join(r.pair for r in unjudged)}: "
                + "; ".join(gaps[:3]))
    of = f" ({len(regressed) + len(narrowed)} of {n} pairs)" if n > 1 else ""
    if regressed or narrowed:
        parts = []
        if regressed:
            parts.append(f"regression in {', '.join(regressed)}")
        if narrowed:
            parts.append(f"narrowed contract in {', '.join(narrowed)} (retiled rejects shapes pre accepts)")
        word = "REGRESSION" if regressed else "NARROWED CONTRACT"
        return f"result: {word}{of} — " + "; ".join(parts)
    cases = sum(len(r.results) for r in results)
    pairs = f"{n} pairs, " if n > 1 else ""
    return f"result: OK (no regression) — {pairs}{cases} case{'s' if cases != 1 else ''}"


def poison_run_groups(results: Sequence[Any]) -> list[dict]:
    """Whether each version's patterned-poison run ran, grouped by reason: ``ran``, ``why``,
    ``count`` (version runs), the first ``side`` and ``shape`` (text); from `CaseResult`s or
    their ``--json`` dicts. Runs that ran come first; a side whose runs are another's (one
    program on both sides) is not counted again."""
    groups: dict[tuple[bool, str], dict] = {}
    for r in results:
        runs = r.get("poison_runs", {}) if isinstance(r, dict) else r.poison_runs
        shape = r["case"]["shape"] if isinstance(r, dict) else dict(r.case.shape)
        for side, p in runs.items():
            if p.get("runs_of"):
                continue
            g = groups.setdefault((bool(p["ran"]), p["why"]), {
                "ran": bool(p["ran"]), "why": p["why"], "count": 0, "side": side,
                "shape": ",".join(f"{k}={v}" for k, v in shape.items())})
            g["count"] += 1
    return sorted(groups.values(), key=lambda g: (not g["ran"], -g["count"]))


def poison_run_lines(results: Sequence[Any], limit: int = 4) -> list[str]:
    """`poison_run_groups` as console lines, at most `limit` reasons."""
    groups = poison_run_groups(results)
    lines = [f"{'ran' if g['ran'] else 'left out'} in {g['count']} version run{'s' if g['count'] != 1 else ''} "
             f"(first {g['side']} at {g['shape']}): {g['why']}" for g in groups[:limit]]
    if len(groups) > limit:
        lines.append(f"… {len(groups) - limit} more reasons (see --json / --report)")
    return lines


def render(result: CheckResult, max_findings: int = 12, max_cases: int = 40, max_width: int | None = None,
           with_status: bool = True) -> str:
    w = max_width or width()
    parts = header(result, w) + own_contract_lines(result, w) + ["", per_output(result, w)]
    pv = per_variant(result, w)
    if pv:
        parts += ["", pv]
    poison = poison_run_lines(result.results)
    if poison:
        parts += ["", "Patterned-poison runs:"]
        for line in poison:
            parts += wrap(line, "  ", "    ", w)
    findings = result.findings()
    if findings:
        parts += ["", "Findings:"]
        for f in findings[:max_findings]:
            parts += wrap(f, "  ", "    ", w)
        if len(findings) > max_findings:
            parts.append(f"  … {len(findings) - max_findings} more (see --json / --report)")
    if result.counterexamples:
        parts += ["", "Counterexamples (shrunk):"]
        for cx in result.counterexamples:
            c = cx.case
            for name, o in cx.outputs.items():
                if o.verdict == "equivalent":
                    continue
                parts += wrap(f"{o.verdict} on {name} at {c.shape} (recipe {c.recipe}, seed {c.seed}"
                              + (f", {c.variant_label}" if c.variant else "") + ")", "  ", "    ", w)
                for reason in o.reasons[:4]:
                    parts += wrap(f"- {reason}", "    ", "  ", w)
            parts += wrap_command(f"repro: {cx.repro()}", "    ", w)
    failing = [r for r in result.results if any(v != "equivalent" for v in r.verdicts.values())]
    if failing:
        parts += ["", f"Non-equivalent cases ({len(failing)}):"]
        for r in failing[:max_cases]:
            verdicts = ", ".join(f"{k} {v}" for k, v in r.verdicts.items() if v != "equivalent")
            parts += wrap(f"{verdicts}:", "  ", "    ", w)
            parts += wrap_command(r.repro(), "    ", w)
        if len(failing) > max_cases:
            parts.append(f"  … {len(failing) - max_cases} more (see --json / --report)")
    if with_status:
        parts += ["", status_line([result])]
    return "\n".join(parts)


def render_summary(results: Sequence[CheckResult], max_width: int | None = None) -> str:
    """One row per pair; the verdict column counts cases by their worst output verdict."""
    rows = []
    for r in results:
        worst = Counter(case_verdict(res.verdicts) for res in r.results)
        rows.append([r.pair, r.contract, len(r.results), _counts_text(worst), r.max_ulp(), f"{r.seconds:.1f}"])
    return table(["pair", "contract", "cases", "verdicts (cases, worst output)", "max ULP", "s"], rows, max_width)


def overall(results: Iterable[CheckResult]) -> str:
    return status_line(list(results))


__all__ = ["table", "width", "wrap", "wrap_command", "per_output", "per_variant", "render", "render_summary",
           "status_line", "header", "case_verdict", "resolved_shapes"]
