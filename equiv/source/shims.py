"""The ``pypto`` and ``pypto.language`` modules a kernel file imports: shims over
`equiv.tile` exposing the DSL table's names only."""

from __future__ import annotations

import types

from equiv import tile as _tile
from equiv.tile.namespace import Namespace, report_gaps


# Sub-namespaces of pypto.language: an unknown member is reported with its dotted name.
_NAMESPACES = ("tile", "tensor", "array", "Level", "AtomicType", "PadValue", "jit", "MaskPattern")


# ----------------------------------------------------------------------------------------
# The pypto.language shim
# ----------------------------------------------------------------------------------------
def make_language_shim() -> types.ModuleType:
    """A fresh ``pypto.language`` module exposing the names of the DSL table only."""
    mod = types.ModuleType("pypto.language", "equiv.tile seen as pypto.language (source mode)")
    for name in _tile.__all__:
        mod.__dict__[name] = getattr(_tile, name)
    for name in _NAMESPACES:
        # A namespace with no covered member still reports its members by their dotted name.
        mod.__dict__.setdefault(name, Namespace(f"pl.{name}", {}))
    report_gaps(mod, "pl")
    return mod


def make_pypto_shim(language: types.ModuleType) -> types.ModuleType:
    pkg = types.ModuleType("pypto", "shim package: only pypto.language (= equiv.tile) is provided")
    pkg.__path__ = []  # type: ignore[attr-defined]
    pkg.language = language  # type: ignore[attr-defined]
    report_gaps(pkg, "pypto")
    return pkg
