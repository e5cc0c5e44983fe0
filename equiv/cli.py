"""The ``equiv`` command line.

Each subcommand lives in its own module with ``register(subparsers)`` (adds its parser and
sets ``func``) so the command list below is the whole wiring. Exit codes: 0 no regression,
1 a regression (or a narrowed contract), 2 a usage error.

Output discipline (every subcommand): output paths are validated before anything runs, files
are written before the summary is printed, and a reader that closes stdout early
(``equiv list | head -1``) neither crashes the run nor changes its exit code.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Sequence
from equiv.errors import UsageError

# Modules that provide subcommands, in the order ``equiv --help`` lists them.
SUBCOMMAND_MODULES: tuple[str, ...] = (
    "equiv.commands.check",
    "equiv.commands.listing",
    "equiv.commands.coverage",
)
OPTIONAL_SUBCOMMAND_MODULES: tuple[str, ...] = (
    "equiv.commands.bench",
    "equiv.commands.report",
    "equiv.commands.gate",
    "equiv.commands.replay",
    "equiv.commands.compare",
    "equiv.commands.audit_golden",
)

# Shown at the end of each subcommand's --help.
EXAMPLES: dict[str, str] = {
    "check": """\
  equiv check moe.combine                       # upstream (nominal) shapes
  equiv check moe.combine --shapes 'T=10,D=256' # other dims from nominal
  equiv check expert_shared --shapes pro --report r.html
  equiv check hc_post --shapes fuzz --examples 50 --seed 3
  equiv check --all --shapes presets --json results.json
  equiv check --all --recipe ties               # pairs without it: skipped""",
    "list": """\
  equiv list""",
    "bench": """\
  equiv bench                                 # every pair at demo, flash, pro
  equiv bench moe.combine --presets flash --repeat 3 --json bench.json""",
    "report": """\
  equiv report results.json -o report.html
  equiv report shard1.json shard2.json -o all.html   # shards merged""",
    "gate": """\
  equiv gate --base origin/main --junit junit.xml
  equiv gate --files kernels/moe_combine/retiled.py --report ''""",
    "replay": """\
  equiv replay reports/cases/expert_shared/CASE.pt
  equiv replay reports/cases                # every saved case under a folder
  equiv replay A.pt B.pt --device cpu -v""",
    "compare": """\
  equiv compare PRE_RUN RETILED_RUN
  equiv compare PRE RET --pair moe.combine --shapes 'T=8,D=4096,TOPK=6'
  equiv compare PRE_RUN RETILED_RUN --contract 1:bf16 --json out.json""",
}


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (with where to find help), exit 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class HelpFormatter(argparse.HelpFormatter):
    """Fills prose to the terminal's width; keeps a paragraph with its own line breaks (the
    examples) as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        paragraphs = text.split("\n\n")
        return "\n\n".join(p if "\n" in p else super(HelpFormatter, self)._fill_text(p, width, indent)
                             for p in paragraphs)


def _version() -> str:
    from equiv import __version__

    return __version__


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="equiv",
        description="Check that a changed PyPTO model file still computes the same numbers, and gate a "
                    "branch of pypto-lib before it is pushed.",
        epilog="a pypto-lib engineer, inside the clone:\n"
               "  equiv check models/x/rmsnorm.py       # my file: HEAD against my working tree\n"
               "  equiv gate --base origin/main         # my branch: every model file it reaches\n"
               "  equiv gate --base origin/main --dry-run   # what that would run, in seconds\n\n"
               "registered pairs (equiv's own suite):\n  equiv list\n  equiv check moe.combine --shapes nominal\n"
               "  equiv check --all --shapes presets --report reports/pr672.html\n\n"
               "exit codes: 0 no regression, 1 a regression or a narrowed contract,\n"
               "            2 cannot judge, not all checked, or a usage error",
        formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"equiv {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
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
    for name, p in sub.choices.items():
        if name in EXAMPLES and not p.epilog:
            p.epilog = "examples:\n" + EXAMPLES[name]
            p.formatter_class = HelpFormatter
    return parser


class PipeSafeStream:
    """A text stream that stops writing, instead of raising, once its reader has gone away.

    ``equiv check --all ... | head`` closes the pipe while the run goes on; the run must still
    write its files and return its real exit code, so a BrokenPipeError switches this stream
    (and file descriptor 1, for the interpreter's final flush) to /dev/null."""

    def __init__(self, stream):
        self._stream = stream
        self.closed_pipe = False

    def _redirect(self) -> None:
        self.closed_pipe = True
        try:
            fd = self._stream.fileno()
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, fd)
            os.close(devnull)
        except (OSError, ValueError, AttributeError):  # not a real file (captured output in tests)
            pass

    def write(self, text: str) -> int:
        if self.closed_pipe:
            return len(text)
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._redirect()
            return len(text)

    def flush(self) -> None:
        if self.closed_pipe:
            return
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._redirect()

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


# glibc serves every allocation above its mmap threshold (at most 32 MB) from fresh pages and
# unmaps them when freed: a case's many 20-100 MB temporaries (weights, their float copies)
# are then faulted in page by page on every run (a quarter of expert_shared's check time).
# Blocks up to 256 MB stay in the heap and are reused; larger ones (Pro weights) still go.
_MALLOC = {"MALLOC_MMAP_THRESHOLD_": 256 << 20, "MALLOC_TRIM_THRESHOLD_": 512 << 20, "MALLOC_TOP_PAD_": 64 << 20}


def _reuse_freed_memory() -> None:
    """Apply `_MALLOC` to this process (mallopt) and its worker processes (environment),
    unless the user set any MALLOC_* variable or the C library is not glibc."""
    import ctypes
    import os

    if not sys.platform.startswith("linux") or any(k.startswith("MALLOC_") for k in os.environ):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    for option, (name, value) in zip((-3, -1, -2), _MALLOC.items()):  # M_MMAP_, M_TRIM_, M_TOP_PAD
        if mallopt(option, value) == 1:
            os.environ[name] = str(value)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _reuse_freed_memory()
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    saved_stdout = sys.stdout
    sys.stdout = safe = PipeSafeStream(saved_stdout)
    try:
        code = int(args.func(args) or 0)
        safe.flush()
        return code
    except UsageError as exc:
        print(f"equiv {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        sys.stdout = saved_stdout
        if safe.closed_pipe:
            # The interpreter flushes stdout at exit; point it at /dev/null's descriptor so that
            # flush cannot report the closed pipe (fd 1 was redirected above when it was real).
            try:
                sys.stdout = open(os.devnull, "w")
            except OSError:
                pass


def console() -> None:
    """The ``equiv`` command (and ``python -m equiv.cli``)."""
    from equiv.deadline import exit_process

    exit_process(main())


if __name__ == "__main__":
    console()
