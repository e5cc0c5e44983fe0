"""Checking a model file at two revisions with nothing registered, and the outcome per entry.

Outcomes (beside the verdicts of the cases that ran):

==================  =====================================================================  ====
outcome             when                                                                   exit
==================  =====================================================================  ====
equivalent          every case ran and no output regressed (pre-defect / both-defect are     0
                    reported as findings)
regression          retiled breaks the contract (not a fix the reference confirms), covers    1
                    less, adds a hazard, loses accuracy, fails the file's own test where pre
                    passes, or narrows the shapes it accepts
cannot judge        the emulator lacks an op or form a version uses, or the file's declared   2
                    inputs exceed the memory available here: nothing is decided
interface changed   the entry's parameters, dtypes, shapes, outputs or modes differ between   0
                    the revisions (or the entry exists at one revision only); not run
rejected            the file's own asserts refuse every shape tried (on both sides, or on     0
                    pre's only while retiled, judged alone, is sound)
not called          the entry asked for is called by neither revision's ``__main__`` under    2
                    any mode equiv tries: nothing of it ran
==================  =====================================================================  ====
"""

from __future__ import annotations

import dataclasses
import inspect
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from equiv import git
from equiv.results import CheckResult, EntryOutcome, FileOutcome
from equiv.check import check
from equiv.options import Options
from equiv.pair import Contract
from equiv.pairfree import specs
from equiv.errors import DiscoveryError, InputsTooLarge, PairFreeError, SourceError
from equiv.pairfree.pair import Entry, Revisions, build_pair, entries_of, kernel_assertion, safe_constants
from equiv.request import CheckRequest
from equiv.runner import classify_exception
from equiv.shapes import Shape
from equiv.source.ref import SourceRef


# ----------------------------------------------------------------------------------------
# Renames
# ----------------------------------------------------------------------------------------


def exists_at(repo: str, rev: str, path: str) -> bool:
    return git.succeeds(repo, "cat-file", "-e", f"{rev}:{path}")


def renames(repo: str, a: str, b: str) -> list[tuple[str, str]]:
    """(old, new) paths git's rename detection finds between revisions `a` and `b`."""
    out = git.output(repo, "diff", "-M", "--name-status", a, b, error=PairFreeError)
    pairs = []
    for line in out.splitlines():
        parts = line.split("\t")
        if parts and parts[0].startswith("R") and len(parts) == 3:
            pairs.append((parts[1], parts[2]))
    return pairs


def follow(repo: str, path: str, a: str, b: str) -> tuple[str, str, str | None]:
    """(path at `a`, path at `b`, a note when the file was renamed in between)."""
    at_a, at_b = exists_at(repo, a, path), exists_at(repo, b, path)
    if at_a and at_b:
        return path, path, None
    for old, new in renames(repo, a, b):
        if at_a and old == path:
            return path, new, f"{path} is {new} at {b} (renamed)"
        if at_b and new == path:
            return old, path, f"{path} was {old} at {a} (renamed)"
    missing = a if not at_a else b
    raise PairFreeError(f"{path} does not exist at {missing} and git finds no rename of it between {a} and {b}")


# ----------------------------------------------------------------------------------------
# One file
# ----------------------------------------------------------------------------------------
def _classify_load(exc: BaseException) -> tuple[str, str]:
    """(outcome, text) for an exception raised while loading a file or running its __main__."""
    msg = f"{type(exc).__name__}: {exc}"
    reject = kernel_assertion(exc)
    if reject:
        return "rejected", reject
    kind = classify_exception(exc)
    if kind == "gap":
        return "cannot judge", msg
    return "error", msg


def _entries(revisions: Revisions, side: str) -> dict[str, Entry] | tuple[str, str]:
    try:
        return {f"{e.name}#{e.index}" if e.index else e.name: e for e in entries_of(revisions, side)}
    except (SourceError, DiscoveryError) as exc:
        raise PairFreeError(f"{revisions.ref(side).label}: {exc}") from None
    except InputsTooLarge as exc:
        return "cannot judge", str(exc)
    except Exception as exc:  # noqa: BLE001 - a gap or an assert at module level
        return _classify_load(exc)


def _interface(entry: Entry, side: str) -> dict[str, list[specs.Param]]:
    out = {}
    for i, mode in enumerate(entry.modes):
        call = entry.call(side, Shape({"mode": i})).call
        params = specs.interface(call)
        try:
            names = [n for n in inspect.signature(call.fn).parameters]
        except (TypeError, ValueError):
            names = []
        out[mode] = (params, names)
    return out


