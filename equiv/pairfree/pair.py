"""A pair-free check: one entry of a model file at two revisions, as a `KernelPair`.

The runner, comparison and check machinery of registered pairs judges it unchanged (poisoned
outputs with written-masks, two poison runs, bounds, races, decision coverage, shrinking):

* **shape** = ``mode`` (index into the modes the file's ``__main__`` defines for the entry)
  plus the config constants safe to vary (token counts, batch and sequence sizes the file
  names), each rebinding the config while it loads (`equiv.source`);
* **kernel** = the entry found by running the file's ``__main__`` at that revision and shape;
* **inputs** = the file's own specs at the pre revision, seeded per case (`specs`);
* **reference** = the file's golden (`reference`);
* **preconditions** = the file's own module-level asserts: a side whose file (or config)
  asserts at a shape rejects it.
"""

from __future__ import annotations

import os
import re
import time
import traceback
import types
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch

from equiv.tile.memory import Tensor
from equiv.pair import BIT_EXACT, Contract, KernelPair
from equiv.pairfree import specs
from equiv.errors import DiscoveryError, InputsTooLarge
from equiv.pairfree import discovery
from equiv.pairfree import golden as golden_stub
from equiv.pairfree.reference import Reference, reference_for
from equiv.shapes import Dim, Shape, ShapeSpace
from equiv.source.overrides import MODEL_KEY
from equiv.source.loader import SourceLoader
from equiv.source.ref import SourceRef

# Config constants a check may vary: counts of tokens, requests, sequence positions.
SAFE_CONSTANT = re.compile(r"^(DECODE|PREFILL|MOE|MTP|NUM)?_?(BATCH|SEQ|TOKENS|SEQ_LEN|BATCH_SIZE)$|"
                           r"^(DECODE|PREFILL|MOE|MTP)_(BATCH|SEQ|TOKENS)\w*$")
EQUIV_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def kernel_assertion(exc: BaseException) -> str | None:
    """The message of an `AssertionError` the kernel's own code raised (its innermost frame is
    outside equiv), with its file:line; None for anything else."""
    if not isinstance(exc, AssertionError):
        return None
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames or os.path.abspath(frames[-1].filename).startswith(EQUIV_DIR + os.sep):
        return None
    last = frames[-1]
    text = str(exc) or (last.line or "assert")
    return f"{text} (assert at {last.filename}:{last.lineno})"


@dataclass(eq=False)
class Revisions:
    """Both revisions of one file, how they are loaded, and what their ``__main__`` blocks call."""

    pre: SourceRef
    retiled: SourceRef
    model: str | None = None
    config: Mapping[str, Any] = field(default_factory=dict)
    fuzz_dims: tuple[str, ...] = ()
    # Config values of the fuzz dims: a shape at a default loads the module as it is (one
    # module, one discovery, instead of one more per "override" that changes nothing).
    fuzz_defaults: dict = field(default_factory=dict)
    loader: SourceLoader = field(default_factory=lambda: SourceLoader(stand_ins={"golden": golden_stub.make_module()}))
    _plans: dict = field(default_factory=dict)
    _too_large: dict = field(default_factory=dict)  # plan key -> InputsTooLarge, sized once
    _rejects: dict = field(default_factory=dict)    # plan key -> the AssertionError of loading it

    def ref(self, side: str) -> SourceRef:
        return self.pre if side == "pre" else self.retiled

    def overrides(self, shape: Mapping[str, int] | None = None) -> dict[str, Any]:
        out = dict(self.config)
        if self.model:
            out[MODEL_KEY] = self.model
        for d in self.fuzz_dims:
            if shape is not None and d in shape and int(shape[d]) != self.fuzz_defaults.get(d):
                out[d] = int(shape[d])
        return out

    def module(self, side: str, shape: Mapping[str, int] | None = None) -> types.ModuleType:
        return self.loader.load(self.ref(side), self.overrides(shape))

    def drop_kept_inputs(self) -> None:
        """Forget the first-case inputs every discovery kept (`discovery.Plan.take`)."""
        for plan in self._plans.values():
            plan.inputs.clear()

    def plan(self, side: str, shape: Mapping[str, int] | None = None) -> discovery.Plan:
        # Keyed by the file's identity, not the side: a same-revision check discovers once (the
        # __main__ block builds the file's specs, minutes for Pro-size weights).
        key = (self.ref(side).identity(), repr(sorted(self.overrides(shape).items())))
        if key in self._too_large:
            raise self._too_large[key]
        if key in self._rejects:  # the file's own assert refused this shape: said once, not reloaded
            raise self._rejects[key]
        if key not in self._plans:
            try:
                mod = self.module(side, shape)
            except AssertionError as exc:
                self._rejects[key] = exc
                raise
            source = self.ref(side).read()
            try:
                discovery.check_fits(mod, source)
            except InputsTooLarge as exc:
                self._too_large[key] = exc  # one sizing per file, as one discovery
                raise
            self._plans[key] = discovery.discover(mod, source, seed=first_case_seed())
        return self._plans[key]


