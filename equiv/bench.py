"""Benchmarks: wall time of pre, retiled and the float64 reference per pair and preset, the
emulator's overhead against the reference, fuzzing throughput, and peak memory."""

from __future__ import annotations

import resource
import sys
import time
from dataclasses import dataclass
from typing import Callable

import torch

from equiv.check import fuzz_cases
from equiv.options import Options
from equiv.pair import KernelPair
from equiv.runner import Case, _one_thread, _run_once, make_inputs, run_case


@dataclass
class BenchRow:
    pair: str
    preset: str
    shape: str
    pre_s: float
    retiled_s: float
    reference_s: float
    peak_rss_mb: float

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


def bench_preset(pair: KernelPair, preset: str, options: Options, repeat: int = 1) -> list[BenchRow]:
    if repeat < 1:  # zero runs would report a time of 0 s (or inf) for a kernel never run
        raise ValueError(f"repeat must be ≥ 1, not {repeat}")
    rows = []
    for shape in pair.shapes.preset(preset):
        case = Case(shape, "realistic", 0)
        inputs = make_inputs(pair, case)
        with _one_thread():
            times = {}
            for side in ("pre", "retiled"):
                kernel = pair.kernel(side)
                times[side] = _timed(lambda: _run_once(kernel, pair, case, inputs, options, side), options.device,
                                     repeat)
            ref_inputs = {k: (v.to(options.device) if isinstance(v, torch.Tensor) else v) for k, v in inputs.items()}
            times["reference"] = _timed(lambda: pair.reference(ref_inputs, shape), options.device, repeat)
        rows.append(BenchRow(pair.name, preset, str(shape), times["pre"], times["retiled"], times["reference"],
                             peak_rss_mb()))
    return rows


def fuzz_throughput(pair: KernelPair, options: Options, examples: int = 5, seed: int = 0) -> float:
    """Cases per second of a small fuzz run (each case = 2 versions × 2 poison runs + reference)."""
    drawn = fuzz_cases(pair, examples, seed, list(pair.recipes))
    t0 = time.perf_counter()
    for shape, recipe, s in drawn:
        run_case(pair, Case(shape, recipe, s), options)
    return len(drawn) / max(time.perf_counter() - t0, 1e-9)
