"""The gate for a repository of model files (pypto-lib): selected files → unchanged or to run →
pair-free checks → verdict against the base revision's own verdict.

Selection (`selection`): the changed model files and every model file that transitively
imports a changed file (bare-name sibling imports, root packages); head is a revision or the
working tree. An entry whose checked program is the same at base and head (`fingerprint`) is
``unchanged``: listed, not run. The others run cheapest first (`plan`, `budget`) within the pull
request's time budget; one not started before it is spent is ``not checked``.

Each entry to run is checked twice at the **gate's shape policy**:

* **base → head**: the pull request's change, pre = base revision, retiled = head;
* **base → base**: the base revision against itself: its *own* verdict — the holes,
  uninitialised reads and hazards it already has.

An entry fails when base → head is a regression, or when head leaves **more** elements of an
output unwritten (or uninitialised), or has a hazard kind base's own run does not. An emulator
gap the base does not already have is ``cannot judge`` (exit 2); one it has too is reported
and skipped. A changed interface is judged: head's own run (its own declared inputs) against
base's own run (`judge_interface`). A new file is checked against itself and fails on any
defect. Every defect of either side is listed, those both share included.

Shape policy (`POLICY`): every mode the file's ``__main__`` defines, at the file's own defaults
(its config as written: the model instance it imports, its token counts), the ``realistic``
inputs (the file's own ``init_value``s) and the adversarial recipes where the file has floating
data inputs, seed 0, no fuzzing. The plan (`equiv.pairfree.plan`) adds the config's other model
instances and, where a mode's token count fits in one tile, a count spanning several
(`equiv.pairfree.tokens`). ``--shapes fuzz --examples N`` and ``--model`` widen it.
"""

from __future__ import annotations

import os
import re
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from equiv import git
from equiv.results import CheckResult, EntryOutcome
from equiv.options import Options
from equiv.errors import GateError, PairFreeError, SelectionError
from equiv.pairfree import run as pf
from equiv.request import CheckRequest
from equiv.summary import own_contract_text


@dataclass(frozen=True)
class Policy:
    """How much a pair-free gate checks per entry."""

    shapes: str = "nominal"           # every mode at the file's own defaults
    # None: every recipe that makes sense for the file's inputs — realistic (its own init_values)
    # and, where it has floating data inputs, the adversarial ones (±max, -inf, ties, subnormals…).
    recipes: tuple[str, ...] | None = None
    examples: int | None = None       # fuzz cases when shapes == "fuzz"
    seed: int = 0
    model: str | None = None
    config: Mapping[str, Any] = field(default_factory=dict)
    # Seconds for the whole pull request (pypto-lib's PR CI job allows 30 minutes): entries start
    # cheapest first while it lasts; each run gets what is left (no new case starts once spent).
    time_budget: float = 1800.0

    def describe(self) -> str:
        shapes = {"nominal": "every mode at the file's own defaults"}.get(self.shapes, self.shapes)
        extra = f", model {self.model}" if self.model else ""
        extra += "".join(f", {k}={v}" for k, v in self.config.items())
        inputs = ", ".join(self.recipes) if self.recipes else "realistic + adversarial where the inputs take them"
        return (f"shapes: {shapes}{extra}; inputs: {inputs} (seed {self.seed}); "
                f"≤ {self.time_budget:g} s for the pull request, cheapest entry first")


POLICY = Policy()


# ----------------------------------------------------------------------------------------
# Which files
# ----------------------------------------------------------------------------------------


def repo_root(path: str = ".") -> str:
    """The work tree (or bare repository) `path` belongs to."""
    try:
        return git.output(path, "rev-parse", "--show-toplevel", error=GateError).strip()
    except GateError:
        if git.output(path, "rev-parse", "--is-bare-repository", error=GateError).strip() == "true":
            return os.path.abspath(path)
        raise GateError(f"{os.path.abspath(path)} is not inside a git repository; give --repo PATH") from None


def resolve(repo: str, rev: str) -> str:
    try:
        return git.output(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}",
                          error=GateError).strip()
    except GateError:
        raise GateError(f"unknown revision {rev!r} in {repo} (in CI, check out with fetch-depth: 0 so the base "
                        f"branch is present)") from None


