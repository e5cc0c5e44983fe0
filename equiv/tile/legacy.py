"""DSL forms pypto-lib's models used since 2026-06-01 that pypto has since renamed or
retired, with the meaning pypto gave them then (a gate judges pull requests against base
revisions that old). Keyword renames live on the functions themselves (``pl.load`` takes
``valid_shapes=``, ``pl.at`` takes ``optimization=``); the names are here.

* ``with pl.incore(split=, name_hint=):`` — an InCore scope; pypto (#1819, 2026-06-20)
  retired it for ``with pl.at(level=pl.Level.CORE_GROUP):``. ``split`` only steers how the
  compiler moves data between cube and vector cores.
* ``with pl.auto_incore(split=, name_hint=):`` — an AutoInCore scope (the compiler may chunk
  its loops); retired at the same time for ``pl.at(level=..., optimizations=[pl.auto_chunk])``.
* ``pl.chunked_loop_optimizer`` / ``pl.chunked_loop_optimizer(split=)`` — the value of
  ``pl.at(optimization=)`` asking for that AutoInCore chunking; a hint.
* ``pl.Role.Orchestrator`` / ``pl.Role.SubWorker`` — the role of a host-level function
  (``@pl.function(level=pl.Level.HOST, role=...)``); the function runs as written.
* ``pl.Tuple[...]`` — the annotation of a function returning several values.

None of them changes a value: each body runs once, as ``pl.at``'s does.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

from equiv.tile import control


@contextmanager
def incore(split: Any = None, *, name_hint: str = "") -> Iterator[Any]:
    """``with pl.incore():`` the body as one InCore task (``pl.at(level=CORE_GROUP)``)."""
    with control.at(control.Level.CORE_GROUP, name_hint or "incore") as tid:
        yield tid


@contextmanager
def auto_incore(split: Any = None, *, name_hint: str = "") -> Iterator[Any]:
    """``with pl.auto_incore():`` the body as one task whose loops the compiler may chunk."""
    with control.at(control.Level.CORE_GROUP, name_hint or "auto_incore",
                    optimizations=[control.auto_chunk]) as tid:
        yield tid


class _ChunkedLoopOptimizer(control.Optimization):
    """``pl.chunked_loop_optimizer``, bare or called with ``split=``: a chunking request."""

    def __call__(self, split: Any = None) -> control.Optimization:
        return control.Optimization("chunked_loop_optimizer", split=split)


chunked_loop_optimizer = _ChunkedLoopOptimizer("chunked_loop_optimizer")


class Role:
    """``pl.Role``: what a host-level function does (builds the task graph, or runs tasks)."""

    Orchestrator = "Orchestrator"
    SubWorker = "SubWorker"


class Tuple(control._Annotation):
    """``pl.Tuple[...]``: several return values (an annotation, not enforced)."""
