"""The value types of ``pld``: signal and reduce operators, communication contexts, window
buffers and typed views of them, and the run's distributed configuration."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from equiv.dtypes import DType


# ----------------------------------------------------------------------------------------
# Enumerations and types
# ----------------------------------------------------------------------------------------
class NotifyOp:
    """How ``pld.system.notify`` deposits its value: add to the peer's slot, or set it."""

    AtomicAdd = "atomic_add"
    Set = "set"


class WaitCmp:
    """The predicate of ``pld.system.wait``: slot == expected, or slot >= expected."""

    Eq = "eq"
    Ge = "ge"


class AtomicType:
    """Remote-store combine mode: plain store (``None_``) or atomic add (``Add``)."""

    None_ = "none"
    Add = "add"


class ReduceOp:
    """Reduction of the collectives."""

    Sum = "sum"
    Max = "max"
    Min = "min"
    Prod = "prod"


@dataclass
class CommCtx:
    """``pld.get_comm_ctx(t)``: the rank and world of a window instance."""

    rank: int
    nranks: int


@dataclass
class WindowBuffer:
    """``pld.alloc_window_buffer(size)``: a per-rank region of `nbytes` bytes."""

    nbytes: int
    name: str
    views: dict = field(default_factory=dict)


@dataclass(frozen=True)
class WindowRef:
    """``pld.window(buf, shape, dtype=)`` in the host: the same view on every rank's buffer."""

    buffer: WindowBuffer = field(compare=False)
    shape: tuple[int, ...]
    dtype: DType
    name: str


class DistributedConfig:
    """Stand-in for ``pypto.ir.distributed_compiled_program.DistributedConfig``: records the
    devices of a run; ``world_size_from`` reads the world size off it."""

    def __init__(self, device_ids: Sequence[int] = (), num_sub_workers: int = 0, **options: Any):
        self.device_ids = [int(d) for d in device_ids]
        self.num_sub_workers = num_sub_workers
        self.options = options

    def __repr__(self) -> str:
        return f"DistributedConfig(device_ids={self.device_ids})"