@dataclass(frozen=True)
class Change:
    """One selected model file: its path at base (None: added) and at head, and why it is
    selected (``changed``, or ``imports X`` for a file that imports a changed one)."""

    base_path: str | None
    head_path: str
    status: str  # M, A, R
    why: str = "changed"

    @property
    def label(self) -> str:
        if self.base_path and self.base_path != self.head_path:
            return f"{self.base_path} -> {self.head_path}"
        return self.head_path


def is_model_file(text: str) -> bool:
    """A file the gate can check pair-free: its ``__main__`` block hands an entry to ``run_jit``."""
    return "__main__" in text and "run_jit" in text


def changed_model_files(repo: str, base: str, head: str | None) -> list[Change]:
    """Model files a change from `base` to `head` (None: the working tree) reaches: the changed
    ones and every one that transitively imports a changed file (`equiv.pairfree.selection`)."""
    from equiv.pairfree import selection

    try:
        sel = selection.select_change(repo, base, head)
    except SelectionError as exc:
        raise GateError(str(exc)) from None
    out = []
    for path, why in sel.files.items():
        bp = sel.base_path(path)
        status = "A" if bp is None else "R" if bp != path else "M"
        out.append(Change(bp, path, status, why))
    return out


# ----------------------------------------------------------------------------------------
# Judging one file
# ----------------------------------------------------------------------------------------
@dataclass
class GateEntry:
    """The gate's word on one entry of one selected file."""

    file: str
    entry: str
    outcome: str                       # pass | fail | cannot judge | skipped | unchanged | not checked
    reasons: list[str] = field(default_factory=list)
    head: CheckResult | None = None    # base -> head (or head's own run, for a changed interface)
    base: CheckResult | None = None    # base -> base
    seconds: float = 0.0
    defects: list[str] = field(default_factory=list)  # every defect of either side, shared ones too
    estimate: float = 0.0

    def to_dict(self) -> dict:
        return {"file": self.file, "entry": self.entry, "outcome": self.outcome, "reasons": self.reasons,
                "defects": self.defects, "seconds": round(self.seconds, 3), "estimate": round(self.estimate, 1)}


def defects(result: CheckResult | None, side: str) -> dict[str, dict[str, Any]]:
    """output -> the most unwritten / uninitialised elements any case of `side` leaves, and its
    hazard kinds, over every case of `result`."""
    out: dict[str, dict[str, Any]] = {}
    if result is None:
        return out
    for r in result.results:
        for name, o in r.outputs.items():
            d = out.setdefault(name, {"unwritten": 0, "uninitialised": 0, "hazards": set()})
            d["unwritten"] = max(d["unwritten"], int(o.unwritten.get(side, {}).get("count", 0)))
            d["uninitialised"] = max(d["uninitialised"], int(o.poisoned.get(side, {}).get("count", 0)))
        for h in r.hazards.get(side, []):
            out.setdefault(h.get("tensor", "?"), {"unwritten": 0, "uninitialised": 0, "hazards": set()})[
                "hazards"].add(h.get("kind", "?"))
    return out


def defect_lines(result: CheckResult | None, side: str, who: str) -> list[str]:
    """Every defect `side` of `result` has, one line each, named by `who` (``head``, ``base's own
    run``): unwritten and uninitialised elements per output, each hazard with its site."""
    if result is None:
        return []
    lines: dict[str, None] = {}
    for r in result.results:
        for name, o in r.outputs.items():
            for what, region in (("unwritten", o.unwritten.get(side)), ("uninitialised", o.poisoned.get(side))):
                if region and int(region.get("count", 0)):
                    where = region.get("text") or region.get("region") or ""
                    lines.setdefault(f"{who}: {name}: {int(region['count'])} elements {what}"
                                     + (f" ({where})" if isinstance(where, str) and where else "")
                                     + f" at {r.case.shape}", None)
        for h in r.hazards.get(side, []):
            lines.setdefault(f"{who}: {h.get('kind', '?')} on {h.get('tensor', '?')} at {h.get('site', '?')}: "
                             f"{h.get('detail', '')} ({r.case.shape})", None)
    return list(lines)


