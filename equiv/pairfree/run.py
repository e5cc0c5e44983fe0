"""Checking one model file pair-free at two revisions: every entry, with honest outcomes.

Each entry its ``__main__`` hands to ``run_jit`` ends in exactly one outcome:

* ``checked`` — the pair ran; its `CheckResult` carries the verdicts (equivalent, regression,
  both-defect, rejected, cannot judge per case);
* ``interface changed`` — the entry's parameters, dtypes, shapes or output set differ between
  the revisions (or the entry exists on one side only): not comparable, not a regression;
* ``cannot judge`` — the file could not even be loaded or discovered because the emulator
  lacks an op or form (named, with the kernel's file:line);
* ``rejected`` — the file's own assert refused the shape it was loaded at;
* ``error`` — discovery failed for another reason (the message says which).
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from equiv.check import CheckResult, check
from equiv.options import Options
from equiv.pair import BIT_EXACT, Contract
from equiv.pairfree import discovery, specs
from equiv.pairfree.pair import Entry, Revisions, build_pair, entries_of, kernel_assertion, safe_constants
from equiv.runner import _kernel_error, classify_exception
from equiv.source import SourceError, SourceRef


@dataclass
class EntryOutcome:
    """What one entry of one file came to."""

    file: str
    entry: str
    status: str                     # checked | interface changed | cannot judge | rejected | error
    result: CheckResult | None = None
    changes: list[str] = field(default_factory=list)
    message: str = ""
    reference: str = ""             # how the golden was used: "float64" or "as written (why)"
    modes: tuple[str, ...] = ()
    seconds: float = 0.0

    @property
    def verdict(self) -> str:
        """One word for tables and the gate: equivalent / regression / both-defect / ... ."""
        if self.status != "checked" or self.result is None:
            return self.status
        if self.result.failed:
            return "regression"
        if self.result.unjudged:
            return "cannot judge"
        counts: dict[str, int] = {}
        for per in self.result.counts.values():
            for v, n in per.items():
                counts[v] = counts.get(v, 0) + n
        for v in ("both-defect", "pre-defect", "rejected"):
            if counts.get(v):
                return v
        return "equivalent"

    @property
    def exit_code(self) -> int:
        if self.status == "checked" and self.result is not None:
            return 1 if self.result.failed else (2 if self.result.unjudged else 0)
        return {"interface changed": 0, "rejected": 0}.get(self.status, 2)

    def to_dict(self) -> dict:
        return {"file": self.file, "entry": self.entry, "status": self.status, "verdict": self.verdict,
                "changes": self.changes, "message": self.message, "reference": self.reference,
                "modes": list(self.modes), "seconds": round(self.seconds, 3),
                "result": self.result.to_dict() if self.result is not None else None}


def _git(repo: str, *args: str) -> str:
    return subprocess.run(["git", "-C", repo, *args], check=True, capture_output=True, text=True).stdout


def exists_at(repo: str, rev: str, path: str) -> bool:
    try:
        return bool(_git(repo, "ls-tree", "--name-only", rev, "--", path).strip())
    except subprocess.CalledProcessError:
        return False


def renamed(repo: str, a: str, b: str) -> dict[str, str]:
    """Old path -> new path for every file git sees renamed (or copied) from `a` to `b`."""
    out = _git(repo, "diff", "-M", "--name-status", a, b)
    moves = {}
    for line in out.splitlines():
        parts = line.split("\t")
        if parts and parts[0][:1] in ("R", "C") and len(parts) == 3:
            moves[parts[1]] = parts[2]
    return moves


def follow(repo: str, path: str, pre_rev: str | None, retiled_rev: str | None) -> tuple[str, str, str]:
    """(pre path, retiled path, note): `path` names the file at either revision; a rename
    between the two is followed."""
    if pre_rev is None or retiled_rev is None:
        return path, path, ""
    at_pre, at_ret = exists_at(repo, pre_rev, path), exists_at(repo, retiled_rev, path)
    if at_pre and at_ret:
        return path, path, ""
    moves = renamed(repo, pre_rev, retiled_rev)
    if at_pre and path in moves:
        return path, moves[path], f"renamed {path} -> {moves[path]} between {pre_rev} and {retiled_rev}"
    back = {new: old for old, new in moves.items()}
    if at_ret and path in back:
        return back[path], path, f"renamed {back[path]} -> {path} between {pre_rev} and {retiled_rev}"
    missing = pre_rev if not at_pre else retiled_rev
    raise SourceError(f"{path} does not exist at {missing} (and git sees no rename of it between "
                      f"{pre_rev} and {retiled_rev})")


def _failure(file: str, entry: str, exc: BaseException) -> EntryOutcome:
    """A load or discovery failure, classified like a kernel run's (gap / rejected / error)."""
    inner = exc
    while isinstance(inner, discovery.DiscoveryError) and inner.__cause__ is not None:
        inner = inner.__cause__
    kind = classify_exception(inner) if not isinstance(inner, (SourceError, discovery.DiscoveryError)) else "error"
    text = _kernel_error(inner) if kind != "error" or not isinstance(inner, discovery.DiscoveryError) else str(inner)
    if kind == "gap":
        return EntryOutcome(file, entry, "cannot judge", message=f"the emulator lacks: {text}")
    if kind == "rejected":
        return EntryOutcome(file, entry, "rejected", message=kernel_assertion(inner) or text)
    return EntryOutcome(file, entry, "error", message=text)


