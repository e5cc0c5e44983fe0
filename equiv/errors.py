"""The harness's errors: what a user, a file or a repository asked that cannot be done, each
with the fix in its message. (The emulator's own errors, raised at a kernel's line, are
`equiv.tile.errors`: the emulator imports nothing from the harness.)"""

from __future__ import annotations


class SourceError(Exception):
    """A kernel file cannot be loaded or called as the pair needs (bad path, revision,
    entry, override, or tensors that do not match the entry's annotations)."""


class UsageError(Exception):
    """Bad command-line input: printed without a traceback, exit 2."""


class CaseError(Exception):
    """A saved case that cannot be replayed as asked (unreadable, unknown pair, stale, variant)."""


class CoverageError(Exception):
    """The repository, revision or paths cannot be read (a usage error)."""


class GateError(Exception):
    """The gate cannot run as asked (e.g. an unknown base ref)."""


class ShapeError(ValueError):
    """A shape outside the pair's declared domain; the message names the constraint."""


class PairFreeError(Exception):
    """The file cannot be checked as asked (no such file at a revision, no __main__, bad entry)."""


class SelectionError(Exception):
    """git cannot answer what changed (unknown revision, not a repository)."""


class DiscoveryError(Exception):
    """The file has no ``__main__`` block calling ``run_jit``, or running it failed."""


class InputsTooLarge(Exception):
    """The file's ``run_jit`` inputs alone need more memory than this machine has available."""


class KernelSignatureError(TypeError, ValueError):
    """A kernel that cannot be called with the pair's inputs, outputs and ``cfg``: a misuse of the
    API (e.g. a variant built with the wrong function), not a regression of every case."""


class UnknownPairError(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


class ResultsError(ValueError):
    """A results file `equiv report` cannot render truthfully (empty, partial, other schema)."""


class RunMismatch(ValueError):
    """Two saved runs cannot be compared (different inputs, missing or mismatched tensors)."""


class GoldenRejects(Exception):
    """The golden's own assert refused the shape (raised by a pair-free reference)."""
