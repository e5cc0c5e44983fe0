"""``equiv replay CASE|DIR``: rerun saved cases from their saved inputs, bit for bit.

Exit 0 when every case reproduces its saved verdicts and output bits, 1 when one does not,
2 when a case cannot be replayed (unreadable, unknown pair, a variant that cannot be found
again, or the pair's sources changed since it was saved — ``--force`` replays anyway).
"""

from __future__ import annotations

import argparse
import sys

from equiv.errors import UsageError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("replay", help="rerun saved failing cases from their saved inputs",
                       description="Rerun a case saved by `equiv check --save-cases` or `equiv gate` (or every "
                                   "case under a folder) from its saved inputs and compare verdicts and the "
                                   "digest of the output bits with the saved ones.")
    p.add_argument("case", metavar="CASE", nargs="+",
                   help="saved cases (.pt) or folders of them (e.g. reports/cases); several may be given")
    p.add_argument("--force", action="store_true",
                   help="replay even if the pair's sources changed since the case was saved")
    p.add_argument("--device", default=None, help="run on this torch device instead of the saved one (cpu, cuda)")
    p.add_argument("-v", "--verbose", action="store_true", help="print the replayed reasons")
    p.set_defaults(func=run)


def _verdict_text(verdicts: dict[str, str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in verdicts.items()) or "-"


def run(args: argparse.Namespace) -> int:
    from equiv import cases
    from equiv.errors import CaseError

    if args.device is not None:
        from equiv.commands.common import options_from

        options_from(args)  # the same check as every other subcommand: cpu or an available cuda
    paths: list[str] = []
    for where in args.case:
        try:
            paths += [p for p in cases.find_cases(where) if p not in paths]
        except CaseError as exc:
            raise UsageError(str(exc)) from None
    worst = 0
    for path in paths:
        try:
            rep = cases.replay(path, force=args.force, device=args.device)
        except CaseError as exc:
            print(f"equiv replay: {exc}", file=sys.stderr)
            worst = max(worst, 2)
            continue
        c = rep.case
        head = f"{rep.pair} {c.shape} recipe {c.recipe} seed {c.seed}" + (f" {c.variant_label}" if c.variant else "")
        for line in rep.stale:
            print(f"warning (--force): {line}", file=sys.stderr)
        if rep.reproduced:
            print(f"reproduced: {head}: {_verdict_text(rep.verdicts)}; output bits identical "
                  f"(digest {rep.digest[:16]})")
        else:
            worst = max(worst, 1)
            print(f"NOT reproduced: {head}")
            print(f"  saved verdicts:    {_verdict_text(rep.saved_verdicts)}")
            print(f"  replayed verdicts: {_verdict_text(rep.verdicts)}")
            if not rep.same_bits:
                print(f"  output bits differ: {', '.join(rep.differing_digests) or 'digest'} "
                      f"(saved {rep.saved_digest[:16]}, now {rep.digest[:16]})")
        if args.verbose and rep.result is not None:
            for name, o in rep.result.outputs.items():
                for reason in o.reasons:
                    print(f"    {name}: {reason}")
            print(f"    repro: {rep.result.repro()}")
    if len(paths) > 1:
        print(f"{len(paths)} cases replayed from {', '.join(args.case)}", file=sys.stderr)
    return worst
