"""The pull-request gate: changed files → the pairs they touch → a bounded check → JUnit + report.

``select(changed, pairs)`` maps repo-relative paths to pairs: a path a pair's ``sources``
cover selects that pair; a change to the harness (``equiv/``, ``pyproject.toml``, the
``kernels``/``reference`` package roots) selects every pair; documentation selects nothing.

``run_gate`` checks the selected pairs with a CI profile: every preset under every input
recipe and option variant, then a few fuzz cases (small shapes, any recipe),
within a per-pair time budget (``check(..., time_budget=...)``). It saves every
non-equivalent case for ``equiv replay``, writes JUnit XML (one testcase per pair × output)
and the HTML report. The gate fails on a ``regression`` or a narrowed contract.
"""

from __future__ import annotations

import math
import os
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Sequence

from equiv import atomic, git
from equiv.results import CheckResult
from equiv.check import check, fuzz_cases, in_shard, plan
from equiv.options import Options
from equiv.request import CheckRequest
from equiv.pair import KernelPair, project_root
from equiv.errors import GateError

# A change under one of these selects every pair (the harness decides every verdict).
HARNESS_PREFIXES: tuple[str, ...] = ("equiv/",)
HARNESS_FILES: tuple[str, ...] = ("pyproject.toml", "kernels/__init__.py", "reference/__init__.py")
DOC_PREFIXES: tuple[str, ...] = ("docs/", "reports/")
DOC_SUFFIXES: tuple[str, ...] = (".md", ".rst", ".txt", ".png", ".svg", ".html")
DOC_FILES: tuple[str, ...] = ("LICENSE", "NOTICE", "CODEOWNERS", ".gitignore")


# ----------------------------------------------------------------------------------------
# Changed files → pairs
# ----------------------------------------------------------------------------------------
def _norm(path: str) -> str:
    path = path.strip().replace(os.sep, "/")
    while path.startswith("./"):
        path = path[2:]
    return path


def covers(source: str, path: str) -> bool:
    """True when the pair source `source` (a file or folder, repo-relative) covers `path`."""
    source = _norm(source).rstrip("/")
    path = _norm(path)
    return path == source or path.startswith(source + "/")


def is_harness(path: str) -> bool:
    path = _norm(path)
    return path in HARNESS_FILES or any(path.startswith(p) for p in HARNESS_PREFIXES)


def is_doc(path: str) -> bool:
    path = _norm(path)
    name = path.rsplit("/", 1)[-1]
    return (any(path.startswith(p) for p in DOC_PREFIXES) or path.lower().endswith(DOC_SUFFIXES)
            or name in DOC_FILES)


@dataclass
class Selection:
    """Which pairs a set of changed files selects, and why."""

    changed: list[str]
    pairs: list[str] = field(default_factory=list)
    because: dict[str, list[str]] = field(default_factory=dict)  # pair -> the files that selected it
    harness: list[str] = field(default_factory=list)
    docs: list[str] = field(default_factory=list)
    other: list[str] = field(default_factory=list)               # neither a pair source, harness nor docs

    @property
    def docs_only(self) -> bool:
        return bool(self.changed) and len(self.docs) == len(self.changed)

    def explain(self) -> str:
        if not self.changed:
            return "no files changed: no pair to check"
        lines = [f"{len(self.changed)} changed file{'s' if len(self.changed) != 1 else ''}"]
        if self.harness:
            lines.append(f"harness changed ({', '.join(self.harness[:5])}"
                         f"{' …' if len(self.harness) > 5 else ''}): every pair is checked")
        for name in self.pairs:
            files = self.because.get(name, [])
            if files:
                lines.append(f"  {name}: {', '.join(files[:5])}{' …' if len(files) > 5 else ''}")
            else:
                lines.append(f"  {name}")
        if self.docs_only:
            lines.append("documentation only: no pair to check")
        elif not self.pairs:
            lines.append("no pair's sources changed: no pair to check")
        if self.other:
            lines.append(f"not covered by any pair ({len(self.other)}): {', '.join(self.other[:8])}"
                         f"{' …' if len(self.other) > 8 else ''}")
        return "\n".join(lines)


