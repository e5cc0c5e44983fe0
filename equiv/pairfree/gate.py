"""The gate for a repository of model files (pypto-lib): changed files → pair-free checks → verdict
against the base revision's own verdict.

For every model file a change touches (a ``.py`` file whose ``__main__`` block calls
``run_jit``; renames followed), each entry is checked twice at the **gate's shape policy**:

* **base → head**: the pull request's change, pre = base revision, retiled = head;
* **base → base**: the base revision against itself: its *own* verdict — the holes,
  uninitialised reads and hazards it already has.

An entry fails when base → head is a regression, or when head leaves **more** elements of an
output unwritten (or uninitialised), or has a hazard kind base's own run does not — so a
change that re-opens a hole base had closed, or adds unwritten elements, fails even where
pre and retiled are both defective. An emulator gap the base does not already have is
``cannot judge`` (exit 2); one it has too is reported and skipped. A changed interface is
reported and skipped. A new file (no base version) is checked against itself and fails on
any defect.

Shape policy (affordable, `POLICY`): every mode the file's ``__main__`` defines, at the file's
own defaults (its config as written: the model instance it imports, its token counts), the
``realistic`` inputs (the file's own ``init_value``s) with seed 0, no fuzzing; a time budget
per entry. ``--shapes fuzz --examples N`` and ``--model`` widen it.
"""

from __future__ import annotations

import os
import subprocess
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from equiv.check import CheckResult
from equiv.options import Options
from equiv.pairfree import run as pf


class GateError(Exception):
    """The gate cannot run as asked (not a git repository, unknown revision)."""


@dataclass(frozen=True)
class Policy:
    """How much a pair-free gate checks per entry."""

    shapes: str = "nominal"           # every mode at the file's own defaults
    recipes: tuple[str, ...] = ("realistic",)
    examples: int | None = None       # fuzz cases when shapes == "fuzz"
    seed: int = 0
    model: str | None = None
    config: Mapping[str, Any] = field(default_factory=dict)
    time_budget: float = 300.0        # seconds per entry and run; no new case starts once spent

    def describe(self) -> str:
        shapes = {"nominal": "every mode at the file's own defaults"}.get(self.shapes, self.shapes)
        extra = f", model {self.model}" if self.model else ""
        extra += "".join(f", {k}={v}" for k, v in self.config.items())
        return (f"shapes: {shapes}{extra}; inputs: {', '.join(self.recipes)} (seed {self.seed}); "
                f"≤ {self.time_budget:g} s per entry and run")


POLICY = Policy()


# ----------------------------------------------------------------------------------------
# Which files
# ----------------------------------------------------------------------------------------
def _git(repo: str, *args: str) -> str:
    try:
        out = subprocess.run(["git", "-C", repo, *args], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise GateError("git is not installed") from None
    if out.returncode != 0:
        raise GateError(f"git {' '.join(args)} (in {repo}): {out.stderr.strip() or out.stdout.strip()}")
    return out.stdout


def repo_root(path: str = ".") -> str:
    """The work tree (or bare repository) `path` belongs to."""
    try:
        return _git(path, "rev-parse", "--show-toplevel").strip()
    except GateError:
        if _git(path, "rev-parse", "--is-bare-repository").strip() == "true":
            return os.path.abspath(path)
        raise GateError(f"{os.path.abspath(path)} is not inside a git repository; give --repo PATH") from None


def resolve(repo: str, rev: str) -> str:
    try:
        return _git(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}").strip()
    except GateError:
        raise GateError(f"unknown revision {rev!r} in {repo} (in CI, check out with fetch-depth: 0 so the base "
                        f"branch is present)") from None


@dataclass(frozen=True)
class Change:
    """One changed model file: its path at base (None: added) and at head."""

    base_path: str | None
    head_path: str
    status: str  # M, A, R<score>

    @property
    def label(self) -> str:
        if self.base_path and self.base_path != self.head_path:
            return f"{self.base_path} -> {self.head_path}"
        return self.head_path


def is_model_file(text: str) -> bool:
    """A file the gate can check pair-free: its ``__main__`` block hands an entry to ``run_jit``."""
    return "__main__" in text and "run_jit" in text


def changed_model_files(repo: str, base: str, head: str) -> list[Change]:
    """Model files changed from `base` to `head` (merge-base diff, renames followed; deletions dropped)."""
    out = _git(repo, "diff", "-M", "--name-status", f"{base}...{head}")
    changes = []
    for line in out.splitlines():
        parts = line.split("\t")
        status = parts[0]
        if status.startswith("D") or not parts[-1].endswith(".py"):
            continue
        head_path = parts[-1]
        base_path = parts[1] if status[:1] in ("R", "M") else None
        try:
            text = _git(repo, "show", f"{head}:{head_path}")
        except GateError:
            continue
        if is_model_file(text):
            changes.append(Change(base_path, head_path, status[:1]))
    return changes


# ----------------------------------------------------------------------------------------
# Judging one file
# ----------------------------------------------------------------------------------------
@dataclass
class GateEntry:
    """The gate's word on one entry of one changed file."""

    file: str
    entry: str
    outcome: str                       # pass | fail | cannot judge | skipped
    reasons: list[str] = field(default_factory=list)
    head: CheckResult | None = None    # base -> head
    base: CheckResult | None = None    # base -> base
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"file": self.file, "entry": self.entry, "outcome": self.outcome, "reasons": self.reasons,
                "seconds": round(self.seconds, 3)}


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


