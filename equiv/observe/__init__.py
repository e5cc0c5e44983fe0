"""Observers of one kernel run's event stream (decisions, stores, run end).

The emulator emits events through `equiv.tile.context.RunContext` (``decision``, ``emit_store``,
``block``) and the runner ends the run (``on_run_end``); each detector is one client of that
stream (`events.Observer`), so a new detector is one file here plus its line in
`clients.CLIENTS`: decision coverage (`decisions`), cache-line races of scalar writes
(`cachelines`), writer attribution (`attribution`, from the per-element site map the stores
keep).
"""

from equiv.observe.events import Observer

__all__ = ["Observer"]
