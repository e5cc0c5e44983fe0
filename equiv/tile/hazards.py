"""The hazard detectors every run of a kernel has (not only the observed one): element races,
out-of-range accesses and cross-rank races, by the names `Options.detectors` selects them by.
The observed run's detectors are registered above the emulator (`equiv.observe.clients`)."""

from __future__ import annotations

from typing import Callable

from equiv.options import Options
from equiv.tile.bounds import OutOfRange
from equiv.tile.rank_races import RankRaces
from equiv.tile.events import Client
from equiv.tile.races import ElementRaces

# name -> a fresh client for one run (None: the options switch it off)
HAZARDS: dict[str, Callable[[Options], Client | None]] = {
    "races": lambda options: ElementRaces() if options.detect_races else None,
    "rank-races": lambda options: RankRaces() if options.detect_races else None,
    "out-of-range": lambda options: OutOfRange(),
}


def make(options: Options) -> list[Client]:
    """Fresh hazard clients for one run, those `options.detectors` selects (every one when None)."""
    chosen = options.detectors
    out = []
    for name, factory in HAZARDS.items():
        if chosen is None or name in chosen:
            client = factory(options)
            if client is not None:
                out.append(client)
    return out