def compare_defects(base: Mapping[str, dict], head: Mapping[str, dict]) -> list[str]:
    """What head has that base's own run does not, one line each (empty: nothing new)."""
    lines = []
    for name, h in head.items():
        b = base.get(name, {"unwritten": 0, "uninitialised": 0, "hazards": set()})
        for what in ("unwritten", "uninitialised"):
            if h[what] > b[what]:
                lines.append(f"{name}: head leaves {h[what]} elements {what} where base's own run leaves "
                             f"{b[what]}" + (" (a hole base had closed is re-opened)" if b[what] == 0 else ""))
        for kind in sorted(h["hazards"] - b["hazards"]):
            lines.append(f"{name}: head has a {kind} hazard base's own run does not")
    return lines


def _request(policy: Policy, options: Options | None, progress: Callable | None,
             time_budget: float | None = None) -> CheckRequest:
    """The request every check of a gated file makes (the policy's cases and budgets)."""
    return CheckRequest(shapes=policy.shapes, examples=policy.examples, seed=policy.seed,
                        recipes=tuple(policy.recipes) if policy.recipes else None,
                        time_budget=time_budget if time_budget is not None else policy.time_budget,
                        options=options, progress=progress)


def _target(policy: Policy, repo: str, path: str, pre_rev: str | None, retiled_rev: str | None,
            **more: Any) -> pf.FileTarget:
    return pf.FileTarget(path, pre_rev, retiled_rev, repo, model=policy.model, config=dict(policy.config), **more)


def _max_error(result: CheckResult | None, output: str) -> float | None:
    vals = [float(o.error_vs_ref["retiled"]["max"]) for r in (result.results if result else [])
            for name, o in r.outputs.items() if name == output and "retiled" in o.error_vs_ref]
    return max(vals) if vals else None


# Outcomes of a pair-free check where no case ran: never a pass. The file's own asserts
# refusing the shape at this instance is its contract (skipped); an entry no mode reaches is
# changed code the gate did not check.
NOTHING_RAN = {"rejected": "skipped", "not called": "not checked"}


