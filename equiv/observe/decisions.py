"""Decision coverage: per kernel line, which outcomes of its value decisions ever occurred.

Ops report decisions through ``RunContext.decision(op, {outcome: bool tensor | bool})``:
``pl.maximum``/``pl.minimum`` ("first won"/"second won"; equal operands are a tie and count
as neither, so a site whose operands always tie shows both outcomes missing), ``cmp`` and
kernel ``if`` tests on scalars read from tensors ("true"/"false"), saturating casts to an
integer type ("saturated"/"in range"), and index guards ``pl.min``/``pl.max`` on scalars.
An outcome occurred at a site when it held for at least one element in one run.

A check aggregates every case's record (`merge`) and lists, per version, the sites with an
outcome that never occurred (`gaps`); a pair may declare why a site of its kernels cannot be
driven both ways (`declare_unreachable`), and such a site is listed with that reason instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping

import torch

from equiv.observe.events import DECISION, RUN_END, Observer

# pair name -> {"retiled.py:88": "why its other outcome cannot occur"}; keys match a site
# by its trailing path ("retiled.py:88" matches "kernels/expert_shared/retiled.py:88").
UNREACHABLE: dict[str, dict[str, str]] = {}


def declare_unreachable(pair_name: str, reasons: Mapping[str, str]) -> None:
    """Declare the decision sites of `pair_name` that its input domain cannot drive both ways."""
    UNREACHABLE.setdefault(pair_name, {}).update(reasons)


def reason_for(pair_name: str, site: str) -> str | None:
    for key, why in UNREACHABLE.get(pair_name, {}).items():
        if site == key or site.endswith("/" + key):
            return why
    return None


@dataclass
class SiteRecord:
    """One decision site: its op, the outcomes it can take and those that occurred."""

    op: str
    names: list[str]
    seen: set[str] = field(default_factory=set)
    cases: int = 0  # cases in which the site decided anything

    def missing(self) -> list[str]:
        return [n for n in self.names if n not in self.seen]


class DecisionObserver(Observer):
    """Collects one run's decision outcomes per site (the record's ``decisions``)."""

    events = frozenset({DECISION, RUN_END})

    def __init__(self) -> None:
        self.sites: dict[str, SiteRecord] = {}

    def on_run_end(self, ctx, outputs, record) -> None:
        record.decisions = self.sites

    def on_decision(self, ctx, site: str, op: str, outcomes: dict) -> None:
        rec = self.sites.get(site)
        if rec is None:
            rec = self.sites[site] = SiteRecord(op, list(outcomes))
        else:
            for name in outcomes:
                if name not in rec.names:
                    rec.names.append(name)
        for name, value in outcomes.items():
            if name in rec.seen:
                continue  # already covered: skip the reduction
            if isinstance(value, torch.Tensor):
                if value.numel() and bool(value.any()):
                    rec.seen.add(name)
            elif value:
                rec.seen.add(name)


def merge(into: dict[str, SiteRecord], run: Mapping[str, SiteRecord]) -> dict[str, SiteRecord]:
    """Add one case's sites to an aggregate (each site counts the case once)."""
    for site, rec in run.items():
        agg = into.get(site)
        if agg is None:
            agg = into[site] = SiteRecord(rec.op, list(rec.names))
        for n in rec.names:
            if n not in agg.names:
                agg.names.append(n)
        agg.seen |= rec.seen
        agg.cases += 1
    return into


def covered_outcomes(sites: Mapping[str, SiteRecord]) -> int:
    return sum(len(r.seen) for r in sites.values())


def _short(site: str) -> str:
    path, _, line = site.rpartition(":")
    return f"{path.rsplit('/', 1)[-1]}:{line}"


def gaps(pair_name: str, sites: Mapping[str, SiteRecord]) -> list[dict]:
    """Sites with an outcome that never occurred, each with the declared reason (or None)."""
    out = []
    for site, rec in sorted(sites.items(), key=lambda kv: _site_key(kv[0])):
        missing = rec.missing()
        if not missing:
            continue
        reason = reason_for(pair_name, site)
        out.append({"site": site, "op": rec.op, "missing": missing, "seen": sorted(rec.seen),
                    "cases": rec.cases, "reason": reason,
                    "text": f"{_short(site)} `{rec.op}`: {' / '.join(missing)} never occurred "
                            f"in {rec.cases} case{'s' if rec.cases != 1 else ''}"
                            + (f" (unreachable: {reason})" if reason else "")})
    return out


def _site_key(site: str) -> tuple[str, int]:
    path, _, line = site.rpartition(":")
    return (path, int(line) if line.isdigit() else 0)


def summary(pair_name: str, per_side: Mapping[str, Mapping[str, SiteRecord]]) -> dict:
    """JSON-ready coverage per version: sites, outcomes covered, and the gaps."""
    return {side: {"sites": len(sites),
                   "outcomes": sum(len(r.names) for r in sites.values()),
                   "covered": covered_outcomes(sites),
                   "gaps": gaps(pair_name, sites)}
            for side, sites in per_side.items()}


def lines(summ: Mapping[str, dict], sides: Iterable[str] = ("retiled", "pre")) -> list[str]:
    """Compact console lines: per version the coverage count, then each gap."""
    out = []
    for side in sides:
        s = summ.get(side)
        if not s or not s["sites"]:
            continue
        missing = [g for g in s["gaps"] if not g["reason"]]
        declared = [g for g in s["gaps"] if g["reason"]]
        out.append(f"  {side}: {s['covered']}/{s['outcomes']} outcomes at {s['sites']} sites"
                   + (f"; {len(missing)} site(s) not exercised both ways" if missing else "")
                   + (f"; {len(declared)} declared unreachable" if declared else ""))
        for g in missing + declared:
            out.append(f"    {g['text']}")
    return out
