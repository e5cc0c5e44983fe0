"""``equiv list``: the registered pairs, fitted to the terminal's width."""

from __future__ import annotations

import argparse

from equiv import registry
from equiv.summary import table_rows, width, wrap


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="list the registered kernel pairs",
                       description="The registered kernel pairs: contract, shape dimensions, named presets "
                                   "and what each pair is.")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    w = width()
    pairs = registry.all_pairs()
    rows = [[p.name, str(p.contract), ",".join(p.shapes.dims), ",".join(p.shapes.presets)] for p in pairs]
    head, *groups = table_rows(["pair", "contract", "dims", "presets"], rows, w)
    out = list(head)
    # each pair's row, then its description wrapped under it (a description column would be ~200 wide)
    for pair, group in zip(pairs, groups):
        out += group
        if pair.description:
            out += wrap(pair.description, "    ", "", w)
    print("\n".join(out))
    return 0
