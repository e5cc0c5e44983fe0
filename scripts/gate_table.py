#!/usr/bin/env python3
"""The gate on a pypto-lib clone, commit by commit: what pypto-lib's CI selects, what equiv
selects, how many entries are unchanged and how many would run (the dry run), and, for the
latest few, the full gate (outcome, wall seconds, peak memory).

    python scripts/gate_table.py --repo /tmp/gate-pypto-lib --tip 634e77bd --count 40 \\
        --full 10 --full-budget 300 --out docs/pypto-lib-gate-table.md

"CI selects" runs the clone's own ``.github/scripts/detect_changes.py`` at each commit (in a
scratch work tree of the clone) on the commit's changed files: its count of runnable files
(it leaves ``models/deepseek_v4_pro/`` out of PR runs, and adds all of ``examples/`` when a
file outside ``models/`` and the documentation changes; both are as CI does). The dry run
(`equiv.pairfree.plan`) runs no kernel, no golden and builds no input. The full gate runs
``equiv gate --base C^ --head C`` under ``/usr/bin/time -v``, one commit at a time, cheapest
commit first (by the dry run's estimate), until --full-until (a wall-clock deadline) passes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from equiv.pairfree import gate as pfg
from equiv.pairfree import plan as planning  # noqa: E402

CI_SCRIPT = ".github/scripts/detect_changes.py"


def git(repo: str, *args: str, data: str | None = None) -> str:
    return subprocess.run(["git", "-C", repo, *args], capture_output=True, text=True, input=data,
                          check=True).stdout


def ci_selects(repo: str, scratch: str, commit: str, changed: list[str]) -> int | None:
    """Runnable files pypto-lib's own selection script picks at `commit` (None: no script)."""
    if not os.path.isdir(scratch):
        git(repo, "worktree", "add", "-q", "--detach", scratch, commit)
    git(scratch, "checkout", "-q", "--detach", commit)
    if not os.path.isfile(os.path.join(scratch, CI_SCRIPT)):
        return None
    out = subprocess.run([sys.executable, CI_SCRIPT], cwd=scratch, input="\n".join(changed) + "\n",
                         capture_output=True, text=True, check=True).stdout
    return len(out.split())


def dry_run(repo: str, commit: str) -> dict:
    t0 = time.perf_counter()
    base = pfg.resolve(repo, f"{commit}^")
    changes = pfg.changed_model_files(repo, base, commit)
    planned = planning.plan_changes(repo, base, commit, changes).entries
    todo = planning.order(planned)
    return {"files": len(changes), "importers": sum(c.why != "changed" for c in changes),
            "entries": len(planned), "unchanged": sum(p.unchanged for p in planned), "to_run": len(todo),
            "estimate": sum(p.estimate for p in todo), "seconds": time.perf_counter() - t0}


def full_gate(repo: str, commit: str, budget: float, json_dir: str) -> dict:
    """``equiv gate`` as CI would run it, with its wall time and peak memory."""
    out_json = os.path.join(json_dir, f"gate-{commit[:8]}.json")
    cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "equiv.cli", "gate", "--repo", repo, "--base",
           f"{commit}^", "--head", commit, "--time-budget", str(budget), "--report", "", "--json", out_json]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr)
    last = next((line for line in reversed(p.stdout.splitlines()) if line.startswith("gate: ")), "(no verdict line)")
    return {"exit": p.returncode, "wall": wall, "peak_gib": int(rss.group(1)) / 2**20 if rss else None,
            "verdict": last}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", required=True, help="a pypto-lib clone (a scratch work tree is added to it)")
    ap.add_argument("--tip", default="634e77bd")
    ap.add_argument("--count", type=int, default=40)
    ap.add_argument("--full", type=int, default=10, help="full gate for this many latest commits")
    ap.add_argument("--full-budget", type=float, default=1800.0, help="--time-budget of each full gate")
    ap.add_argument("--full-until", default=None, help="UTC HH:MM after which no further full gate starts")
    ap.add_argument("--dry-until", default=None, help="UTC HH:MM after which no further dry run starts")
    ap.add_argument("--out", default="docs/pypto-lib-gate-table.md")
    ap.add_argument("--state", default=None, help="JSON file keeping rows already measured (resume)")
    args = ap.parse_args()
    repo = os.path.abspath(args.repo)
    scratch = repo.rstrip("/") + "-ci-worktree"
    commits = git(repo, "rev-list", "--first-parent", f"-n{args.count}", args.tip, "--", "models").split()
    state_path = args.state or args.out + ".json"
    state = json.load(open(state_path)) if os.path.exists(state_path) else {}
    dry_deadline = _deadline(args.dry_until)
    for c in commits:
        row = state.setdefault(c, {})
        if "dry" in row:
            continue
        if dry_deadline and dt.datetime.now(dt.timezone.utc) >= dry_deadline:
            break
        subject = git(repo, "log", "-1", "--format=%s", c).strip()
        changed = git(repo, "diff", "--name-only", f"{c}^", c).split()
        row.update(subject=subject, changed_models=sum(p.startswith("models/") and p.endswith(".py") for p in changed),
                   ci=ci_selects(repo, scratch, c, changed), dry=dry_run(repo, c))
        print(c[:8], row["ci"], row["dry"], flush=True)
        json.dump(state, open(state_path, "w"), indent=1)
    latest = commits[:args.full]
    deadline = _deadline(args.full_until)
    json_dir = os.path.dirname(os.path.abspath(state_path))
    for c in sorted((c for c in latest if "dry" in state.get(c, {})), key=lambda c: state[c]["dry"]["estimate"]):
        if "full" in state[c]:
            continue
        if deadline and dt.datetime.now(dt.timezone.utc) >= deadline:
            break
        state[c]["full"] = full_gate(repo, c, args.full_budget, json_dir)
        print(c[:8], state[c]["full"], flush=True)
        json.dump(state, open(state_path, "w"), indent=1)
    write_table(args, commits, state)
    return 0


