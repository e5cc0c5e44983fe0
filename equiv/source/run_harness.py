"""The pypto modules that configure a device run, as source mode provides them.

``pypto.backend`` (which chip the compiler targets) and ``pypto.runtime.RunConfig`` (how the
device run is launched) change nothing the emulator computes: it emulates the language, not a
backend. Files import them at module level (qwen3's ``decode_fwd.py``), so without them the
whole file cannot load. The stand-ins accept what pypto accepts and record it; a name pypto
does not have fails as it would on the device.
"""

from __future__ import annotations

import enum
import types
from typing import Any, Sequence

from equiv.tile.distributed import shims as _distributed


class BackendType(enum.Enum):
    """The compile targets pypto names (``pypto.backend.BackendType``)."""

    Ascend910B = "Ascend910B"
    Ascend950 = "Ascend950"
    SuperscalarNPU = "SuperscalarNPU"


class RunConfig:
    """``pypto.runtime.RunConfig(...)``: the device run's settings, kept as given."""

    def __init__(self, **settings: Any):
        self.settings = settings
        for name, value in settings.items():
            setattr(self, name, value)

    def __repr__(self) -> str:
        return f"RunConfig({', '.join(f'{k}={v!r}' for k, v in self.settings.items())})"


def _backend_module() -> types.ModuleType:
    mod = types.ModuleType("pypto.backend", "source mode: the compile target, recorded only")
    mod.BackendType = BackendType  # type: ignore[attr-defined]
    chosen: list[BackendType] = []

    def set_backend_type(backend: BackendType) -> None:
        if not isinstance(backend, BackendType):
            raise TypeError(f"set_backend_type expects a BackendType, got {backend!r}")
        chosen.append(backend)

    mod.set_backend_type = set_backend_type  # type: ignore[attr-defined]
    mod.chosen = chosen  # type: ignore[attr-defined]
    return mod


def _runtime_module() -> types.ModuleType:
    mod = types.ModuleType("pypto.runtime", "source mode: RunConfig and the include path, recorded only")
    mod.RunConfig = RunConfig  # type: ignore[attr-defined]
    # The PTO-ISA headers a hand-written kernel is built against: a device-build path only.
    mod.pto_isa_include_dir = lambda: "<pto-isa include dir: device builds only>"  # type: ignore[attr-defined]
    return mod


MODULES = {"pypto.backend": _backend_module, "pypto.runtime": _runtime_module}
# Every pypto module besides the language that an ``import`` in source mode finds: these and
# the distributed ones (what `import_module` answers; `equiv coverage` counts them provided).
IMPORTABLE: frozenset[str] = frozenset(MODULES) | _distributed.IMPORTABLE


def import_module(pypto: types.ModuleType, name: str, fromlist: Sequence[str] | None) -> types.ModuleType | None:
    """What ``__import__(name, fromlist=...)`` returns for a pypto module source mode provides
    besides the language (None for any other name)."""
    if name in MODULES:
        leaf = name.split(".")[1]
        if leaf not in pypto.__dict__:
            setattr(pypto, leaf, MODULES[name]())
        return getattr(pypto, leaf) if fromlist else pypto
    # Read at each call: the recording stand-in replaces it in its own process.
    return _distributed.import_module(pypto, name, fromlist)
