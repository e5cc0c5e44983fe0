"""The emulator's knobs, in one frozen object.

Every behaviour of the tile emulator that is a *policy* rather than a fact of the PyPTO
language lives here, with its default and the reason for it. A run of a kernel is fully
determined by its inputs and one `Options` value, which is what makes a saved case
replayable bit for bit.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

RowSumOrder = Literal["sequential", "pairwise", "a2a3"]
ROW_SUM_ORDERS: tuple[str, ...] = ("sequential", "pairwise", "a2a3")


@dataclass(frozen=True)
class Options:
    """How the emulator runs one kernel.

    Attributes:
        seed: seeds the shuffled order of parallel blocks and the poison patterns (each a
            function of the seed, the drawing block and its count of earlier draws).
        poison: how uninitialised float memory (``create_tensor`` scratch, unwritten output,
            tile padding beyond ``valid_shape``) is filled. ``"nan"`` makes any use visible as
            NaN; ``"pattern"`` fills seeded finite values of many magnitudes. A case is run
            under both; an output element that differs between them depends on
            uninitialised memory. Integer memory always gets a seeded random pattern.
        shuffle_blocks: run ``pl.spmd`` / ``pl.parallel`` iterations in a seeded random
            order, because the hardware gives no order between blocks.
        detect_races: report an element written by two blocks of one parallel stage.
        out_of_bounds: ``"record"`` clips the access to the tensor (reads of the outside
            part see poison, writes to it are dropped) and records the site; ``"raise"``
            stops the kernel with `OutOfBoundsError` at the first one.
        row_sum_order: the fp32 summation order model of ``pl.row_sum`` (hardware-defined):
            ``"sequential"`` left to right; ``"pairwise"`` adjacent-pair tree;
            ``"a2a3"`` the Ascend a2a3 lowering (64-lane repeats combined lane-wise, then a
            64-lane adjacent-pair tree), see docs/arithmetic.md.
        cache_line_bytes: line size of a core's data cache; scalar writes of different blocks
            of one stage into one line are a hazard (``cacheline-race``, equiv.observe.cachelines).
        batch_blocks: run the blocks of a ``pl.spmd`` / ``pl.parallel`` stage as one batched
            computation where the kernel allows it (equiv.tile.batch), else one at a time.
            Results, masks and findings are bit-for-bit the same either way; off only to
            compare the two or to time the one-by-one path.
        schedules: how many schedules each case runs each version under (equiv.schedules): the
            orders the device leaves free (blocks of a stage, hence atomic-add arrival; rank
            turns) drawn differently per schedule. An output whose bits differ between
            schedules is nondeterministic. 1 runs one schedule (no nondeterminism check).
        order_seed: seeds the free orders of this run; ``None`` takes them from ``seed`` (a
            single run). The runner sets it so that runs differing only in poison share a
            schedule.
        reverse_order: run every free order reversed (the second schedule of a case: any order
            a sum depends on then changes, whatever the number of blocks).
        device: torch device the emulation runs on (``"cpu"`` or ``"cuda"``). Results are
            bit-identical on both: every op is exact or computed in float64 and rounded once.
        detectors: the detectors (clients of the run's event stream) a run has, by name
            (``"races"``, ``"rank-races"``, ``"out-of-range"``, ``"decisions"``,
            ``"cache-lines"``, ``"attribution"``: `equiv.observe.clients.REGISTRY`); ``None``,
            the default, is every registered one. A name not registered is an error naming
            the known ones. Fewer detectors report fewer hazards, never other values.
        second_poison_run: ``"auto"`` leaves out a version's patterned-poison run where it
            cannot differ from the NaN-poison run: that run raised nothing, the case has no
            other schedule to compare (``schedules=1``) and it read no uninitialised memory
            (`RunContext.uninitialised`). ``"always"`` runs it as every case did before.
            Results are the same either way; the results document says per version which
            happened and why.
        variant_processes: ``"auto"`` makes a version's schedule runs in forked child
            processes while the parent makes its first run, where a CPU is free and the inputs
            are large enough to pay for a fork and small enough for a second run's memory
            (`equiv.forked`); ``"off"`` makes every run in
            this process, one after another. The same results either way; only wall time.
    """

    seed: int = 0
    poison: Literal["nan", "pattern"] = "nan"
    shuffle_blocks: bool = True
    detect_races: bool = True
    out_of_bounds: Literal["record", "raise"] = "record"
    row_sum_order: RowSumOrder = "a2a3"
    device: str = "cpu"
    cache_line_bytes: int = 64
    batch_blocks: bool = True
    schedules: int = 2
    order_seed: int | None = None
    reverse_order: bool = False
    detectors: tuple[str, ...] | None = None
    second_poison_run: Literal["auto", "always"] = "auto"
    variant_processes: Literal["auto", "off"] = "auto"

    def __post_init__(self) -> None:
        if self.detectors is not None:
            if isinstance(self.detectors, str) or not all(isinstance(n, str) for n in self.detectors):
                raise ValueError(f"Options.detectors must be a tuple of detector names or None, "
                                 f"not {self.detectors!r}")
            object.__setattr__(self, "detectors", tuple(self.detectors))  # a list read from JSON
        if self.poison not in ("nan", "pattern"):
            raise ValueError(f"Options.poison must be 'nan' or 'pattern', not {self.poison!r}")
        if self.second_poison_run not in ("auto", "always"):
            raise ValueError(f"Options.second_poison_run must be 'auto' or 'always', not {self.second_poison_run!r}")
        if self.variant_processes not in ("auto", "off"):
            raise ValueError(f"Options.variant_processes must be 'auto' or 'off', not {self.variant_processes!r}")
        if self.out_of_bounds not in ("record", "raise"):
            raise ValueError(
                f"Options.out_of_bounds must be 'record' or 'raise', not {self.out_of_bounds!r}")
        if not isinstance(self.schedules, int) or self.schedules < 1:
            raise ValueError(f"Options.schedules must be an integer >= 1, not {self.schedules!r}")
        if self.row_sum_order not in ROW_SUM_ORDERS:
            raise ValueError(
                f"Options.row_sum_order must be one of {ROW_SUM_ORDERS}, not {self.row_sum_order!r}")

    def replace(self, **changes) -> "Options":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        if self.detectors is None:
            del out["detectors"]  # every detector: documents of the default stay as they were
        else:
            out["detectors"] = list(self.detectors)
        if self.second_poison_run == "auto":
            del out["second_poison_run"]  # the default: documents of the default stay as they were
        del out["variant_processes"]  # how runs are placed, not what they compute
        return out