def interface_changes(pre: Entry, retiled: Entry) -> list[str]:
    lines = []
    if pre.modes != retiled.modes:
        lines.append(f"modes {', '.join(pre.modes)} -> {', '.join(retiled.modes)}")
        return lines
    a, b = _interface(pre, "pre"), _interface(retiled, "retiled")
    for mode in pre.modes:
        (pa, na), (pb, nb) = a[mode], b[mode]
        where = f"{mode}: " if len(pre.modes) > 1 else ""
        lines += [where + line for line in specs.interface_changes(pa, pb)]
        if not lines and na != nb:
            lines.append(f"{where}parameters ({', '.join(na)}) -> ({', '.join(nb)})")
    return list(dict.fromkeys(lines))


def _conversions(pre: Entry, retiled: Entry) -> dict | None:
    """The exact input conversions that bridge an interface change in every mode (or None)."""
    from equiv.pairfree.convert import conversions

    if pre.modes != retiled.modes:
        return None
    a, b = _interface(pre, "pre"), _interface(retiled, "retiled")
    found = [conversions(a[m][0], b[m][0]) for m in pre.modes]
    return found[0] if found and all(f is not None and f == found[0] for f in found) else None


@dataclass(frozen=True)
class FileTarget:
    """What a pair-free check checks: the model file `path` (at `retiled_path` on retiled's
    side when given) at `pre_rev` against `retiled_rev` in `repo` (None: the working tree),
    every entry of its ``__main__`` block or `entry`, with `model` and `config` choosing the
    file's configuration; `convert_inputs` bridges an interface change by exact conversions."""

    path: str
    pre_rev: str | None
    retiled_rev: str | None
    repo: str
    entry: str | None = None
    retiled_path: str | None = None
    model: str | None = None
    config: Mapping[str, Any] = field(default_factory=dict)
    convert_inputs: bool = False


