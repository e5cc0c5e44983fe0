"""Observers of one kernel run's event stream (decisions, stores, run end).

The emulator emits one event stream through `equiv.tile.context.RunContext`
(`equiv.tile.events`) and the runner ends the run (``on_run_end``); each detector is one
client of that stream (`events.Observer`), so a new detector is one file here plus its entry
in `clients.REGISTRY`: decision coverage (`decisions`), cache-line races of scalar writes
(`cachelines`), writer attribution (`attribution`, from the per-element site map the stores
keep). The hazard detectors every run has are the emulator's own (`equiv.tile.hazards`).
"""

from equiv.observe.events import Observer

__all__ = ["Observer"]