def judge_interface(repo: str, base: str, head: str | None, change: Change, name: str, changes: list[str],
                    base_own: EntryOutcome | None, policy: Policy, request: CheckRequest) -> GateEntry:
    """A changed interface, judged: head's own run (on its own declared inputs) against base's
    own run. Head fails on a defect base's own run lacks, or on an error against its own golden
    worse than base's beyond the tolerance; what cannot be compared is listed."""
    ge = GateEntry(change.label, name, "pass", reasons=["interface changed: " + "; ".join(changes)])
    fo = pf.check_file(_target(policy, repo, change.head_path, head, head, entry=name.split("#")[0]), request)
    own = next((e for e in fo.entries if e.entry == name), fo.entries[0] if fo.entries else None)
    ge.head = own.result if own else None
    ge.base = base_own.result if base_own else None
    if own is None or own.outcome == "cannot judge" or own.result is None:
        ge.outcome = "cannot judge" if own is None or own.outcome == "cannot judge" else \
            NOTHING_RAN.get(own.outcome, "skipped")
        ge.reasons += [f"head's own run: {own.outcome if own else 'nothing ran'}", *(own.lines if own else [])]
        return ge
    if base_own is None or base_own.result is None:
        ge.reasons.append("base's own run did not complete: head's own run is judged alone")
    new = compare_defects(defects(ge.base, "retiled"), defects(ge.head, "retiled"))
    ge.reasons += new
    outputs = sorted({name for r in ge.head.results for name in r.outputs})
    changed_outputs = {o for o in outputs if any(re.search(rf"(^|: ){re.escape(o)}[: ]", c) for c in changes)}
    tol_note = []
    for out_name in outputs:
        if out_name in changed_outputs:
            tol_note.append(f"{out_name}: not compared with base (its shape or dtype changed)")
            continue
        hb, hh = _max_error(ge.base, out_name), _max_error(ge.head, out_name)
        if hb is None or hh is None:
            tol_note.append(f"{out_name}: no error against the golden on one side (not compared)")
            continue
        slack = max(1.0, hb)  # ULP: the worse of one step and base's own error again
        if hh > hb + slack:
            new.append(f"{out_name}: head's max error against its own golden {hh:.3g} ULP is worse than base's "
                       f"{hb:.3g} ULP beyond {slack:.3g} ULP")
            ge.reasons.append(new[-1])
        else:
            tol_note.append(f"{out_name}: error against each side's own golden: base {hb:.3g} ULP, head "
                            f"{hh:.3g} ULP (each side on its own inputs; not compared element by element)")
    # Inputs both sides can take (an input's dtype changed exactly, BF16 -> FP32): base -> head
    # on base's inputs, converted for head, outputs compared under the contract.
    try:
        bridged = pf.check_file(_target(policy, repo, change.base_path, base, head, retiled_path=change.head_path,
                                        entry=name.split("#")[0], convert_inputs=True), request)
        cross = next((e for e in bridged.entries if e.entry == name), None)
    except (PairFreeError, GateError):
        cross = None
    if cross is not None and cross.result is not None:
        tol_note = [n for n in tol_note if "not compared element by element" not in n]
        if cross.outcome == "regression":
            first = cross.result.regressions[0] if cross.result.regressions else None
            new.append("on inputs both sides take (converted exactly for head), base -> head is a regression")
            ge.reasons.append(new[-1])
            if first is not None:
                ge.reasons += [f"{first.case.shape} ({first.case.recipe}): {r}" for o in first.outputs.values()
                               if o.verdict == "regression" for r in o.reasons[:2]]
        else:
            tol_note.append(f"on inputs both sides take (converted exactly for head): {cross.outcome}")
    else:
        tol_note.append("outputs not compared across the sides: no input conversion bridges this change exactly")
    ge.reasons += tol_note
    ge.outcome = "fail" if new or (own.result.failed if own.result else False) else "pass"
    return ge


