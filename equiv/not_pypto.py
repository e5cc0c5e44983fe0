"""DSL entries that kernel files used but pypto did not define at the revisions in question.

A file that uses one cannot run on the device either (pypto rejects it: an
``AttributeError`` for a name, a ``TypeError`` for a keyword), so the emulator has no
meaning to give it and ``equiv coverage`` does not count it as missing emulation: it lists
it apart, with the files and revisions that use it, and leaves it out of ``covered K of N``.

Each record says what pypto had instead and the range of pypto's history it was checked
over (every first-parent revision, by ``scripts/pypto_names_history.py``). An entry is only
set apart for files dated inside that range; a use dated after it counts as missing until the
range is extended by running the script again (pypto may have added the name since).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class NotPypto:
    entry: str  # the census entry (``pl.kernel``, ``pl.tile.cast(dtype=)``)
    pypto_had: str  # what pypto offered instead, in its own terms
    checked_from: str  # first and last date of the pypto history examined (YYYY-MM-DD)
    checked_to: str
    source: str  # the pypto file that defines (or would define) it

    def applies(self, date: str | None) -> bool:
        """Whether a use at a file revision dated `date` is covered by the evidence (an
        undated use, the working tree, is not)."""
        return date is not None and self.checked_from <= date <= self.checked_to

    def to_dict(self) -> dict:
        return {"name": self.entry, "pypto_had": self.pypto_had, "checked": [self.checked_from, self.checked_to],
                "source": self.source}


# Every first-parent revision of pypto's main from the first that has the file to
# e2d0f78a (2026-08-21): `python scripts/pypto_names_history.py --pypto PYPTO_CLONE` says
# "defined at none" for each (docs/coverage.md).
_TO = "2026-08-21"
RECORDS: dict[str, NotPypto] = {r.entry: r for r in (
    NotPypto("pl.kernel", "no `kernel` in pypto.language; kernels are @pl.function / @pl.program / @pl.jit",
             "2026-01-21", _TO, "python/pypto/language/__init__.py"),
    NotPypto("pl.tile.cast(dtype=)", "tile.cast(tile, target_type, mode): the type is target_type=",
             "2026-03-06", _TO, "python/pypto/language/op/tile_ops.py"),
    NotPypto("pl.create_tensor(valid_shape=)", "create_tensor(shape, dtype, layout, manual_dep[, init_value]): "
             "no valid shape at creation", "2026-01-21", _TO, "python/pypto/language/op/tensor_ops.py"),
)}


def not_pypto(entry: str, dates: list[str] | None) -> NotPypto | None:
    """The record for `entry` when every use of it (file revisions dated `dates`) lies in
    the history its evidence covers; else None (the entry counts as usual)."""
    record = RECORDS.get(entry)
    if record is None or not dates or not all(record.applies(d) for d in dates):
        return None
    return record
