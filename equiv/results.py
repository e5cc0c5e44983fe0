"""The results of a check, as every surface reads them: a case, one output's verdict, one
case's result, one pair's check, the verdict vocabulary, and the outcomes of a model file's
pair-free check. Each is written to JSON by its ``to_dict`` (the results document of
``--json``, read back by ``equiv report``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from equiv.shapes import Shape
from equiv.summary import render

if TYPE_CHECKING:
    from equiv.compare import SideRun
    from equiv.source.ref import SourceRef


VERDICTS: tuple[str, ...] = ("equivalent", "regression", "pre-defect", "both-defect", "rejected", "cannot judge")
# ``cannot judge``: a version hit something the emulator lacks (an op or form), or both versions
# raised: nothing was decided about the kernels, so it is never counted as agreement or as a
# regression.


@dataclass(frozen=True)

class Case:
    """One checkable unit: a shape, an input recipe, an input seed and option overrides."""

    shape: Shape
    recipe: str
    seed: int
    variant: tuple[tuple[str, Any], ...] = ()  # option overrides, e.g. (("row_sum_order", "a2a3"),)

    @property
    def variant_label(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.variant) or "default"

    def to_dict(self) -> dict:
        return {"shape": dict(self.shape), "recipe": self.recipe, "seed": self.seed,
                "variant": [list(kv) for kv in self.variant]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Case":
        return cls(Shape(d["shape"]), d["recipe"], int(d["seed"]), tuple(tuple(kv) for kv in d.get("variant", [])))


# ----------------------------------------------------------------------------------------
# One output
# ----------------------------------------------------------------------------------------

@dataclass

class OutputResult:
    name: str
    verdict: str
    reasons: list[str]
    compared: int = 0
    differing: int = 0
    max_ulp: int = 0
    ulp_hist: dict[str, int] = field(default_factory=dict)
    first_difference: dict | None = None
    error_vs_ref: dict[str, dict] = field(default_factory=dict)   # side -> {max, hist}
    unwritten: dict[str, dict] = field(default_factory=dict)      # side -> region
    poisoned: dict[str, dict] = field(default_factory=dict)       # side -> region
    maps: dict[str, list[list[float]]] = field(default_factory=dict)
    # Writer attribution of each unwritten / uninitialised region (equiv.observe.attribution).
    attribution: list[dict] = field(default_factory=list)
    # side -> region whose bits differ between schedules, with spread and operations (equiv.schedules)
    nondeterministic: dict[str, dict] = field(default_factory=dict)
    # Pair-free: the file's own test per side ({"passed", "how", "detail"}), and unwritten regions
    # the file's contract expects (side -> region + why): informational, never a defect.
    file_test: dict[str, dict] = field(default_factory=dict)
    unwritten_by_contract: dict[str, dict] = field(default_factory=dict)
    golden_suspect: dict[str, str] = field(default_factory=dict)  # side -> the audit's finding
    # The first operation whose result differs, observed in traced runs (equiv.observe.cause).
    cause: dict | None = None

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass

class CaseResult:
    pair: str
    case: Case
    outputs: dict[str, OutputResult]
    hazards: dict[str, list[dict]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    # Each version's raw run (output bits, masks); kept only when asked for (replay digests).
    runs: dict[str, SideRun] | None = field(default=None, repr=False, compare=False)
    command: str = ""  # repro prefix; empty: `equiv check PAIR`
    # side -> kernel site -> decision outcomes of this case (equiv.observe.decisions)
    decisions: dict[str, dict] = field(default_factory=dict, repr=False, compare=False)
    # side -> {"ran": bool, "why": text}: whether the version's patterned-poison run ran
    # (``"runs_of": "pre"``: one program on both sides, these are pre's runs).
    poison_runs: dict[str, dict] = field(default_factory=dict)

    @property
    def verdicts(self) -> dict[str, str]:
        return {k: v.verdict for k, v in self.outputs.items()}

    @property
    def worst(self) -> str:
        order = ("cannot judge", "regression", "rejected", "both-defect", "pre-defect", "equivalent")
        vs = set(self.verdicts.values())
        return next((v for v in order if v in vs), "equivalent")

    def repro(self) -> str:
        c = self.case
        prefix = self.command or f"equiv check {self.pair}"
        cmd = f"{prefix} --shapes '{c.shape}' --recipe {c.recipe} --seed {c.seed}"
        for k, v in c.variant:
            if k == "row_sum_order":
                cmd += f" --row-sum-order {v}"
        return cmd

    def to_dict(self) -> dict:
        return {"pair": self.pair, "case": self.case.to_dict(), "repro": self.repro(),
                "verdicts": self.verdicts, "outputs": {k: v.to_dict() for k, v in self.outputs.items()},
                "hazards": self.hazards, "errors": self.errors, "poison_runs": self.poison_runs,
                "seconds": round(self.seconds, 4)}


def verdict_counts(results: Iterable[CaseResult]) -> dict[str, dict[str, int]]:
    """output -> verdict -> number of cases."""
    counts: dict[str, dict[str, int]] = {}
    for r in results:
        for name, o in r.outputs.items():
            c = counts.setdefault(name, {v: 0 for v in VERDICTS})
            c[o.verdict] += 1
    return counts


@dataclass

class CheckResult:
    """Everything one check of one pair found."""

    pair: str
    contract: str
    shapes: str
    seed: int
    results: list[CaseResult]
    counterexamples: list[CaseResult] = field(default_factory=list)
    seconds: float = 0.0
    options: dict = field(default_factory=dict)
    # Decision coverage per version over all cases (equiv.observe.decisions.summary).
    decisions: dict = field(default_factory=dict)
    # Pair-free: the file's own contract — where the contract came from, and its own test per
    # version (side -> "PASS" / "FAIL (...)" / "not predicted (...)").
    own_contract: dict = field(default_factory=dict)

    @property
    def counts(self) -> dict[str, dict[str, int]]:
        return verdict_counts(self.results)

    @property
    def regressions(self) -> list[CaseResult]:
        return [r for r in self.results if "regression" in r.verdicts.values()]

    @property
    def unjudged(self) -> list[CaseResult]:
        """Cases a version could not run because the emulator lacks an op or form (cannot judge)."""
        return [r for r in self.results if "cannot judge" in r.verdicts.values()]

    def gaps(self) -> list[str]:
        """What the emulator lacks, one line per distinct op or form and kernel site."""
        seen: dict[str, None] = {}
        for r in self.unjudged:
            for o in r.outputs.values():
                for reason in o.reasons:
                    if reason.startswith("cannot judge"):
                        seen.setdefault(reason, None)
        return list(seen)

    @property
    def narrowed(self) -> list[CaseResult]:
        """Cases only the retiled version rejects (its contract is narrower than pre's)."""
        return [r for r in self.results
                if any("narrowed contract" in reason for o in r.outputs.values() for reason in o.reasons)]

    @property
    def failed(self) -> bool:
        """The one rule `equiv check` and `equiv gate` share: a regression, or a narrowed contract
        (a shape retiled rejects that pre accepts), fails the pair."""
        return bool(self.regressions or self.narrowed)

    @property
    def ok(self) -> bool:
        return not self.failed

    def max_ulp(self, output: str | None = None) -> int:
        vals = [o.max_ulp for r in self.results for name, o in r.outputs.items()
                if output in (None, name) and o.verdict != "rejected"]
        return max(vals, default=0)

    def findings(self) -> list[str]:
        """Distinct coverage and hazard findings, one line each."""
        seen: dict[str, None] = {}
        for r in self.results:
            for o in r.outputs.values():
                for reason in o.reasons:
                    if any(k in reason for k in ("unwritten", "uninitialised", "oob", "race", "raised")):
                        seen.setdefault(f"{r.case.shape}: {reason}", None)
        return list(seen)

    def __str__(self) -> str:
        return render(self)

    def to_dict(self) -> dict:
        return {"pair": self.pair, "contract": self.contract, "shapes": self.shapes, "seed": self.seed,
                "seconds": round(self.seconds, 3), "options": self.options, "counts": self.counts,
                "results": [r.to_dict() for r in self.results],
                "counterexamples": [r.to_dict() for r in self.counterexamples],
                "decisions": self.decisions, **({"own_contract": self.own_contract} if self.own_contract else {})}

    def decision_gaps(self, side: str = "retiled", declared: bool = False) -> list[dict]:
        """Decision sites of `side` with an outcome that never occurred (without, or with, a
        declared reason)."""
        return [g for g in self.decisions.get(side, {}).get("gaps", []) if bool(g["reason"]) == declared]


# Pair-free checks of a model file (equiv.pairfree.run): one outcome per entry, and the file's.
EXIT = {"equivalent": 0, "pre-defect": 0, "both-defect": 0, "interface changed": 0, "rejected": 0,
        "regression": 1, "cannot judge": 2, "not called": 2}


@dataclass
class EntryOutcome:
    entry: str
    outcome: str
    lines: list[str] = field(default_factory=list)   # why, one line each
    result: CheckResult | None = None
    reference: str = ""
    modes: tuple[str, ...] = ()
    pair: Any = None
    contract: str = ""                                      # the contract and where it came from
    file_test: dict[str, str] = field(default_factory=dict)  # side -> PASS / FAIL (...) / not predicted

    @property
    def exit_code(self) -> int:
        return EXIT[self.outcome]

    def to_dict(self) -> dict:
        return {"entry": self.entry, "outcome": self.outcome, "why": self.lines, "reference": self.reference,
                "contract": self.contract, "file_test": self.file_test,
                "modes": list(self.modes), "result": self.result.to_dict() if self.result else None}


@dataclass
class FileOutcome:
    pre: SourceRef
    retiled: SourceRef
    entries: list[EntryOutcome] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        codes = [e.exit_code for e in self.entries]
        if 1 in codes:
            return 1
        return 2 if 2 in codes else 0

    @property
    def outcome(self) -> str:
        order = ("regression", "cannot judge", "not called", "interface changed", "rejected", "both-defect", "pre-defect",
                 "equivalent")
        got = {e.outcome for e in self.entries}
        return next((o for o in order if o in got), "equivalent")