def check_file(target: FileTarget, request: CheckRequest | None = None, *,
               on_pair: Callable[[Any, EntryOutcome], None] | None = None,
               command: Callable[[str], str] | None = None) -> FileOutcome:
    """Check every entry (or the target's entry) of a model file at two revisions, as `request`
    asks; `on_pair` is told each entry's pair and outcome as it ends, `command(entry)` gives
    an entry's repro prefix.

    The file's ``# equiv: contract`` comment (pre's) sets the contract unless the request's
    `contract_given` (``--contract``) overrides it."""
    request = request or CheckRequest()
    path, pre_rev, retiled_rev, repo = target.path, target.pre_rev, target.retiled_rev, target.repo
    entry, retiled_path, model, config = target.entry, target.retiled_path, target.model, target.config
    contract, contract_given, options, log = request.contract, request.contract_given, request.options, request.log
    notes = []
    pre_path, ret_path = path, retiled_path or path
    if retiled_path is None and pre_rev is not None and retiled_rev is not None:
        pre_path, ret_path, note = follow(repo, path, pre_rev, retiled_rev)
        if note:
            notes.append(note)
    pre = SourceRef(pre_path, entry or "", pre_rev, repo)
    ret = SourceRef(ret_path, entry or "", retiled_rev, repo)
    out = FileOutcome(pre, ret, notes=notes)
    revisions = Revisions(pre, ret, model=model, config=dict(config or {}))
    sides = {side: _entries(revisions, side) for side in ("pre", "retiled")}
    pre_found, ret_found = sides["pre"], sides["retiled"]
    if isinstance(pre_found, tuple) and pre_found[0] == "rejected" and not isinstance(ret_found, tuple):
        # Only pre's own assert refuses the shape: retiled still runs, judged on its own.
        notes.append(f"pre rejects the file's shapes ({pre_found[1]}): retiled is judged on its own")
        sides["pre"] = pre_found = dict(ret_found)
        pre_rejects = True
    else:
        pre_rejects = False
    if isinstance(ret_found, tuple) and ret_found[0] == "rejected" and not isinstance(pre_found, tuple):
        # Retiled's own assert refuses the shape pre runs at: a narrowed contract, as for registered pairs.
        for name in ([entry] if entry else list(pre_found)):
            out.entries.append(EntryOutcome(name, "regression", [
                f"retiled rejects the shape pre accepts (narrowed contract): {ret_found[1]}"],
                modes=pre_found[name].modes if name in pre_found else ()))
        return out
    one_file = pre.identity() == ret.identity()
    for side, found in sides.items():
        if isinstance(found, tuple):
            outcome, text = found
            if outcome == "error":
                raise PairFreeError(f"{revisions.ref(side).label}: loading the file or running its __main__ "
                                    f"failed: {text}")
            if one_file and side == "retiled" and found == pre_found:
                continue  # one revision on both sides: said once
            who = "pre and retiled (one revision)" if one_file and found == ret_found else side
            name = entry or os.path.basename(path)
            same = next((e for e in out.entries if (e.entry, e.outcome) == (name, outcome)), None)
            if same is not None:  # both revisions refuse it: one entry, each side's reason
                same.lines.append(f"{who}: {text}")
            else:
                out.entries.append(EntryOutcome(name, outcome, [f"{who}: {text}"]))
    if out.entries:
        return out
    pre_entries, ret_entries = sides["pre"], sides["retiled"]
    names = list(dict.fromkeys([*pre_entries, *ret_entries]))
    if entry:
        if entry not in names:
            # Reached only under options equiv does not set (or not at this model instance):
            # nothing of it runs, and saying so is the outcome, not an error of the whole file.
            out.entries.append(EntryOutcome(entry, "not called", [
                f"the __main__ block calls no run_jit of {entry} at either revision under the modes equiv "
                f"tries ({', '.join(_modes_tried(revisions))}); entries it calls: {', '.join(names)}"]))
            return out
        names = [entry]
    try:
        revisions.fuzz_dims = safe_constants(revisions)
    except Exception:  # noqa: BLE001 - no config constants to vary
        revisions.fuzz_dims = ()
    declared, contract_text = _declared(revisions, contract, contract_given, out.notes)
    if declared is not None and declared.default is not None:
        contract = declared.default
    for name in names:
        if name not in pre_entries or name not in ret_entries:
            side = "pre" if name in pre_entries else "retiled"
            out.entries.append(EntryOutcome(name, "interface changed", [
                f"entry {name} is called by the __main__ block at {side} only"
                f" ({revisions.ref(side).label})"]))
            continue
        e_pre, e_ret = pre_entries[name], ret_entries[name]
        try:
            changes = [] if pre_rejects else interface_changes(e_pre, e_ret)
        except Exception as exc:  # noqa: BLE001
            outcome, text = _classify_load(exc)
            if outcome == "error":
                raise PairFreeError(f"{name}: {text}") from None
            out.entries.append(EntryOutcome(name, outcome, [text], modes=e_pre.modes))
            continue
        convert = _conversions(e_pre, e_ret) if changes and target.convert_inputs else None
        if changes and convert is None:
            out.entries.append(EntryOutcome(name, "interface changed", changes, modes=e_pre.modes))
            continue
        try:
            pair, reference = build_pair(revisions, e_pre, contract, fuzz=bool(revisions.fuzz_dims),
                                         declared=declared, convert=convert)
        except DiscoveryError as exc:
            # The __main__ block raised while creating the inputs: an equiv stand-in lacking
            # what it was asked for cannot be judged; anything else is the file's error.
            cause = exc.__cause__
            if cause is not None and _classify_load(cause)[0] == "cannot judge":
                out.entries.append(EntryOutcome(name, "cannot judge", [str(exc)], modes=e_pre.modes))
                continue
            raise PairFreeError(str(exc)) from None
        if command is not None:  # the repro prefix of this entry
            pair = dataclasses.replace(pair, command=command(name.split("#")[0]))
        ref_text = ("no golden" if reference is None else
                    f"reference {getattr(reference.golden, '__name__', 'golden')} "
                    + ("promoted to float64" if reference.how == "float64" else f"as written ({reference.why})"))
        eo = EntryOutcome(name, "equivalent", reference=ref_text, modes=e_pre.modes, pair=pair,
                          contract=contract_text)
        log(f"{name}: modes {', '.join(e_pre.modes)}; {ref_text}; contract {contract_text}"
            + ("; one revision on both sides: each case runs the program once for both" if pair.identical_sides
               else ""))
        result = check(pair, request.replace(shrink_budget=0))  # shrunk below, within a wall-time budget
        _shrink(pair, e_pre, result, request.shrink_budget, options, log)
        from equiv.pairfree.judge import file_test_summary

        eo.file_test = file_test_summary(result)
        result.own_contract = {"contract": contract_text, "file_test": eo.file_test,
                               "unwritten_by_contract": by_contract_lines(result),
                               "golden_suspect": suspect_lines(result)}
        eo.result = result
        if result.failed:
            eo.outcome = "regression"
        elif result.unjudged:
            eo.outcome = "cannot judge"
            eo.lines = [g.removeprefix("cannot judge: ") for g in result.gaps()]
        elif result.results and all(set(r.verdicts.values()) == {"rejected"} for r in result.results):
            eo.outcome = "rejected"
            eo.lines = sorted({reason for r in result.results for o in r.outputs.values() for reason in o.reasons})
        else:
            # No regression, but say so only as strongly as the cases allow: defects both
            # versions share (or pre's, fixed by retiled) are not "equivalent".
            seen = {v for r in result.results for v in r.verdicts.values()}
            eo.outcome = next((v for v in ("both-defect", "pre-defect") if v in seen), "equivalent")
        out.entries.append(eo)
        if on_pair:
            on_pair(pair, eo)
    return out


