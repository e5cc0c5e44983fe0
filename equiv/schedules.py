"""Schedules: the orders the device leaves free, and the runs of one version that vary them.

The hardware fixes no order between the blocks of one ``pl.spmd`` / ``pl.parallel`` stage
(and so none between their atomic adds into one tensor), nor between the turns of the ranks
of a multi-rank program (and so none between their remote atomic adds). The emulator draws
each of these orders from `RunContext.block_order`; a **schedule** is one choice of all of
them. An output whose bits differ between two schedules is **nondeterministic**: on the
device it differs from run to run.

A case runs each version as a few **variants**, described here in one place (`RunVariant`,
`plan`) so that the runner, and later a batched executor running variants as lanes, share
one definition:

* ``first``: NaN poison, schedule 0 (the case's seeded orders); the observed run.
* ``schedule k`` for k = 1 … K−1: finite poison, schedule k. Schedule 1 is schedule 0
  *reversed* (every stage's and every rank dispatch's order backwards), so any sum of two
  or more order-dependent contributions is added in another order, whatever the block count;
  schedules k ≥ 2 are fresh seeded orders.
* ``poison``: finite poison, schedule 0. Run only when some output differs between
  ``first`` and a schedule run: it separates the two causes — ``first`` vs ``poison``
  differ only in poison (uninitialised memory), ``poison`` vs a schedule run only in order
  (nondeterminism). Without a schedule run (``schedules=1``) it runs where ``first`` raised
  or read uninitialised memory (`RunContext.uninitialised`), or under
  ``Options.second_poison_run="always"``.

A clean kernel therefore costs two runs per version under the default ``schedules=2``, as
before schedules existed, and one under ``schedules=1``; a flagged one costs three (two).
"""

from __future__ import annotations

import hashlib
import linecache
import os
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch

from equiv import numerics
from equiv.options import Options


# ----------------------------------------------------------------------------------------
# The runs of one version in one case
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunVariant:
    """One run of one version within a case: its poison filling and its schedule."""

    role: str          # "first" | "schedule" | "poison"
    poison: str        # "nan" | "pattern"
    schedule: int      # 0: the case's seeded orders; 1: those reversed; k >= 2: fresh seeded orders

    def options(self, base: Options, case_seed: int) -> Options:
        """The run's options: poison seeds as before schedules existed (NaN run 2s+1, finite
        run 2s+2), orders from the schedule alone so that poison and order vary separately."""
        poison_seed = case_seed * 2 + (1 if self.poison == "nan" else 2)
        if self.schedule < 2:
            order_seed = case_seed * 2 + 1
        else:
            digest = hashlib.blake2b(repr((case_seed, self.schedule)).encode(), digest_size=4).digest()
            order_seed = int.from_bytes(digest, "little")
        return base.replace(poison=self.poison, seed=poison_seed, order_seed=order_seed,
                            reverse_order=self.schedule == 1)

    @property
    def label(self) -> str:
        return f"{self.role} ({self.poison} poison, schedule {self.schedule})"


def plan(schedules: int) -> tuple[RunVariant, list[RunVariant], RunVariant]:
    """``(first, schedule runs, poison run)`` of one version under `schedules` schedules."""
    first = RunVariant("first", "nan", 0)
    others = [RunVariant("schedule", "pattern", k) for k in range(1, schedules)]
    return first, others, RunVariant("poison", "pattern", 0)


# ----------------------------------------------------------------------------------------
# Order-dependent operations (recorded while a kernel runs by
# `RunContext.note_order_dependent`)
# ----------------------------------------------------------------------------------------
def order_ops(ctx: Any) -> list[dict]:
    """The run's order-dependent operations: plain data (sorted block labels and ranks) and,
    for local atomic adds, ``free``: the elements two or more blocks added to."""
    return [{**{k: v for k, v in e.items() if k != "last"}, "blocks": sorted(e["blocks"]),
             "ranks": sorted(e["ranks"])} for e in ctx.order_dependent.values()]


def merge_ops(groups: Sequence[Sequence[dict]]) -> tuple[list[dict], dict[str, torch.Tensor]]:
    """One entry per (op, tensor, site) over several runs (plain data), and per tensor the
    elements whose sum order is free in any of them."""
    out: dict[tuple, dict] = {}
    free: dict[str, torch.Tensor] = {}
    for ops in groups:
        for e in ops:
            key = (e["op"], e["tensor"], e["site"])
            m = out.setdefault(key, {k: v for k, v in e.items() if k != "free"} | {"blocks": set(), "ranks": set(),
                                                                                 "count": 0})
            m["blocks"].update(e["blocks"])
            m["ranks"].update(e["ranks"])
            m["count"] = max(m["count"], e["count"])
            if e.get("free") is not None:
                prev = free.get(e["tensor"])
                free[e["tensor"]] = e["free"] if prev is None or prev.shape != e["free"].shape else prev | e["free"]
    return [{**e, "blocks": sorted(e["blocks"]), "ranks": sorted(e["ranks"])} for e in out.values()], free


