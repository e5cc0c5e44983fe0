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


def code_rev() -> str:
    """The equiv commit that measures (rows keep it: a table may be produced over several runs)."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        return git(here, "rev-parse", "--short=8", "HEAD").strip()
    except (subprocess.CalledProcessError, OSError):
        return os.environ.get("EQUIV_CODE_REV", "unknown")


def why_category(why: str) -> str:
    """The kind of reason an entry runs for, without the file's own names and sites."""
    if why == "changed: its kernel, golden or what they reach":  # as e7be4ec6 kept it
        return ("its kernel, golden or what they reach changed, or a function the __main__ block runs through "
                "changed and cannot be recorded (the row's code kept no finer reason)")
    if why.startswith("changed: ") and "nor on the CPU stand-in" not in why:
        return "its kernel, golden or what they reach changed"
    if why.startswith("added"):
        return "added by the commit"
    if "recorded run_jit call changed" in why:
        return "its recorded run_jit call changed"
    if "calls it at" in why or "called at" in why:
        return "called at one revision only"
    if "nor on the CPU stand-in" in why:
        what = "its harness (a function the __main__ block calls) changed" if why.startswith("changed: ") else \
            "its __main__ block changed"
        cpu = why.split("nor on the CPU stand-in", 1)[1]
        if "memory cap" in cpu:
            return f"{what}; the meta device cannot record it and its CPU recording exceeds the stand-in's memory cap"
        if "given up after" in cpu:
            return f"{what}; the meta device cannot record it and its CPU recording passes the stand-in's time box"
        err = re.search(r"\(([A-Za-z]+(Error|Exception))", cpu)
        return (f"{what}; the meta device cannot record it and the block raises on the CPU stand-in too "
                f"({err.group(1) if err else 'no recorded call'})")
    if "makes an input's value itself" in why:
        return "its __main__ block changed and makes an input's value itself"
    if "no run_jit entry found" in why:
        return "no run_jit entry found statically"
    return re.sub(r"models/\S+", "FILE", why)[:160]


def dry_run(repo: str, commit: str) -> dict:
    t0 = time.perf_counter()
    base = pfg.resolve(repo, f"{commit}^")
    changes = pfg.changed_model_files(repo, base, commit)
    planned = planning.plan_changes(repo, base, commit, changes).entries
    todo = planning.order(planned)
    why: dict[str, int] = {}
    for p in todo:
        key = why_category(p.why)
        key += " (another model instance)" if p.model else " (a multi-tile token count)" if p.config else ""
        why[key] = why.get(key, 0) + 1
    return {"files": len(changes), "importers": sum(c.why != "changed" for c in changes), "why_to_run": why,
            "entries": len(planned), "unchanged": sum(p.unchanged for p in planned), "to_run": len(todo),
            "estimate": sum(p.estimate for p in todo), "seconds": time.perf_counter() - t0, "code": code_rev()}


