"""The detectors of a run, by name: the one registry a new detector is added to.

Each entry makes a fresh client for one run from the run's options (None: the options switch
it off) and says whether every run of a version has it or only the observed one (the first,
on NaN poison). The hazard detectors (element races, out-of-range, cross-rank races) are
every run's: they live with the emulator (`equiv.tile.hazards`), which also installs them in
a run made outside the harness. The clients receive each event in this order.
`Options.detectors` names the ones a check runs (None: all of them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from equiv.observe.attribution import WriterAttribution
from equiv.observe.cachelines import CacheLineObserver
from equiv.observe.decisions import DecisionObserver
from equiv.observe.events import Observer
from equiv.options import Options
from equiv.tile.hazards import HAZARDS


@dataclass(frozen=True)
class Detector:
    make: Callable[[Options], Observer | None]
    every_run: bool = False  # False: only the observed run of each version has it


REGISTRY: dict[str, Detector] = {
    **{name: Detector(make, every_run=True) for name, make in HAZARDS.items()},
    "decisions": Detector(lambda options: DecisionObserver()),                            # decision coverage
    "cache-lines": Detector(lambda options: CacheLineObserver(options.cache_line_bytes)),  # cache-line races
    "attribution": Detector(lambda options: WriterAttribution()),                          # who wrote each element
}


def names() -> tuple[str, ...]:
    return tuple(REGISTRY)


def validate(options: Options) -> None:
    """Raise ValueError naming the known detectors when `options.detectors` names another."""
    unknown = [n for n in options.detectors or () if n not in REGISTRY]
    if unknown:
        raise ValueError(f"unknown detector{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
                         f"in Options.detectors; known: {', '.join(REGISTRY)}")


def make_clients(options: Options, observed: bool = True) -> list[Observer]:
    """Fresh clients for one run: those `options.detectors` selects (every registered one when
    None); the observed run gets every run's detectors and its own, another run the former."""
    validate(options)
    chosen = options.detectors
    out = []
    for name, detector in REGISTRY.items():
        if (chosen is None or name in chosen) and (observed or detector.every_run):
            client = detector.make(options)
            if client is not None:
                out.append(client)
    return out
