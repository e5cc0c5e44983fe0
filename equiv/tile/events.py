"""The event stream of one kernel run: its vocabulary, the base of its clients, and the fan-out.

Every detector (element races, out-of-range accesses, cross-rank races, decision coverage,
cache lines, writer attribution, a cause's trace) is a `Client` of this one stream. A client
declares the events it needs (`Client.events`); the run context hands each event only to
the clients that declared it, so an event nobody asked for costs one empty-tuple test.

A client that needs every event of every block as a one-by-one run produces them
(`Client.per_element`, the default) makes the emulator leave its batched and untraced fast
paths for that run. The hazard detectors do not: the batched paths either prove that they
would report nothing (no clipped window, no racing earlier writer) or replay block by block.
"""

from __future__ import annotations

from typing import Any, Mapping

BLOCK_START = "block_start"    # on_block_start(ctx, node): a parallel block begins (ctx.current is it)
BLOCK_END = "block_end"        # on_block_end(ctx, node): it ends
LOAD = "load"                  # on_load(ctx, tensor, window): a block read `window` of a global tensor
STORE = "store"                # on_store(ctx, tensor, window, mask, scalar): a block writes; memory still
                               # holds the previous writers (what a hazard check compares with)
STORED = "stored"              # on_stored(ctx, tensor, window, mask, scalar): the values are written
DECISION = "decision"          # on_decision(ctx, site, op, outcomes): a value decision at a kernel line
ATOMIC = "atomic"              # on_atomic(ctx, tensor, window, mask, remote): an atomic add into a tensor
BARRIER = "barrier"            # on_barrier(ctx, stage): every block of a stage reached pl.system.syncall
RANK_MESSAGE = "rank_message"  # on_rank_message(ctx, kind, rank, key): a notify ("release") or a wait
                               # that returned ("acquire") of rank `rank` on signal slot `key`
OUT_OF_RANGE = "out_of_range"  # on_out_of_range(ctx, kind, tensor, detail, region, count, site): an
                               # access reached outside a tensor (the access path clips it)
RUN_END = "run_end"            # on_run_end(ctx, outputs, record): the kernel returned or raised

EVENTS: tuple[str, ...] = (BLOCK_START, BLOCK_END, LOAD, STORE, STORED, DECISION, ATOMIC, BARRIER,
                           RANK_MESSAGE, OUT_OF_RANGE, RUN_END)


class Client:
    """Base of every client of a run's event stream; each hook does nothing by default.

    ``events``: the events the client receives (names above). A subclass that does not set
    it receives the events whose hooks it overrides. ``per_element``: whether the client
    needs every event of every block as a one-by-one run makes them (see the module's
    docstring); a client that sets it False must accept that batched stages only send it
    their stores block by block when it could report something.
    """

    events: frozenset[str] = frozenset()
    per_element: bool = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "events" not in cls.__dict__:
            cls.events = frozenset(e for e in EVENTS if getattr(cls, f"on_{e}") is not getattr(Client, f"on_{e}"))
        unknown = set(cls.events) - set(EVENTS)
        if unknown:
            raise TypeError(f"{cls.__name__}.events names {sorted(unknown)}, not events of the "
                            f"stream; known: {', '.join(EVENTS)}")

    def on_block_start(self, ctx: Any, node: Any) -> None:
        pass

    def on_block_end(self, ctx: Any, node: Any) -> None:
        pass

    def on_load(self, ctx: Any, tensor: Any, window: tuple) -> None:
        pass

    def on_store(self, ctx: Any, tensor: Any, window: tuple, mask: Any, scalar: bool) -> None:
        pass

    def on_stored(self, ctx: Any, tensor: Any, window: tuple, mask: Any, scalar: bool) -> None:
        pass

    def on_decision(self, ctx: Any, site: str, op: str, outcomes: dict) -> None:
        pass

    def on_atomic(self, ctx: Any, tensor: Any, window: tuple, mask: Any, remote: bool) -> None:
        pass

    def on_barrier(self, ctx: Any, stage: int) -> None:
        pass

    def on_rank_message(self, ctx: Any, kind: str, rank: int, key: tuple) -> None:
        pass

    def on_out_of_range(self, ctx: Any, kind: str, tensor: str, detail: str, region: list,
                        count: int, site: str | None) -> None:
        pass

    def on_run_end(self, ctx: Any, outputs: Mapping[str, Any], record: Any) -> None:
        pass

    # A store of one in-range element (``pl.write``'s hot path), given the element's last
    # writer before it. A STORE client without this hook makes such writes take `on_store`.
    on_store_element = None


class Fan:
    """The clients of one run, per event (tuples, in the clients' order)."""

    def __init__(self, clients: list[Client]):
        self.clients = list(clients)
        for event in EVENTS:
            setattr(self, event, tuple(c for c in self.clients if event in c.events))
        # Whether some client needs the one-by-one, traced run (per-element events).
        self.per_element = any(c.per_element for c in self.clients)
        # Whether every store client takes one-element stores on the scalar hot path.
        self.element_stores = all(c.on_store_element is not None for c in getattr(self, STORE))
