#!/usr/bin/env python
"""Every distinct read of uninitialised memory an ``equiv check`` makes, with how often: why a
version's patterned-poison run was not left out (a run records only its first such read).

    python scripts/uninitialised_reads.py check --source FILE --pre-rev R --retiled-rev R \\
        --repo REPO --pair-free --recipe realistic --schedules 1

The check runs as given, with ``--second-poison-run always`` added (every read is counted, so
no run may be left out on the strength of the first). After its own output, one line per
distinct read: the count, what was read (element indices left out) and the kernel line.
"""

from __future__ import annotations

import collections
import os
import re
import sys

from equiv.tile import context, sites

READS: collections.Counter = collections.Counter()


def _record(self: context.RunContext, what: str) -> None:
    # Left unset on purpose: the run goes on checking every later read.
    READS[(re.sub(r"\[[0-9, ]+\], never written", "[…], never written", what),
           sites.short_path(sites.kernel_site()))] += 1


def main(argv: list[str]) -> int:
    # This file's frames are not kernel code: the site is the kernel line that read.
    sites._KERNEL_FILES[(_record.__code__.co_filename, os.getcwd())] = None
    context.RunContext.read_uninitialised = _record  # type: ignore[method-assign]
    from equiv.cli import main as equiv_main

    try:
        rc = equiv_main([*argv, "--second-poison-run", "always"])
    except SystemExit as exc:
        rc = int(exc.code or 0)
    print(f"\n{len(READS)} distinct reads of uninitialised memory (count, what, where):")
    for (what, site), n in sorted(READS.items(), key=lambda kv: (-kv[1], kv[0])):
        print(f"{n:8d}  {what}  at {site}")
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
