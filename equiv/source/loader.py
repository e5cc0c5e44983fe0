"""Loading a kernel file: its module with its own ``__import__`` (the shims, its sibling
modules at the same revision), rewritten for batched blocks, cached per overrides."""

from __future__ import annotations

import builtins
import dataclasses
import hashlib
import inspect
import linecache
import os
import sys
import types
from collections import OrderedDict
from typing import Any, Callable, Mapping
from typing import TYPE_CHECKING

from equiv.tile.errors import UnsupportedOpError
from equiv.tile.sites import kernel_site
from equiv.tile.distributed import shims as _shims
from equiv.errors import SourceError
from equiv.source import run_harness
from equiv.source.overrides import exec_with_overrides
from equiv.source.shims import make_language_shim, make_pypto_shim

if TYPE_CHECKING:
    from equiv.source.ref import SourceRef


# ----------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------
def _freeze(overrides: Mapping[str, Any]) -> tuple:
    return tuple(sorted((k, repr(v)) for k, v in overrides.items()))


class SourceLoader:
    """Loads kernel modules, caching one per (file identity, config overrides).

    Modules are registered in ``sys.modules`` under private unique names only (never as
    ``config`` or ``pypto``), so nothing else in the process can import them by accident.
    """

    def __init__(self, config_module: str = "config", cache_size: int = 32,
                 stand_ins: Mapping[str, types.ModuleType] | None = None):
        self.config_module = config_module
        self.cache_size = cache_size
        # Modules answered instead of the repository's own (pair-free checks: ``golden``).
        self.stand_ins = dict(stand_ins or {})
        self._cache: OrderedDict[tuple, types.ModuleType] = OrderedDict()

    def load(self, ref: SourceRef, overrides: Mapping[str, Any] | None = None) -> types.ModuleType:
        overrides = dict(overrides or {})
        key = (ref.identity(), _freeze(overrides))
        mod = self._cache.get(key)
        if mod is not None:
            self._cache.move_to_end(key)
            return mod
        mod = _Load(ref, overrides, self.config_module, self.stand_ins).module(ref.path)
        self._cache[key] = mod
        while len(self._cache) > self.cache_size:
            _, old = self._cache.popitem(last=False)
            _forget(old)
        return mod

    def entry(self, ref: SourceRef, overrides: Mapping[str, Any] | None = None) -> Callable:
        mod = self.load(ref, overrides)
        fn = mod.__dict__.get(ref.entry)
        if not callable(fn):
            funcs = sorted(k for k, v in mod.__dict__.items() if inspect.isfunction(v) and not k.startswith("_"))
            raise SourceError(f"{ref.label} has no function {ref.entry!r} (functions: {', '.join(funcs)})")
        return fn

    def clear(self) -> None:
        for mod in self._cache.values():
            _forget(mod)
        self._cache.clear()


def _importable(name: str) -> bool:
    """Whether `name` is an installed module of this process (the standard library, torch, ...)."""
    if name in sys.modules:
        return True
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _forget(mod: types.ModuleType) -> None:
    for name in getattr(mod, "__equiv_modules__", ()):
        sys.modules.pop(name, None)


