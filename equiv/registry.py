"""The registry of kernel pairs: every ``kernels/<name>/pair.py`` that defines ``PAIR``.

Adding a pair means adding a folder; nothing in the harness changes.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import pkgutil

from equiv.pair import KernelPair
from equiv.errors import UnknownPairError


_PAIRS: dict[str, KernelPair] = {}


def _discover() -> dict[str, KernelPair]:
    if not _PAIRS:
        import kernels

        for mod in sorted(pkgutil.iter_modules(kernels.__path__), key=lambda m: m.name):
            if not mod.ispkg or importlib.util.find_spec(f"kernels.{mod.name}.pair") is None:
                continue  # a folder without pair.py (yet) is not a pair
            module = importlib.import_module(f"kernels.{mod.name}.pair")
            pair = getattr(module, "PAIR", None)
            if isinstance(pair, KernelPair):
                _PAIRS[pair.name] = pair
    return _PAIRS


def names() -> list[str]:
    return sorted(_discover())


def all_pairs() -> list[KernelPair]:
    return [_discover()[n] for n in names()]


def get(name: str) -> KernelPair:
    """The registered pair called `name`; an unknown name suggests the closest ones."""
    pairs = _discover()
    if name in pairs:
        return pairs[name]
    close = difflib.get_close_matches(name, list(pairs), n=3, cutoff=0.4)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    raise UnknownPairError(f"unknown kernel pair {name!r}{hint} (known: {', '.join(sorted(pairs))})")
