"""What a pull request's gate runs, before anything runs: the files (`selection`), per entry
whether its checked program changed (`fingerprint`), an estimate of each entry's cost, the
order (cheapest first) and the shard an entry belongs to.

Nothing here runs a kernel or a golden: the only execution is a file's ``__main__`` block on
torch's meta device (shapes and dtypes), where only that block changed or a cost is estimated —
or, where the meta device cannot record it, on the CPU stand-in (`equiv.pairfree.standin`: the
block's own values at the file's sizes, in a seeded, memory-capped, time-boxed child).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from equiv.machine import available_memory_bytes
from equiv.pairfree import fingerprint as fp

# The estimate's model of a run on a 2-core CPU: a fixed cost (load, discovery) per run and
# a rate over the bytes of the inputs the file declares (they are built, copied per side and
# read by the emulator). Only the order and the budget check use it.
FIXED_SECONDS = 3.0
BYTES_PER_SECOND = 40e6
RUNS_PER_ENTRY = 2  # base -> head and base -> base
UNKNOWN_SECONDS = 600.0  # a block that cannot run on the meta device: assumed expensive


@dataclass
class PlannedEntry:
    """One entry of one selected file."""

    file: str                 # head path (label of the change)
    entry: str
    unchanged: bool
    why: str                  # why it changed, or why it is the same program
    estimate: float = 0.0     # seconds, both runs, every mode
    modes: tuple[str, ...] = ()
    shapes: list[str] = field(default_factory=list)  # "mode: outputs ...; inputs ..."
    model: str | None = None  # another model instance of the file's config (None: as the file imports)
    config: dict = field(default_factory=dict)  # config constants set for this run (a multi-tile token count)

    @property
    def key(self) -> tuple[str, str, str]:
        return self.file, self.entry, (self.model or "") + "".join(f",{k}={v}" for k, v in self.config.items())

    @property
    def label(self) -> str:
        return self.entry + (f" [model {self.model}]" if self.model else "") + "".join(
            f" [{k}={v}]" for k, v in self.config.items())


# Bytes a run holds per byte of declared inputs (pre's and retiled's copies, the float64
# reference's): an instance is added only where that fits the memory available.
MEMORY_FACTOR = 4


def extra_models(models: Mapping[str, Any] | None, available: int | None) -> list[tuple[str, int]]:
    """Model instances of the file's config to check beside the one it imports: every one that
    fits the machine, and always the largest hidden size (Pro's 7168) unless the file's own
    instance has it. (name, declared bytes)."""
    models = {k: v for k, v in (models or {}).items() if isinstance(v, dict)}
    if not models:
        return []
    own_hidden = {v["hidden"] for v in models.values() if v.get("default")}
    largest = max(v["hidden"] for v in models.values())
    out = []
    for name, v in models.items():
        if v.get("default") or v.get("same_as_default") or "bytes" not in v:
            continue
        fits = available is None or v["bytes"] * MEMORY_FACTOR < available
        if fits or (v["hidden"] == largest and largest not in own_hidden):
            out.append((name, int(v["bytes"])))
    return out


def _bytes(spec: Mapping[str, Any]) -> int:
    if "tensor" not in spec:
        return 0
    n = 1
    for d in spec["shape"]:
        n *= int(d)
    size = {"torch.float64": 8, "torch.int64": 8, "torch.float32": 4, "torch.int32": 4, "torch.bfloat16": 2,
            "torch.float16": 2, "torch.int16": 2, "torch.int8": 1, "torch.uint8": 1, "torch.bool": 1}
    return n * size.get(spec["dtype"], 4)


def estimate(recorded: Mapping[str, Any] | None, entry: str) -> tuple[float, tuple[str, ...], list[str]]:
    """(seconds, modes, one shape line per mode) of `entry` from its meta-device recording."""
    calls = (recorded or {}).get(entry)
    if not isinstance(calls, dict):
        return UNKNOWN_SECONDS, (), []
    seconds, lines = 0.0, []
    for mode, summaries in calls.items():
        for s in summaries:
            seconds += RUNS_PER_ENTRY * (FIXED_SECONDS + sum(_bytes(x) for x in s["specs"]) / BYTES_PER_SECOND)
            outs = [f"{x['tensor']}{x['shape']}" for x in s["specs"] if x.get("out")]
            ins = [f"{x['tensor']}{x['shape']}" for x in s["specs"] if "tensor" in x and not x.get("out")]
            lines.append(f"[{mode}]: outputs {', '.join(outs)}; inputs {', '.join(ins)}")
    return seconds, tuple(calls), lines


def plan_file(repo: str, base: str, base_path: str | None, head: str | None, head_path: str,
              overrides: Mapping[str, Any] | None = None, models: bool = True) -> list[PlannedEntry]:
    """The entries of one selected file: unchanged or to run, with estimates for those to run."""
    kept: dict[str, dict | None] = {}
    if base_path is None:
        st = fp.static(fp.Source(repo, head), head_path)
        changes = [fp.EntryChange(e, False, "added: checked against itself") for e in (st.entries if st else [])]
    else:
        changes = fp.compare_file(repo, base, base_path, head, head_path, overrides, recorded=kept)
    out = []
    for c in changes:
        pe = PlannedEntry(head_path, c.entry, c.unchanged, c.why)
        if not c.unchanged:
            if "sized" not in kept:
                # one recording of head per file, with the config's model instances: sizes every entry
                kept["head"] = fp.record(repo, head, head_path, overrides, models=models)
                kept["sized"] = {}
            pe.estimate, pe.modes, pe.shapes = estimate(_sized(kept, c.entry), c.entry)
        out.append(pe)
    if not changes:
        out.append(PlannedEntry(head_path, "(file)", False, "no run_jit entry found statically", UNKNOWN_SECONDS))
    if models and kept.get("head"):
        extra = extra_models(kept["head"].get("<models>"), available_memory_bytes())
        harness_only = {c.entry for c in changes if c.harness_only}
        for pe in [p for p in out if not p.unchanged and p.entry != "(file)" and p.entry not in harness_only]:
            for name, size in extra:
                n_calls = sum(len(v) for v in (_sized(kept, pe.entry).get(pe.entry) or {}).values())
                # Sized from the instance's declared bytes and the calls of the file's own run;
                # with no recording of those calls, as unknown as the entry itself.
                cost = n_calls * RUNS_PER_ENTRY * (FIXED_SECONDS + size / BYTES_PER_SECOND) if n_calls \
                    else max(pe.estimate, UNKNOWN_SECONDS)
                out.append(PlannedEntry(head_path, pe.entry, False, pe.why + f"; also at model {name}",
                                        cost, pe.modes, [], name))
        out += _multi_tile(kept["head"], [p for p in out if not p.unchanged and p.entry != "(file)"
                                          and p.entry not in harness_only and p.model is None],
                           available_memory_bytes())
    return out


def _sized(kept: Mapping[str, Any], entry: str) -> Mapping[str, Any]:
    """The recording that sizes `entry`: the meta device's, or the CPU stand-in's where meta had none."""
    head = kept.get("head") or {}
    return head if entry in head else kept.get("head@cpu") or head


def _multi_tile(recorded: Mapping[str, Any], entries: Sequence[PlannedEntry], available: int | None
                ) -> list[PlannedEntry]:
    """Each entry again at a token count spanning several tiles, where the file's own fits one
    (`equiv.pairfree.tokens`) and that is affordable."""
    from equiv.pairfree import tokens

    out = []
    for pe in entries:
        calls = [c for v in (recorded.get(pe.entry) or {}).values() for c in v]
        own = max((sum(_bytes(x) for x in c["specs"]) for c in calls), default=0)
        for name, grown, size in tokens.affordable(recorded.get("<tokens>"), own, available, MEMORY_FACTOR):
            value = recorded["<tokens>"][name]["value"]
            out.append(PlannedEntry(pe.file, pe.entry, False,
                                    pe.why + f"; also at {name}={grown} (the file's {value} fits one "
                                             f"{tokens.TILE}-token tile)",
                                    max(1, len(calls)) * RUNS_PER_ENTRY * (FIXED_SECONDS + size / BYTES_PER_SECOND),
                                    pe.modes, [], None, {name: grown}))
    return out


def order(entries: Sequence[PlannedEntry]) -> list[PlannedEntry]:
    """Entries to run, cheapest first (ties: by file, then entry, for a stable order)."""
    return sorted((e for e in entries if not e.unchanged), key=lambda e: (e.estimate, e.key))


def shard(entries: Sequence[PlannedEntry], k: int, n: int) -> list[PlannedEntry]:
    """Shard `k` of `n`, balanced by estimated cost: the most expensive entry first goes to the
    least loaded shard (ties: the lowest number), the same on every machine."""
    loads = [0.0] * n
    mine = []
    for e in sorted(order(entries), key=lambda e: (-e.estimate, e.key)):
        i = min(range(n), key=lambda j: (loads[j], j))
        loads[i] += e.estimate
        if i + 1 == k:
            mine.append(e)
    return mine


@dataclass
class Timed:
    """A plan, with how long making it took."""

    entries: list[PlannedEntry]
    seconds: float


def plan_changes(repo: str, base: str, head: str | None, changes: Sequence[Any],
                 overrides: Mapping[str, Any] | None = None, models: bool = True) -> Timed:
    """Every selected file's entries. `models`: add the other model instances of each file's
    config (off when a model is chosen by hand)."""
    t0 = time.perf_counter()
    out: list[PlannedEntry] = []
    for c in changes:
        out += plan_file(repo, base, c.base_path, head, c.head_path, overrides, models)
    return Timed(out, time.perf_counter() - t0)
