"""Running cases: one shape and one input draw through pre, retiled and the reference.

Each version runs as the variants of `equiv.schedules.plan`: NaN poison under the case's
schedule, finite poison under each other schedule (block orders, atomic-add arrival, rank
turns) and, where anything differs, finite poison under the case's schedule again (with no
other schedule: where the NaN run raised or read uninitialised memory). Elements
that differ between runs that differ only in poison depend on uninitialised memory; between
runs that differ only in schedule, they are nondeterministic; elements never written are
unwritten. The reference
runs once in float64. `compare.compare_output` turns that into a verdict per output.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import os
import time
import traceback
from typing import Any, Callable, Mapping

import torch

from equiv import forked, schedules
from equiv.results import Case, CaseResult, OutputResult
from equiv.compare import SideRun, bits_equal, compare_output
from equiv.inputs import generator
from equiv.machine import usable_cpus
from equiv.tile.context import RunContext, running
from equiv.tile.memory import Tensor
from equiv.tile.sites import short_path
from equiv.observe import attribution, cause
from equiv.observe.clients import make_clients
from equiv.options import Options
from equiv.pair import KernelPair
from equiv.shared_inputs import Stored, input_bytes, storage_forms
from equiv.tile.rewrite import batched_kernel

SIDES = ("pre", "retiled")


def make_inputs(pair: KernelPair, case: Case) -> dict[str, Any]:
    if case.recipe not in pair.recipes:
        raise KeyError(f"{pair.name} has no input recipe {case.recipe!r}; it has {', '.join(pair.recipes)}")
    return pair.recipes[case.recipe](case.shape, generator(case.seed))


def _kernel_error(exc: BaseException) -> str:
    """The exception, located at its innermost frame outside the emulator (the kernel's line)."""
    site = None
    for fs in traceback.extract_tb(exc.__traceback__):
        if f"{os.sep}equiv{os.sep}" not in fs.filename:
            site = f"{short_path(fs.filename)}:{fs.lineno}"
    msg = f"{type(exc).__name__}: {exc}"
    return msg if not site or site in msg else f"{msg} (at {site})"


_EQUIV_DIR = os.path.dirname(os.path.abspath(__file__))


class KernelFailure(str):
    """An exception of a kernel run as text, with what it means: ``gap`` (the emulator lacks an
    op or form: cannot judge), ``rejected`` (the kernel's own assert refused the shape) or
    ``error`` (the kernel failed)."""

    kind: str = "error"

    def __new__(cls, text: str, kind: str = "error") -> "KernelFailure":
        obj = super().__new__(cls, text)
        obj.kind = kind
        return obj


def _inside_equiv(filename: str) -> bool:
    return os.path.abspath(filename).startswith(_EQUIV_DIR + os.sep)


_EMULATOR_NAMES: set[str] | None = None


def _emulator_names() -> set[str]:
    """Function and class names the emulator defines (what a TypeError message may name)."""
    global _EMULATOR_NAMES
    if _EMULATOR_NAMES is None:
        import inspect as _inspect

        from equiv.tile import table

        names: set[str] = set()
        for obj in table.NAMES.values():
            target = obj if _inspect.isclass(obj) or callable(obj) else type(obj)
            n = getattr(target, "__name__", None)
            if n and getattr(target, "__module__", "").startswith("equiv"):
                names.add(n)
            if not _inspect.isclass(obj) and getattr(type(obj), "__module__", "").startswith("equiv"):
                names.add(type(obj).__name__)
        _EMULATOR_NAMES = names
    return _EMULATOR_NAMES


def classify_exception(exc: BaseException) -> str:
    """``gap`` / ``rejected`` / ``error`` for an exception a kernel run raised.

    A gap is `UnsupportedOpError`, or a TypeError/AttributeError/NotImplementedError raised
    inside the emulator's code (innermost frame in the equiv package) or naming one of its
    objects (an unsupported keyword, an emulator object used in a form it lacks, such as a
    context manager). A rejection is an `AssertionError` raised by the kernel's own code.
    """
    from equiv.tile.errors import UnsupportedOpError

    if isinstance(exc, UnsupportedOpError):
        return "gap"
    frames = traceback.extract_tb(exc.__traceback__)
    innermost = frames[-1].filename if frames else ""
    if isinstance(exc, AssertionError):
        return "rejected" if innermost and not _inside_equiv(innermost) else "error"
    if isinstance(exc, (TypeError, AttributeError, NotImplementedError)):
        if innermost and _inside_equiv(innermost):
            return "gap"
        obj = getattr(exc, "obj", None)
        if obj is not None and type(obj).__module__.startswith("equiv."):
            return "gap"
        import re as _re

        text = str(exc)
        m = _re.search(r"(\w+)(?:\.__init__)?\(\) got an unexpected keyword argument", text) \
            or _re.search(r"'(\w+)' object (?:does not support|is not|has no)", text)
        if m and m.group(1) in _emulator_names():
            return "gap"
    return "error"


def _run_once(kernel: Callable, pair: KernelPair, case: Case, inputs: Mapping[str, Any], options: Options,
              side: str, observe: SideRun | None = None,
              stages: dict[str, int] | None = None,
              loops: dict[str, int] | None = None,
              order_ops: list[dict] | None = None,
              tracer: cause.OpTrace | None = None,
              reads: dict[str, Any] | None = None) -> tuple[dict[str, Tensor] | None, list[dict], str | None]:
    """One run of `kernel`; `stages`, when given, receives how its parallel stages ran
    (``"batched"``: count, else the reason a stage ran one block at a time: count), and
    `loops` how the sequential loops inside batched stages ran (``"as lanes"``: count, else
    the reason a loop ran iteration by iteration: count), `order_ops` the order-dependent
    operations it executed (equiv.schedules), and `reads` under ``"uninitialised"`` its
    first read of uninitialised memory (text), or None where it read none."""
    # Every run has the hazard detectors; one observed run per version also has the others
    # (decisions, writer sites: the second run, on finite poison, would only add decisions
    # taken on uninitialised values); a traced run has the tracer (equiv.observe.cause).
    clients = make_clients(options, observed=observe is not None and tracer is None)
    ctx = RunContext(options, kernel_name=f"{pair.name}:{side}",
                     clients=clients + ([tracer] if tracer is not None else []))
    with running(ctx), contextlib.ExitStack() as lent, cause.tracing(tracer):
        lent.callback(ctx.give_back)  # inputs the run wrote are restored for the next run
        args: dict[str, Any] = {}
        for name, value in inputs.items():
            if isinstance(value, Stored):  # converted once for the whole case (equiv.shared_inputs)
                args[name] = Tensor.from_torch(name, value.data, borrow=True, dtype=value.dtype)
            else:
                args[name] = (Tensor.from_torch(name, value.to(options.device), borrow=True)
                              if isinstance(value, torch.Tensor) else value)
        outs = {name: Tensor(name, shape, dt) for name, (shape, dt) in pair.outputs(case.shape).items()}
        error = None
        try:
            # Parallel loops rewritten for batched blocks (a no-op where Options.batch_blocks is off).
            batched_kernel(kernel)(**args, **outs, cfg=case.shape)
        except Exception as exc:  # a kernel that raises is a verdict, not a crash
            error = KernelFailure(_kernel_error(exc), classify_exception(exc))
        for client in ctx.fan.run_end:
            client.on_run_end(ctx, outs, observe)
        if order_ops is not None:
            order_ops.extend(schedules.order_ops(ctx))
        if reads is not None:
            reads["uninitialised"] = ctx.uninitialised
        for counts, run_counts in ((stages, ctx.batch_stats), (loops, ctx.loop_stats)):
            for why, n in run_counts.items() if counts is not None else ():
                counts[why] = counts.get(why, 0) + n
        return outs, [f.to_dict() for f in ctx.findings.values()], error


LARGE_INPUTS = 256 * 2**20


def _free_large(inputs: Mapping[str, Any]) -> None:
    """After a run on large inputs, collect what cycles still hold of its copies (a kernel's
    frames and tiles), so the next run does not hold two sets of GB-size weights at once."""
    if input_bytes(inputs) > LARGE_INPUTS:
        import gc

        gc.collect()


def run_side(pair: KernelPair, side: str, case: Case, inputs: Mapping[str, Any], options: Options) -> SideRun:
    run = SideRun(side)
    rejected = pair.rejection(side, case.shape)
    if rejected:
        run.rejected = rejected
        return run
    kernel = pair.kernel(side)
    base = options.replace(**dict(case.variant))
    first, others, same_order = schedules.plan(base.schedules)

    def once(variant: schedules.RunVariant, observe: SideRun | None = None, reads: dict | None = None):
        done: list[dict] = []
        got = _run_once(kernel, pair, case, inputs, variant.options(base, case.seed), side, observe=observe,
                        order_ops=done, reads=reads)
        _free_large(inputs)
        return got, done

    def in_child(variant: schedules.RunVariant):
        (outs, haz, err), done = once(variant)
        return (forked.portable(outs), haz, err), done

    # The schedule runs do not depend on the first: where a CPU is free they run beside it.
    forking = bool(others) and forked.reason_not_to_fork(base, input_bytes(inputs)) is None
    children = [forked.Child(lambda v=v: in_child(v)) for v in others[:usable_cpus() - 1]] if forking else []
    reads: dict[str, Any] = {}
    t0 = time.perf_counter()
    try:
        made = [once(first, observe=run, reads=reads)]
        timeout = forked.child_timeout(time.perf_counter() - t0)
        for i, variant in enumerate(others):
            got = children[i].result(timeout) if i < len(children) else None
            made.append(got if got is not None else once(variant))
    except BaseException:  # a deadline or an interrupt: no child outlives the run it belongs to
        for child in children:
            child.cancel()
        raise
    runs = [got for got, _ in made]
    ops = [done for _, done in made]
    needed, why = _poison_run_needed(runs, bool(others), base, reads.get("uninitialised"))
    run.poison_run = {"ran": needed, "why": why}
    poison = None
    if needed:
        poison, done = once(same_order)
        ops.append(done)
    every = runs + ([poison] if poison else [])
    if poison is None and not others:
        # Left out because it cannot differ: its outputs are the NaN run's where written and
        # the patterned poison it would have started with elsewhere.
        poison = (_as_poison_run(pair, case, base, same_order, runs[0][0]), [], None)
    run.error = next((err for _, _, err in every if err), None)
    kind = getattr(run.error, "kind", "error")
    if kind == "gap":
        run.gap = str(run.error)
    elif kind == "rejected":
        # The kernel's own assert refused the shape: that side rejects it (not a defect).
        run.rejected, run.error = str(run.error), None
    seen = set()
    for _, haz, _ in every:
        for h in haz:
            key = (h["kind"], h["tensor"], h["site"])
            if key not in seen:
                seen.add(key)
                run.hazards.append(h)
    run.order_ops, run.order_free = schedules.merge_ops(ops)
    outs_a = runs[0][0]
    for name in outs_a:
        a = outs_a[name]
        va = a.to_torch().cpu()
        run.outputs[name] = va
        written = a.written
        for outs, _, _ in every[1:]:
            written = written & outs[name].written
        run.written[name] = written.cpu()
        if poison is None:
            run.poisoned[name] = torch.zeros(va.shape, dtype=torch.bool)
            run.nondeterministic[name] = torch.zeros(va.shape, dtype=torch.bool)
            continue
        vp = poison[0][name]
        vp = vp.to_torch().cpu() if isinstance(vp, Tensor) else vp
        run.poisoned[name] = ~bits_equal(va, vp)
        spread = torch.zeros(va.shape, dtype=torch.int64)
        for outs, _, _ in runs[1:]:
            spread = torch.maximum(spread, schedules.spread(outs[name].to_torch().cpu(), vp))
        run.nondeterministic[name] = spread != 0
        run.spread[name] = spread
    run.schedules = base.schedules
    if poison is not None:
        schedules.add_findings(run, [o for o, _, _ in runs[1:]], poison[0])
    return run


def _poison_run_needed(runs: list, others: bool, options: Options, read: str | None) -> tuple[bool, str]:
    """Whether a version's patterned-poison run runs, and why (every surface shows it)."""
    if others:
        # The poison run separates the causes; where nothing differs there is nothing to separate.
        if any(err for _, _, err in runs):
            return True, "a run raised: the patterned-poison run tells poison apart from order"
        if schedules.outputs_differ(runs[0][0], [o for o, _, _ in runs[1:]]):
            return True, "outputs differ between schedules: the patterned-poison run tells poison apart from order"
        return False, "outputs agree between schedules: nothing to separate"
    if options.second_poison_run == "always":
        return True, "second_poison_run=always"
    if runs[0][2]:
        return True, "the NaN-poison run raised"
    if read:
        return True, f"the NaN-poison run read uninitialised memory: {read}"
    return False, "the NaN-poison run read no uninitialised memory: a patterned-poison run gives the same bits"


def _as_poison_run(pair: KernelPair, case: Case, base: Options, variant: schedules.RunVariant,
                   outs: Mapping[str, Tensor] | None) -> dict[str, torch.Tensor]:
    """The outputs a patterned-poison run gives for a run that read no uninitialised memory:
    the same bits where written, elsewhere the poison they start with there (drawn as
    `_run_once` draws it: outputs made in order, first, at the kernel's root)."""
    got: dict[str, torch.Tensor] = {}
    if outs is None:
        return got
    start = None
    for name, t in outs.items():
        va = t.to_torch().cpu()
        written = t.written.cpu()
        if bool(written.all()):
            got[name] = va
            continue
        if start is None:
            ctx = RunContext(variant.options(base, case.seed), kernel_name=f"{pair.name}:poison", clients=[])
            with running(ctx):
                start = {n: Tensor(n, shape, dt) for n, (shape, dt) in pair.outputs(case.shape).items()}
        got[name] = torch.where(written, va, start[name].to_torch().cpu())
    return got


class _one_thread:
    """Run on one intra-op thread: the emulator's many small ops are several times slower with more."""

    def __enter__(self):
        self.saved = torch.get_num_threads()
        torch.set_num_threads(1)

    def __exit__(self, *exc):
        torch.set_num_threads(self.saved)


def run_case(pair: KernelPair, case: Case, options: Options | None = None, keep_runs: bool = False,
             causes: bool = True) -> CaseResult:
    """Run one case of `pair` and compare every output (`keep_runs` keeps each version's raw run;
    `causes`: observe each finding's cause in traced runs)."""
    with _one_thread():
        return _run_case(pair, case, options or Options(), keep_runs, causes)


def _run_case(pair: KernelPair, case: Case, options: Options, keep_runs: bool = False,
              causes: bool = True) -> CaseResult:
    t0 = time.perf_counter()
    rejected = {side: pair.rejection(side, case.shape) for side in SIDES}
    # A pair that judges a lone side (pair-free) still runs the version that accepts the shape.
    lone = getattr(pair, "judge_lone_side", False) and not all(rejected.values())
    inputs = None
    if any(rejected.values()) and not lone:
        # A shape outside a version's preconditions is not run at all: the verdict is `rejected`.
        runs = {side: SideRun(side, rejected=rejected[side]) for side in SIDES}
    else:
        inputs = make_inputs(pair, case)
        # Converted to the runs' storage form once, shared by both versions and every variant.
        lent = storage_forms(inputs, options.device)
        runs = {}
        for side in SIDES:
            if rejected[side]:
                runs[side] = SideRun(side, rejected=rejected[side])
            elif side == "retiled" and getattr(pair, "identical_sides", False):
                # One program on both sides (a same-revision pair-free check): the emulator is
                # deterministic for given options, so retiled's runs are pre's, not run again.
                runs[side] = copy.copy(runs["pre"])
                runs[side].side = side
                if runs["pre"].poison_run:
                    runs[side].poison_run = {**runs["pre"].poison_run, "runs_of": "pre"}
            else:
                runs[side] = run_side(pair, side, case, lent, options)
        del lent  # before the reference: the stored forms are the runs' alone
    ref = None
    ref_error = None
    if inputs is not None:
        try:
            # The reference is the case's last user of its inputs: no copy of them here (a
            # pair-free golden gets its own copies; Pro-size weights are GBs).
            ref = pair.reference(inputs, case.shape)
        except Exception as exc:
            ref_error = f"reference raised {type(exc).__name__}: {exc}"
    outputs = {}
    for name, (shape, _dt) in pair.outputs(case.shape).items():
        dims = ("rows", "cols") if len(shape) == 2 else ()
        contract = pair.contract_for(name) if hasattr(pair, "contract_for") else pair.contract
        outputs[name] = compare_output(name, runs["pre"], runs["retiled"], None if ref is None else ref.get(name),
                                       contract, pair.accuracy_slack, dims)
        if ref_error:
            outputs[name].reasons.append(ref_error)
        _attribute(outputs[name], name, runs)
    if hasattr(pair, "judge_case") and inputs is not None:
        # A model file's own contract (its harness, comparison and golden) refines the verdicts.
        pair.judge_case(case, runs, inputs, ref, ref_error, outputs)
    if inputs is not None and causes:
        _observe_causes(pair, case, inputs, options, outputs, runs)
    return CaseResult(pair.name, case, outputs,
                      hazards={s: r.hazards for s, r in runs.items() if r.hazards},
                      errors={s: r.error for s, r in runs.items() if r.error},
                      seconds=time.perf_counter() - t0, runs=runs if keep_runs else None, command=pair.command,
                      decisions={s: getattr(r, "decisions", {}) for s, r in runs.items() if getattr(r, "decisions", None)},
                      poison_runs={s: r.poison_run for s, r in runs.items() if r.poison_run})


def _observe_causes(pair: KernelPair, case: Case, inputs: Mapping[str, Any], options: Options,
                    outputs: Mapping[str, OutputResult], runs: Mapping[str, SideRun]) -> None:
    """Each finding's cause, observed in traced runs (equiv.observe.cause)."""
    base = options.replace(**dict(case.variant))

    variants = {"first": schedules.RunVariant("first", "nan", 0), "poison": schedules.RunVariant("poison", "pattern", 0),
                "order": schedules.RunVariant("schedule", "pattern", 1)}

    def trace(side: str, which: str) -> cause.OpTrace:
        variant = variants[which]
        tracer = cause.OpTrace()
        _run_once(pair.kernel(side), pair, case, inputs, variant.options(base, case.seed), side, tracer=tracer)
        _free_large(inputs)
        return tracer

    cause.attach(outputs, runs, trace)


def _attribute(out: OutputResult, name: str, runs: Mapping[str, SideRun]) -> None:
    """Explain each unwritten or uninitialised region with the sites that wrote it (writer attribution)."""
    caps = {s: r.attribution for s, r in runs.items() if getattr(r, "attribution", None) is not None}
    if not caps:
        return
    for side, run in runs.items():
        if run.error or run.rejected or name not in run.written:
            continue
        for what, mask in (("unwritten", ~run.written[name]),
                           ("uninitialised", run.poisoned[name] & run.written[name])):
            if not bool(mask.any()):
                continue
            why = attribution.explain(name, side, mask, caps, what)
            if why["text"]:
                out.attribution.append(why)
                out.reasons.append(f"why {side} {what}: {why['text']}")


def variants(pair: KernelPair, fixed: Mapping[str, Any] | None = None) -> list[tuple[tuple[str, Any], ...]]:
    """Every combination of the pair's option sweep (a fixed value overrides a swept one)."""
    fixed = dict(fixed or {})
    keys = [k for k in pair.sweep if k not in fixed]
    combos = itertools.product(*(pair.sweep[k] for k in keys)) if keys else [()]
    out = []
    for combo in combos:
        v = dict(zip(keys, combo))
        v.update(fixed)
        out.append(tuple(sorted(v.items())))
    return out or [tuple(sorted(fixed.items()))]


def shrink(pair: KernelPair, result: CaseResult, options: Options, budget: int = 40,
           on_try: Callable[[Case], None] | None = None) -> CaseResult:
    """A smaller case with the same verdicts on the same outputs (greedy, bounded by `budget` runs);
    `result` itself where no output was judged (every verdict ``cannot judge`` or equivalent).

    Tries, per dimension, the smallest values of its domain first (then halving and -1),
    and the realistic recipe and seed 0, keeping a change when the verdicts stay the same.
    """
    target = result.verdicts
    best = result
    tries = 0
    if all(v in ("cannot judge", "equivalent") for v in target.values()):
        # Nothing was judged: a smaller case would only show the same gap again, and each try
        # of a large model file costs a full run.
        return result

    def attempt(case: Case) -> CaseResult | None:
        nonlocal tries
        if tries >= budget:
            return None
        try:
            pair.shapes.validate(case.shape)
        except ValueError:
            return None
        tries += 1
        if on_try:
            on_try(case)
        r = run_case(pair, case, options, causes=False)  # the cause of the case kept is observed at the end
        return r if r.verdicts == target else None

    improved = True
    while improved and tries < budget:
        improved = False
        c = best.case
        for name, dim in pair.shapes.dims.items():
            v = c.shape[name]
            cands = sorted({x for x in dim.interesting() if x < v} | {v // 2, v - 1})
            for cand in cands:
                if cand >= v or not dim.contains(cand):
                    continue
                r = attempt(Case(c.shape.replace(**{name: cand}), c.recipe, c.seed, c.variant))
                if r is not None:
                    best, improved = r, True
                    break
            c = best.case
        if c.recipe != "realistic":
            r = attempt(Case(c.shape, "realistic", c.seed, c.variant))
            if r is not None:
                best, improved = r, True
        c = best.case
        if c.seed != 0:
            r = attempt(Case(c.shape, c.recipe, 0, c.variant))
            if r is not None:
                best, improved = r, True
    if best is not result:
        # The tries ran without traced runs; the case kept is run once more with them.
        again = run_case(pair, best.case, options)
        best = again if again.verdicts == target else best
    return best
