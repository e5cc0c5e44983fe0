"""A stand-in for pypto-lib's ``golden`` harness that records instead of compiling.

A model file's ``__main__`` block hands everything a check needs to ``golden.run_jit``:
the ``@pl.jit`` entry, its input specs, the golden reference and the tolerances. The stand-in
answers ``from golden import TensorSpec, ScalarSpec, run_jit, ...`` with objects of its own:
``TensorSpec``/``ScalarSpec`` keep what they are given, ``run_jit``/``run`` append a
`RunCall` to the current recording and report success. Comparison helpers (``ratio_allclose``,
…) are equiv's models of them (`equiv.pairfree.comparators`), so the file's own test can be
predicted on emulated outputs; any other name is an inert marker.
"""

from __future__ import annotations

import contextlib
import contextvars
import types
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch


@dataclass
class TensorSpec:
    """What ``golden.TensorSpec(name, shape, dtype, init_value=, is_output=, resident=)`` holds."""

    name: str
    shape: list
    dtype: torch.dtype
    init_value: Any = None
    is_output: bool = False
    resident: Any = None

    def __post_init__(self) -> None:
        self.shape = [int(d) for d in self.shape]

    @property
    def is_resident(self) -> bool:
        """Placed on a device before the run (an int worker id or ``"stacked"``)."""
        return self.resident is not None and self.resident is not False

    def create_tensor(self) -> torch.Tensor:
        """The tensor this spec stands for, as the harness creates it (spec builders call it
        to derive one spec's value from another's)."""
        return materialize(self)


@dataclass
class ScalarSpec:
    """What ``golden.ScalarSpec(name, dtype, value)`` holds (value kept as given)."""

    name: str
    dtype: torch.dtype
    value: Any


@dataclass
class RunCall:
    """One ``run_jit(...)`` call of a ``__main__`` block."""

    fn: Any
    specs: list
    golden_fn: Callable | None
    rtol: float = 1e-5
    atol: float = 1e-5
    compare_fn: Any = None
    extra: dict = field(default_factory=dict)
    materialized: dict | None = None  # name -> tensor / scalar, when recorded with materialize
    site: str = ""

    @property
    def entry(self) -> str:
        return getattr(self.fn, "__name__", repr(self.fn))


@dataclass
class _RunResult:
    passed: bool = True
    error: str | None = None


_RECORDING: contextvars.ContextVar[list | None] = contextvars.ContextVar("equiv_golden_recording", default=None)
_MATERIALIZE: contextvars.ContextVar[bool] = contextvars.ContextVar("equiv_golden_materialize", default=False)


def materialize(spec: Any) -> Any:
    """The value a spec stands for, created as the golden harness does (``None`` = zeros,
    a number = filled, a tensor, a zero-argument callable, or torch.randn/rand/zeros/ones)."""
    if isinstance(spec, ScalarSpec):
        v = spec.value
        return v.item() if isinstance(v, torch.Tensor) else v
    init = spec.init_value
    if init is None:
        return torch.zeros(spec.shape, dtype=spec.dtype)
    if isinstance(init, bool) or isinstance(init, (int, float)):
        return torch.full(spec.shape, init, dtype=spec.dtype)
    if isinstance(init, torch.Tensor):
        return init.to(dtype=spec.dtype)  # as the harness does: no copy (runs lend or copy inputs)
    if callable(init):
        if init in (torch.randn, torch.rand, torch.zeros, torch.ones):
            return init(spec.shape, dtype=spec.dtype)
        return torch.as_tensor(init(), dtype=spec.dtype)
    raise TypeError(f"unsupported init_value {type(init).__name__} for tensor {spec.name!r}")


def _zero_filled_output(spec: Any) -> bool:
    return isinstance(spec, TensorSpec) and spec.is_output and spec.init_value is None


def _site() -> str:
    import sys

    frame = sys._getframe(2)
    return f"{frame.f_code.co_filename}:{frame.f_lineno}" if frame else ""


def run_jit(fn: Any = None, specs: Any = None, golden_fn: Callable | None = None, golden_data: Any = None,
            compile_cfg: Any = None, runtime_cfg: Any = None, rtol: float = 1e-5, atol: float = 1e-5,
            compare_fn: Any = None, compile_only: bool = False, runtime_dir: Any = None,
            save_data: bool = False, **extra: Any) -> _RunResult:
    calls = _RECORDING.get()
    call = RunCall(fn, list(specs or []), golden_fn, rtol, atol, compare_fn, dict(extra), site=_site())
    if compile_cfg:
        # Kept for what the run needs from it: the world size (DistributedConfig(device_ids=...)).
        call.extra["compile_cfg"] = compile_cfg
    if _MATERIALIZE.get():
        # Created right here, in the order the harness would, so one seed gives one set of inputs.
        # An output without an initial value is the harness's zero fill: the runs start it as
        # poison and the reference makes its own zeros, so it is not made here (a Pro file's
        # outputs are GBs of zeros no one reads).
        call.materialized = {s.name: materialize(s) for s in call.specs if not _zero_filled_output(s)}
    if calls is not None:
        calls.append(call)
    return _RunResult()


def _ignored(name: str) -> Callable:
    def stand_in(*args: Any, **kwargs: Any) -> Any:
        return stand_in  # a comparison helper's result is only ever passed back to run_jit

    stand_in.__name__ = name
    return stand_in


def make_module() -> types.ModuleType:
    """A fresh ``golden`` module for one loader."""
    mod = types.ModuleType("golden", "equiv's recording stand-in for pypto-lib's golden harness")
    mod.TensorSpec = TensorSpec  # type: ignore[attr-defined]
    mod.ScalarSpec = ScalarSpec  # type: ignore[attr-defined]
    mod.run_jit = run_jit  # type: ignore[attr-defined]
    mod.run = run_jit  # type: ignore[attr-defined]
    mod.RunResult = _RunResult  # type: ignore[attr-defined]
    mod.__path__ = []  # type: ignore[attr-defined]

    def __getattr__(name: str) -> Any:  # noqa: N807
        if name.startswith("__"):
            raise AttributeError(name)
        from equiv.pairfree.comparators import MODELLED, Unmodelled

        if name in MODELLED:
            return MODELLED[name]
        return Unmodelled(name) if name.endswith(("compare", "allclose", "reldiff")) else _ignored(name)

    mod.__getattr__ = __getattr__  # type: ignore[attr-defined]
    return mod


@contextlib.contextmanager
def recording(materialize_inputs: bool = False) -> Iterator[list[RunCall]]:
    """Collect the ``run_jit`` calls made inside the block."""
    calls: list[RunCall] = []
    t1 = _RECORDING.set(calls)
    t2 = _MATERIALIZE.set(materialize_inputs)
    try:
        yield calls
    finally:
        _RECORDING.reset(t1)
        _MATERIALIZE.reset(t2)
