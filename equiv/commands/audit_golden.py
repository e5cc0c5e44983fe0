"""``equiv audit-golden --repo R --rev REV [PATH...]``: each model file's golden against a float64
run of it and against the kernel, one line per entry and mode (see `equiv.pairfree.audit`)."""

from __future__ import annotations

import argparse
import json
import sys

from equiv import git
from equiv.errors import UsageError

EXAMPLES = """\
  equiv audit-golden --repo ~/pypto-lib --rev main models/deepseek_v4_pro/hc_head.py
  equiv audit-golden --repo ~/pypto-lib --rev 634e77bd models/deepseek_v4_pro --json audit.json"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("audit-golden", help="is a model file's golden further from float64 than its kernel?",
                       description="For each model file under PATH (default: models) whose __main__ calls "
                                   "run_jit, run every entry at the file's own shapes (each mode, realistic "
                                   "inputs of seeds 0..N-1) and compare its golden as written with a float64 run of the "
                                   "golden and with the emulated kernel: 'golden suspect' names the elements "
                                   "where the golden is the further from float64, the gap and the likely cause. "
                                   "Exit 1 when any golden is suspect, 2 when an entry cannot be audited.",
                       epilog="examples:\n" + EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="*", metavar="PATH", help="files or directories in the repository (default: models)")
    p.add_argument("--repo", default=".", help="the repository (default: the current directory)")
    p.add_argument("--rev", required=True, help="the git revision to read the files at")
    p.add_argument("--model", default=None, help="the config instance (FLASH, PRO, DEMO) every file sees")
    p.add_argument("--seeds", type=int, default=1, metavar="N",
                   help="audit the realistic inputs of seeds 0..N-1 (default 1; ties are rare)")
    p.add_argument("--json", default=None, metavar="FILE", help="write the results as JSON")
    p.add_argument("--markdown", default=None, metavar="FILE", help="write the results as a markdown table")
    p.set_defaults(func=run)


def model_files(repo: str, rev: str, paths: list[str]) -> list[str]:
    """The .py files under `paths` at `rev` whose text calls run_jit under a __main__ block."""
    listing = git.output(repo, "ls-tree", "-r", "--name-only", rev, "--", *paths, error=UsageError)
    files = []
    for path in listing.split():
        if not path.endswith(".py"):
            continue
        text = git.answer(repo, "show", f"{rev}:{path}") or ""
        if "__main__" in text and "run_jit" in text:
            files.append(path)
    if not files:
        raise UsageError(f"no model file (a __main__ calling run_jit) under {' '.join(paths)} at {rev}")
    return files


def run(args: argparse.Namespace) -> int:
    from equiv.pairfree.audit_run import audit_file

    from equiv.commands.common import check_output_paths

    if args.seeds < 1:
        raise UsageError("--seeds must be ≥ 1")
    check_output_paths({"--json": args.json, "--markdown": args.markdown})
    files = model_files(args.repo, args.rev, args.paths or ["models"])
    rows, codes = [], []
    for path in files:
        try:
            results = audit_file(path, args.rev, args.repo, model=args.model, seeds=args.seeds)
        except Exception as exc:  # noqa: BLE001 - one file that cannot be read does not stop the others
            print(f"{path}: cannot audit — {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                  flush=True)
            rows.append({"file": path, "verdict": "cannot audit",
                         "line": f"cannot audit — {type(exc).__name__}: {exc}".splitlines()[0]})
            codes.append(2)
            continue
        for r in results:
            print(f"{path}: {r.line()}", flush=True)
            rows.append({"file": path, "entry": r.entry, "mode": r.mode, "verdict": r.verdict, "line": r.line(),
                         "reference": r.reference, "differing": r.differing,
                         "suspects": [s.__dict__ for s in r.suspects]})
            codes.append(1 if r.suspects else (2 if r.error else 0))
        if args.markdown:  # rewritten after each file: a long run leaves what it has done
            write_markdown(args.markdown, args.rev, rows)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"repo": args.repo, "rev": args.rev, "entries": rows}, fh, indent=1)
        print(f"results written to {args.json}", file=sys.stderr)
    return 1 if 1 in codes else (2 if 2 in codes else 0)


def write_markdown(path: str, rev: str, rows: list[dict]) -> None:
    """One table row per entry and mode: file, entry [mode], verdict, and the audit's line."""
    lines = [f"| file | entry [mode] | verdict at {rev} | golden vs float64 and kernel |", "| --- | --- | --- | --- |"]
    for r in rows:
        where = f"{r.get('entry', '*')} [{r.get('mode', '')}]" if r.get("entry") else "*"
        detail = r["line"].split(": ", 1)[-1] if r.get("entry") else r["line"]
        detail = detail.split(" — ", 1)[-1].replace("|", "\\|")
        lines.append(f"| {r['file'].rsplit('/', 1)[-1]} | {where} | {r['verdict']} | {detail} |")
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")
