"""The ``equiv`` command line.

Each subcommand lives in its own module with ``register(subparsers)`` (adds its parser and
sets ``func``) so the command list below is the whole wiring. Exit codes: 0 no regression,
1 a regression (or, for ``gate``, a narrowed contract), 2 a usage error.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

# Modules that provide subcommands, in the order ``equiv --help`` lists them.
SUBCOMMAND_MODULES: tuple[str, ...] = (
    "equiv.commands.check",
    "equiv.commands.listing",
)
OPTIONAL_SUBCOMMAND_MODULES: tuple[str, ...] = (
    "equiv.commands.bench",
    "equiv.commands.report",
    "equiv.commands.gate",
    "equiv.commands.replay",
    "equiv.commands.compare",
)


class UsageError(Exception):
    """Bad command-line input: printed without a traceback, exit 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="equiv",
        description="Check that re-tiled tile kernels compute the same numbers as the kernels they replace.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).register(sub)
    for name in OPTIONAL_SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except UsageError as exc:
        print(f"equiv {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
