"""What a real pypto-lib file costs a user: wall time and peak memory of a same-revision
pair-free check of one model file (``equiv check --source FILE --pre-rev REV --retiled-rev REV
--pair-free``), at decode shapes (the file's ``decode`` mode, else its defaults), the
``realistic`` inputs (or the recipes asked for), seed 0, no shrinking: the check
`scripts/pypto_lib_table.py` runs.

Each file runs in a process of its own, so its peak memory is its own: the larger of the
process's high-water mark (``VmHWM``) and the largest sum, sampled every half second, of the
proportional set sizes (``Pss``: shared pages divided among their sharers) of the process and
the children it forks for variant runs (`equiv.forked`). A file that would take the machine
down is stopped: above `memory_limit_gib` the parent ends it, reporting the size it had reached
(a lower bound of its peak).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field

CHILD_FLAG = "--equiv-bench-file-child"


@dataclass
class FileRow:
    """One model file: how its check ended, the wall seconds and the peak resident GiB."""

    path: str
    rev: str
    outcome: str                 # the file's outcome, or "stopped: ..." / "error: ..."
    seconds: float
    peak_gib: float
    entries: list[dict] = field(default_factory=list)  # entry -> outcome and verdict counts

    def to_dict(self) -> dict:
        return asdict(self)


def proc_kib(pid: int, key: str, table: str = "status") -> int:
    """A field of ``/proc/PID/<table>`` (``status``, ``smaps_rollup``) in KiB (0 once the
    process is gone)."""
    try:
        with open(f"/proc/{pid}/{table}") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _descendants(pid: int) -> list[int]:
    """`pid` and every process it forked that still runs (``/proc/PID/task/*/children``)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return out


def tree_kib(pid: int) -> int:
    """Memory of `pid` and its children now: the sum of their proportional set sizes."""
    return sum(proc_kib(p, "Pss", "smaps_rollup") for p in _descendants(pid))


def bench_file(repo: str, rev: str, path: str, memory_limit_gib: float = 14.0, timeout: float = 1800.0,
               model: str | None = None, recipes: tuple[str, ...] = ("realistic",)) -> FileRow:
    """Check `path` against itself at `rev` in a child process under `recipes` (empty: every
    recipe the file's inputs take, as ``equiv check`` and the gate run it); its time, peak
    memory and outcome."""
    cmd = [sys.executable, "-m", "equiv.bench_files", CHILD_FLAG, repo, rev, path, model or "", ",".join(recipes)]
    env = dict(os.environ)
    # The child imports this equiv, wherever it is installed from.
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                         env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    t0 = time.perf_counter()
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    peak_kib, stopped = 0, ""
    while child.poll() is None:
        peak_kib = max(peak_kib, proc_kib(child.pid, "VmHWM"), tree_kib(child.pid))
        if peak_kib > memory_limit_gib * 2**20:
            stopped = f"stopped above the memory limit of {memory_limit_gib:g} GiB"
        elif time.perf_counter() - t0 > timeout:
            stopped = f"stopped after the time limit of {timeout:g} s"
        if stopped:
            child.kill()
            break
        time.sleep(0.5)
    out, err = child.communicate()
    seconds = time.perf_counter() - t0
    if stopped:
        return FileRow(path, rev, stopped, seconds, peak_kib / 2**20)
    answer = next((line for line in reversed(out.splitlines()) if line.startswith("{")), None)
    if child.returncode != 0 or answer is None:
        tail = (err.strip().splitlines() or ["no output"])[-1]
        return FileRow(path, rev, f"error: exit {child.returncode}: {tail}", seconds, peak_kib / 2**20)
    data = json.loads(answer)
    return FileRow(path, rev, data["outcome"], seconds, max(peak_kib / 2**20, data["peak_gib"]), data["entries"])


def _child(repo: str, rev: str, path: str, model: str | None, recipes: list[str] | None) -> dict:
    """The check itself (in the child): its outcome per entry and the process's peak memory."""
    import resource

    from equiv.pairfree import run as pf
    from equiv.request import CheckRequest
    from equiv.shapes import ShapeError

    for shapes in ("decode", "nominal"):
        try:
            fo = pf.check_file(pf.FileTarget(path, rev, rev, repo, model=model),
                               CheckRequest(shapes=shapes, recipes=recipes, seed=0, shrink_budget=0))
            break
        except (ShapeError, KeyError, ValueError):  # a file without modes has no decode preset
            if shapes == "nominal":
                raise
    entries = []
    for e in fo.entries:
        counts: dict[str, int] = {}
        for per in (e.result.counts.values() if e.result is not None else ()):
            for verdict, n in per.items():
                if n:
                    counts[verdict] = counts.get(verdict, 0) + n
        entries.append({"entry": e.entry, "outcome": e.outcome, "counts": counts, "why": list(e.lines)[:2]})
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    return {"outcome": fo.outcome, "entries": entries, "peak_gib": peak}


if __name__ == "__main__":
    if len(sys.argv) == 7 and sys.argv[1] == CHILD_FLAG:
        _, _, repo_, rev_, path_, model_, recipes_ = sys.argv
        print(json.dumps(_child(repo_, rev_, path_, model_ or None, recipes_.split(",") if recipes_ else None)),
              flush=True)
    else:
        sys.exit("equiv.bench_files runs as the child of `equiv bench --repo R FILE...`")
