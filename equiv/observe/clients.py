"""The clients of an observed run: the one list a new detector is added to.

Each entry makes a fresh client for one run from the run's options; the clients receive the
run's events in this order. Only the observed run of each version (the first, on NaN poison)
has clients, so the other runs keep the emulator's unobserved fast paths.
"""

from __future__ import annotations

from typing import Callable

from equiv.observe.attribution import WriterAttribution
from equiv.observe.cachelines import CacheLineObserver
from equiv.observe.decisions import DecisionObserver
from equiv.observe.events import Observer
from equiv.options import Options

CLIENTS: list[Callable[[Options], Observer]] = [
    lambda options: DecisionObserver(),                            # decision coverage
    lambda options: CacheLineObserver(options.cache_line_bytes),  # cache-line races
    lambda options: WriterAttribution(),                           # who wrote each element
]


def make_clients(options: Options) -> list[Observer]:
    """Fresh clients for one observed run."""
    return [make(options) for make in CLIENTS]
