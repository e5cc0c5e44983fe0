"""Scalars read from tensors that record the outcome of the kernel's tests on them.

``pl.read`` returns a `TracedFloat` / `TracedInt` while a run is observed: a comparison
written in the kernel (``if v > 0:``) reports ``true``/``false`` at its line as a decision;
arithmetic on them returns plain Python numbers (the float/int methods are inherited), so
tracing ends at the first operation and costs nothing afterwards. Comparisons made inside
the emulator itself are not decisions of the kernel and are not recorded.
"""

from __future__ import annotations

import os
import sys

from equiv.tile.sites import _EQUIV_DIR
from equiv.tile.context import current

_EMU = _EQUIV_DIR + os.sep


def _record(op: str, result: bool) -> bool:
    caller = sys._getframe(2).f_code.co_filename
    if not os.path.abspath(caller).startswith(_EMU):
        current().decision(op, {"true": result, "false": not result})
    return result


def _cmp(base, name: str, symbol: str):
    method = getattr(base, name)

    def compare(self, other):
        result = method(self, other)
        if result is NotImplemented:
            return result
        return _record(f"scalar {symbol}", bool(result))

    compare.__name__ = name
    return compare


def _truth(base):
    def truth(self) -> bool:
        return _record("scalar if", base.__bool__(self))
    return truth


_COMPARISONS = {"__lt__": "<", "__le__": "<=", "__gt__": ">", "__ge__": ">=", "__eq__": "==",
                "__ne__": "!="}


def _traced_class(name: str, base: type) -> type:
    # a number that records every comparison and truth test made of it
    body = {op: _cmp(base, op, symbol) for op, symbol in _COMPARISONS.items()}
    body.update(__slots__=(), __hash__=base.__hash__, __bool__=_truth(base), __module__=__name__)
    return type(name, (base,), body)


TracedFloat = _traced_class("TracedFloat", float)
TracedInt = _traced_class("TracedInt", int)


def traced(value: int | float) -> int | float:
    """`value` as a traced scalar of the same type."""
    return TracedFloat(value) if isinstance(value, float) else TracedInt(value)