def by_contract_lines(result: CheckResult) -> list[str]:
    """Distinct regions left unwritten by contract, one line each (they are no defect, but shown)."""
    seen: dict[str, None] = {}
    for r in result.results:
        for name, o in r.outputs.items():
            for side, info in o.unwritten_by_contract.items():
                seen.setdefault(f"{side} leaves {info['text']} of {name} unwritten ({info['count']} elements): "
                                f"{info['why']}", None)
    return list(seen)


def suspect_lines(result: CheckResult) -> list[str]:
    """Distinct golden-audit findings of the cases (the golden further from float64 than a version)."""
    seen: dict[str, None] = {}
    for r in result.results:
        for o in r.outputs.values():
            for side, text in o.golden_suspect.items():
                seen.setdefault(f"against {side} at {r.case.shape}: {text}", None)
    return list(seen)


def _declared(revisions: Revisions, contract: Contract, given: bool, notes: list[str]) -> tuple[Any, str]:
    """The file's declared contract (pre's comment) unless ``--contract`` was given, and a text
    naming the contract in force and where it came from."""
    from equiv.pairfree.contract import declared_contract

    found = {}
    for side in ("pre", "retiled"):
        ref = revisions.ref(side)
        try:
            found[side] = declared_contract(ref.read(), ref.label)
        except ValueError as exc:
            raise PairFreeError(str(exc)) from None
        except Exception:  # noqa: BLE001 - an unreadable side is reported when it loads
            found[side] = None
    pre, ret = found["pre"], found["retiled"]
    if ret is not None and (pre is None or pre.text() != ret.text()):
        notes.append(f"retiled declares the contract {ret.text()} ({ret.origin}); the check holds it to "
                     + (f"pre's ({pre.text()})" if pre else "the contract pre declares (none: bit-exact)"))
    if given:
        return None, f"{contract} (--contract)"
    if pre is None:
        return None, f"{contract} (default)"
    return pre, f"{pre.text()} ({pre.origin})"


# Wall time shrinking may take per entry: each try of a new shape rebuilds the file's specs
# (over a minute for Pro-size weights) and reruns the case.
SHRINK_SECONDS = 120.0


def _shrink(pair: Any, entry: Entry, result: CheckResult, budget: int, options: Options | None,
            log: Callable[[str], None]) -> None:
    """Shrink each counterexample (as `check` does) with at most `budget` tries, fewer when
    one try (a case plus a rebuild of the specs) would take longer than `SHRINK_SECONDS`."""
    judged = [r for r in result.counterexamples
              if any(v not in ("cannot judge", "equivalent") for v in r.verdicts.values())]
    if not budget or not judged:
        return  # nothing to shrink: a case that cannot be judged is not shrunk (see runner.shrink)
    per_try = max((r.seconds for r in result.results), default=0.0) + entry.build_seconds
    affordable = budget if per_try <= 0 else min(budget, int(SHRINK_SECONDS / per_try))
    if affordable < budget:
        log(f"{entry.name}: shrinking limited to {affordable} tries (one try takes about {per_try:.0f} s)")
    if affordable:
        from equiv.runner import shrink

        result.counterexamples = [shrink(pair, r, options or Options(), budget=affordable)
                                  for r in result.counterexamples]


def _modes_tried(revisions: Revisions) -> list[str]:
    modes = dict.fromkeys(m for side in ("pre", "retiled") for m in revisions.plan(side).modes)
    return [m for m in modes if m != "default"] or ["its defaults"]


def outcome_line(o: EntryOutcome) -> str:
    word = {"equivalent": "EQUIVALENT", "regression": "REGRESSION", "cannot judge": "CANNOT JUDGE",
            "not called": "NOT CALLED",
            "interface changed": "INTERFACE CHANGED", "rejected": "REJECTED",
            "both-defect": "BOTH-DEFECT (no regression)", "pre-defect": "PRE-DEFECT (fixed by retiled)"}[o.outcome]
    tests = "; ".join(f"{side} {text}" for side, text in o.file_test.items())
    return (f"{o.entry}: {word}" + (f" — {'; '.join(o.lines[:4])}" if o.lines else "")
            + (f" — file's test: {tests}" if tests else ""))
