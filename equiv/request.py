"""What one check is asked to do, in one object: the request every road into a check takes.

Registered pairs (`equiv.check.check`), source mode, the pair-free check of a model file
(`equiv.pairfree.run.check_file`) and both gates build a `CheckRequest` and pass it down;
the commands build it from their arguments (`equiv.commands`), so nothing below them sees
the command line.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from equiv.options import Options
from equiv.pair import BIT_EXACT, Contract
from equiv.results import Case

Shard = tuple[int, int]  # (k, n): the k-th of n shards, 1 <= k <= n
Progress = Callable[[str, int, int, Case | None], None]


def _quiet(line: str) -> None:
    pass


@dataclass(frozen=True)
class CheckRequest:
    """How to check: the cases, their budgets and the emulator's options.

    Attributes:
        shapes: "nominal", "presets", "fuzz", a preset name, or literal shapes ("T=8,D=7168").
        examples: fuzz cases drawn (None: the default; a pair-free check: one per recipe).
        seed: seeds the fuzzing, the inputs and the emulator's orders.
        recipes: the input recipes the cases use (None: every recipe of the pair).
        contract: the contract a pair-free check holds a file to when `contract_given`
            (``--contract``) or when the file declares none.
        contract_given: `contract` overrides the file's own ``# equiv: contract`` comment.
        fixed: option values pinned that the pair would otherwise sweep.
        shrink_budget: tries per counterexample when shrinking it (0: not shrunk).
        time_budget: seconds after which no new case is started.
        shard: (k, n): only the planned cases in shard k of n.
        jobs: worker processes for the planned cases of a registered pair.
        options: the emulator's options (None: the defaults).
        keep_runs: keep each non-equivalent case's raw runs (to save it without a rerun).
        progress: called as cases start (pair name, done, total, case).
        log: told one line per step a pair-free check takes.
    """

    shapes: str = "nominal"
    examples: int | None = None
    seed: int = 0
    recipes: tuple[str, ...] | None = None
    contract: Contract = BIT_EXACT
    contract_given: bool = False
    fixed: Mapping[str, Any] | None = None
    shrink_budget: int = 40
    time_budget: float | None = None
    shard: Shard | None = None
    jobs: int = 1
    options: Options | None = None
    keep_runs: bool = False
    progress: Progress | None = None
    log: Callable[[str], None] = _quiet

    def __post_init__(self) -> None:
        if self.recipes is not None and not isinstance(self.recipes, tuple):
            object.__setattr__(self, "recipes", tuple(self.recipes))  # a list from the command line

    def replace(self, **changes: Any) -> "CheckRequest":
        return dataclasses.replace(self, **changes)

    @property
    def run_options(self) -> Options:
        """The emulator's options (the defaults when none were given)."""
        return self.options or Options()

    @property
    def recipe_list(self) -> list[str] | None:
        return list(self.recipes) if self.recipes is not None else None


def request_from(request: CheckRequest | None, fields: Mapping[str, Any]) -> CheckRequest:
    """`request` (default: a default one) with `fields` changed; a field that is not the
    request's is a TypeError naming the known ones."""
    known = {f.name for f in dataclasses.fields(CheckRequest)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise TypeError(f"{', '.join(unknown)}: not a field of CheckRequest ({', '.join(sorted(known))})")
    base = request or CheckRequest()
    return base.replace(**fields) if fields else base
