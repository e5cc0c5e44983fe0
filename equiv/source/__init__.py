"""Source mode: run unmodified PyPTO kernel files through the tile emulator.

A PyPTO kernel file (``import pypto.language as pl``, ``from config import FLASH as M, ...``,
``@pl.jit def entry(x: pl.Tensor[[T, D], pl.BF16], ...)``) is loaded as it is written:

* ``pypto`` / ``pypto.language`` resolve to a shim over `equiv.tile` **for that module
  only**. The module gets its own ``__builtins__`` whose ``__import__`` answers those names
  (and the file's sibling modules); ``sys.modules`` is never patched, so a real pypto
  installation elsewhere in the process is untouched.
* Sibling modules (``config`` and friends, same directory, same revision) are loaded from
  the same place as the kernel. The config module is built with overridden values
  (`build_config`): a shape dimension bound to ``hidden_size`` or ``MOE_TOKENS`` rebinds
  that value *while* the config executes, so constants derived from it follow.
* A name of ``pl`` the emulator does not cover raises `UnsupportedOpError` naming the name
  and the kernel's file:line, so coverage grows by demand.

A file can be read from disk or from a git revision (``git show REV:path``, bare mirrors
included). `source_pair` turns a registered `KernelPair` into one whose pre and retiled
programs are two such files (or two revisions of one file), reusing the pair's reference,
input recipes, outputs, contract and shape space::

    pair = source_pair(equiv.get("hc_post"),
                       SourceRef("models/deepseek/v4/hc_post.py", "hc_post_test", rev="a8cdc047^", repo=R),
                       SourceRef("models/deepseek/v4/hc_post.py", "hc_post_test", rev="a8cdc047", repo=R))
    equiv.check(pair, shapes="T=8,D=4096")

The package, one concern a file: `ref` (where a file comes from), `shims` (the ``pypto``
modules), `overrides` (config values rebound while the config runs), `loader` (loading a
file and its siblings), `arguments` (matching and checking an entry's arguments),
`assignments` (``NAME=VALUE`` text) and `pairs` (pairs from files).
"""

from __future__ import annotations

from equiv.errors import SourceError
from equiv.source.arguments import call_entry, check_arguments, match_parameters
from equiv.source.assignments import parse_assignments
from equiv.source.loader import SourceLoader
from equiv.source.overrides import exec_with_overrides
from equiv.source.pairs import DEFAULT_BINDS, SourceKernel, load_kernel, source_pair, unsupported_in
from equiv.source.ref import SourceRef
from equiv.source.shims import make_language_shim
from equiv.tile.errors import UnsupportedOpError

# The API of source mode (what docs/source-mode.md shows and kernels' tests call).
__all__ = ["SourceRef", "SourceLoader", "SourceKernel", "SourceError", "UnsupportedOpError", "source_pair",
           "load_kernel", "exec_with_overrides", "make_language_shim", "call_entry", "check_arguments",
           "match_parameters", "parse_assignments", "DEFAULT_BINDS", "unsupported_in"]
