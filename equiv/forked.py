"""A version's schedule runs in child processes, beside its first run.

A case runs each version as a few variants (`equiv.schedules`): the first run (NaN poison, the
case's own orders) and one run per other schedule. They read the same inputs, none depends on
another, and each runs on one thread. Where a CPU is free the schedule runs are therefore made
in forked children while the parent makes the first run. A child is the parent's copy at the
fork (the inputs shared, copy-on-write), runs the same code on the same values and hands back
what the runner keeps of a schedule run: each output's bits and written-mask, the findings,
the error and the order-dependent operations. That is what running it in the parent afterwards
gives: a run reads no state an earlier run leaves (poison and orders are functions of the
options and the seed; inputs a run writes are restored at its end).

Nothing changes but the wall time. A child is not used where it cannot pay or is not safe
(`reason_not_to_fork`): inputs under 16 MiB (the run is shorter than a fork) or over 1 GiB (a
second run at once would need GiBs more memory, which a CI runner lacks before CPUs). A child
that fails, takes far longer than the parent's run, or is stopped because the machine runs
short of memory is not waited for: that variant runs in the parent afterwards, as it would
have without children.
"""

from __future__ import annotations

import os
import pickle
import select
import signal
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch

from equiv.machine import available_memory_bytes, usable_cpus
from equiv.options import Options

# Below this many input bytes a run takes milliseconds, less than a fork and the hand-back cost.
MIN_INPUT_BYTES = 16 * 2**20
# Above this many input bytes a second run at once would cost GiBs more (a run's tiles, outputs
# and masks grow with its inputs): on a CI runner memory, not a CPU, is then what runs short.
MAX_INPUT_BYTES = 2**30
# A child is stopped when the memory a new allocation can get falls below this.
MEMORY_FLOOR_BYTES = 2**30
WATCH_SECONDS = 0.25


def reason_not_to_fork(options: Options, inputs_bytes: int) -> str | None:
    """Why a version's schedule runs stay in this process, or None where children are used."""
    if options.variant_processes == "off":
        return "variant_processes=off"
    if not hasattr(os, "fork"):
        return "this system has no fork"
    if not str(options.device).startswith("cpu"):
        return f"runs on {options.device} (a forked child cannot share the device context)"
    if threading.active_count() > 1:
        return "other threads run in this process (a fork copies none of them, nor what they hold)"
    if usable_cpus() < 2:
        return "one CPU"
    if inputs_bytes < MIN_INPUT_BYTES:
        return "small inputs: a run costs less than a fork"
    if inputs_bytes > MAX_INPUT_BYTES:
        return "large inputs: a second run at once would need GiBs more memory"
    have = available_memory_bytes()
    if have is not None and have < 2 * inputs_bytes + 2 * MEMORY_FLOOR_BYTES:
        return "too little memory free for a second run at once"
    return None


@dataclass
class Finished:
    """An output of a run made in a child: its bits and written-mask (as `Tensor` gives them)."""

    data: torch.Tensor
    written: torch.Tensor

    def to_torch(self) -> torch.Tensor:
        return self.data


def portable(outputs: dict | None) -> dict[str, Finished] | None:
    """A run's outputs as a child hands them back (what the runner reads of a schedule run)."""
    if outputs is None:
        return None
    return {name: Finished(t.to_torch().cpu(), t.written.cpu()) for name, t in outputs.items()}


class Child:
    """`work()` run in a forked child process; `result()` is its return value, or None where the
    child did not deliver one (the caller then runs the work itself)."""

    def __init__(self, work: Callable[[], Any]) -> None:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()  # else what the parent buffered is written twice
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                os.close(read_end)
                payload = pickle.dumps(work(), protocol=pickle.HIGHEST_PROTOCOL)
                with os.fdopen(write_end, "wb") as out:
                    out.write(payload)
                status = 0
            finally:
                os._exit(status)  # no exit handlers, no flush of the parent's buffers
        os.close(write_end)
        self.pid, self._fd = pid, read_end
        self._reaped = False  # once waited for, the pid may be another process's: never signalled
        self.stopped: str | None = None
        self._done = threading.Event()
        self._watch = threading.Thread(target=self._watch_memory, daemon=True)
        self._watch.start()

    def _watch_memory(self) -> None:
        while True:
            have = available_memory_bytes()
            if have is not None and have < MEMORY_FLOOR_BYTES:
                self.stopped = f"stopped: {have / 2**30:.1f} GiB of memory left"
                self._kill()
                return
            if self._done.wait(WATCH_SECONDS):
                return

    def _kill(self) -> None:
        if self._reaped:
            return
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def result(self, timeout: float) -> Any | None:
        """The child's return value; None where it failed, was stopped, or sent nothing
        within `timeout` seconds (it is then stopped)."""
        chunks = []
        deadline = time.monotonic() + timeout
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([self._fd], [], [], left)[0]:
                    self.stopped = self.stopped or f"stopped: nothing after {timeout:.0f} s"
                    self._kill()
                    break
                chunk = os.read(self._fd, 1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
        except BaseException:  # the parent is stopped (a deadline, an interrupt): so is the child
            self._kill()
            raise
        finally:
            self._finish()
        status = self._status
        if self.stopped or status != 0 or not chunks:
            return None
        try:
            return pickle.loads(b"".join(chunks))
        except Exception:
            return None

    def cancel(self) -> None:
        """Stop the child (the parent's own run failed or was stopped)."""
        self._kill()
        self._finish()

    def _finish(self) -> None:
        if self._done.is_set():
            return
        self._done.set()
        self._watch.join()
        try:
            os.close(self._fd)
        except OSError:
            pass
        _, status = os.waitpid(self.pid, 0)
        self._reaped = True
        self._status = status


def child_timeout(parent_seconds: float) -> float:
    """How long the parent waits for a child after its own run of the same program took
    `parent_seconds`: generous (the child may have shared a CPU), never forever."""
    return 60.0 + 4.0 * parent_seconds
