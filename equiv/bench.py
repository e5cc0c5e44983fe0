"""Benchmarks: wall time of pre, retiled and the float64 reference per pair and preset, the
emulator's overhead against the reference (and its geometric mean over the rows), fuzzing
throughput, and peak memory; with a pypto-lib clone, the same for real kernel files."""

from __future__ import annotations

import math
import resource
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch

from equiv.check import fuzz_cases
from equiv.options import Options
from equiv.pair import KernelPair
from equiv.results import Case
from equiv.runner import SIDES, _one_thread, _run_once, make_inputs, run_case, run_side, variants


@dataclass
class BenchRow:
    pair: str
    preset: str
    shape: str
    pre_s: float
    retiled_s: float
    reference_s: float
    peak_rss_mb: float
    # How the parallel stages of both versions ran: "batched" count, else reason -> count.
    stages: dict = None  # type: ignore[assignment]
    # How the sequential loops inside batched stages ran: "as lanes" count, else reason -> count.
    loops: dict = None  # type: ignore[assignment]
    # What a user pays per case (`bench_cases`): every case a check runs at this shape (each
    # input recipe and option variant), each whole (both versions under every poison and
    # schedule variant, inputs, comparison), and the float64 reference of the same cases.
    cases: int = 0
    case_s: float = 0.0
    case_reference_s: float = 0.0
    # Where the cases' time goes, timed apart (best of the repeats each): making the inputs,
    # running both versions (every variant), and the rest of a case (reference, comparison).
    case_inputs_s: float = 0.0
    case_runs_s: float = 0.0

    @property
    def case_overhead(self) -> float:
        """Seconds of whole cases per second of their float64 reference (nan: not measured)."""
        return self.case_s / max(self.case_reference_s, 1e-9) if self.cases else float("nan")

    @property
    def batched(self) -> str:
        """Stages run batched of all stages run (both versions, one run each)."""
        stages = self.stages or {}
        total = sum(n for why, n in stages.items() if why != "split")
        return f"{stages.get('batched', 0)}/{total}" if total else "-"

    @property
    def as_lanes(self) -> str:
        """Loops run as lanes of all loops tried (both versions, one run each)."""
        loops = self.loops or {}
        total = sum(loops.values())
        return f"{loops.get('as lanes', 0)}/{total}" if total else "-"

    @property
    def overhead(self) -> float:
        """Emulated kernel time per float64-reference time (mean of both versions)."""
        return (self.pre_s + self.retiled_s) / 2 / max(self.reference_s, 1e-9)