def full_gate(repo: str, commit: str, budget: float, json_dir: str, timeout: float) -> dict:
    """``equiv gate`` as CI would run it, with its wall time and peak memory (`timeout`: the
    whole process group is ended after that many seconds, and the row says so)."""
    import signal

    out_json = os.path.join(json_dir, f"gate-{commit[:8]}.json")
    log = os.path.join(json_dir, f"gate-{commit[:8]}.log")
    cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "equiv.cli", "gate", "--repo", repo, "--base",
           f"{commit}^", "--head", commit, "--time-budget", str(budget), "--report", "", "--json", out_json]
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        p = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            _, err = p.communicate(timeout=timeout)
            code: int | str = p.returncode
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            _, err = p.communicate()
            code = "timeout"
    wall = time.perf_counter() - t0
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", err or "")
    with open(log) as fh:
        lines = fh.read().splitlines()
    last = next((line for line in reversed(lines) if line.startswith("gate: ")), "(no verdict line)")
    outcomes: dict[str, int] = {}
    for line in lines:  # the console's per-entry lines: OUTCOME  file:entry (seconds)
        m = re.match(r"^(PASS|FAIL|CANNOT JUDGE|SKIPPED|UNCHANGED|NOT CHECKED)\s{2,}\S", line)
        if m:
            outcomes[m.group(1).lower()] = outcomes.get(m.group(1).lower(), 0) + 1
    return {"exit": code, "wall": wall, "code": code_rev(), "peak_gib": int(rss.group(1)) / 2**20 if rss else None,
            "verdict": last, "outcomes": outcomes}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", required=True, help="a pypto-lib clone (a scratch work tree is added to it)")
    ap.add_argument("--tip", default="634e77bd")
    ap.add_argument("--count", type=int, default=40)
    ap.add_argument("--full", type=int, default=10, help="full gate for this many latest commits")
    ap.add_argument("--full-budget", type=float, default=1800.0, help="--time-budget of each full gate")
    ap.add_argument("--full-until", default=None, help="UTC HH:MM after which no further full gate starts")
    ap.add_argument("--dry-until", default=None, help="UTC HH:MM after which no further dry run starts")
    ap.add_argument("--max-dry", type=int, default=None, help="dry-run rows to measure in this invocation")
    ap.add_argument("--max-full", type=int, default=None, help="full gates to run in this invocation")
    ap.add_argument("--one-step", action="store_true",
                    help="one heavy step per invocation, for a machine shared with other jobs: missing dry "
                         "runs (one, or as many as start before --dry-until), else one full gate")
    ap.add_argument("--full-timeout", type=float, default=3000.0,
                    help="seconds after which a full gate is ended (its row says timeout)")
    ap.add_argument("--out", default="docs/pypto-lib-gate-table.md")
    ap.add_argument("--state", default=None, help="JSON file keeping rows already measured (resume)")
    args = ap.parse_args()
    if args.one_step:  # dry rows (one, or until --dry-until), else one full gate
        args.max_full = 1
        if not args.dry_until:
            args.max_dry = 1
    repo = os.path.abspath(args.repo)
    scratch = repo.rstrip("/") + "-ci-worktree"
    commits = git(repo, "rev-list", "--first-parent", f"-n{args.count}", args.tip, "--", "models").split()
    state_path = args.state or args.out + ".json"
    state = json.load(open(state_path)) if os.path.exists(state_path) else {}
    dry_deadline = _deadline(args.dry_until)
    done = 0
    for c in commits:
        row = state.setdefault(c, {})
        if "dry" in row:
            continue
        if dry_deadline and dt.datetime.now(dt.timezone.utc) >= dry_deadline:
            break
        if args.max_dry is not None and done >= args.max_dry:
            break
        done += 1
        subject = git(repo, "log", "-1", "--format=%s", c).strip()
        changed = git(repo, "diff", "--name-only", f"{c}^", c).split()
        row.update(subject=subject, changed_models=sum(p.startswith("models/") and p.endswith(".py") for p in changed),
                   ci=ci_selects(repo, scratch, c, changed), dry=dry_run(repo, c))
        print(c[:8], row["ci"], row["dry"], flush=True)
        json.dump(state, open(state_path, "w"), indent=1)
    latest = commits[:args.full]
    deadline = _deadline(args.full_until)
    json_dir = os.path.dirname(os.path.abspath(state_path))
    started = 1 if args.one_step and done else 0
    for c in sorted((c for c in latest if "dry" in state.get(c, {})), key=lambda c: state[c]["dry"]["estimate"]):
        if "full" in state[c]:
            continue
        if deadline and dt.datetime.now(dt.timezone.utc) >= deadline:
            break
        if args.max_full is not None and started >= args.max_full:
            break
        started += 1
        state[c]["full"] = full_gate(repo, c, args.full_budget, json_dir, args.full_timeout)
        print(c[:8], state[c]["full"], flush=True)
        json.dump(state, open(state_path, "w"), indent=1)
    write_table(args, commits, state)
    return 0


def _deadline(hhmm: str | None) -> dt.datetime | None:
    if not hhmm:
        return None
    hh, mm = map(int, hhmm.split(":"))
    return dt.datetime.now(dt.timezone.utc).replace(hour=hh, minute=mm, second=0, microsecond=0)


