"""Checking a pair over a set of shapes: explicit ones, presets, or Hypothesis fuzzing.

``check(pair, shapes="fuzz")`` runs every named preset under every input recipe (the
explicit examples), then ``examples`` more cases drawn by Hypothesis from the pair's shape
space and recipes. Every non-equivalent verdict is shrunk to a minimal counterexample and
given a one-line repro.
"""

from __future__ import annotations

import atexit
import inspect
import time
from typing import Any, Callable, Mapping, Sequence

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from hypothesis import target

from equiv.results import Case, CaseResult, CheckResult
from equiv.observe import decisions as decision_cov
from equiv.options import Options
from equiv.pair import KernelPair
from equiv.runner import make_inputs, run_case, shrink, variants
from equiv.shapes import Shape
from equiv.errors import KernelSignatureError, ShapeError
from equiv.request import CheckRequest, Shard, request_from

DEFAULT_FUZZ_EXAMPLES = 30


def check_signatures(pair: KernelPair, case: Case) -> None:
    """Raise `KernelSignatureError` when pre or retiled cannot take ``(**inputs, **outputs, cfg=)``."""
    try:
        names = [*make_inputs(pair, case), *pair.outputs(case.shape), "cfg"]
    except Exception:  # noqa: BLE001 - a recipe that fails is reported by the case itself
        return
    for side in ("pre", "retiled"):
        kernel = pair.kernel(side)
        try:
            sig = inspect.signature(kernel)
        except (TypeError, ValueError):  # not introspectable (a builtin, a source-mode loader): run it
            continue
        try:
            sig.bind(**{n: None for n in names})
        except TypeError as exc:
            label = getattr(kernel, "__qualname__", type(kernel).__name__)
            raise KernelSignatureError(
                f"{pair.name}: the {side} kernel {label}{sig} cannot be called with the pair's arguments "
                f"({', '.join(names)}): {exc}") from None


def explicit_shapes(pair: KernelPair, spec: str) -> list[Shape] | None:
    """Shapes named by `spec` ('presets' = every named preset, one preset, or literal shapes separated
    by ';'); None for 'fuzz'."""
    if spec == "fuzz":
        return None
    if spec == "presets":
        return pair.shapes.all_presets()
    if spec in pair.shapes.presets:
        return pair.shapes.preset(spec)
    if "=" in spec:
        return [pair.shapes.parse(part) for part in spec.split(";") if part.strip()]
    known = ", ".join(["fuzz", "presets", *pair.shapes.presets])
    raise ShapeError(f"unknown shape set {spec!r} for {pair.name}: use one of {known}, "
                     f"or a literal shape like '{','.join(f'{k}={v}' for k, v in pair.shapes.base().items())}'")


