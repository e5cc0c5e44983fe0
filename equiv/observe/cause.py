"""The cause of a finding, observed: the first operation, in program order and at its kernel
line, whose result differs between two runs that differ in one thing only.

* **order**: one version under two schedules (same poison): the first result that differs is
  an order-dependent operation (an atomic add, a race), named so;
* **uninitialised memory**: one version under two poison fillings (same schedule): the first
  result that differs is the read of memory nothing wrote;
* **pre vs retiled**: the two versions on the same inputs, poison and schedule: the first
  operation of retiled whose result differs from its counterpart in pre.

A run traced by `OpTrace` keeps, per kernel line, the set of values the operations of that
line produced (the valid part of every tile made there, and every element a store there
wrote, with its position in the tensor). Lines are taken in the order the run first reached
them. Within one version two runs have the same lines; across versions a line is matched to
the line of the other version with the same source text, and the lines left over are
matched in order (a retile that edits the line of an op, ``pl.mul(t, 2.0)`` to
``pl.mul(t, 3.0)``, still meets its counterpart). Sets, not sequences: a retile computes the
same elements in other tiles, other blocks and another order.

Traced runs are extra runs, made only for an output with a finding; a line that produces
more than `CAP` distinct values, and every line reached once a run has kept `BUDGET`, is not
compared (the result names them).
"""

from __future__ import annotations

import contextlib
import linecache
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping

import torch

from equiv.tile.sites import kernel_site
from equiv.observe.events import Observer

CAP = 1 << 20  # distinct values kept per line of a traced run
BUDGET = 16 * CAP  # values kept over all lines of a run (a Pro-size model's loads are GBs)

# Tiles made by these emulator functions are uninitialised by design (poison): their values
# differ between poison fillings without anything having read them.
_ALLOCATIONS = frozenset({"create_tile"})


def _bits(values: torch.Tensor) -> torch.Tensor:
    """One int64 per element: the float64 bits (one NaN for all NaNs), or the integer."""
    if values.dtype.is_floating_point:
        x = values.to(torch.float64)
        x = torch.where(torch.isnan(x), torch.full_like(x, float("nan")), x)
        return x.reshape(-1).view(torch.int64)
    return values.reshape(-1).to(torch.int64)


@dataclass
class OpTrace(Observer):
    """Per kernel line of one run, the distinct values its operations produced."""

    lines: list[str] = field(default_factory=list)                # in the order first reached
    values: dict[str, list[torch.Tensor]] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)
    over: set[str] = field(default_factory=set)                   # lines past CAP: not compared
    kept: int = 0

    def _add(self, site: str, bits: torch.Tensor) -> None:
        if site in self.over:
            return
        if self.kept > BUDGET:  # the run's budget is spent: the lines still to come are not compared
            self.over.add(site)
            if site not in self.values:
                self.lines.append(site)
            return
        if site not in self.values:
            self.lines.append(site)
            self.values[site], self.sizes[site] = [], 0
        bits = torch.unique(bits.cpu())
        self.values[site].append(bits)
        self.sizes[site] += bits.numel()
        self.kept += bits.numel()
        if self.sizes[site] > 4 * CAP:  # fold the duplicates of many small tiles
            merged = torch.unique(torch.cat(self.values[site]))
            self.kept += merged.numel() - self.sizes[site]
            self.values[site], self.sizes[site] = [merged], merged.numel()
            if merged.numel() > CAP:
                self.over.add(site)
                self.kept -= merged.numel()
                self.values[site], self.sizes[site] = [], 0

    def on_tile(self, tile: Any) -> None:
        """A tile an operation made (`equiv.tile.values.Tile`), at the kernel's current line."""
        if sys._getframe(2).f_code.co_name in _ALLOCATIONS:
            return
        data = tile.data
        valid = tuple(slice(0, v) for v in tile.valid)
        part = data[(Ellipsis, *valid)] if valid else data
        self._add(kernel_site(), _bits(part))

    def on_stored(self, ctx: Any, tensor: Any, window: tuple, mask: Any, scalar: bool) -> None:
        sl = tuple(slice(a, b) for a, b in window)
        values = tensor.data[sl]
        # The element's position in the tensor is part of what a store produces.
        flat = torch.zeros((), dtype=torch.int64)
        stride = 1
        for d in range(len(window) - 1, -1, -1):
            a, b = window[d]
            shape = [1] * len(window)
            shape[d] = b - a
            flat = flat + torch.arange(a, b, dtype=torch.int64).reshape(shape) * stride
            stride *= int(tensor.data.shape[d])
        flat = flat.expand(values.shape)
        bits = _bits(values) * 0x9E3779B97F4A7C15 + flat.reshape(-1) * 0x2545F4914F6CDD1D
        if mask is not None:
            bits = bits[mask.reshape(-1)]
        self._add(f"{kernel_site()}\0store {tensor.name}", bits)

    def result(self, site: str) -> torch.Tensor | None:
        if site in self.over or site not in self.values:
            return None
        return torch.unique(torch.cat(self.values[site])) if self.values[site] else torch.zeros(0, dtype=torch.int64)


@contextlib.contextmanager
def tracing(tracer: OpTrace | None) -> Iterator[None]:
    """Within the block, every tile an operation makes is shown to `tracer` (None: nothing)."""
    if tracer is None:
        yield
        return
    from equiv.tile import values

    values.on_tile = tracer.on_tile
    try:
        yield
    finally:
        values.on_tile = None


def _line(site: str) -> str:
    return site.split("\0")[0]


