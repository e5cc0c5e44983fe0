"""Lane values: a Python scalar that differs per block of a batched stage.

Arithmetic stays per lane; anything that needs one value (a comparison, ``if``, ``int()``,
a ``range`` bound) gets it where every lane agrees, else the stage splits into groups of
blocks that agree (`LaneSplit`).
"""

from __future__ import annotations

import itertools
import operator
from typing import Any, Callable, Iterable

from equiv.tile import sites
from equiv.tile.context import current
from equiv.tile.errors import LaneSplit, fallback
from equiv.tile.scalars import TracedFloat, TracedInt


# ----------------------------------------------------------------------------------------
# Lane values: one Python scalar per block of the stage
# ----------------------------------------------------------------------------------------
def _lane_binary(op: Callable[[Any, Any], Any], reflected: bool = False):
    def method(self: "Lanes", other: Any) -> "Lanes":
        if isinstance(other, Lanes):
            if len(other.values) != len(self.values):
                fallback("lane values of different lengths")
            others: Iterable = other.values
        elif isinstance(other, (int, float)) and not isinstance(other, bool):
            others = itertools.repeat(other)
        else:
            return NotImplemented
        if reflected:
            return Lanes(list(map(op, others, self.values)))
        return Lanes(list(map(op, self.values, others)))
    return method


def _traced(values: list) -> bool:
    return any(isinstance(v, (TracedFloat, TracedInt)) for v in values)


def _agreed(what: str, keys: list, symbol: str | None = None, values: list | None = None) -> Any:
    """The one answer every lane gives, or a `LaneSplit` by answer. A comparison of scalars
    read from tensors is a decision of the kernel (decision coverage), recorded here once
    with every lane's outcome, as the blocks run one by one would record it."""
    if symbol is not None and values is not None and _traced(values):
        current().decision(f"scalar {symbol}", {"true": any(keys), "false": not all(keys)},
                           site=sites.kernel_site())
    first = keys[0]
    if all(k == first for k in keys):
        return first
    raise LaneSplit(f"{what} of a block-dependent value", keys)


def _compare(op: Callable[[Any, Any], bool], symbol: str):
    def method(self: "Lanes", other: Any) -> Any:
        if isinstance(other, Lanes):
            pairs = list(zip(self.values, other.values))
        elif isinstance(other, (int, float)):
            pairs = [(v, other) for v in self.values]
        else:
            return NotImplemented
        keys = [bool(op(_plain(a), _plain(b))) for a, b in pairs]
        return _agreed("a comparison", keys, symbol, [a for a, _ in pairs] + [b for _, b in pairs])
    return method


def _plain(v: Any) -> Any:
    # a traced scalar's comparisons here are not the kernel's own (recorded by `_agreed`)
    return float(v) if isinstance(v, float) else int(v) if isinstance(v, int) else v


def _single(what: str, convert: Callable[[Any], Any], symbol: str | None = None):
    def method(self: "Lanes") -> Any:
        keys = [convert(v) for v in self.values]
        return _agreed(what, keys, symbol, self.values)
    return method


class Lanes:
    """A Python scalar that differs per block (a block index and what is computed from it).

    Arithmetic stays per lane. Anything that needs one value (a comparison, ``if``,
    ``int()``, a ``range`` bound) gets it when every lane agrees; where lanes disagree the
    stage splits into groups of blocks that agree (`LaneSplit`), each run batched.
    """

    __slots__ = ("values", "exact_in")

    def __init__(self, values: list, exact_in: Any = None):
        self.values = values
        # The element type every value is already exact in (read from a tensor of that type):
        # an op of that type takes them without rounding each again.
        self.exact_in = exact_in

    def __neg__(self) -> "Lanes":
        return Lanes([-v for v in self.values])

    __bool__ = _single("a truth test", lambda v: bool(_plain(v)), "if")
    __index__ = _single("an index", operator.index)
    __int__ = _single("int()", int)
    __float__ = _single("float()", float)
    __lt__ = _compare(operator.lt, "<")
    __le__ = _compare(operator.le, "<=")
    __gt__ = _compare(operator.gt, ">")
    __ge__ = _compare(operator.ge, ">=")
    __eq__ = _compare(operator.eq, "==")  # type: ignore[assignment]
    __ne__ = _compare(operator.ne, "!=")  # type: ignore[assignment]
    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Lanes({self.values!r})"


for _name in ("add", "sub", "mul", "floordiv", "truediv", "mod"):  # a + b, b + a, ... per lane
    setattr(Lanes, f"__{_name}__", _lane_binary(getattr(operator, _name)))
    setattr(Lanes, f"__r{_name}__", _lane_binary(getattr(operator, _name), reflected=True))