def select(changed: Iterable[str], pairs: Sequence[KernelPair]) -> Selection:
    """Map changed repo-relative paths to the pairs whose sources cover them."""
    files = sorted({_norm(p) for p in changed if _norm(p)})
    sel = Selection(files)
    chosen: dict[str, list[str]] = {}
    for path in files:
        hit = False
        for pair in pairs:
            if any(covers(src, path) for src in pair.sources):
                chosen.setdefault(pair.name, []).append(path)
                hit = True
        if is_harness(path):
            sel.harness.append(path)
        elif is_doc(path) and not hit:
            sel.docs.append(path)
        elif not hit:
            sel.other.append(path)
    if sel.harness:
        names = [p.name for p in pairs]
    else:
        names = [p.name for p in pairs if p.name in chosen]
    sel.pairs = names
    sel.because = {n: chosen.get(n, []) for n in names}
    return sel


def changed_files(base: str, cwd: str | None = None) -> list[str]:
    """Files changed since `base`: ``git diff --name-only base...HEAD`` plus uncommitted and untracked ones."""
    cwd = cwd or project_root()
    try:
        git.output(cwd, "rev-parse", "--verify", "--quiet", f"{base}^{{commit}}", error=GateError)
    except GateError:
        raise GateError(f"unknown base ref {base!r} (in CI, check out with fetch-depth: 0 so the base branch "
                        f"is present, e.g. --base origin/main)") from None
    files = set()
    for args in (["diff", "--name-only", "--no-renames", f"{base}...HEAD"],
                 ["diff", "--name-only", "--no-renames", "HEAD"],
                 ["ls-files", "--others", "--exclude-standard"]):
        files.update(line for line in git.output(cwd, *args, error=GateError).splitlines() if line.strip())
    return sorted(files)


# ----------------------------------------------------------------------------------------
# The CI profile
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Profile:
    """How much checking a gate does per pair.

    Attributes:
        preset_recipes: input recipes the presets run under (None: every recipe of the pair).
        fuzz_examples: fuzz cases drawn beyond the presets (any recipe).
        max_fuzz_elements: fuzz shapes whose outputs hold more elements than this are skipped
            (the emulator's time grows with the output size).
        time_budget: seconds per pair; no new case starts once it is spent.
        shrink_budget: runs spent shrinking each counterexample.
        seed: fuzzer and input seed.
    """

    preset_recipes: tuple[str, ...] | None = None  # None: every recipe the pair has
    fuzz_examples: int = 3
    max_fuzz_elements: int = 1 << 16
    time_budget: float = 300.0
    shrink_budget: int = 8
    seed: int = 0
    shard: tuple[int, int] | None = None  # (k, n): run only the cases of shard k of n


CI = Profile()


def _elements(pair: KernelPair, shape) -> int:
    return sum(math.prod(int(d) for d in s) for s, _ in pair.outputs(shape).values())


def _merge(pair: KernelPair, parts: Sequence[CheckResult], label: str, seed: int, options: Options,
           seconds: float) -> CheckResult:
    results = [r for p in parts for r in p.results]
    cx = [c for p in parts for c in p.counterexamples]
    return CheckResult(pair.name, str(pair.contract), label, seed, results, cx, seconds, options.to_dict())