def first_case_seed() -> int:
    """The seed the realistic recipe draws for a check's first case (case seed 0): its inputs
    are made once, while the file is discovered, and reused."""
    from equiv.inputs import generator

    return int(torch.randint(0, 2**31 - 1, (1,), generator=generator(0)))


@dataclass(eq=False)
class Entry:
    """One entry of the file checked pair-free: its name, the modes it runs in, its nth call."""

    revisions: Revisions
    name: str
    modes: tuple[str, ...]
    index: int = 0
    # The last materialized call (key, call): the recipes of one case draw the same seed, and
    # building a Pro file's specs takes minutes and GBs. One only: dropped before the next.
    _last: list = field(default_factory=list, repr=False)
    build_seconds: float = 0.0  # the longest materialization so far (what a new shape costs)

    def mode(self, shape: Mapping[str, int]) -> str:
        return self.modes[int(shape.get("mode", 0))]

    def call(self, side: str, shape: Mapping[str, int]) -> discovery.Discovered:
        plan = self.revisions.plan(side, shape)
        mode = self.mode(shape)
        mine = [d for d in plan.found if d.entry == self.name and d.mode == mode]
        if len(mine) <= self.index:
            raise DiscoveryError(
                f"{self.revisions.ref(side).label}: mode {mode} has no run_jit call of {self.name}"
                + (f" #{self.index}" if self.index else ""))
        return mine[self.index]

    def materialized(self, side: str, shape: Mapping[str, int], seed: int) -> golden_stub.RunCall:
        """The call with its inputs made from `seed` (callers must not write its tensors:
        kernel runs and the reference take copies)."""
        d = self.call(side, shape)
        key = (self.revisions.ref(side).identity(), repr(sorted(self.revisions.overrides(shape).items())),
               d.argv, int(seed))
        if self._last and self._last[0][0] == key:
            return self._last[0][1]
        self._last.clear()  # before building the next: never two sets of inputs at once
        call = self.revisions.plan(side, shape).take(d.argv, self.name, self.index, seed)
        if call is not None:  # made while the file was discovered
            self._last.append((key, call))
            return call
        # Inputs a discovery kept for a first case of another shape or seed (a check at shapes of
        # its own never takes the nominal ones): dropped, or a Pro file's inputs are held twice.
        self.revisions.drop_kept_inputs()
        t0 = time.perf_counter()
        mod = self.revisions.module(side, shape)
        call = discovery.materialized(mod, self.revisions.ref(side).read(), d.argv, self.name, self.index, seed)
        self.build_seconds = max(self.build_seconds, time.perf_counter() - t0)
        self._last.append((key, call))
        return call


class FreeKernel:
    """One side of a pair-free pair, called like a transcribed kernel."""

    def __init__(self, entry: Entry, side: str, convert: dict | None = None):
        self.entry = entry
        self.side = side
        self.convert = convert  # input -> dtype this side declares (an exact conversion, equiv.pairfree.convert)

    def __call__(self, cfg: Shape | None = None, **args: Any) -> Any:
        from equiv.source.arguments import call_entry

        recorded = self.entry.call(self.side, cfg or {}).call
        fn = recorded.fn
        for key in [k for k in args if k.startswith(specs.INITIAL_PREFIX)]:
            initial = args.pop(key)
            out = args.get(key.removeprefix(specs.INITIAL_PREFIX))
            if isinstance(out, Tensor) and isinstance(initial, Tensor):
                # An in-out tensor (a cache updated in place) starts at its initial value, written.
                out.data.copy_(initial.data.to(out.data.dtype))
                out.written.fill_(True)
        if self.convert:
            from equiv.pairfree.convert import convert_args

            args = convert_args(args, self.convert)
        from equiv.tile.distributed import world

        # A multi-rank program runs with the world its run_jit call configures (device_ids).
        ranks = world.world_size_from(recorded.extra.get("compile_cfg"))
        if ranks:
            with world.configured(ranks):
                return call_entry(fn, args)
        return call_entry(fn, args)

    @property
    def __name__(self) -> str:  # noqa: A003 - reports name a kernel by it
        ref = self.entry.revisions.ref(self.side)
        return f"{ref.label}:{self.entry.name}"