def _deadline(hhmm: str | None) -> dt.datetime | None:
    if not hhmm:
        return None
    hh, mm = map(int, hhmm.split(":"))
    return dt.datetime.now(dt.timezone.utc).replace(hour=hh, minute=mm, second=0, microsecond=0)


def write_table(args: argparse.Namespace, commits: list[str], state: dict) -> None:
    lines = [
        "# The gate on pypto-lib's latest commits",
        "",
        f"Produced by `python scripts/gate_table.py --repo R --tip {args.tip} --count {args.count} "
        f"--full {args.full} --full-budget {args.full_budget:g}` on a pypto-lib clone, on a 2-core CPU "
        "machine shared with other jobs. One row per first-parent commit touching `models/`, newest "
        "first; each is gated as a pull request from its parent.",
        "",
        "* **CI**: runnable files pypto-lib's own `.github/scripts/detect_changes.py` selects at that "
        "commit (it leaves `models/deepseek_v4_pro/` out of PR runs; a change outside `models/` adds "
        "all of `examples/`).",
        "* **equiv files**: model files equiv selects (changed, plus every model file that transitively "
        "imports a changed file; `deepseek_v4_pro` included); in brackets, how many of them are importers.",
        "* **unchanged / to run**: entries whose checked program is the same at both revisions (listed, "
        "not run) and entries the gate would run; **est.**: the dry run's cost estimate; **dry run**: "
        "wall seconds of `equiv gate --dry-run` (no kernel, no golden, no input built) and per file.",
        "",
        "| commit | subject | changed model files | CI | equiv files | entries | unchanged | to run | est. s "
        "| dry run s | s per file |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for c in commits:
        r = state.get(c, {})
        d = r.get("dry")
        if not d:
            continue
        per = d["seconds"] / d["files"] if d["files"] else 0.0
        subject = r["subject"].replace("|", "\\|")
        subject = subject if len(subject) <= 60 else subject[:57] + "..."
        lines.append(f"| {c[:8]} | {subject} | {r['changed_models']} | {r['ci'] if r['ci'] is not None else 'n/a'} | "
                     f"{d['files']} ({d['importers']}) | {d['entries']} | {d['unchanged']} | {d['to_run']} | "
                     f"{d['estimate']:.0f} | {d['seconds']:.1f} | {per:.2f} |")
    missing = [c[:8] for c in commits if "dry" not in state.get(c, {})]
    if missing:
        lines += ["", f"Not measured (time): {', '.join(missing)}."]
    full = [(c, state[c]["full"]) for c in commits[:args.full] if "full" in state.get(c, {})]
    lines += ["", f"## The full gate, {args.full} latest commits", "",
              f"`equiv gate --base C^ --head C --time-budget {args.full_budget:g}` under `/usr/bin/time -v`, "
              "cheapest commit first; peak memory is the largest resident set of the process.", "",
              "| commit | exit | verdict line | wall s | peak GiB |", "| --- | ---: | --- | ---: | ---: |"]
    for c, f in full:
        peak = f"{f['peak_gib']:.2f}" if f["peak_gib"] is not None else "?"
        lines.append(f"| {c[:8]} | {f['exit']} | {f['verdict'].replace('|', '/')} | {f['wall']:.0f} | {peak} |")
    not_run = [c[:8] for c in commits[:args.full] if "full" not in state.get(c, {})]
    if not_run:
        lines += ["", f"Not run (time): {', '.join(not_run)}."]
    if full:
        walls = sorted(f["wall"] for _, f in full)
        mid = walls[len(walls) // 2] if len(walls) % 2 else (walls[len(walls) // 2 - 1] + walls[len(walls) // 2]) / 2
        lines += ["", f"Median wall time {mid:.0f} s, largest {walls[-1]:.0f} s (over {len(walls)} commits)."]
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as fh:
        fh.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