def check_ci(pair: KernelPair, profile: Profile = CI, options: Options | None = None,
             progress: Callable | None = None) -> tuple[CheckResult, list[str]]:
    """Check `pair` under `profile`: presets (every recipe and variant), then a few small fuzz cases.

    Returns the merged result and notes (e.g. cases skipped for the time budget).
    """
    options = options or Options()
    t0 = time.perf_counter()
    notes: list[str] = []
    recipes = list(profile.preset_recipes or pair.recipes)
    presets = pair.shapes.all_presets()
    spec = ";".join(str(s) for s in presets)
    request = CheckRequest(seed=profile.seed, options=options, progress=progress, shrink_budget=profile.shrink_budget,
                           time_budget=profile.time_budget, shard=profile.shard)
    first = check(pair, request.replace(shapes=spec, recipes=recipes))
    parts = [first]
    planned = sum(in_shard(pair.name, c, profile.shard) for c in plan(pair, spec, None, profile.seed, recipes))
    if len(first.results) < planned:
        notes.append(f"time budget {profile.time_budget:g} s spent after {len(first.results)} preset cases; "
                     f"the rest were not run")
    drawn = []
    if profile.fuzz_examples > 0:
        for shape, recipe, sd in fuzz_cases(pair, profile.fuzz_examples * 8, profile.seed, list(pair.recipes)):
            if _elements(pair, shape) <= profile.max_fuzz_elements and shape not in presets:
                drawn.append((shape, recipe, sd))
            if len(drawn) >= profile.fuzz_examples:
                break
    for i, (shape, recipe, sd) in enumerate(drawn):
        left = profile.time_budget - (time.perf_counter() - t0)
        if left <= 0:
            notes.append(f"time budget {profile.time_budget:g} s spent: {len(drawn) - i} fuzz case(s) not run")
            break
        parts.append(check(pair, request.replace(shapes=str(shape), seed=sd, recipes=[recipe], time_budget=left)))
    label = f"ci: presets × {len(recipes)} recipe{'s' if len(recipes) != 1 else ''} + {len(parts) - 1} fuzz"
    return _merge(pair, parts, label, profile.seed, options, time.perf_counter() - t0), notes


# ----------------------------------------------------------------------------------------
# JUnit XML
# ----------------------------------------------------------------------------------------
def _narrowed(o) -> bool:
    return any("narrowed contract" in reason for reason in o.reasons)


def junit_xml(results: Sequence[CheckResult], saved: Mapping[str, Mapping[tuple, str]] | None = None,
              errors: Mapping[str, str] | None = None, suite: str = "equiv gate") -> ET.ElementTree:
    """One testcase per pair × output; a failure lists every failing case with reasons and repro."""
    saved = saved or {}
    errors = errors or {}
    root = ET.Element("testsuites", name=suite)
    ts = ET.SubElement(root, "testsuite", name=suite)
    n = fails = errs = 0
    total = 0.0
    for r in results:
        outputs = list(r.counts)
        per_output_time = (r.seconds / len(outputs)) if outputs else r.seconds
        for out in outputs:
            n += 1
            total += per_output_time
            tc = ET.SubElement(ts, "testcase", classname=f"equiv.{r.pair}", name=out,
                               time=f"{per_output_time:.3f}")
            bad = [res for res in r.results if out in res.outputs
                   and (res.outputs[out].verdict == "regression" or _narrowed(res.outputs[out]))]
            counts = r.counts[out]
            summary = ", ".join(f"{v} {c}" for v, c in counts.items() if c)
            if bad:
                fails += 1
                kinds = sorted({"regression" if res.outputs[out].verdict == "regression" else "narrowed contract"
                                for res in bad})
                first = bad[0].outputs[out]
                msg = f"{r.pair} {out}: {' and '.join(kinds)} in {len(bad)} of {sum(counts.values())} cases"
                if first.reasons:
                    msg += f"; first: {first.reasons[0]}"
                lines = [f"{r.pair} ({r.contract}) output {out}: {summary}", ""]
                for res in bad:
                    c = res.case
                    o = res.outputs[out]
                    lines.append(f"{o.verdict} at {c.shape} recipe {c.recipe} seed {c.seed}"
                                 + (f" {c.variant_label}" if c.variant else ""))
                    lines += [f"  - {reason}" for reason in o.reasons]
                    lines.append(f"  repro: {res.repro()}")
                    path = saved.get(r.pair, {}).get(_case_key(c))
                    if path:
                        lines.append(f"  replay: equiv replay {path}")
                f = ET.SubElement(tc, "failure", message=msg[:500], type="regression" if "regression" in kinds
                                  else "narrowed-contract")
                f.text = "\n".join(lines)
            else:
                so = ET.SubElement(tc, "system-out")
                so.text = f"{summary}; max ULP {r.max_ulp(out)}"
    for pair, err in errors.items():
        n += 1
        errs += 1
        tc = ET.SubElement(ts, "testcase", classname=f"equiv.{pair}", name="check")
        e = ET.SubElement(tc, "error", message=err.splitlines()[0][:500] if err else "error", type="error")
        e.text = err
    for el in (root, ts):
        el.set("tests", str(n))
        el.set("failures", str(fails))
        el.set("errors", str(errs))
        el.set("time", f"{total:.3f}")
    ts.set("skipped", "0")
    ET.indent(root)
    return ET.ElementTree(root)