def fuzz_cases(pair: KernelPair, examples: int, seed: int, recipes: Sequence[str],
               feedback: Callable[[tuple[Shape, str, int]], dict[str, float]] | None = None
               ) -> list[tuple[Shape, str, int]]:
    """`examples` (shape, recipe, input seed) triples drawn by Hypothesis, reproducibly from `seed`.

    With `feedback` (run the triple, return scores such as newly covered decision outcomes
    and the pre/retiled ULP distance), each drawn triple is run as it is drawn and its scores
    go to Hypothesis' ``target()``, whose targeting phase mutates the best-scoring draws."""
    drawn: list[tuple[Shape, str, int]] = []
    if examples <= 0:
        return drawn
    strategy = st.tuples(pair.shapes.strategy(), st.sampled_from(list(recipes)), st.integers(0, 2**31 - 1))
    phases = [Phase.generate, Phase.target] if feedback else [Phase.generate]

    @hypothesis_seed(seed)
    @settings(max_examples=examples, database=None, deadline=None, phases=phases,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def draw(triple):
        if triple not in drawn and len(drawn) < examples:
            drawn.append(triple)
            if feedback:
                for label, score in feedback(triple).items():
                    target(float(score), label=label)

    draw()
    return drawn


def _check_examples(examples: Any) -> None:
    if examples is not None and (isinstance(examples, bool) or not isinstance(examples, int) or examples < 0):
        raise ValueError(f"examples must be an integer ≥ 0, not {examples!r}")


def plan(pair: KernelPair, shapes: str = "nominal", examples: int | None = None, seed: int = 0,
         recipes: Sequence[str] | None = None, fixed: Mapping[str, Any] | None = None) -> list[Case]:
    """The cases a check will run."""
    recipes = list(recipes or pair.recipes)
    unknown = [r for r in recipes if r not in pair.recipes]
    if unknown:
        raise ValueError(f"{pair.name} has no input recipe {', '.join(unknown)}; it has {', '.join(pair.recipes)}")
    vs = variants(pair, fixed)
    explicit = explicit_shapes(pair, shapes)
    triples: list[tuple[Shape, str, int]] = []
    _check_examples(examples)
    if explicit is not None:
        if examples == 0:
            raise ValueError(f"examples=0 with the shapes {shapes!r} runs no case; give at least 1 "
                             f"(seeds per shape), or use --shapes fuzz for presets only")
        reps = examples or 1
        triples = [(s, r, seed + i) for s in explicit for r in recipes for i in range(reps)]
    else:
        triples = [(s, r, seed) for s in pair.shapes.all_presets() for r in recipes]
        triples += fuzz_cases(pair, DEFAULT_FUZZ_EXAMPLES if examples is None else examples, seed, recipes)
    return [Case(s, r, sd, v) for s, r, sd in triples for v in vs]




def parse_shard(text: str) -> Shard:
    """``"K/N"`` -> (K, N); ValueError unless 1 <= K <= N."""
    try:
        k_text, n_text = text.split("/")
        k, n = int(k_text), int(n_text)
    except ValueError:
        raise ValueError(f"shard {text!r}: expected K/N, e.g. 2/4") from None
    if not 1 <= k <= n:
        raise ValueError(f"shard {text!r}: K must be between 1 and N")
    return k, n


def shard_of(key: str, n: int) -> int:
    """The shard (1..n) a work item belongs to: a stable hash of its key, the same on every
    machine and Python version (unlike ``hash``), so a CI matrix splits one campaign."""
    import hashlib

    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % n + 1


def case_shard_key(pair_name: str, case: Case) -> str:
    import json

    return json.dumps([pair_name, case.to_dict()], sort_keys=True, default=str)


def in_shard(pair_name: str, case: Case, shard: Shard | None) -> bool:
    """Whether `case` of `pair_name` runs in `shard` (every case when `shard` is None)."""
    return shard is None or shard_of(case_shard_key(pair_name, case), shard[1]) == shard[0]


def check(pair: KernelPair | str, request: CheckRequest | None = None, *,
          lookup: Callable[[str], KernelPair] | None = None, **fields: Any) -> CheckResult:
    """Check `pair` (a `KernelPair`, or a registered name with `lookup`) as `request` asks
    (`equiv.request.CheckRequest`; `fields` change some of its fields, or of the defaults:
    ``check(pair, shapes="fuzz")``).

    The request's `shapes` are "nominal", "fuzz", a preset name, or "T=8,D=7168"; `fixed` pins
    option values the pair would otherwise sweep (e.g. one row_sum order); `time_budget`
    (seconds) stops drawing new cases once exceeded (the CI profile uses it); `keep_runs`
    keeps each non-equivalent case's raw runs (so saving it need not rerun it); `shard`
    (k, n) runs only the planned cases whose stable hash falls in shard k of n, the n shards
    together running exactly the unsharded cases (`equiv report` merges their results);
    `jobs` > 1 runs the planned cases of a registered pair in that many worker processes
    (same results, in plan order), fuzzing steered by earlier cases and shrinking staying here.
    `lookup` finds a registered pair by its name (`equiv.registry.get`, which `equiv.check`
    passes): the workers of `jobs` rebuild the pair with it, so without it the cases run here.
    """
    req = request_from(request, fields)
    shapes, examples, seed, recipes, fixed = req.shapes, req.examples, req.seed, req.recipe_list, req.fixed
    progress, shrink_budget, time_budget, keep_runs = req.progress, req.shrink_budget, req.time_budget, req.keep_runs
    shard, jobs = req.shard, req.jobs
    options = req.options
    if isinstance(pair, str):
        if lookup is None:
            raise TypeError(f"check({pair!r}): a pair's name needs lookup=equiv.registry.get "
                            f"(or call equiv.check, which passes it)")
        pair = lookup(pair)
    options = options or Options()
    _check_examples(examples)
    t0 = time.perf_counter()
    # Unsharded fuzzing draws its cases while the earlier ones run, steered by their decision
    # coverage and ULP distance (`feedback`); shards need one fixed plan, so they draw blind.
    steered = shapes == "fuzz" and shard is None
    n_fuzz = (DEFAULT_FUZZ_EXAMPLES if examples is None else examples) if steered else 0
    cases = plan(pair, shapes, 0 if steered else examples, seed, recipes, fixed)
    if cases:
        check_signatures(pair, cases[0])
    cases = [c for c in cases if in_shard(pair.name, c, shard)]
    vs = variants(pair, fixed)
    total = len(cases) + n_fuzz * len(vs)
    results: list[CaseResult] = []
    coverage: dict[str, dict] = {"pre": {}, "retiled": {}}

    def record(result: CaseResult) -> CaseResult:
        if keep_runs and not set(result.verdicts.values()) - {"equivalent"}:
            result.runs = None  # only cases that will be saved keep their outputs in memory
        results.append(result)
        for side, sites in result.decisions.items():
            decision_cov.merge(coverage.setdefault(side, {}), sites)
        return result

    def run_one(case: Case) -> CaseResult | None:
        if time_budget is not None and results and time.perf_counter() - t0 > time_budget:
            return None
        if progress:
            progress(pair.name, len(results), max(total, len(results) + 1), case)
        return record(run_case(pair, case, options, keep_runs=keep_runs))

    if jobs > 1 and len(cases) > 1 and lookup is not None and _registered(pair, lookup):
        for case, result in zip(cases, _run_in_workers(lookup, pair.name, cases, options, keep_runs, jobs)):
            if progress:
                progress(pair.name, len(results), max(total, len(results) + 1), case)
            record(result)
    else:
        for case in cases:
            if run_one(case) is None:
                break

    def feedback(triple: tuple[Shape, str, int]) -> dict[str, float]:
        # Scores for Hypothesis' target(): retiled decision outcomes this case newly covered,
        # and its largest pre/retiled ULP distance.
        before = decision_cov.covered_outcomes(coverage["retiled"])
        ulp = 0
        for v in vs:
            r = run_one(Case(triple[0], triple[1], triple[2], v))
            if r is None:
                break
            ulp = max([ulp] + [o.max_ulp for o in r.outputs.values() if o.verdict != "rejected"])
        return {"new decision outcomes": decision_cov.covered_outcomes(coverage["retiled"]) - before,
                "pre/retiled ULP distance": min(ulp, 2**20)}

    if n_fuzz and not (time_budget is not None and results and time.perf_counter() - t0 > time_budget):
        fuzz_cases(pair, n_fuzz, seed, list(recipes or pair.recipes), feedback=feedback)
    if progress:
        progress(pair.name, len(results), max(total, len(results)), None)
    counterexamples = []
    seen: set[tuple] = set()
    for r in results:
        key = tuple(sorted((k, v) for k, v in r.verdicts.items() if v != "equivalent"))
        if not key or key in seen:
            continue
        seen.add(key)
        small = shrink(pair, r, options, budget=shrink_budget) if shrink_budget else r
        counterexamples.append(small)
    return CheckResult(pair.name, str(pair.contract), shapes, seed, results, counterexamples,
                       time.perf_counter() - t0, options.to_dict(),
                       decisions=decision_cov.summary(pair.name, {s: c for s, c in coverage.items() if c}))


def _registered(pair: KernelPair, lookup: Callable[[str], KernelPair]) -> bool:
    """Whether worker processes can rebuild `pair` from its name (a registered pair as is)."""
    try:
        return lookup(pair.name) is pair
    except Exception:  # noqa: BLE001 - not registered, or a variant of a registered name
        return False


def _run_registered(lookup: Callable[[str], KernelPair], name: str, case: Case, options: Options,
                    keep_runs: bool) -> CaseResult:
    return run_case(lookup(name), case, options, keep_runs=keep_runs)


_POOLS: dict[int, Any] = {}


def _run_in_workers(lookup: Callable[[str], KernelPair], name: str, cases: list[Case], options: Options,
                    keep_runs: bool, jobs: int):
    """Results of `cases` run by `jobs` worker processes, yielded in plan order. The workers
    are kept for the next pair of a ``--all`` run (starting one imports torch)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    pool = _POOLS.get(jobs)
    if pool is None:
        # spawn: a forked child of a process whose torch thread pools already ran can hang.
        pool = _POOLS[jobs] = ProcessPoolExecutor(max_workers=jobs,
                                                  mp_context=multiprocessing.get_context("spawn"))
        atexit.register(pool.shutdown, cancel_futures=True)
    futures = [pool.submit(_run_registered, lookup, name, c, options, keep_runs) for c in cases]
    try:
        for future in futures:
            yield future.result()
    finally:
        for future in futures:
            future.cancel()


__all__ = ["check", "plan", "parse_shard", "shard_of", "in_shard", "fuzz_cases", "explicit_shapes", "DEFAULT_FUZZ_EXAMPLES"]
