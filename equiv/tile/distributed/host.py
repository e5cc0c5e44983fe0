"""``@pl.jit.host``: run a host orchestrator once, collecting its ``device=r`` dispatches,
then run the ranks in a world of their own."""

from __future__ import annotations

import functools
import types
from typing import Any, Callable

from equiv.tile.memory import Tensor
from equiv.tile.distributed.world import DistributedTensor, ACTIVE, RankIndexed, WORLD_SIZE, World


class HostFunction:
    """``@pl.jit.host``: runs the body once, collecting ``device=r`` dispatches, then runs the
    ranks (see the module docstring)."""

    def __init__(self, fn: Callable):
        self.fn = fn
        functools.update_wrapper(self, fn)
        self.__code__ = fn.__code__
        self.__globals__ = fn.__globals__
        self.last_order: list[int] = []

    def __get__(self, obj, objtype=None):
        return self if obj is None else types.MethodType(self, obj)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if ACTIVE.get() is not None:  # a host called from a host: one world
            return self.fn(*args, **kwargs)
        world = World(WORLD_SIZE.get())
        token = ACTIVE.set(world)
        try:
            result = world.host_call(self.fn, tuple(_host_view(a) for a in args),
                                     {k: _host_view(v) for k, v in kwargs.items()})
            world.run()
        finally:
            ACTIVE.reset(token)
            self.last_order = list(getattr(world, "order", []))  # the ranks' start order, for tests and reports
        return result


def _host_view(value: Any) -> Any:
    if isinstance(value, Tensor) and not isinstance(value, (DistributedTensor, RankIndexed)) and value.shape:
        view = RankIndexed.__new__(RankIndexed)
        view.__dict__.update(value.__dict__)
        return view
    return value


def host(fn: Callable | None = None, **_options: Any) -> Any:
    """``@pl.jit.host`` / ``@pl.jit.host(...)``."""
    if fn is None:
        return lambda f: HostFunction(f)
    return HostFunction(fn)
