"""The event protocol a detector above the emulator observes: the run's one event stream
(`equiv.tile.events`, whose vocabulary and fan-out live with the emulator that emits them).

`Observer` is that stream's `Client`: a detector sets ``events`` to the events it needs and
overrides their hooks (``on_decision``, ``on_store`` / ``on_stored``, ``on_load``,
``on_block_start`` / ``on_block_end``, ``on_atomic``, ``on_barrier``, ``on_rank_message``,
``on_out_of_range``, ``on_run_end``: the signatures are in `equiv.tile.events`). At the run's
end it puts what it found on the record, the version's `equiv.compare.SideRun`; hazards go to
the run's findings through ``ctx.record`` as they happen.
"""

from __future__ import annotations

from equiv.tile.events import (ATOMIC, BARRIER, BLOCK_END, BLOCK_START, DECISION, EVENTS, LOAD, OUT_OF_RANGE,
                               RANK_MESSAGE, RUN_END, STORE, STORED, Client)

Observer = Client

__all__ = ["Observer", "EVENTS", "BLOCK_START", "BLOCK_END", "LOAD", "STORE", "STORED", "DECISION", "ATOMIC",
           "BARRIER", "RANK_MESSAGE", "OUT_OF_RANGE", "RUN_END"]