def _kw(policy: Policy) -> dict[str, Any]:
    return dict(model=policy.model, config=dict(policy.config), shapes=policy.shapes, examples=policy.examples,
                seed=policy.seed, recipes=list(policy.recipes), time_budget=policy.time_budget)


def _self_defects(fo: pf.FileOutcome) -> dict[str, dict[str, dict]]:
    return {e.entry: defects(e.result, "retiled") for e in fo.entries if e.result is not None}


def gate_file(repo: str, base: str, head: str, change: Change, policy: Policy = POLICY,
              options: Options | None = None, progress: Callable | None = None,
              log: Callable[[str], None] = lambda s: None) -> list[GateEntry]:
    """Judge one changed model file (see the module docstring for the rule)."""
    t0 = time.perf_counter()
    kw = _kw(policy)
    label = change.label
    if change.base_path is None:
        # A new file: nothing to compare with; its own run must be free of defects.
        fo = pf.check_file(change.head_path, head, head, repo, options=options, progress=progress, **kw)
        out = []
        for e in fo.entries:
            ge = GateEntry(label, e.entry, "pass", head=e.result)
            if e.outcome == "cannot judge":
                ge.outcome, ge.reasons = "cannot judge", list(e.lines)
            elif e.result is not None:
                ge.reasons = compare_defects({}, defects(e.result, "retiled"))
                ge.outcome = "fail" if ge.reasons else "pass"
                ge.reasons = ["new file, checked against itself"] + ge.reasons
            else:
                ge.outcome, ge.reasons = "skipped", [e.outcome, *e.lines]
            out.append(ge)
        return out
    fo_head = pf.check_file(change.base_path, base, head, repo, retiled_path=change.head_path, options=options,
                            progress=progress, **kw)
    log(f"{label}: base -> head: " + "; ".join(f"{e.entry} {e.outcome}" for e in fo_head.entries))
    fo_base = pf.check_file(change.base_path, base, base, repo, options=options, progress=progress, **kw)
    log(f"{label}: base -> base: " + "; ".join(f"{e.entry} {e.outcome}" for e in fo_base.entries))
    base_by = {e.entry: e for e in fo_base.entries}
    out = []
    for e in fo_head.entries:
        b = base_by.get(e.entry)
        ge = GateEntry(label, e.entry, "pass", head=e.result, base=b.result if b else None)
        if e.outcome == "interface changed":
            ge.outcome, ge.reasons = "skipped", ["interface changed", *e.lines]
        elif e.outcome == "cannot judge":
            if b is not None and b.outcome == "cannot judge":
                ge.outcome, ge.reasons = "skipped", ["cannot judge at base either", *e.lines]
            else:
                ge.outcome, ge.reasons = "cannot judge", list(e.lines)
        elif e.outcome == "regression":
            ge.outcome = "fail"
            first = e.result.regressions[0] if e.result.regressions else None
            ge.reasons = [f"base -> head regression on {', '.join(o for o, c in e.result.counts.items() if c.get('regression')) or 'the shapes it accepts'}"]
            if first is not None:
                ge.reasons += [f"{first.case.shape}: {reason}" for o in first.outputs.values()
                               if o.verdict == "regression" for reason in o.reasons[:3]]
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
    head: str
    changes: list[Change]
    entries: list[GateEntry] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)  # file -> why it could not be checked

    @property
    def exit_code(self) -> int:
        if any(e.outcome == "fail" for e in self.entries):
            return 1
        if self.errors or any(e.outcome == "cannot judge" for e in self.entries):
            return 2
        return 0

    def results(self) -> list[CheckResult]:
        return [e.head for e in self.entries if e.head is not None]

    def to_dict(self) -> dict:
        return {"repo": self.repo, "base": self.base, "head": self.head,
                "files": [c.label for c in self.changes], "entries": [e.to_dict() for e in self.entries],
                "errors": self.errors}


