"""The harness's errors: what a user, a file or a repository asked that cannot be done, each
with the fix in its message. (The emulator's own errors, raised at a kernel's line, are
`equiv.tile.errors`: the emulator imports nothing from the harness.)"""

from __future__ import annotations


class SourceError(Exception):
    """A kernel file cannot be loaded or called as the pair needs (bad path, revision,
    entry, override, or tensors that do not match the entry's annotations)."""
