"""Running a pull request's planned entries within its time budget (`Policy.time_budget`):
cheapest first, each within a share of its estimate first, then those that overran their
share with what is left; each entry stopped at the end of the budget is ``not checked``.
What an entry's run judges is `equiv.pairfree.gate.gate_file`.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Sequence

from equiv.deadline import DeadlineReached, hard_deadline
from equiv.errors import GateError, PairFreeError
from equiv.options import Options
from equiv.pairfree.gate import POLICY, Change, GateEntry, GateRun, Policy, gate_file, overrides
from equiv.pairfree.plan import PlannedEntry, order, plan_changes


def run_gate(repo: str, base: str, head: str | None, changes: Sequence[Change], policy: Policy = POLICY,
             options: Options | None = None, progress: Callable | None = None,
             log: Callable[[str], None] = lambda s: None, planned: Sequence[Any] | None = None,
             started: float | None = None) -> GateRun:
    """Run the planned entries cheapest first within the pull request's budget
    (`Policy.time_budget`); unchanged entries are listed, not run; an entry not started
    before the budget is spent is ``not checked``. `started` (a ``time.perf_counter()``): when
    the gate began, so that selection and planning count against the budget too."""
    run = GateRun(repo, base, head, list(changes), budget=policy.time_budget)
    if planned is None:
        planned = plan_changes(repo, base, head, changes, overrides(policy), not policy.model).entries
    by_path = {c.head_path: c for c in changes}
    for pe in planned:
        if pe.unchanged:
            run.entries.append(GateEntry(by_path[pe.file].label, pe.label, "unchanged", [pe.why]))
    t0 = started if started is not None else time.perf_counter()
    retry: list[tuple[PlannedEntry, float]] = []
    for pe in order(planned):
        overran = _run_planned(run, pe, by_path[pe.file], policy, t0, options, progress, log)
        if overran is not None:
            retry.append((pe, overran))
    # Entries that overran their first share, cheapest first, with all that is left.
    for pe, first in retry:
        _run_planned(run, pe, by_path[pe.file], policy, t0, options, progress, log, first_try=first)
    return run


# An estimate can be far off (a block the meta device could not size, another model
# instance's own costs): each entry first gets a share of a few times its estimate, so one
# mis-estimated entry cannot spend the budget every other entry needed. Those that overrun
# their share run again, after all the others, with what is left.
SHARE_FACTOR = 4.0
SHARE_FLOOR = 120.0  # seconds: loading a file and building its inputs, whatever the estimate


def _share(pe: PlannedEntry) -> float:
    return max(SHARE_FACTOR * pe.estimate, SHARE_FLOOR)


def _run_planned(run: GateRun, pe: PlannedEntry, change: Change, policy: Policy, t0: float,
                 options: Options | None, progress: Callable | None, log: Callable[[str], None],
                 first_try: float | None = None) -> float | None:
    """Run one planned entry within the budget left and, on its first try, within its share.
    Returns the seconds it ran where it overran its share (it is to run again), else None.
    `first_try`: this is the second try, after a first one of that many seconds."""
    spent = time.perf_counter() - t0
    left = policy.time_budget - spent
    earlier = "" if first_try is None else f"; its first try ran {first_try:.0f} s, past its share"
    if left <= 0:
        run.entries.append(GateEntry(change.label, pe.label, "not checked", [
            f"the pull request's budget of {policy.time_budget:g} s was spent ({spent:.0f} s) before it "
            f"started (estimated {pe.estimate:.0f} s{earlier}); raise --time-budget or split with --shard"],
            estimate=pe.estimate))
        return None
    share = _share(pe) if first_try is None else left
    try:
        at = dataclasses.replace(policy, model=pe.model) if pe.model else policy
        if pe.config:  # a multi-tile token count (`equiv.pairfree.tokens`)
            at = dataclasses.replace(at, config={**at.config, **pe.config})
        try:
            with hard_deadline(min(left, share)):
                got = gate_file(run.repo, run.base, run.head, change, at, options, progress, log,
                                entry=None if pe.entry == "(file)" else pe.entry.split("#")[0], time_budget=left)
        except DeadlineReached:
            ran = time.perf_counter() - t0 - spent
            if share < left:
                log(f"{change.label}: {pe.label}: past its share of {share:.0f} s (estimated {pe.estimate:.0f} s); "
                    f"runs again after the other entries")
                return ran
            run.entries.append(GateEntry(change.label, pe.label, "not checked", [
                f"stopped after {ran:.0f} s, when the pull request's budget of {policy.time_budget:g} s ran "
                f"out (estimated {pe.estimate:.0f} s{earlier}); nothing of it is judged; raise --time-budget or "
                f"split with --shard"], estimate=pe.estimate))
            log(f"{change.label}: {pe.label}: stopped at the pull request's budget after {ran:.0f} s")
            return None
        for g in got:
            g.estimate = pe.estimate
            if pe.model:
                g.entry += f" [model {pe.model}]"
            g.entry += "".join(f" [{k}={v}]" for k, v in pe.config.items())
            g.reasons.append(f"run because {pe.why}" if not pe.why.startswith("added") else pe.why)
            if first_try is not None:
                g.reasons.append(f"run a second time, after the other entries: its first try ran {first_try:.0f} s, "
                                 f"past its share of {_share(pe):.0f} s")
        run.entries += got
    except (PairFreeError, GateError) as exc:
        run.errors[change.label] = str(exc)
        log(f"{change.label}: cannot be checked: {exc}")
    return None