class _Load:
    """One load of a kernel file and its siblings, sharing one shim and one import hook."""

    def __init__(self, ref: SourceRef, overrides: Mapping[str, Any], config_module: str,
                 stand_ins: Mapping[str, types.ModuleType] | None = None):
        self.ref = ref
        self.stand_ins = dict(stand_ins or {})
        self.overrides = overrides
        self.config_module = config_module
        self.language = make_language_shim()
        self.pypto = make_pypto_shim(self.language)
        _shims.attach(self.pypto)  # pypto.language.distributed, pypto.ir.distributed_compiled_program
        self.modules: dict[str, types.ModuleType] = {}
        self.registered: list[str] = []
        self.tag = hashlib.sha256(repr((ref.identity(), _freeze(overrides))).encode()).hexdigest()[:12]
        self.builtins = dict(builtins.__dict__)
        self.builtins["__import__"] = self._import

    def _import(self, name: str, globals=None, locals=None, fromlist=(), level: int = 0):  # noqa: A002
        if level == 0 and (name == "pypto" or name.startswith("pypto.")):
            if name == "pypto":
                return self.pypto
            if name == "pypto.language":
                return self.language if fromlist else self.pypto
            module = run_harness.import_module(self.pypto, name, fromlist)
            if module is not None:
                return module
            raise UnsupportedOpError(f"import {name}", kernel_site())
        top = name.split(".")[0]
        if level == 0 and top == "equiv":
            # The checker itself (rewritten kernels call equiv.tile.batch), never a file of the
            # repository under check.
            return builtins.__import__(name, globals, locals, fromlist, level)
        if level == 0 and top in self.stand_ins:
            return self.stand_ins[top]
        if level <= 1 and name and "." not in name:
            path = self.ref.sibling(name)
            if path is not None:
                return self.module(path)
        if level == 0 and name and "." in name:
            # ``import pkg.mod`` / ``from pkg.mod import x``: the repository's own packages, beside
            # the file or at the root, at the revision being loaded.
            path = self.ref.module_path(name)
            if path is not None:
                leaf = self.module(path)
                if fromlist:
                    return leaf
                parts = name.split(".")
                head = self._package(parts[0])
                node = head
                for i in range(1, len(parts)):
                    sub = self.module(self.ref.module_path(".".join(parts[:i + 1])) or path) \
                        if i < len(parts) - 1 else leaf
                    setattr(node, parts[i], sub)
                    node = sub
                return head
        if level == 0 and name and "." not in name and not _importable(name):
            path = self.ref.module_path(name)  # a package at the repository root
            if path is not None:
                return self.module(path)
        if level == 1 and not name:  # from . import sibling
            for item in fromlist or ():
                path = self.ref.sibling(item)
                if path is not None:
                    self.module(path)
            return types.SimpleNamespace(**{n: self.modules[self.ref.sibling(n)] for n in fromlist or ()
                                            if self.ref.sibling(n) in self.modules})
        return builtins.__import__(name, globals, locals, fromlist, level)

    def _package(self, name: str) -> types.ModuleType:
        path = self.ref.module_path(name)
        if path is not None:
            return self.module(path)
        return self.modules.setdefault(f"<namespace {name}>", types.ModuleType(name))

    def module(self, path: str) -> types.ModuleType:
        if path in self.modules:
            return self.modules[path]
        stem = os.path.splitext(os.path.basename(path))[0]
        if stem == "__init__":
            stem = os.path.basename(os.path.dirname(path))
        unique = f"_equiv_src_{self.tag}_{stem}"
        mod = types.ModuleType(unique)
        label = f"{self.ref.commit[:8]}:{path}" if self.ref.rev is not None else (
            os.path.normpath(os.path.join(self.ref.repo, path)) if self.ref.repo else path)
        mod.__file__ = label
        mod.__dict__["__builtins__"] = self.builtins
        mod.__dict__["__equiv_source__"] = dataclasses.replace(self.ref, path=path)
        self.modules[path] = mod
        sys.modules[unique] = mod  # dataclasses and pickling look classes' modules up here
        self.registered.append(unique)
        text = self.ref.read(path)
        linecache.cache[label] = (len(text), None, text.splitlines(True), label)
        overrides = self.overrides if stem == self.config_module else {}
        if path.endswith("__init__.py"):
            mod.__path__ = []  # type: ignore[attr-defined] - a package: submodules import through the hook
        # The file sees a command line of its own (its defaults apply): configs read sys.argv
        # (``--variant``) and may rewrite it, which must not leak into this process.
        saved_argv = list(sys.argv)
        sys.argv[:] = [label]
        try:
            exec_with_overrides(text, label, mod.__dict__, overrides)
        except BaseException:
            for name in self.registered:
                sys.modules.pop(name, None)
            raise
        finally:
            sys.argv[:] = saved_argv
        mod.__dict__["__equiv_modules__"] = tuple(self.registered)
        return mod