@dataclass(frozen=True)
class PairFreePair(KernelPair):
    """A `KernelPair` whose preconditions are the files' own asserts at each shape, judged by the
    file's own contract (`equiv.pairfree.judge`)."""

    entry: Any = None
    # Both sides are one file at one revision under one configuration: the runner runs the
    # program once and uses its runs for both (the emulator is deterministic for given options).
    identical_sides: bool = False
    golden: Any = None       # the `Reference` (how the golden is used)
    declared: Any = None     # the file's `# equiv: contract` (contract.Declared), when it has one
    judge_lone_side: bool = True

    def call_at(self, shape: Shape) -> golden_stub.RunCall:
        """The recorded call at `shape`, from pre, or from retiled where pre rejects the shape."""
        return self.entry.call(source_side(self.entry, shape), shape).call

    def contract_for(self, output: str) -> Contract:
        return self.declared.for_output(output, self.contract) if self.declared else self.contract

    def judge_case(self, case: Any, runs: Any, inputs: Any, ref: Any, ref_error: Any, outputs: Any) -> None:
        from equiv.pairfree.judge import judge_case

        judge_case(self, case, runs, inputs, ref, ref_error, outputs)

    def rejection(self, side: str, shape: Shape) -> str | None:  # type: ignore[override]
        try:
            self.entry.call(side, shape)
        except AssertionError as exc:
            return kernel_assertion(exc)
        except Exception:  # noqa: BLE001 - raised again (and judged) when the side runs
            return None
        return None


def source_side(entry: Entry, shape: Mapping[str, int]) -> str:
    """The side whose file makes a case's inputs and golden: pre, unless pre's own assert refuses
    the shape and retiled accepts it (then retiled is judged alone)."""
    try:
        entry.call("pre", shape)
        return "pre"
    except AssertionError:
        try:
            entry.call("retiled", shape)
            return "retiled"
        except Exception:  # noqa: BLE001 - both refuse: pre's error is the one reported
            return "pre"


def _dims(revisions: Revisions, entry: Entry, base_module: types.ModuleType) -> dict[str, Dim]:
    dims = {"mode": Dim(0, len(entry.modes) - 1, doc="index into " + ", ".join(entry.modes))}
    cfg = _config_module(base_module)
    for name in revisions.fuzz_dims:
        v = getattr(cfg, name, None) if cfg is not None else None
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            dims[name] = Dim(1, max(2 * v, 8), tiles=(4, 8, 16), favour=(v,), doc=f"config {name}")
    return dims


def _config_module(mod: types.ModuleType) -> types.ModuleType | None:
    """The sibling ``config`` module loaded with `mod` (the file may import names only)."""
    import sys

    for unique in mod.__dict__.get("__equiv_modules__", ()):
        if unique.endswith("_config") and unique in sys.modules:
            return sys.modules[unique]
    for v in mod.__dict__.values():
        if isinstance(v, types.ModuleType) and v.__name__.endswith("_config"):
            return v
    for v in mod.__dict__.values():
        if isinstance(v, types.ModuleType) and getattr(v, "__file__", "").endswith("config.py"):
            return v
    return None


def safe_constants(revisions: Revisions) -> tuple[str, ...]:
    """Config constants the file (pre revision) names that are safe to vary."""
    mod = revisions.module("pre")
    cfg = _config_module(mod)
    if cfg is None:
        return ()
    text = revisions.pre.read()
    names = [k for k, v in vars(cfg).items() if SAFE_CONSTANT.match(k) and isinstance(v, int)
             and not isinstance(v, bool) and re.search(rf"\b{k}\b", text)]
    revisions.fuzz_defaults = {k: getattr(cfg, k) for k in names}
    return tuple(names)


def same_program(revisions: Revisions) -> bool:
    """Whether pre and retiled are one file at one commit (a same-revision check)."""
    try:
        return revisions.pre.identity() == revisions.retiled.identity()
    except Exception:  # noqa: BLE001 - an unreadable side is judged when it runs
        return False


