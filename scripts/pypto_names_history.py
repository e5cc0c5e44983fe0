#!/usr/bin/env python
"""Whether pypto defined each entry of `equiv.not_pypto.RECORDS` at any first-parent revision
of its history: the evidence behind ``equiv coverage`` listing them apart.

    python scripts/pypto_names_history.py --pypto /path/to/pypto-clone [--rev main] [--since 2026-01-01]

For every first-parent revision of `--rev` since `--since`, the record's pypto file is parsed
(`ast`, never imported): a name entry (``pl.kernel``) is defined when the module binds the
name (assignment, import, def, class); a keyword entry (``pl.tile.cast(dtype=)``) is accepted
when the function (followed through ``create_tensor = create`` aliases) has that parameter or
takes ``**kwargs``. Prints one line per entry: the revisions examined (first and last date)
and those where the entry was defined; exit 1 when any was.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from equiv.not_pypto import RECORDS  # noqa: E402

_KEYWORD = re.compile(r"^pl\.(?P<name>[\w.]+)\((?P<kw>\w+)=\)$")


def _git(repo: str, *args: str) -> str:
    return subprocess.run(["git", "-C", repo, *args], capture_output=True, text=True).stdout


def _bound(tree: ast.Module) -> dict[str, ast.AST]:
    """Module-level names and what binds them."""
    out: dict[str, ast.AST] = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            out[node.name] = node
        elif isinstance(node, ast.Assign):
            for t in node.targets:
                if isinstance(t, ast.Name):
                    out[t.id] = node.value
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for a in node.names:
                out[a.asname or a.name.split(".")[0]] = node
    return out


def defined(text: str, entry: str) -> bool:
    """Whether the pypto source `text` defines `entry` (see the module docstring)."""
    try:
        names = _bound(ast.parse(text))
    except SyntaxError:
        return False
    m = _KEYWORD.match(entry)
    if not m:
        return entry.rpartition(".")[2] in names
    fn = names.get(m["name"].rpartition(".")[2])
    for _ in range(4):  # `create_tensor = create`
        if isinstance(fn, ast.Name):
            fn = names.get(fn.id)
    if not isinstance(fn, ast.FunctionDef):
        return False
    params = [a.arg for a in fn.args.posonlyargs + fn.args.args + fn.args.kwonlyargs]
    return m["kw"] in params or fn.args.kwarg is not None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pypto", required=True, help="a clone of hw-native-sys/pypto with its history")
    ap.add_argument("--rev", default="HEAD")
    ap.add_argument("--since", default="2026-01-01")
    args = ap.parse_args()
    revs = [line.split() for line in _git(args.pypto, "log", "--first-parent", "--reverse", "--format=%H %cs",
                                           f"--since={args.since}T00:00:00", args.rev).splitlines()]
    if not revs:
        print(f"no first-parent revision of {args.rev} since {args.since} in {args.pypto}", file=sys.stderr)
        return 2
    found = False
    for entry, record in RECORDS.items():
        hits, seen = [], 0
        for commit, date in revs:
            text = _git(args.pypto, "show", f"{commit}:{record.source}")
            if not text:
                continue  # the file did not exist then
            seen += 1
            if defined(text, entry):
                hits.append(f"{date} {commit[:9]}")
        found |= bool(hits)
        print(f"{entry}: {record.source} at {seen} of {len(revs)} first-parent revisions "
              f"({revs[0][1]} .. {revs[-1][1]}); defined at "
              + (", ".join(hits[:5]) + (f" … ({len(hits)})" if len(hits) > 5 else "") if hits else "none"))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