def interface_of(revisions: Revisions, side: str, entry: str) -> dict[str, list[specs.Param]]:
    """mode -> the entry's interface there (first call of it in each mode)."""
    plan = revisions.plan(side)
    out: dict[str, list[specs.Param]] = {}
    for d in plan.found:
        if d.entry == entry and d.mode not in out:
            out[d.mode] = specs.interface(d.call)
    return out


def interface_changes(revisions: Revisions, entry: str) -> list[str]:
    a, b = interface_of(revisions, "pre", entry), interface_of(revisions, "retiled", entry)
    lines = []
    for mode in dict.fromkeys([*a, *b]):
        if mode not in b:
            lines.append(f"mode {mode}: run only by pre")
        elif mode not in a:
            lines.append(f"mode {mode}: run only by retiled")
        else:
            lines += [f"mode {mode}: {c}" for c in specs.interface_changes(a[mode], b[mode])]
    return lines


def check_file(repo: str, path: str, pre_rev: str | None, retiled_rev: str | None, entry: str | None = None,
               model: str | None = None, config: Mapping[str, Any] | None = None, shapes: str = "nominal",
               examples: int | None = None, seed: int = 0, contract: Contract = BIT_EXACT,
               options: Options | None = None, recipes: Sequence[str] | None = None,
               fixed: Mapping[str, Any] | None = None, progress: Any = None,
               time_budget: float | None = None, command: str = "") -> tuple[list[EntryOutcome], str]:
    """Check every entry of `path` (or only `entry`) between two revisions; (outcomes, note)."""
    import dataclasses

    pre_path, ret_path, note = follow(repo, path, pre_rev, retiled_rev)
    revisions = Revisions(SourceRef(pre_path, "", pre_rev, repo), SourceRef(ret_path, "", retiled_rev, repo),
                          model=model, config=dict(config or {}))
    try:
        found = {e.name: e for e in entries_of(revisions, "pre")}
    except Exception as exc:  # noqa: BLE001 - a file the emulator cannot load or discover
        return [_failure(path, entry or "*", exc)], note
    try:
        theirs = {e.name for e in entries_of(revisions, "retiled")}
    except Exception as exc:  # noqa: BLE001
        out = _failure(path, entry or "*", exc)
        out.message = f"retiled: {out.message}"
        return [out], note
    names = list(dict.fromkeys([*found, *theirs]))
    if entry is not None:
        if entry not in names:
            raise SourceError(f"{path}: no run_jit call of {entry} in its __main__ block "
                              f"(entries: {', '.join(names)})")
        names = [entry]
    if shapes == "fuzz":
        revisions.fuzz_dims = safe_constants(revisions)
    outcomes = []
    for name in names:
        t0 = time.perf_counter()
        if name not in found or name not in theirs:
            side = "pre" if name in found else "retiled"
            outcomes.append(EntryOutcome(path, name, "interface changed",
                                         changes=[f"entry {name} is handed to run_jit by {side} only"]))
            continue
        changes = interface_changes(revisions, name)
        ent: Entry = found[name]
        if changes:
            outcomes.append(EntryOutcome(path, name, "interface changed", changes=changes, modes=ent.modes))
            continue
        try:
            pair, ref = build_pair(revisions, ent, contract, fuzz=shapes == "fuzz")
            if command:
                pair = dataclasses.replace(pair, command=command)
            result = check(pair, shapes=shapes, examples=examples, seed=seed, options=options, recipes=recipes,
                           fixed=fixed, progress=progress, time_budget=time_budget)
        except Exception as exc:  # noqa: BLE001 - building inputs or the reference failed
            out = _failure(path, name, exc)
            out.seconds = time.perf_counter() - t0
            outcomes.append(out)
            continue
        how = "none (no golden_fn)" if ref is None else (
            "float64" if ref.how == "float64" else f"as written ({ref.why})")
        outcomes.append(EntryOutcome(path, name, "checked", result=result, reference=how, modes=ent.modes,
                                     seconds=time.perf_counter() - t0))
    return outcomes, note


def exit_code(outcomes: Sequence[EntryOutcome]) -> int:
    """1 when any entry regressed, else 2 when any could not be judged (or failed), else 0."""
    codes = [o.exit_code for o in outcomes]
    return 1 if 1 in codes else (2 if 2 in codes else 0)