def _code(site: str) -> str:
    path, _, line = _line(site).rpartition(":")
    return linecache.getline(path, int(line)).strip() if line.isdigit() else ""


def _short(site: str) -> str:
    path, _, line = _line(site).rpartition(":")
    store = site.partition("\0")[2]
    return f"{os.path.basename(path)}:{line}" + (f" ({store})" if store else "")


def describe(site: str) -> str:
    """```pl.mul(t, 3.0)``` at scale.py:23 (the kernel's own line)."""
    code = _code(site)
    return (f"`{code}` at " if code else "") + _short(site)


def _counterparts(a: OpTrace, b: OpTrace) -> dict[str, str]:
    """Line of `a` -> line of `b`: the same source text first, then the rest in order."""
    by_code: dict[str, list[str]] = {}
    for s in b.lines:
        by_code.setdefault((_code(s), s.partition("\0")[2]), []).append(s)
    pairs, used = {}, set()
    for s in a.lines:
        cands = [c for c in by_code.get((_code(s), s.partition("\0")[2]), []) if c not in used]
        if cands and _code(s):
            pairs[s] = cands[0]
            used.add(cands[0])
    rest_b = [s for s in b.lines if s not in used]
    for s, t in zip([s for s in a.lines if s not in pairs], rest_b):
        if s.partition("\0")[2] == t.partition("\0")[2]:
            pairs[s] = t
    return pairs


def first_difference(a: OpTrace, b: OpTrace, same_program: bool) -> dict | None:
    """The first line of `a` (in the order `a` reached it) whose values differ from those of
    its counterpart in `b`; ``site`` None when every compared line agrees. ``not_compared``:
    the lines skipped on the way (past the value caps)."""
    pairs = {s: s for s in a.lines if s in b.values} if same_program else _counterparts(a, b)
    skipped = []
    for s in a.lines:
        t = pairs.get(s)
        if t is None:
            continue
        va, vb = a.result(s), b.result(t)
        if va is None or vb is None:
            skipped.append(_short(s))
            continue
        if va.numel() != vb.numel() or not torch.equal(va, vb):
            return {"site": _line(s), "what": s.partition("\0")[2] or "result", "text": describe(s),
                    "other_site": _line(t), "other_text": describe(t), "not_compared": skipped}
    return {"site": None, "not_compared": skipped}


# ----------------------------------------------------------------------------------------
# Attaching causes to a case's outputs
# ----------------------------------------------------------------------------------------
# (side, run) -> the trace of that run of that version; run is "first" (NaN poison, schedule 0),
# "poison" (finite poison, schedule 0) or "order" (finite poison, schedule 1).
Tracer = Callable[[str, str], OpTrace]


def attach(outputs: Mapping[str, Any], runs: Mapping[str, Any], trace: Tracer) -> None:
    """Give each output with a finding its observed cause (``OutputResult.cause`` and a reason
    line), running the traced runs it needs (at most two per version, shared by outputs)."""
    first, poisoned, other_order = "first", "poison", "order"
    cache: dict[tuple[str, str], OpTrace] = {}

    def run(side: str, variant: str) -> OpTrace:
        if (side, variant) not in cache:
            cache[(side, variant)] = trace(side, variant)
        return cache[(side, variant)]

    for name, res in outputs.items():
        if res.verdict in ("equivalent", "cannot judge", "rejected"):
            continue
        cause = None
        for side in ("retiled", "pre"):
            r = runs.get(side)
            if r is None or r.error or r.rejected or name not in r.written:
                continue
            nondet = r.nondeterministic.get(name)
            if nondet is not None and bool(nondet.any()):
                hit = first_difference(run(side, poisoned), run(side, other_order), same_program=True)
                cause = _cause("order", side, hit,
                               f"order-dependent: the first operation of {side} whose result differs between "
                               f"two schedules is")
                break
            if bool((r.poisoned[name] & r.written[name]).any()):
                hit = first_difference(run(side, first), run(side, poisoned), same_program=True)
                cause = _cause("uninitialised", side, hit,
                               f"{side} reads uninitialised memory: the first operation whose result differs "
                               f"between two poison fillings is")
                break
        if cause is None and res.first_difference is not None and all(
                runs.get(s) is not None and not runs[s].error and not runs[s].rejected for s in ("pre", "retiled")):
            hit = first_difference(run("retiled", poisoned), run("pre", poisoned), same_program=False)
            cause = _cause("difference", "retiled", hit,
                           "the first operation of retiled whose result differs from pre's is")
            if hit["site"] is not None:
                cause["text"] += f" (pre: {hit['other_text']})"
        if cause is not None:
            res.cause = cause
            res.reasons.insert(0, f"cause (observed): {cause['text']}")  # the first thing to read


def _cause(kind: str, side: str, hit: dict, lead: str) -> dict:
    if hit["site"] is None:
        text = (f"not found: no compared operation's result differs between the traced runs of {side} "
                f"({kind})")
        if hit["not_compared"]:
            text += f"; not compared: {', '.join(hit['not_compared'][:3])}"
        return {"kind": kind, "side": side, "site": None, "text": text}
    text = f"{lead} {hit['text']}"
    if hit["not_compared"]:
        text += (f" (lines before it not compared, past {CAP} distinct values or the run's {BUDGET}: "
                 f"{', '.join(hit['not_compared'][:3])})")
    return {"kind": kind, "side": side, "site": hit["site"], "what": hit["what"], "text": text,
            "other_site": hit["other_site"]}