def _timed(fn: Callable[[], object], device: str, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best


def peak_rss_mb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 if sys.platform != "darwin" else kb / 2**20


def bench_preset(pair: KernelPair, preset: str, options: Options, repeat: int = 1,
                 per_case: bool = False) -> list[BenchRow]:
    """One row per shape of `preset`: one run of each version against the reference and, with
    `per_case`, the whole cases a check runs at that shape (`bench_cases`)."""
    if repeat < 1:  # zero runs would report a time of 0 s (or inf) for a kernel never run
        raise ValueError(f"repeat must be ≥ 1, not {repeat}")
    rows = []
    for shape in pair.shapes.preset(preset):
        case = Case(shape, "realistic", 0)
        inputs = make_inputs(pair, case)
        stages: dict[str, int] = {}
        loops: dict[str, int] = {}
        with _one_thread():
            times = {}
            for side in ("pre", "retiled"):
                kernel = pair.kernel(side)
                _run_once(kernel, pair, case, inputs, options, side, stages=stages, loops=loops)  # how stages run
                times[side] = _timed(lambda: _run_once(kernel, pair, case, inputs, options, side), options.device,
                                     repeat)
            ref_inputs = {k: (v.to(options.device) if isinstance(v, torch.Tensor) else v) for k, v in inputs.items()}
            pair.reference(ref_inputs, shape)  # warm, as the kernels were by their first run above
            times["reference"] = _timed(lambda: pair.reference(ref_inputs, shape), options.device, repeat)
        row = BenchRow(pair.name, preset, str(shape), times["pre"], times["retiled"], times["reference"],
                       peak_rss_mb(), stages, loops)
        if per_case:
            got = bench_cases(pair, shape, options, repeat)
            row.cases, row.case_s, row.case_reference_s = got["cases"], got["case_s"], got["reference_s"]
            row.case_inputs_s, row.case_runs_s = got["inputs_s"], got["runs_s"]
            row.peak_rss_mb = peak_rss_mb()
        rows.append(row)
    return rows


def bench_cases(pair: KernelPair, shape: Any, options: Options, repeat: int = 1) -> dict[str, float]:
    """Every case a check runs at `shape`: each input recipe under each option variant of the
    pair's sweep, run whole by `run_case` (inputs, both versions under all their poison and
    schedule variants, reference, comparison), best of `repeat` per case; then, apart, its
    inputs (all the shape's cases in a check's order, best of `repeat`: `_inputs_in_order`),
    its runs of both versions and its float64 reference. Returns ``cases``, ``case_s``,
    ``inputs_s``, ``runs_s`` and ``reference_s`` (seconds summed over the cases)."""
    if repeat < 1:
        raise ValueError(f"repeat must be ≥ 1, not {repeat}")
    got = {"cases": 0, "case_s": 0.0, "inputs_s": 0.0, "runs_s": 0.0, "reference_s": 0.0}
    cases = [Case(shape, recipe, 0, variant) for recipe in pair.recipes for variant in variants(pair)]
    with _one_thread():  # as run_case makes them (two threads on a busy machine: several times slower)
        got["inputs_s"] = _timed(lambda: _inputs_in_order(pair, cases), options.device, repeat)
    for case in cases:
        got["case_s"] += _timed(lambda: run_case(pair, case, options), options.device, repeat)
        inputs = {k: (v.to(options.device) if isinstance(v, torch.Tensor) else v)
                  for k, v in make_inputs(pair, case).items()}
        with _one_thread():  # as run_case runs them
            got["runs_s"] += _timed(lambda: [run_side(pair, side, case, inputs, options) for side in SIDES],
                                    options.device, repeat)
            pair.reference(inputs, shape)
            got["reference_s"] += _timed(lambda: pair.reference(inputs, shape), options.device, repeat)
        got["cases"] += 1
    return got


def _inputs_in_order(pair: KernelPair, cases: list[Case]) -> None:
    """Make `cases`' inputs one after the other, as a check makes them, from nothing a recipe
    remembered (`inputs.remembered`): a shape's first case pays for the draws the later
    ones reuse, so the sum is what a check pays and a repeat is no cheaper."""
    for fn in pair.recipes.values():
        forget = getattr(fn, "forget", None)
        if forget is not None:
            forget()
    for case in cases:
        make_inputs(pair, case)


def fuzz_throughput(pair: KernelPair, options: Options, examples: int = 5, seed: int = 0) -> float:
    """Cases per second of a small fuzz run (each case = 2 versions × 2 poison runs + reference)."""
    drawn = fuzz_cases(pair, examples, seed, list(pair.recipes))
    t0 = time.perf_counter()
    for shape, recipe, s in drawn:
        run_case(pair, Case(shape, recipe, s), options)
    return len(drawn) / max(time.perf_counter() - t0, 1e-9)


def geometric_mean_overhead(rows: list[BenchRow], per_case: bool = False) -> float:
    """Geometric mean of the rows' overheads per run, or (`per_case`) per whole case over the
    rows that measured it (the figure the speed goal is stated in)."""
    vals = [max(r.case_overhead if per_case else r.overhead, 1e-9) for r in rows if r.cases or not per_case]
    return math.exp(sum(math.log(v) for v in vals) / len(vals)) if vals else float("nan")


# Real pypto-lib kernel files benchmarked with `--repo`: (registered pair lending reference,
# inputs and shapes; file:entry; pre revision; retiled revision) at PR #672.
REPO_FILES: tuple[tuple[str, str, str, str], ...] = (
    ("expert_shared", "models/deepseek/v4/expert_shared.py:expert_shared_test", "a8cdc047^", "a8cdc047"),
    ("hc_post", "models/deepseek/v4/hc_post.py:hc_post_test", "a8cdc047^", "a8cdc047"),
)


def bench_repo(repo: str, presets: list[str], options: Options, repeat: int = 1,
               files: tuple[tuple[str, str, str, str], ...] = REPO_FILES) -> tuple[list[BenchRow], list[str]]:
    """Rows for unmodified kernel files of a pypto-lib clone (source mode), and notes for the
    files that could not be loaded or run (named, never silently dropped)."""
    from equiv import registry
    from equiv.errors import SourceError
    from equiv.source.loader import SourceLoader
    from equiv.source.ref import SourceRef
    from equiv.source.pairs import source_pair

    rows: list[BenchRow] = []
    notes: list[str] = []
    loader = SourceLoader()
    for pair_name, spec, pre_rev, retiled_rev in files:
        base = registry.get(pair_name)
        try:
            ref = SourceRef.parse(spec, repo=repo)
            pair = source_pair(base, ref.with_rev(pre_rev), ref.with_rev(retiled_rev), loader=loader,
                               name=spec.split(":")[0].rsplit("/", 1)[-1])
        except SourceError as exc:
            notes.append(f"{spec}: not loaded ({exc})")
            continue
        for preset in presets:
            if preset not in pair.shapes.presets:
                continue
            try:
                rows += bench_preset(pair, preset, options, repeat=repeat)
            except Exception as exc:  # noqa: BLE001 - one file that cannot run must not hide the rest
                notes.append(f"{spec} at {preset}: {type(exc).__name__}: {exc}")
    return rows, notes