def gate_file(repo: str, base: str, head: str | None, change: Change, policy: Policy = POLICY,
              options: Options | None = None, progress: Callable | None = None,
              log: Callable[[str], None] = lambda s: None, entry: str | None = None,
              time_budget: float | None = None) -> list[GateEntry]:
    """Judge one selected model file, or one `entry` of it (see the module docstring for the rule)."""
    t0 = time.perf_counter()
    request = _request(policy, options, progress, time_budget)
    label = change.label
    if change.base_path is None:
        # A new file: nothing to compare with; its own run must be free of defects.
        fo = pf.check_file(_target(policy, repo, change.head_path, head, head, entry=entry), request)
        out = []
        for e in fo.entries:
            ge = GateEntry(label, e.entry, "pass", head=e.result)
            if e.outcome in NOTHING_RAN:
                ge.outcome, ge.reasons = NOTHING_RAN[e.outcome], [e.outcome, *e.lines]
            elif e.outcome == "cannot judge":
                ge.outcome, ge.reasons = "cannot judge", list(e.lines)
            elif e.result is not None:
                ge.reasons = compare_defects({}, defects(e.result, "retiled"))
                ge.outcome = "fail" if ge.reasons else "pass"
                ge.reasons = ["new file, checked against itself"] + ge.reasons
                ge.defects = defect_lines(e.result, "retiled", "head")
            else:
                ge.outcome, ge.reasons = "skipped", [e.outcome, *e.lines]
            ge.seconds = time.perf_counter() - t0
            out.append(ge)
        return out
    fo_head = pf.check_file(_target(policy, repo, change.base_path, base, head, retiled_path=change.head_path,
                                    entry=entry), request)
    log(f"{label}: base -> head: " + "; ".join(f"{e.entry} {e.outcome}" for e in fo_head.entries))
    base_entries: list[EntryOutcome] = []
    try:
        base_entries = pf.check_file(_target(policy, repo, change.base_path, base, base, entry=entry),
                                     request).entries
        log(f"{label}: base -> base: " + "; ".join(f"{e.entry} {e.outcome}" for e in base_entries))
    except PairFreeError as exc:
        if entry is None:
            raise
        log(f"{label}: base -> base: {entry} has no run at base ({exc}); head's own run is judged alone")
    base_by = {e.entry: e for e in base_entries}
    out = []
    for e in fo_head.entries:
        b = base_by.get(e.entry)
        ge = GateEntry(label, e.entry, "pass", head=e.result, base=b.result if b else None)
        if e.outcome in NOTHING_RAN:
            ge.outcome, ge.reasons = NOTHING_RAN[e.outcome], [e.outcome, *e.lines]
        elif e.outcome == "interface changed":
            ge = judge_interface(repo, base, head, change, e.entry, list(e.lines), b, policy, request)
            log(f"{label}: {e.entry}: interface changed; head's own run judged against base's own: {ge.outcome}")
        elif e.outcome == "cannot judge":
            if b is not None and b.outcome == "cannot judge":
                ge.outcome, ge.reasons = "skipped", ["cannot judge at base either", *e.lines]
            else:
                ge.outcome, ge.reasons = "cannot judge", list(e.lines)
        elif e.outcome == "regression" and e.result is None:
            ge.outcome, ge.reasons = "fail", list(e.lines)  # head's own assert refuses what base accepts
        elif e.outcome == "regression":
            ge.outcome = "fail"
            first = e.result.regressions[0] if e.result.regressions else None
            ge.reasons = [f"base -> head regression on {', '.join(o for o, c in e.result.counts.items() if c.get('regression')) or 'the shapes it accepts'}"]
            if first is not None:
                ge.reasons += [f"{first.case.shape}: {reason}" for o in first.outputs.values()
                               if o.verdict == "regression" for reason in o.reasons[:3]]
        if e.outcome not in ("interface changed", *NOTHING_RAN):
            if ge.outcome == "pass" and e.result is not None:
                base_own = defects(b.result, "retiled") if b is not None and b.result is not None else \
                    defects(e.result, "pre")
                new = compare_defects(base_own, defects(e.result, "retiled"))
                if new:
                    ge.outcome, ge.reasons = "fail", new
                else:
                    ge.reasons = [f"{e.outcome}; nothing base's own run lacks"]
            elif ge.outcome == "fail" and e.result is not None and b is not None and b.result is not None:
                ge.reasons += compare_defects(defects(b.result, "retiled"), defects(e.result, "retiled"))
        # Every defect of either side, those both share included: a pass is not a clean bill.
        ge.defects = defect_lines(ge.base, "retiled", "base") + defect_lines(ge.head, "retiled", "head")
        ge.seconds = time.perf_counter() - t0
        out.append(ge)
    return out


# ----------------------------------------------------------------------------------------
# The whole gate
# ----------------------------------------------------------------------------------------
@dataclass
class GateRun:
    repo: str
    base: str
    head: str | None                   # None: the working tree
    changes: list[Change]
    entries: list[GateEntry] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)  # file -> why it could not be checked
    budget: float | None = None

    @property
    def not_checked(self) -> list[GateEntry]:
        return [e for e in self.entries if e.outcome == "not checked"]

    @property
    def exit_code(self) -> int:
        if any(e.outcome == "fail" for e in self.entries):
            return 1
        if self.errors or any(e.outcome in ("cannot judge", "not checked") for e in self.entries):
            return 2
        return 0

    @property
    def word(self) -> str:
        code = self.exit_code
        if code == 2 and not self.errors and not any(e.outcome == "cannot judge" for e in self.entries):
            return "INCOMPLETE"
        return {0: "PASS", 1: "FAIL", 2: "CANNOT JUDGE"}[code]

    def results(self) -> list[CheckResult]:
        out = []
        for e in self.entries:
            out += [r for r in (e.head, e.base) if r is not None]
        return out

    def to_dict(self) -> dict:
        return {"repo": self.repo, "base": self.base, "head": self.head or "working tree",
                "files": [{"file": c.label, "why": c.why} for c in self.changes],
                "entries": [e.to_dict() for e in self.entries], "errors": self.errors,
                "budget": self.budget}


