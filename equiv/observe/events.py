"""The event protocol: what a detector may observe of one kernel run."""

from __future__ import annotations

from typing import Any


class Observer:
    """Base of every detector; each hook defaults to doing nothing.

    - ``on_decision(ctx, site, op, outcomes)``: a value decision at kernel line `site`;
      `outcomes` maps an outcome name to a bool tensor (per element) or a bool.
    - ``on_store(ctx, tensor, window, mask, scalar)``: the current block (``ctx.current``)
      wrote `window` of `tensor` (where `mask`, when given); ``scalar`` for a one-element
      write through the core's data cache (``pl.write``), else a tile store (DMA).
    """

    def on_decision(self, ctx: Any, site: str, op: str, outcomes: dict) -> None:
        pass

    def on_store(self, ctx: Any, tensor: Any, window: tuple, mask: Any, scalar: bool) -> None:
        pass