def build_pair(revisions: Revisions, entry: Entry, contract: Contract = BIT_EXACT,
               fuzz: bool = False, declared: Any = None,
               convert: dict | None = None) -> tuple[PairFreePair, Reference | None]:
    """The `KernelPair` that checks `entry` of both revisions."""
    try:
        pre_mod = revisions.module("pre")
    except AssertionError:  # pre's own assert refuses the file's shapes: retiled is judged alone
        pre_mod = revisions.module("retiled")
    dims = _dims(revisions, entry, pre_mod) if fuzz else {"mode": Dim(0, len(entry.modes) - 1)}
    defaults = {k: d.favour[0] for k, d in dims.items() if k != "mode" and d.favour}
    presets: dict[str, list[dict[str, int]]] = {"nominal": [{"mode": i, **defaults} for i in range(len(entry.modes))]}
    for i, m in enumerate(entry.modes):
        if m not in presets:
            presets[m] = [{"mode": i, **defaults}]
    space = ShapeSpace(dims, presets, defaults=defaults)
    first_side = source_side(entry, Shape(presets["nominal"][0]))
    first = entry.call(first_side, Shape(presets["nominal"][0])).call
    # How the golden is used is decided once; each case runs the golden of its own shape's module.
    reference = reference_for(first)

    def outputs(shape: Shape) -> dict:
        for side in ("pre", "retiled"):
            try:
                return specs.outputs(entry.call(side, shape).call)
            except Exception:  # noqa: BLE001 - a side that cannot load at this shape
                continue
        return specs.outputs(first)

    def realistic(shape: Shape, gen: torch.Generator) -> dict[str, Any]:
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=gen))
        return specs.inputs_of(entry.materialized(source_side(entry, shape), shape, seed))

    def make(kind: str):
        def recipe(shape: Shape, gen: torch.Generator) -> dict[str, Any]:
            seed = int(torch.randint(0, 2**31 - 1, (1,), generator=gen))
            return specs.adversarial(kind, entry.materialized(source_side(entry, shape), shape, seed), gen)
        recipe.__name__ = f"{kind}_recipe"
        return recipe

    from equiv.inputs import ADVERSARIAL

    recipes = {"realistic": realistic}
    # Decided on the inputs of the first case (seed 0), so that case reuses them.
    if specs.adversarial_inputs(entry.materialized(first_side, Shape(presets["nominal"][0]), first_case_seed())):
        recipes.update({k: make(k) for k in ADVERSARIAL})

    def ref_fn(inputs: Mapping[str, Any], shape: Shape) -> dict[str, torch.Tensor]:
        if reference is None:
            return {}
        call = entry.call(source_side(entry, shape), shape).call
        try:
            return reference(call, inputs)
        except AssertionError as exc:
            why = kernel_assertion(exc)
            if why:  # the golden's own assert: the file does not support this shape
                from equiv.errors import GoldenRejects

                raise GoldenRejects(why) from None
            raise

    name = f"{os.path.splitext(os.path.basename(revisions.retiled.path))[0]}:{entry.name}"
    if entry.index:
        name += f"#{entry.index}"
    pair = PairFreePair(
        name=name,
        pre=FreeKernel(entry, "pre"),
        retiled=FreeKernel(entry, "retiled", convert),
        reference=ref_fn,
        outputs=outputs,
        recipes=recipes,
        shapes=space,
        contract=contract,
        sources=(),
        entry=entry,
        identical_sides=same_program(revisions),
        golden=reference,
        declared=declared,
        description=(f"{entry.name}: {revisions.pre.label} vs {revisions.retiled.label}"
                     + (f" (model {revisions.model})" if revisions.model else "")
                     + f"; modes {', '.join(entry.modes)}"),
    )
    return pair, reference


def entries_of(revisions: Revisions, side: str = "pre") -> list[Entry]:
    """Every entry `side`'s ``__main__`` hands to ``run_jit`` (with the modes it runs in); an
    entry called n times in one mode gives n entries (#0, #1, ...)."""
    plan = revisions.plan(side)
    out: list[Entry] = []
    for name in plan.entries():
        found = plan.of(name)
        per_mode = {m: sum(1 for d in found if d.mode == m) for m in dict.fromkeys(d.mode for d in found)}
        for i in range(max(per_mode.values())):
            out.append(Entry(revisions, name, tuple(m for m, n in per_mode.items() if n > i), i))
    return out
