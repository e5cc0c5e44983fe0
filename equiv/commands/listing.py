"""``equiv list``: the registered pairs."""

from __future__ import annotations

import argparse

from equiv import registry
from equiv.summary import table


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="list the registered kernel pairs")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    rows = []
    for pair in registry.all_pairs():
        dims = ", ".join(pair.shapes.dims)
        presets = ", ".join(pair.shapes.presets)
        rows.append([pair.name, str(pair.contract), dims, presets, pair.description])
    print(table(["pair", "contract", "dimensions", "presets", "description"], rows))
    return 0
