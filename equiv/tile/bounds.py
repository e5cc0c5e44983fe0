"""Out-of-range accesses: a read or write that reaches outside its tensor, or a gather or
scatter index outside its source.

The bounds check itself stays in the access path (`Tensor._clip`, `movement._index_guard`):
the access must be clipped whether or not anything is reported (reads outside see poison,
writes outside are dropped), the count of elements outside needs the access's own valid
mask, a batched stage replays block by block wherever a window is clipped, and with
``Options.out_of_bounds="raise"`` the kernel must stop before the access happens. What the
check finds is sent through the run's event stream (`equiv.tile.events.OUT_OF_RANGE`) to
this client, which records the finding or raises.
"""

from __future__ import annotations

from typing import Any

from equiv.tile.errors import OutOfBoundsError
from equiv.tile.events import OUT_OF_RANGE, Client


class OutOfRange(Client):
    """Reports ``oob-read`` / ``oob-write`` findings (or raises `OutOfBoundsError` at the first
    one when ``Options.out_of_bounds`` is ``"raise"``)."""

    events = frozenset({OUT_OF_RANGE})
    per_element = False  # a batched stage replays block by block where a window is clipped

    def on_out_of_range(self, ctx: Any, kind: str, tensor: str, detail: str, region: list,
                        count: int, site: str | None) -> None:
        if ctx.options.out_of_bounds == "raise":
            raise OutOfBoundsError(detail, site)
        ctx.record(kind, tensor, detail, region, count=count, site=site)