# ----------------------------------------------------------------------------------------
# Judging the runs
# ----------------------------------------------------------------------------------------
def spread(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Elementwise distance between two schedules' bits: ULP of the output's type for floats
    (NaN/Inf mismatches are `numerics.MISMATCH`), |a − b| for integers."""
    if a.dtype.is_floating_point:
        return numerics.ulp_distance(a, b)
    return (a.to(torch.int64) - b.to(torch.int64)).abs()


def _short(site: str) -> str:
    path, _, line = site.rpartition(":")
    return f"{os.path.basename(path)}:{line}" if path else site


def _span(labels: Sequence[str], what: str) -> str:
    if not labels:
        return ""
    shown = ", ".join(str(x) for x in labels[:4])
    return f"{what} {shown}" + (f" … ({len(labels)} in all)" if len(labels) > 4 else "")


def describe_op(e: Mapping[str, Any]) -> str:
    """``atomic add into y at kernel.py:12 (`line`), blocks splitk[0], splitk[1]``."""
    code = ""
    path, _, line = e["site"].rpartition(":")
    if line.isdigit():
        code = linecache.getline(path, int(line)).strip()
    who = "; ".join(x for x in (_span(e.get("blocks", []), "blocks"), _span(e.get("ranks", []), "ranks")) if x)
    return (f"{e['op']} into {e['tensor']} at {_short(e['site'])}" + (f" (`{code}`)" if code else "")
            + (f", {who}" if who else ""))


def responsible(name: str, ops: Sequence[Mapping[str, Any]], hazards: Sequence[Mapping[str, Any]]) -> list[dict]:
    """The order-dependent operations that explain nondeterminism of output `name`: atomic adds
    into it and races on it first, then those into other tensors it may be computed from."""
    direct = [dict(e, direct=True) for e in ops if e["tensor"] == name]
    races = [{"op": "race", "tensor": h["tensor"], "site": h["site"], "blocks": [], "ranks": [],
              "count": h.get("count", 1), "direct": h["tensor"] == name, "detail": h.get("detail", "")}
             for h in hazards if h.get("kind") == "race"]
    upstream = [dict(e, direct=False) for e in ops if e["tensor"] != name]
    return direct + [r for r in races if r["direct"]] + upstream + [r for r in races if not r["direct"]]


def finding(name: str, mask: torch.Tensor, spread_max: int, first: dict, ops: Sequence[dict],
            writers: Sequence[Mapping[str, Any]], schedules: int) -> dict:
    """The ``nondeterministic`` hazard of one output of one version (same fields as a
    `equiv.tile.findings.Finding`), with the responsible operations and last writers."""
    idx = mask.nonzero()
    region = [[int(idx[:, d].min()), int(idx[:, d].max()) + 1] for d in range(idx.shape[1])] if idx.numel() else []
    how = "NaN/Inf mismatch" if spread_max >= numerics.MISMATCH else f"{spread_max} ULP"
    parts = [f"{int(mask.sum())} elements of {name} differ between {schedules} schedules (spread up to {how}; "
             f"first at {first['index']}: {first['a']} vs {first['b']})"]
    if ops:
        lead = "order-dependent: " if ops[0].get("direct") else "order-dependent (upstream of this output): "
        parts.append(lead + "; ".join(describe_op(e) for e in ops[:3]))
    else:
        parts.append("no atomic add or race recorded: blocks of one stage read what others of it write")
    for w in list(writers)[:2]:
        blocks = w["blocks"]
        span = f"block {blocks[0]}" if blocks[0] == blocks[1] else f"blocks {blocks[0]}–{blocks[1]}"
        parts.append(f"last written at {_short(w['site'])} by {span} of stage {w['stage']}")
    site = ops[0]["site"] if ops else (writers[0]["site"] if writers else "<unknown>")
    return {"kind": "nondeterministic", "tensor": name, "site": site,
            "detail": "; ".join(parts), "count": int(mask.sum()), "region": region,
            "spread": spread_max, "operations": list(ops)}


def outputs_differ(first: Mapping[str, Any] | None, others: Sequence[Mapping[str, Any] | None]) -> bool:
    """Whether any output's bits (or written-mask) differ between the first run and another."""
    if first is None or any(o is None for o in others):
        return True
    for name, t in first.items():
        a = t.to_torch().cpu()
        for o in others:
            b = o[name].to_torch().cpu()
            # Equal values (the common case) need no ULP distances: they are 0 everywhere.
            same = torch.equal(a, b) or bool(_same(a, b).all())
            if not same or not torch.equal(t.written.cpu(), o[name].written.cpu()):
                return True
    return False


def _same(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return spread(a, b) == 0


def _text(v: torch.Tensor) -> str:
    return f"{float(v):.9g}" if v.dtype.is_floating_point else str(int(v))


def add_findings(run: Any, schedule_outs: Sequence[Mapping[str, Any]], poison_outs: Mapping[str, Any]) -> None:
    """Add a ``nondeterministic`` hazard to `run` for each output that differs between
    schedules, naming the elements, the spread and the operations responsible."""
    from equiv.observe import attribution

    cap = getattr(run, "attribution", None)
    for name, mask in run.nondeterministic.items():
        mask = mask & run.written[name]
        if not bool(mask.any()):
            continue
        first = tuple(int(i) for i in mask.nonzero()[0].tolist())
        vp = poison_outs[name].to_torch().cpu()
        other = next(o[name].to_torch().cpu() for o in schedule_outs
                     if not bool(_same(o[name].to_torch().cpu()[first], vp[first])))
        where = {"index": "[" + ", ".join(map(str, first)) + "]", "a": _text(vp[first]), "b": _text(other[first])}
        ops = responsible(name, run.order_ops, run.hazards)
        writers = attribution.writers(cap, name, mask) if cap is not None else []
        run.hazards.append(finding(name, mask, int(run.spread[name][mask].max()), where, ops, writers,
                                   run.schedules))
