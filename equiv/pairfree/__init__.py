"""Pair-free checks of pypto-lib model files: a file's own ``run_jit`` calls discovered and run
at two revisions next to its golden (docs/pypto-lib.md, docs/file-contract.md)."""
