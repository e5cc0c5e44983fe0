"""The event protocol: what a detector may observe of one kernel run."""

from __future__ import annotations

from typing import Any, Mapping


class Observer:
    """Base of every detector (a client of the observed run's events); each hook defaults to
    doing nothing.

    - ``on_decision(ctx, site, op, outcomes)``: a value decision at kernel line `site`;
      `outcomes` maps an outcome name to a bool tensor (per element) or a bool.
    - ``on_store(ctx, tensor, window, mask, scalar)``: the current block (``ctx.current``)
      wrote `window` of `tensor` (where `mask`, when given); ``scalar`` for a one-element
      write through the core's data cache (``pl.write``), else a tile store (DMA).
    - ``on_run_end(ctx, outputs, record)``: the kernel returned (or raised); the client puts
      what it found on `record`, the version's `equiv.compare.SideRun`. (Hazards go to the
      run's findings through ``ctx.record`` as they happen.)

    Blocks are not an event of their own: every node of ``ctx.nodes`` records its block's
    stage, index and loop line, and ``ctx.current`` is the running block at each event.
    """

    def on_decision(self, ctx: Any, site: str, op: str, outcomes: dict) -> None:
        pass

    def on_store(self, ctx: Any, tensor: Any, window: tuple, mask: Any, scalar: bool) -> None:
        pass

    def on_run_end(self, ctx: Any, outputs: Mapping[str, Any], record: Any) -> None:
        pass
