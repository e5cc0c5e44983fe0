"""The CPU stand-in: records a ``__main__`` block whose recording on torch's meta device fails.

A meta tensor has shapes and dtypes but no values, so a block that reads one (``.item()``,
``.tolist()``, an ``if`` on a tensor) or calls an op with no meta kernel (``torch.bincount``)
stops before its ``run_jit`` call. The stand-in runs such a block again on real CPU tensors,
at the file's own sizes, in a forked child that is:

* seeded (torch, ``random``, numpy) before the file is loaded and before each run of the
  block, so both revisions draw the same numbers where their code is the same;
* memory-capped (`memory_cap`: an address-space limit over what the child already maps): an
  allocation beyond it fails inside the child, never in the gate;
* time-boxed (`SECONDS`): a block that computes for longer is given up;
* single-threaded (the gate shares its CPUs).

An input whose value the block makes itself (a tensor, not a callable) is compared by a digest
of its bytes. Used only where the meta recording fails or cannot compare a value.

In every recording child (meta or CPU), a ``pypto`` module the emulator does not cover
(``pypto.backend``) is answered by an inert stand-in: the block may configure a device before
its ``run_jit`` call; no kernel runs there, and the check itself still reports the import.
"""

from __future__ import annotations

import hashlib
import types
from typing import Any

from equiv.machine import available_memory_bytes

# Seconds one CPU recording may take (a Flash decode block at its own sizes: a few seconds).
SECONDS = 90.0
# At most this many bytes of new address space, and at most this share of the memory available.
MEMORY_BYTES = 4 << 30
MEMORY_SHARE = 0.5
SEED = 0


def memory_cap() -> int:
    """Bytes of address space the recording child may add to what it maps when forked."""
    have = available_memory_bytes()
    return int(min(MEMORY_BYTES, have * MEMORY_SHARE)) if have else MEMORY_BYTES


def limit_child_memory(extra: int) -> None:
    """In the forked child: cap its address space at what it maps now plus `extra` bytes."""
    import resource

    mapped = 0
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmSize:"):
                    mapped = int(line.split()[1]) * 1024
    except OSError:
        pass
    if mapped:
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        want = mapped + extra
        resource.setrlimit(resource.RLIMIT_AS, (want if hard == resource.RLIM_INFINITY else min(want, hard), hard))


def seed_all() -> None:
    """The same random draws at both revisions."""
    import random
    import sys

    import torch

    torch.manual_seed(SEED)
    random.seed(SEED)
    np = sys.modules.get("numpy")
    if np is not None:
        np.random.seed(SEED)


def prepare_child(values: bool) -> None:
    """What a recording child sets before the file is loaded; `values`: on the CPU stand-in."""
    import torch

    if values:
        torch.set_num_threads(1)
        seed_all()
    _inert_unknown_pypto()


def digest(t: Any) -> str:
    """A tensor's dtype, shape and bytes, as a short digest."""
    import torch

    t = t.detach().contiguous()
    h = hashlib.sha256(f"{t.dtype}{list(t.shape)}".encode())
    if t.numel():
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.element_size() else b"")
    return "tensor:" + h.hexdigest()[:16]


class _Inert:
    """Any name of a pypto module the emulator does not cover: callable, indexable, any attribute."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, item: str) -> "_Inert":
        if item.startswith("__"):
            raise AttributeError(item)
        return _Inert(f"{self._name}.{item}")

    def __call__(self, *args: Any, **kwargs: Any) -> "_Inert":
        return self

    def __getitem__(self, item: Any) -> "_Inert":
        return self

    def __repr__(self) -> str:
        return f"<inert {self._name}>"


def _inert_unknown_pypto() -> None:
    """In the recording child only: an import of a pypto module the emulator lacks returns an
    inert module instead of raising (the check itself still reports it)."""
    from equiv.tile.distributed import shims

    real = shims.import_module

    def import_module(pypto: Any, name: str, fromlist: Any) -> Any:
        found = real(pypto, name, fromlist)
        if found is not None:
            return found
        mod = types.ModuleType(name, "inert stand-in for recording")
        mod.__getattr__ = lambda item: _Inert(f"{name}.{item}")  # type: ignore[attr-defined]
        if fromlist:
            return mod
        node = pypto  # ``import pypto.backend``: reached as an attribute of pypto
        *parents, leaf = name.split(".")[1:]
        for part in parents:
            if not hasattr(node, part):
                setattr(node, part, types.ModuleType(part))
            node = getattr(node, part)
        setattr(node, leaf, mod)
        return pypto

    shims.import_module = import_module  # the loader reads it from this module at each import