def _case_key(case) -> tuple:
    return (str(case.shape), case.recipe, case.seed, case.variant)


def write_junit(tree: ET.ElementTree, path: str) -> None:
    with atomic.atomic_file(path, "wb") as fh:
        tree.write(fh, encoding="utf-8", xml_declaration=True)


# ----------------------------------------------------------------------------------------
# The whole gate
# ----------------------------------------------------------------------------------------
@dataclass
class GateResult:
    selection: Selection
    results: list[CheckResult] = field(default_factory=list)
    notes: dict[str, list[str]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    saved: dict[str, dict[tuple, str]] = field(default_factory=dict)

    @property
    def failing(self) -> dict[str, str]:
        """pair -> why it fails the gate."""
        out = {}
        for r in self.results:
            why = []
            if r.regressions:
                outs = sorted({o for res in r.regressions for o, v in res.verdicts.items() if v == "regression"})
                why.append(f"regression on {', '.join(outs)} in {len(r.regressions)} case"
                           f"{'s' if len(r.regressions) != 1 else ''}")
            if r.narrowed:
                why.append(f"narrowed contract in {len(r.narrowed)} case{'s' if len(r.narrowed) != 1 else ''}")
            if why:
                out[r.pair] = "; ".join(why)
        for pair, err in self.errors.items():
            out[pair] = f"the check failed to run: {err.splitlines()[0] if err else 'error'}"
        return out

    @property
    def exit_code(self) -> int:
        return 1 if self.failing else 0


MAX_SAVED_INPUT_BYTES = 16 << 20


def run_gate(selection: Selection, pairs: Mapping[str, KernelPair], profile: Profile = CI,
             options: Options | None = None, cases_dir: str | None = None, progress=None,
             log: Callable[[str], None] = lambda s: None,
             max_input_bytes: int | None = MAX_SAVED_INPUT_BYTES) -> GateResult:
    """Check every selected pair with `profile`; save non-equivalent cases under `cases_dir`.

    Cases whose inputs exceed `max_input_bytes` are saved without them (replay regenerates
    and verifies them), so the uploaded artifact stays small.
    """
    from equiv import cases as saved_cases

    options = options or Options()
    out = GateResult(selection)
    for name in selection.pairs:
        pair = pairs[name]
        try:
            result, notes = check_ci(pair, profile, options, progress)
        except Exception as exc:  # one pair that cannot run must not hide the others
            if progress is not None and hasattr(progress, "clear"):
                progress.clear()
            out.errors[name] = f"{type(exc).__name__}: {exc}"
            log(f"{name}: ERROR {type(exc).__name__}: {exc}")
            continue
        if progress is not None and hasattr(progress, "clear"):
            progress.clear()
        if profile.shard is not None and not result.results:
            log(f"{name}: no case in shard {profile.shard[0]}/{profile.shard[1]}")
            continue  # an empty check is not a result (`equiv report` refuses it)
        out.results.append(result)
        if notes:
            out.notes[name] = notes
        if cases_dir:
            paths = {}
            for r in saved_cases.failing([*result.counterexamples, *result.results]):
                paths[_case_key(r.case)] = saved_cases.save_case(pair, r, options, cases_dir, max_input_bytes)
            out.saved[name] = paths
        status = "REGRESSION" if result.regressions else ("NARROWED" if result.narrowed else "ok")
        totals: dict[str, int] = {}
        for counts in result.counts.values():
            for v, c in counts.items():
                totals[v] = totals.get(v, 0) + c
        log(f"{name}: {status} — {len(result.results)} cases in {result.seconds:.1f} s (verdicts per case × output: "
            + ", ".join(f"{v} {c}" for v, c in totals.items() if c) + ")")
        for note in notes:
            log(f"  note: {note}")
    return out


__all__ = ["select", "Selection", "changed_files", "covers", "is_harness", "is_doc", "Profile", "CI", "check_ci",
           "junit_xml", "write_junit", "run_gate", "GateResult", "GateError"]