def run_gate(repo: str, base: str, head: str, changes: Sequence[Change], policy: Policy = POLICY,
             options: Options | None = None, progress: Callable | None = None,
             log: Callable[[str], None] = lambda s: None) -> GateRun:
    run = GateRun(repo, base, head, list(changes))
    for change in changes:
        try:
            run.entries += gate_file(repo, base, head, change, policy, options, progress, log)
        except (pf.PairFreeError, GateError) as exc:
            run.errors[change.label] = str(exc)
            log(f"{change.label}: cannot be checked: {exc}")
    return run


def dry_run(repo: str, base: str, head: str, changes: Sequence[Change], policy: Policy = POLICY) -> list[str]:
    """What the gate would run: files, entries, modes and shapes (loads each head file and runs its
    ``__main__`` with the recording stand-in; creates no inputs and runs no kernel)."""
    from equiv.pairfree.golden import TensorSpec
    from equiv.pairfree.pair import Revisions
    from equiv.source import SourceRef

    lines = [f"policy: {policy.describe()}; each entry runs base -> head and base -> base"]
    for c in changes:
        kind = "added: checked against itself" if c.base_path is None else (
            "renamed" if c.status == "R" else "modified")
        lines.append(f"{c.label} ({kind})")
        ref = SourceRef(c.head_path, "", head, repo)
        rev = Revisions(ref, ref, model=policy.model, config=dict(policy.config))
        try:
            found = rev.plan("retiled").found
        except Exception as exc:  # noqa: BLE001 - shown, not raised: a dry run lists what it can
            lines.append(f"  cannot discover: {type(exc).__name__}: {exc}")
            continue
        for d in found:
            outs = [f"{s.name}{list(s.shape)}" for s in d.call.specs if isinstance(s, TensorSpec) and s.is_output]
            ins = [f"{s.name}{list(s.shape)}" for s in d.call.specs if isinstance(s, TensorSpec) and not s.is_output]
            lines.append(f"  {d.entry} [{d.mode}]: outputs {', '.join(outs)}; inputs {', '.join(ins)}")
    return lines


def junit_xml(run: GateRun, suite: str = "equiv gate") -> ET.ElementTree:
    """One testcase per file × entry: failure on fail, error on cannot judge, skipped otherwise-unjudged."""
    root = ET.Element("testsuites", name=suite)
    ts = ET.SubElement(root, "testsuite", name=suite)
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for e in run.entries:
        counts["tests"] += 1
        tc = ET.SubElement(ts, "testcase", classname=f"equiv.{e.file}", name=e.entry, time=f"{e.seconds:.3f}")
        text = "\n".join(e.reasons)
        if e.outcome == "fail":
            counts["failures"] += 1
            ET.SubElement(tc, "failure", message=(e.reasons or ["regression"])[0]).text = text
        elif e.outcome == "cannot judge":
            counts["errors"] += 1
            ET.SubElement(tc, "error", message="cannot judge: " + (e.reasons or ["emulator gap"])[0]).text = text
        elif e.outcome == "skipped":
            counts["skipped"] += 1
            ET.SubElement(tc, "skipped", message=(e.reasons or ["skipped"])[0]).text = text
        from equiv.pairfree.contract import own_contract_text

        own = own_contract_text(e.head)
        if own:  # the contract in force, where it came from, and the file's own test
            ET.SubElement(tc, "system-out").text = "\n".join(own)
    for file, why in run.errors.items():
        counts["tests"] += 1
        counts["errors"] += 1
        tc = ET.SubElement(ts, "testcase", classname=f"equiv.{file}", name="(file)")
        ET.SubElement(tc, "error", message=why)
    for k, v in counts.items():
        ts.set(k, str(v))
    return ET.ElementTree(root)
