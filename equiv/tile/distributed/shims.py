"""The ``pld`` table and source mode's modules: ``pypto.language.distributed`` and the
part of ``pypto.ir`` that multi-rank files import."""

from __future__ import annotations

import types
from typing import Any, Sequence

from equiv.tile.namespace import build, report_gaps
from equiv.tile.distributed.dsl_types import (AtomicType, CommCtx, DistributedConfig, NotifyOp, ReduceOp, WaitCmp)
from equiv.tile.distributed.ops import (all_to_all, allgather, alloc_window_buffer, allreduce, barrier, broadcast, defer_wait, get, get_comm_ctx, notify, nranks, put, rank, reduce_scatter, remote_load, remote_store, tensor_remote_store, tile_remote_store, wait, window, world_size)
from equiv.tile.distributed.world import DistributedTensor


# ----------------------------------------------------------------------------------------
# The table (``pld.*``) and source mode's modules
# ----------------------------------------------------------------------------------------
NAMES: dict[str, Any] = {
    "DistributedTensor": DistributedTensor, "CommCtx": CommCtx,
    "NotifyOp": NotifyOp, "NotifyOp.AtomicAdd": NotifyOp.AtomicAdd, "NotifyOp.Set": NotifyOp.Set,
    "WaitCmp": WaitCmp, "WaitCmp.Eq": WaitCmp.Eq, "WaitCmp.Ge": WaitCmp.Ge,
    "AtomicType": AtomicType, "AtomicType.None_": AtomicType.None_, "AtomicType.Add": AtomicType.Add,
    "ReduceOp": ReduceOp, "ReduceOp.Sum": ReduceOp.Sum, "ReduceOp.Max": ReduceOp.Max,
    "ReduceOp.Min": ReduceOp.Min, "ReduceOp.Prod": ReduceOp.Prod,
    # short forms
    "world_size": world_size, "get_comm_ctx": get_comm_ctx, "rank": rank, "nranks": nranks,
    "alloc_window_buffer": alloc_window_buffer, "window": window,
    "remote_load": remote_load, "remote_store": remote_store,
    # pld.system
    "system.world_size": world_size, "system.get_comm_ctx": get_comm_ctx, "system.rank": rank,
    "system.nranks": nranks, "system.notify": notify, "system.wait": wait, "system.defer_wait": defer_wait,
    # pld.tensor
    "tensor.alloc_window_buffer": alloc_window_buffer, "tensor.window": window, "tensor.put": put,
    "tensor.get": get, "tensor.remote_store": tensor_remote_store,
    "tensor.allreduce": allreduce, "tensor.barrier": barrier, "tensor.broadcast": broadcast,
    "tensor.allgather": allgather, "tensor.reduce_scatter": reduce_scatter, "tensor.all_to_all": all_to_all,
    # pld.tile
    "tile.remote_load": remote_load, "tile.remote_store": tile_remote_store,
}

# pypto modules besides the language that source mode provides (for `import` statements).
IMPORTABLE: frozenset[str] = frozenset({"pypto.ir.distributed_compiled_program"})


def namespace() -> dict[str, Any]:
    """Top-level members of ``pld`` built from `NAMES`."""
    return build(NAMES, prefix="pld")


def make_shim() -> types.ModuleType:
    """A fresh ``pypto.language.distributed`` module exposing the names of `NAMES` only."""
    mod = types.ModuleType("pypto.language.distributed", "equiv.tile.distributed seen as pld (source mode)")
    mod.__dict__.update(namespace())
    report_gaps(mod, "pld")
    return mod


def _ir_shim() -> types.ModuleType:
    ir = types.ModuleType("pypto.ir", "shim: only pypto.ir.distributed_compiled_program is provided")
    ir.__path__ = []  # type: ignore[attr-defined]
    compiled = types.ModuleType("pypto.ir.distributed_compiled_program")
    compiled.DistributedConfig = DistributedConfig  # type: ignore[attr-defined]
    ir.distributed_compiled_program = compiled  # type: ignore[attr-defined]
    report_gaps(ir, "pypto.ir")
    return ir


def attach(pypto: types.ModuleType) -> None:
    """Give source mode's ``pypto`` shim the distributed language and ``pypto.ir`` modules."""
    pypto.language.distributed = make_shim()  # type: ignore[attr-defined]
    pypto.ir = _ir_shim()  # type: ignore[attr-defined]


def import_module(pypto: types.ModuleType, name: str, fromlist: Sequence[str] | None) -> types.ModuleType | None:
    """What ``__import__(name, fromlist=...)`` returns for the pypto modules this file provides
    (None for any other name): the ``pypto`` package without a fromlist, else the module."""
    if "distributed" not in pypto.language.__dict__:
        attach(pypto)
    modules = {"pypto.language.distributed": pypto.language.distributed,
               "pypto.ir": pypto.ir, "pypto.ir.distributed_compiled_program": pypto.ir.distributed_compiled_program}
    if name not in modules:
        return None
    return modules[name] if fromlist else pypto
