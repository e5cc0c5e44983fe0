"""Observers of one kernel run's event stream (decisions, stores, blocks).

The emulator emits events through `equiv.tile.context.RunContext` (``decision``, ``emit_store``,
``block``); each detector is one client of that stream (`events.Observer`), so a new detector
is one file here: decision coverage (`decisions`), cache-line races of scalar writes
(`cachelines`); writer attribution (`attribution`) reads the per-element site map the
stores keep.
"""

from equiv.observe.events import Observer

__all__ = ["Observer"]
