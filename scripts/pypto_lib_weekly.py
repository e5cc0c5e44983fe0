#!/usr/bin/env python
"""Weekly same-revision pair-free checks of DeepSeek-V4's ``hc_pre.py`` and of one attention
file that imports it, over pypto-lib's first-parent history.

    .venv/bin/python scripts/pypto_lib_weekly.py --repo /tmp/pypto-lib --rev main \\
        --since 2026-06-01 --until 2026-08-21 --timeout 420 --out docs/fidelity-weekly.md

One revision per week (the last first-parent revision of each ISO week, as ``equiv coverage
--since DATE --weekly`` lists them). At each, the directory that holds both ``hc_pre.py`` and
a ``decode_attention_*.py`` importing it (the layout moved: ``models/deepseek/v4``,
``models/deepseek/v4-pro`` / ``v4-flash``, ``models/deepseek_v4_pro``) gives the two files;
each is checked against itself at that revision (``equiv check --source FILE --pre-rev REV
--retiled-rev REV --pair-free``) at decode shapes with the realistic inputs, one case per
entry, in its own process with a wall-clock limit (see `scripts/pypto_lib_table.py`). The
table gives per file the outcome, what could not be judged and the time.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import pypto_lib_table as table  # noqa: E402

from equiv.coverage import coverage  # noqa: E402
from equiv.coverage_history import first_parent_revisions  # noqa: E402

DIRS = ("models/deepseek_v4_pro", "models/deepseek/v4-pro", "models/deepseek/v4", "models/deepseek/v4-flash",
        "models/deepseek_v4_flash_mtp")
ATTENTION = ("decode_attention_swa.py", "decode_attention_hca.py", "decode_attention_csa.py")
IMPORTS_HC_PRE = re.compile(r"^\s*(from\s+hc_pre\s+import|import\s+hc_pre\b)", re.M)


def _git(repo: str, *args: str) -> str:
    return subprocess.run(["git", "-C", repo, *args], capture_output=True, text=True).stdout


def files_at(repo: str, rev: str) -> tuple[str, str] | None:
    """(hc_pre.py, an attention file importing it) in the first directory of `DIRS` with both."""
    for d in DIRS:
        names = set(_git(repo, "ls-tree", "--name-only", f"{rev}:{d}").split())
        if "hc_pre.py" not in names:
            continue
        for a in ATTENTION:
            if a in names and IMPORTS_HC_PRE.search(_git(repo, "show", f"{rev}:{d}/{a}")):
                return f"{d}/hc_pre.py", f"{d}/{a}"
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repo", required=True)
    ap.add_argument("--rev", default="main", help="the branch whose first-parent history is walked")
    ap.add_argument("--since", default="2026-06-01")
    ap.add_argument("--until", default="2026-08-21")
    ap.add_argument("--timeout", type=float, default=420.0, help="seconds per file (default 420)")
    ap.add_argument("--out", default=None, help="write the Markdown table here too")
    args = ap.parse_args()
    weeks = [(c, d) for c, d in first_parent_revisions(args.repo, args.since, args.rev, weekly=True)
             if d <= args.until]
    header = ["| week's revision | date | file | entry | same-revision pair-free check (decode) | time s |",
              "| --- | --- | --- | --- | --- | --- |"]
    found = {c: files_at(args.repo, c) for c, _ in weeks}
    # The static census of the two files first (what `equiv coverage --rev C FILES` says).
    census = ["| week's revision | date | files | DSL census of the two files (`equiv coverage`) |",
              "| --- | --- | --- | --- |"]
    for commit, date in weeks:
        if found[commit] is not None:
            rep = coverage(args.repo, commit, list(found[commit]))
            missing = [r.entry for r in rep.rows if not r.covered]
            census.append(f"| {commit[:8]} | {date} | {', '.join(found[commit])} | {rep.last_line()}"
                          f"{'; missing: ' + ', '.join(missing) if missing else ''} |")
    print("\n".join(census), file=sys.stderr, flush=True)
    rows: dict[tuple[str, int], list[str]] = {}
    # Every week's hc_pre.py first, then the attention files: the short runs give the whole
    # range early, and the table is rewritten after each file, so a cut-off run leaves a table.
    for which in (0, 1):
        for commit, date in weeks:
            if found[commit] is None:
                rows[(commit, which)] = [f"| {commit[:8]} | {date} | – | – | no hc_pre.py with an attention "
                                         f"file importing it | – |"]
                continue
            path = found[commit][which]
            run = argparse.Namespace(repo=args.repo, rev=commit, model=None, timeout=args.timeout)
            _, got, secs, _peak = table.run_file(run, path)
            rows[(commit, which)] = [
                f"| {commit[:8] if i == 0 else ''} | {date if i == 0 else ''} | {path if i == 0 else ''} | "
                f"{r['entry']} | {table._cell(r['outcome'] + (': ' + '; '.join(r['why']) if r.get('why') else ''))} | "
                f"{secs:.0f} |" for i, r in enumerate(got)]
            print(rows[(commit, which)][0], file=sys.stderr, flush=True)
            lines = census + [""] + header + [line for c, _ in weeks for w in (0, 1) for line in rows.get((c, w), [])]
            if args.out:
                with open(args.out, "w", encoding="utf-8") as fh:
                    fh.write("\n".join(lines) + "\n")
    lines = census + [""] + header + [line for c, _ in weeks for w in (0, 1) for line in rows.get((c, w), [])]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
