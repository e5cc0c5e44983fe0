"""Cooperative threads that take turns: how SPMD blocks meet at ``syncall`` barriers and how
the ranks of a multi-rank program wait for each other's signals.

Each block (or rank) runs in its own thread, but only the one holding the turn runs; the
others wait on the owner's condition. A run is therefore as deterministic as the seeded order
that hands out the turns, while a body can still suspend in the middle (at a barrier or a
wait) and resume later. The owner keeps the protocol's state: ``cond``, ``turn``,
``finished``, ``failure`` and ``abort``.
"""

from __future__ import annotations

import contextvars
import threading
from typing import Any, Callable, Sequence


class Abandoned(BaseException):
    """Unwinds a thread whose run stopped (another one failed, or they deadlocked)."""


def run_in_turns(owner: Any, order: Sequence[int], target: Callable[[int], None], label: str) -> None:
    """Run ``target(i)`` for each ``i`` of ``order`` in its own thread, the first turn going to
    ``order[0]``; return once all have finished or one has failed, after stopping the rest.

    Each thread runs in a copy of the caller's context, so context variables (the running
    `RunContext`) are those of the kernel that started them.
    """
    threads = []
    for i in order:
        context = contextvars.copy_context()
        t = threading.Thread(target=context.run, args=(target, i), daemon=True, name=f"equiv-{label}-{i}")
        threads.append(t)
        t.start()
    with owner.cond:
        owner.turn = order[0]
        owner.cond.notify_all()
        while len(owner.finished) < len(order) and owner.failure is None:
            owner.cond.wait()
        owner.abort = True
        owner.cond.notify_all()
    for t in threads:
        t.join()


def hand_over_failure(owner: Any, exc: BaseException) -> None:
    """Give a thread's exception to the owner, which re-raises it in the dispatching thread; the
    first failure wins, and every waiting thread is woken to see it."""
    with owner.cond:
        if owner.failure is None:
            owner.failure = exc
        owner.cond.notify_all()


def await_turn(owner: Any, i: int) -> None:
    """Block the calling thread (holding ``owner.cond``) until it is ``i``'s turn; unwind with
    `Abandoned` when the run stopped meanwhile. On return ``i`` runs, resuming the block node it
    left (``owner.saved``) or the dispatching one (``owner.parent``)."""
    while owner.turn != i and not owner.abort:
        owner.cond.wait()
    if owner.abort:
        raise Abandoned()
    owner.ctx.current = owner.saved.pop(i, owner.parent)
