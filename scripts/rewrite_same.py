#!/usr/bin/env python
"""Whether this tree's kernel rewrites (`equiv.tile.rewrite`) produce exactly what another
revision's produce, and how long each takes: every file is parsed, rewritten by both (and
compiled), and the rewritten trees are compared with ``ast.dump(..., include_attributes=True)``
(line and column numbers included), the code objects with ``marshal``, and a rejected file by
its error message.

    python scripts/rewrite_same.py --against main tests kernels
    python scripts/rewrite_same.py --against main --repo /tmp/pypto-lib --rev 634e77bd models
    python scripts/rewrite_same.py --against main --times --repo R --rev REV models/x/y.py ...

`--against REV`: the revision of this repository whose ``equiv/tile/rewrite.py`` is the
reference. Paths are files or folders (every ``.py`` below); with ``--repo``/``--rev`` they are
read from that git repository at that revision, else from the working directory. ``--times``
prints each file's rewrite time (parse, rewrite, compile; best of ``--repeat``) under both.
Exit 0 when no file differs, 1 otherwise.
"""

from __future__ import annotations

import argparse
import ast
import marshal
import os
import subprocess
import sys
import time
import types

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from equiv.tile import rewrite as new_rewrite  # noqa: E402


def reference_module(rev: str) -> types.ModuleType:
    """``equiv/tile/rewrite.py`` at `rev` of this repository, as a module of its own."""
    text = subprocess.run(["git", "-C", ROOT, "show", f"{rev}:equiv/tile/rewrite.py"], check=True,
                          capture_output=True, text=True).stdout
    mod = types.ModuleType("_rewrite_reference")
    mod.__file__ = f"{rev}:equiv/tile/rewrite.py"
    sys.modules[mod.__name__] = mod  # dataclasses and typing look a module up by name
    exec(compile(text, mod.__file__, "exec"), mod.__dict__)  # noqa: S102 - this repository's own code
    return mod


def files(paths: list[str], repo: str | None, rev: str | None) -> dict[str, str]:
    """{path: text} of every .py file named or below a folder named."""
    out: dict[str, str] = {}
    if repo is not None:
        listed = subprocess.run(["git", "-C", repo, "ls-tree", "-r", "--name-only", rev or "HEAD", "--", *paths],
                                check=True, capture_output=True, text=True).stdout.split()
        for path in sorted(p for p in listed if p.endswith(".py")):
            out[path] = subprocess.run(["git", "-C", repo, "show", f"{rev or 'HEAD'}:{path}"], check=True,
                                       capture_output=True).stdout.decode("utf-8", "replace")
        return out
    for top in paths:
        if os.path.isfile(top):
            found = [top]
        else:
            found = [os.path.join(d, f) for d, _, names in os.walk(top) for f in names if f.endswith(".py")]
        for path in sorted(found):
            with open(path, encoding="utf-8") as f:
                out[path] = f.read()
    return out


def rewritten(mod: types.ModuleType, text: str, filename: str) -> tuple[str, bytes, float]:
    """(the rewritten tree's dump, or the error; its code, marshalled; seconds) under `mod`."""
    t0 = time.perf_counter()
    try:
        tree = ast.parse(text, filename)
    except SyntaxError as e:
        return f"SyntaxError: {e}", b"", time.perf_counter() - t0
    try:
        changed = mod.rewrite_module(tree, filename)
        code = compile(tree, filename, "exec", dont_inherit=True)
    except Exception as e:  # noqa: BLE001 - a rejected file is compared by its message
        return f"{type(e).__name__}: {e}", b"", time.perf_counter() - t0
    seconds = time.perf_counter() - t0
    return f"changed={changed}\n{ast.dump(tree, include_attributes=True)}", marshal.dumps(code), seconds


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("paths", nargs="+")
    ap.add_argument("--against", required=True, help="revision of this repository to compare with")
    ap.add_argument("--repo", help="read the paths from this git repository")
    ap.add_argument("--rev", help="at this revision (default HEAD)")
    ap.add_argument("--times", action="store_true", help="print each file's time under both")
    ap.add_argument("--repeat", type=int, default=1, help="time each file this many times, keep the best")
    args = ap.parse_args(argv)
    old = reference_module(args.against)
    texts = files(args.paths, args.repo, args.rev)
    differing: list[str] = []
    total_old = total_new = 0.0
    rejected = changed = 0
    for path, text in texts.items():
        best_old = best_new = float("inf")
        for _ in range(max(1, args.repeat)):
            a_dump, a_code, a_s = rewritten(old, text, path)
            b_dump, b_code, b_s = rewritten(new_rewrite, text, path)
            best_old, best_new = min(best_old, a_s), min(best_new, b_s)
        total_old += best_old
        total_new += best_new
        if a_dump != b_dump or a_code != b_code:
            differing.append(path)
            print(f"DIFFERS {path}: {'tree' if a_dump != b_dump else 'code'}")
        rejected += not a_code
        changed += a_dump.startswith("changed=True")
        if args.times:
            print(f"{path}: {best_old * 1000:.1f} ms at {args.against}, {best_new * 1000:.1f} ms here")
    print(f"{len(texts)} files compared ({changed} rewritten, {rejected} rejected or not parsed): "
          f"{len(differing)} differing; {total_old:.2f} s at {args.against}, {total_new:.2f} s here")
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
