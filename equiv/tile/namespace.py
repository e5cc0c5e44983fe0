"""Build the ``pl`` namespace from the DSL table (`equiv.tile.table.NAMES`).

Dotted names (``tile.add``, ``Level.CORE_GROUP``) become attributes of `Namespace` objects,
so ``pl.tile.add`` resolves through the same table that `equiv coverage` reads. A name that
is not in the table raises `UnsupportedOpError` with its full dotted name and the kernel's
line: an emulator gap is never mistaken for a kernel's own error.
"""

from __future__ import annotations

import types
from typing import Any, Mapping

from equiv.tile.errors import UnsupportedOpError
from equiv.tile.sites import kernel_site


class Namespace:
    """``pl.<prefix>``: members from the table; calling it calls the table's ``<prefix>`` entry."""

    def __init__(self, dotted: str, members: Mapping[str, Any], call: Any = None):
        object.__setattr__(self, "_dotted", dotted)
        object.__setattr__(self, "_call", call)
        self.__dict__.update(members)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        call = object.__getattribute__(self, "_call")
        if call is not None and hasattr(call, name) and not name.startswith("_"):
            return getattr(call, name)
        raise UnsupportedOpError(f"{self._dotted}.{name}", kernel_site())

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self._call is None or not callable(self._call):
            raise UnsupportedOpError(self._dotted, kernel_site())
        return self._call(*args, **kwargs)

    def __getitem__(self, item: Any) -> Any:
        if self._call is None:
            raise UnsupportedOpError(f"{self._dotted}[...]", kernel_site())
        return self._call[item]

    def __repr__(self) -> str:
        return f"<{self._dotted}>"


def report_gaps(module: types.ModuleType, prefix: str) -> types.ModuleType:
    """Make a shim module raise `UnsupportedOpError` (``<prefix>.<name>`` and the kernel's line)
    for any attribute it does not have, instead of a bare AttributeError (PEP 562)."""

    def __getattr__(name: str) -> Any:  # noqa: N807
        if name.startswith("__"):
            raise AttributeError(name)
        raise UnsupportedOpError(f"{prefix}.{name}", kernel_site())

    module.__getattr__ = __getattr__  # type: ignore[attr-defined]
    return module


def build(names: Mapping[str, Any], prefix: str = "pl") -> dict[str, Any]:
    """Top-level members of the namespace described by the dotted keys of ``names``."""
    heads: dict[str, dict[str, Any]] = {}
    for key, value in names.items():
        head, _, rest = key.partition(".")
        heads.setdefault(head, {})[rest] = value
    out: dict[str, Any] = {}
    for head, entries in heads.items():
        own = entries.pop("", None)
        if not entries:
            out[head] = own
            continue
        members = build(entries, f"{prefix}.{head}")
        out[head] = Namespace(f"{prefix}.{head}", members, own)
    return out


MISSING = object()


def lookup(root: Mapping[str, Any], dotted: str) -> Any:
    """The object the namespace ``root`` holds at ``dotted`` (``tile.add``, without ``pl.``),
    or `MISSING` when that name is not covered."""
    head, *rest = dotted.split(".")
    if head not in root:
        return MISSING
    obj = root[head]
    for part in rest:
        if part.startswith("_"):
            return MISSING
        if isinstance(obj, Namespace):
            if part in obj.__dict__:
                obj = obj.__dict__[part]
                continue
            call = object.__getattribute__(obj, "_call")
            obj = getattr(call, part, MISSING) if call is not None else MISSING
        else:
            obj = getattr(obj, part, MISSING)
        if obj is MISSING:
            return MISSING
    return obj


def resolve(root: Mapping[str, Any], dotted: str) -> bool:
    """True when ``dotted`` (``tile.add``, without ``pl.``) is covered by the namespace ``root``."""
    return lookup(root, dotted) is not MISSING