def overrides(policy: Policy) -> dict[str, Any]:
    """The config values a policy sets for a file's run (its model instance, token counts)."""
    from equiv.pairfree.pair import MODEL_KEY

    out = dict(policy.config)
    if policy.model:
        out[MODEL_KEY] = policy.model
    return out


def dry_run(repo: str, base: str, head: str | None, changes: Sequence[Change], policy: Policy = POLICY,
            planned: Sequence[Any] | None = None) -> list[str]:
    """What the gate would run: files (and why each is selected), entries unchanged or to run,
    their modes, shapes and estimated cost. Runs no kernel, no golden, builds no input: a
    ``__main__`` block runs only on the meta device, where it changed or to size an entry (or,
    where the meta device cannot record it, on the CPU stand-in, which makes the block's own
    values in a memory-capped, time-boxed child)."""
    from equiv.pairfree import plan as planning

    if planned is None:
        planned = planning.plan_changes(repo, base, head, changes, overrides(policy), not policy.model).entries
    lines = [f"policy: {policy.describe()}; each entry to run runs base -> head and base -> base"]
    by_file: dict[str, list] = {}
    for pe in planned:
        by_file.setdefault(pe.file, []).append(pe)
    for c in changes:
        kind = "added: checked against itself" if c.base_path is None else (
            "renamed" if c.status == "R" else "modified" if c.why == "changed" else c.why)
        lines.append(f"{c.label} ({kind})")
        for pe in by_file.get(c.head_path, []):
            if pe.unchanged:
                lines.append(f"  {pe.label}: unchanged — {pe.why}")
                continue
            lines.append(f"  {pe.label}: to run, estimated {pe.estimate:.0f} s — {pe.why}")
            lines += [f"    {pe.entry} {s}" for s in pe.shapes]
    n_un = sum(pe.unchanged for pe in planned)
    todo = planning.order(planned)
    lines.append(f"{len(changes)} file{'s' if len(changes) != 1 else ''}, {len(planned)} entries: {n_un} unchanged, "
                 f"{len(todo)} to run (estimated {sum(p.estimate for p in todo):.0f} s, budget "
                 f"{policy.time_budget:g} s)")
    return lines


def junit_xml(run: GateRun, suite: str = "equiv gate") -> ET.ElementTree:
    """One testcase per file × entry: failure on fail, error on cannot judge, skipped for what
    was not judged (unchanged, not checked within the budget, otherwise unjudged)."""
    root = ET.Element("testsuites", name=suite)
    ts = ET.SubElement(root, "testsuite", name=suite)
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for e in run.entries:
        counts["tests"] += 1
        tc = ET.SubElement(ts, "testcase", classname=f"equiv.{e.file}", name=e.entry, time=f"{e.seconds:.3f}")
        text = "\n".join(e.reasons + e.defects)
        if e.outcome == "fail":
            counts["failures"] += 1
            ET.SubElement(tc, "failure", message=(e.reasons or ["regression"])[0]).text = text
        elif e.outcome == "cannot judge":
            counts["errors"] += 1
            ET.SubElement(tc, "error", message="cannot judge: " + (e.reasons or ["emulator gap"])[0]).text = text
        elif e.outcome in ("skipped", "unchanged", "not checked"):
            counts["skipped"] += 1
            prefix = "" if e.outcome == "skipped" else f"{e.outcome}: "
            ET.SubElement(tc, "skipped", message=prefix + (e.reasons or ["skipped"])[0]).text = text
        # The contract in force, where it came from, the file's own test, and every defect.
        out_lines = own_contract_text(e.head) + list(e.defects)
        if out_lines:
            ET.SubElement(tc, "system-out").text = "\n".join(out_lines)
    for file, why in run.errors.items():
        counts["tests"] += 1
        counts["errors"] += 1
        tc = ET.SubElement(ts, "testcase", classname=f"equiv.{file}", name="(file)")
        ET.SubElement(tc, "error", message=why)
    for k, v in counts.items():
        ts.set(k, str(v))
    return ET.ElementTree(root)