def _median(values: list[float]) -> float:
    v = sorted(values)
    return v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2


def write_table(args: argparse.Namespace, commits: list[str], state: dict) -> None:
    """The whole document, from the state's rows alone (re-running with nothing left to measure
    rewrites it)."""
    lines = [
        "# The gate on pypto-lib's latest commits",
        "",
        "This file is written, whole, by",
        "",
        f"    python scripts/gate_table.py --repo R --tip {args.tip} --count {args.count} --full {args.full} \\",
        f"        --full-budget {args.full_budget:g} --one-step --out docs/pypto-lib-gate-table.md",
        "",
        "repeated until every row is measured (`--one-step` measures one row per run, for a machine "
        "shared with other jobs; the rows are kept beside the output in "
        "`docs/pypto-lib-gate-table.md.json`, so a run resumes and the file can be written again), on a pypto-lib "
        "clone `R`, on a 2-core CPU machine shared with other jobs. One row per first-parent commit "
        "touching `models/`, newest first; each is gated as a pull request from its parent.",
        "",
        "## Selection and the dry run",
        "",
        "* **CI**: runnable files pypto-lib's own `.github/scripts/detect_changes.py` selects at that "
        "commit (it leaves `models/deepseek_v4_pro/` out of PR runs; a change outside `models/` adds "
        "all of `examples/`).",
        "* **equiv files**: model files equiv selects (changed, plus every model file that transitively "
        "imports a changed file; `deepseek_v4_pro` included); in brackets, how many of them are importers.",
        "* **unchanged / to run**: entries whose checked program is the same at both revisions (listed, "
        "not run) and entries the gate would run — other model instances of the config and a multi-tile "
        "token count included, where the code of the row adds them; **est. s**: the dry run's cost "
        "estimate; **dry run s**: wall seconds of the dry run (no kernel, no golden; `__main__` blocks on "
        "the meta device, or on the CPU stand-in where that cannot record them) and per file.",
        "* **code**: the equiv commit that measured the row (`earlier`: a run before rows kept it, before "
        "3f18567 — so before the CPU stand-in and the multi-tile token count, and with an entry whose harness "
        "edit cannot be compared repeated at every model instance; its counts of entries to run are higher "
        "than today's code gives).",
        "",
        "| commit | subject | changed model files | CI | equiv files | entries | unchanged | to run | est. s "
        "| dry run s | s per file | code |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
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
                     f"{d['estimate']:.0f} | {d['seconds']:.1f} | {per:.2f} | {d.get('code', 'earlier')} |")
    missing = [c[:8] for c in commits if "dry" not in state.get(c, {})]
    if missing:
        lines += ["", f"Not measured (time): {', '.join(missing)}."]
    dry = [(c, state[c]) for c in commits if "dry" in state.get(c, {})]
    if dry:
        more = [c[:8] for c, r in dry if r["ci"] is not None and r["dry"]["files"] > r["ci"]]
        fewer = [c[:8] for c, r in dry if r["ci"] is not None and r["dry"]["files"] < r["ci"]]
        via = sum(r["dry"]["importers"] for _, r in dry)
        lines += ["", f"Over the {len(dry)} rows: {sum(r['dry']['files'] for _, r in dry)} files selected, "
                      f"{via} of them only as importers of a changed file; "
                      f"{sum(r['dry']['unchanged'] for _, r in dry)} of {sum(r['dry']['entries'] for _, r in dry)} "
                      f"entries unchanged. equiv selects more files than CI in {len(more)} rows "
                      f"({', '.join(more) or 'none'}), fewer in {len(fewer)} ({', '.join(fewer) or 'none'})."]
    tip = next((c for c in commits if c.startswith(args.tip)), None)
    if tip and "dry" in state.get(tip, {}):
        d, before = state[tip]["dry"], state[tip].get("dry_before_standin")
        lines += ["", f"**{tip[:8]}** ({state[tip]['subject'][:60]}): {d['files']} files, {d['entries']} entries: "
                      f"{d['unchanged']} unchanged, **{d['to_run']} to run** (bound: 20; "
                      f"{'met' if d['to_run'] <= 20 else 'not met'})."]
        if before:
            lines[-1] += (f" The same commit measured by code {before.get('code', 'earlier')}, before the CPU stand-in "
                          f"and before an entry whose harness edit cannot be compared stopped being repeated at every "
                          f"model instance: {before['entries']} entries, {before['unchanged']} unchanged, "
                          f"{before['to_run']} to run.")
        if d.get("why_to_run"):
            lines += ["", "Why each of its entries runs:", ""]
            kinds: dict[str, int] = {}
            for why, n in d["why_to_run"].items():  # rows kept by an earlier run: their keys again by kind
                k = why_category(why)
                kinds[k] = kinds.get(k, 0) + n
            lines += [f"* {n} × {why}" for why, n in sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0]))]
    full = [(c, state[c]["full"]) for c in commits[:args.full] if "full" in state.get(c, {})]
    lines += ["", f"## The full gate, {args.full} latest commits", "",
              f"`equiv gate --base C^ --head C --time-budget {args.full_budget:g}` (pypto-lib's 30-minute PR "
              "job) under `/usr/bin/time -v`, cheapest commit first (by the dry run's estimate), on the shared "
              "2-core machine: the rows measured by 39535b57, 045f2c2b and 91588268 ran as two or three such "
              "measurements at once beside other test runs (load average 4-10), so a gate had well under one "
              "core and its budget checked fewer entries than on a CI runner of its own (from 045f2c2b an entry "
              "still running when the budget ends is stopped there; from 91588268 selection and planning count "
              "against the budget, and a gate that stopped an entry exits without the interpreter shutdown that "
              "gave b9b60dad's exit 134 after its verdict; from c91de5ad an entry a file runs under `--entry` is "
              "run under that choice, an entry no mode reaches is not checked, and a model instance the file's own "
              "asserts refuse is skipped, where earlier code ended the whole file `CANNOT CHECK`; from 8ddf82d "
              "each entry first gets a share of four times its estimate, and one that overruns it runs again "
              "after the others); peak memory is the largest resident set of the gate's processes. **entries**: "
              "counts by outcome as the console lists them. **exit `timeout`**: the measurement's own "
              "`--full-timeout` ended the gate before it printed a verdict (not the gate's budget); its "
              "wall time is when it was ended.", "",
              "| commit | exit | verdict line | entries | wall s | peak GiB | code |",
              "| --- | ---: | --- | --- | ---: | ---: | --- |"]
    for c, f in full:
        peak = f"{f['peak_gib']:.2f}" if f["peak_gib"] is not None else "?"
        counts = ", ".join(f"{n} {k}" for k, n in sorted((f.get("outcomes") or {}).items())) or "-"
        verdict = f["verdict"].replace("|", "/")
        verdict = verdict if len(verdict) <= 90 else verdict[:87] + "..."
        lines.append(f"| {c[:8]} | {f['exit']} | {verdict} | {counts} | {f['wall']:.0f} | {peak} | "
                     f"{f.get('code', 'earlier')} |")
    again = [(c, e) for c in commits[:args.full] for e in state.get(c, {}).get("full_earlier", [])]
    if again:
        lines += ["", "Rows measured again after a fix; what the earlier code gave:", ""]
        lines += [f"* {c[:8]} by {e.get('code', 'earlier')}: exit {e['exit']}, `{e['verdict']}` ({e['wall']:.0f} s)"
                  for c, e in again]
    not_run = [c[:8] for c in commits[:args.full] if "full" not in state.get(c, {})]
    if not_run:
        lines += ["", f"Not run (the machine's time ran out before they started): {', '.join(not_run)}."]
    if full:
        walls = [f["wall"] for _, f in full]
        ended = sum(f["exit"] == "timeout" for _, f in full)
        lines += ["", f"Median wall time {_median(walls):.0f} s, largest {max(walls):.0f} s (over {len(walls)} "
                      f"commit{'s' if len(walls) != 1 else ''}"
                      + (f"; {ended} ended by the timeout count at the time they were ended" if ended else "")
                      + ")."]
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as fh:
        fh.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
