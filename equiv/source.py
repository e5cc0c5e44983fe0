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
"""

from __future__ import annotations

import __future__
import ast
import builtins
import dataclasses
import hashlib
import inspect
import linecache
import os
import subprocess
import sys
import types
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from equiv import tile as _tile
from equiv.dtypes import DType
from equiv.tile.memory import Tensor
from equiv.tile.errors import UnsupportedOpError
from equiv.tile.sites import kernel_site
from equiv.tile.distributed import shims as _shims
from equiv.tile import rewrite as _rewrite
from equiv.tile.namespace import Namespace, report_gaps
from equiv.pair import KernelPair
from equiv.shapes import Shape

# Shape dimension -> config value the upstream file reads, per registered pair. A key that
# is a field of the config's dataclass instances (``hidden_size``) is replaced in every
# instance (FLASH, DEMO, PRO); a key that is a module constant (``MOE_TOKENS``) is rebound
# where the config assigns it; ``FLASH.hidden_size`` targets one instance.
DEFAULT_BINDS: dict[str, dict[str, str]] = {
    "expert_shared": {"T": "MOE_TOKENS", "D": "hidden_size", "I": "moe_intermediate_size", "L": "swiglu_limit"},
    # hc_post's token count is a pl.dynamic dimension (taken from the tensors), not a constant.
    "hc_post": {"D": "hidden_size"},
}

# Sub-namespaces of pypto.language: an unknown member is reported with its dotted name.
_NAMESPACES = ("tile", "tensor", "array", "Level", "AtomicType", "PadValue", "jit", "MaskPattern")


class SourceError(Exception):
    """A kernel file cannot be loaded or called as the pair needs (bad path, revision,
    entry, override, or tensors that do not match the entry's annotations)."""




# ----------------------------------------------------------------------------------------
# Where a file comes from
# ----------------------------------------------------------------------------------------
def _git(repo: str, *args: str) -> str:
    try:
        out = subprocess.run(["git", "-C", repo, *args], check=True, capture_output=True, text=True)
    except FileNotFoundError:
        raise SourceError("git is not installed; revisions need git") from None
    except subprocess.CalledProcessError as exc:
        raise SourceError(f"git -C {repo} {' '.join(args)}: {exc.stderr.strip() or exc}") from None
    return out.stdout


@dataclass(frozen=True)
class SourceRef:
    """One kernel file: `path` (repo-relative with `rev`, else a file on disk, relative to
    `repo` when given), the `entry` function to call, and an optional git revision."""

    path: str
    entry: str
    rev: str | None = None
    repo: str | None = None

    @classmethod
    def parse(cls, spec: str, rev: str | None = None, repo: str | None = None,
              default_entry: str | None = None) -> "SourceRef":
        """``'models/x.py:entry'`` (or ``'models/x.py'`` with `default_entry`)."""
        path, sep, entry = spec.rpartition(":")
        if not sep or not entry.isidentifier():
            path, entry = spec, default_entry or ""
        if not entry:
            raise SourceError(f"{spec!r}: name the entry function as PATH:FUNCTION, "
                              f"e.g. models/deepseek/v4/hc_post.py:hc_post_test")
        return cls(path, entry, rev, repo)

    def with_rev(self, rev: str | None) -> "SourceRef":
        return dataclasses.replace(self, rev=rev)

    @property
    def commit(self) -> str | None:
        if self.rev is None:
            return None
        return _resolve_commit(self.repo or ".", self.rev)

    @property
    def label(self) -> str:
        """How sites in this file are named: ``a8cdc047:models/x.py`` or the path."""
        if self.rev is None:
            return self.disk_path()
        return f"{self.commit[:8]}:{self.path}"

    def disk_path(self) -> str:
        return os.path.normpath(os.path.join(self.repo, self.path) if self.repo else self.path)

    def directory(self) -> str:
        return os.path.dirname(self.path)

    def read(self, path: str | None = None) -> str:
        """Text of `path` (default: this file) at this reference's revision or on disk."""
        path = path or self.path
        if self.rev is None:
            full = os.path.join(self.repo, path) if self.repo else path
            try:
                with open(full, encoding="utf-8") as fh:
                    return fh.read()
            except OSError as exc:
                raise SourceError(f"cannot read {full}: {exc.strerror}") from None
        return _git(self.repo or ".", "show", f"{self.commit}:{path}")

    def sibling(self, name: str) -> str | None:
        """Path of sibling module `name` (``<dir>/<name>.py`` or the package ``<dir>/<name>/__init__.py``)
        if it exists, else None."""
        for stem in (f"{name}.py", os.path.join(name, "__init__.py")):
            rel = os.path.join(self.directory(), stem) if self.directory() else stem
            if self.exists(rel):
                return rel
        return None

    def exists(self, rel: str) -> bool:
        """Whether repo-relative file `rel` exists at this reference's revision (or on disk)."""
        if self.rev is None:
            full = os.path.join(self.repo, rel) if self.repo else rel
            return os.path.isfile(full)
        return rel in _tree_files(self.repo or ".", self.commit, os.path.dirname(rel))

    def module_path(self, dotted: str) -> str | None:
        """Where ``import a.b`` finds its file at this revision: beside this file first, then at
        the repository root (``a/b.py`` or ``a/b/__init__.py``); None when neither has it."""
        parts = dotted.split(".")
        for base in dict.fromkeys((self.directory(), "")):
            for stem in (os.path.join(*parts) + ".py", os.path.join(*parts, "__init__.py")):
                rel = os.path.normpath(os.path.join(base, stem)) if base else stem
                if self.exists(rel):
                    return rel
        return None

    def identity(self) -> str:
        """A key that changes whenever the file's text can: commit + path, or content hash."""
        if self.rev is not None:
            return f"{self.commit}:{self.path}"
        text = self.read()
        return f"disk:{os.path.abspath(self.disk_path())}:{hashlib.sha256(text.encode()).hexdigest()[:16]}"


_COMMITS: dict[tuple[str, str], str] = {}
_TREES: dict[tuple[str, str, str], frozenset[str]] = {}


def _resolve_commit(repo: str, rev: str) -> str:
    key = (os.path.abspath(repo), rev)
    if key not in _COMMITS:
        try:
            _COMMITS[key] = _git(repo, "rev-parse", "--verify", f"{rev}^{{commit}}").strip()
        except SourceError as exc:
            raise SourceError(f"revision {rev!r} not found in {repo}: {exc}") from None
    return _COMMITS[key]


def _tree_files(repo: str, commit: str, directory: str) -> frozenset[str]:
    key = (os.path.abspath(repo), commit, directory)
    if key not in _TREES:
        args = ["ls-tree", "--name-only", commit] + ([directory.rstrip("/") + "/"] if directory else [])
        _TREES[key] = frozenset(_git(repo, *args).splitlines())
    return _TREES[key]


# ----------------------------------------------------------------------------------------
# The pypto.language shim
# ----------------------------------------------------------------------------------------
def make_language_shim() -> types.ModuleType:
    """A fresh ``pypto.language`` module exposing the names of the DSL table only."""
    mod = types.ModuleType("pypto.language", "equiv.tile seen as pypto.language (source mode)")
    for name in _tile.__all__:
        mod.__dict__[name] = getattr(_tile, name)
    for name in _NAMESPACES:
        # A namespace with no covered member still reports its members by their dotted name.
        mod.__dict__.setdefault(name, Namespace(f"pl.{name}", {}))
    report_gaps(mod, "pl")
    return mod


def make_pypto_shim(language: types.ModuleType) -> types.ModuleType:
    pkg = types.ModuleType("pypto", "shim package: only pypto.language (= equiv.tile) is provided")
    pkg.__path__ = []  # type: ignore[attr-defined]
    pkg.language = language  # type: ignore[attr-defined]
    report_gaps(pkg, "pypto")
    return pkg


# ----------------------------------------------------------------------------------------
# Config overrides
# ----------------------------------------------------------------------------------------
def _stored_names(stmt: ast.stmt) -> set[str]:
    """Module-level names a top-level statement binds (not those inside def/class bodies)."""
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {stmt.name}
    if isinstance(stmt, (ast.Import, ast.ImportFrom)):
        return {(a.asname or a.name).split(".")[0] for a in stmt.names}
    names: set[str] = set()
    for node in ast.walk(stmt):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
    return names


def _like(old: Any, value: Any) -> Any:
    """`value` in the numeric type of the value it replaces (an int shape for a float field)."""
    if isinstance(old, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _replace_field(obj: Any, fld: str, value: Any) -> Any:
    return dataclasses.replace(obj, **{fld: _like(getattr(obj, fld), value)})


MODEL_KEY = "__model__"  # override key: make every config instance carry this instance's sizes


def _apply_model(ns: dict, bound: set[str], model: str, used: set[str]) -> None:
    """Once the statement binding instance `model` (``PRO``) ran, every module-level instance of
    its dataclass (``FLASH``, ``DEMO``, later ``ACTIVE`` derived from them) takes its field values,
    keeping only its own ``name``: the kernel sees `model`'s sizes whatever name it imports."""
    chosen = ns.get(model)
    if model not in bound or not dataclasses.is_dataclass(chosen) or isinstance(chosen, type):
        return
    fields = {f.name for f in dataclasses.fields(chosen)}
    for name, obj in list(ns.items()):
        if name != model and type(obj) is type(chosen):
            ns[name] = dataclasses.replace(chosen, name=obj.name) if "name" in fields else chosen
    used.add(MODEL_KEY)


def _apply_overrides(ns: dict, bound: set[str], overrides: Mapping[str, Any], used: set[str]) -> None:
    for key, value in overrides.items():
        if key == MODEL_KEY:
            continue
        obj_name, _, fld = key.rpartition(".")
        if obj_name:
            if obj_name in bound and dataclasses.is_dataclass(ns.get(obj_name)) and not isinstance(ns[obj_name], type):
                if fld not in {f.name for f in dataclasses.fields(ns[obj_name])}:
                    raise SourceError(f"config override {key}: {obj_name} has no field {fld!r}")
                ns[obj_name] = _replace_field(ns[obj_name], fld, value)
                used.add(key)
            continue
        if key in bound:
            ns[key] = _like(ns.get(key), value)
            used.add(key)
            continue
        for name in bound:
            obj = ns.get(name)
            if dataclasses.is_dataclass(obj) and not isinstance(obj, type) and \
                    key in {f.name for f in dataclasses.fields(obj)}:
                ns[name] = _replace_field(obj, key, value)
                used.add(key)


def exec_with_overrides(source: str, filename: str, ns: dict, overrides: Mapping[str, Any]) -> None:
    """Execute module `source` in `ns` statement by statement, applying `overrides` right
    after the statement that binds each overridden name (so later derived values see it).

    ``NAME=v`` rebinds a module constant; ``field=v`` replaces that field in every dataclass
    instance the module creates; ``OBJ.field=v`` in instance OBJ only. An override that
    matches nothing raises `SourceError`.
    """
    if not overrides:
        # Kernel files get the DSL rewrites (``with pl.spmd`` bodies run per block).
        exec(_rewrite.compile_kernel_source(source, filename), ns)  # noqa: S102
        return
    tree = ast.parse(source, filename)
    _rewrite.rewrite_module(tree, filename)
    flags = 0
    for stmt in tree.body:
        if isinstance(stmt, ast.ImportFrom) and stmt.module == "__future__":
            for alias in stmt.names:
                flags |= getattr(__future__, alias.name).compiler_flag
    if ns.get("__doc__") is None:
        ns["__doc__"] = ast.get_docstring(tree)
    used: set[str] = set()
    for stmt in tree.body:
        code = compile(ast.Module(body=[stmt], type_ignores=[]), filename, "exec", flags=flags, dont_inherit=True)
        exec(code, ns)  # noqa: S102 - executing the kernel's own config is the point
        _apply_overrides(ns, _stored_names(stmt), overrides, used)
        if MODEL_KEY in overrides:
            _apply_model(ns, _stored_names(stmt), str(overrides[MODEL_KEY]), used)
    unused = [k for k in overrides if k not in used]
    if MODEL_KEY in unused:
        names = sorted(k for k, v in ns.items() if dataclasses.is_dataclass(v) and not isinstance(v, type))
        raise SourceError(f"{filename}: --model {overrides[MODEL_KEY]}: no config instance of that name "
                          f"(instances: {', '.join(names) or 'none'})")
    if unused:
        consts = sorted(k for k, v in ns.items() if k.isupper() and isinstance(v, (int, float)))
        fields = sorted({f.name for v in ns.values() if dataclasses.is_dataclass(v) and not isinstance(v, type)
                         for f in dataclasses.fields(v)})
        raise SourceError(f"{filename}: no constant or dataclass field named {', '.join(unused)} to override "
                          f"(constants: {', '.join(consts[:30])}; fields: {', '.join(fields[:40])})")


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
            module = _shims.import_module(self.pypto, name, fromlist)
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


# ----------------------------------------------------------------------------------------
# Calling an entry with emulator tensors
# ----------------------------------------------------------------------------------------
def _annotation_spec(ann: Any) -> tuple[str, Any] | None:
    """('tensor', [dims, dtype]) / ('scalar', dtype) / None for an evaluated annotation."""
    while isinstance(ann, tuple) and len(ann) == 2 and ann[0] in (_tile.Out, _tile.InOut):
        ann = ann[1]
    if isinstance(ann, tuple) and len(ann) == 2 and ann[0] is Tensor:
        return "tensor", ann[1]
    if isinstance(ann, tuple) and len(ann) == 2 and ann[0] is _tile.Scalar:
        return "scalar", ann[1]
    return None


def _site_of(fn: Callable) -> str:
    code = getattr(fn, "__code__", None)
    return f"{code.co_filename}:{code.co_firstlineno}" if code else getattr(fn, "__name__", "?")


def check_arguments(fn: Callable, args: Mapping[str, Any], hint: str = "") -> None:
    """Check tensors against the entry's ``pl.Tensor[[dims], dtype]`` annotations.

    Integer dims must match; ``pl.dynamic`` dims are bound on first use and must agree
    after; dtypes must match. Raises `SourceError` naming the parameter and the entry.
    """
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return
    dyn: dict[str, tuple[int, str]] = {}
    for name, param in sig.parameters.items():
        if name not in args:
            continue
        ann = param.annotation
        if isinstance(ann, str):
            try:
                ann = eval(ann, fn.__globals__)  # noqa: S307 - the kernel's own annotation
            except Exception:
                continue
        spec = _annotation_spec(ann)
        if spec is None or spec[0] != "tensor":
            continue
        value = args[name]
        item = spec[1]
        if not (isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[0], (list, tuple))):
            continue
        dims, dtype = item
        if not isinstance(value, Tensor):
            raise SourceError(f"{_site_of(fn)}: parameter {name} is a tensor but the pair passes "
                              f"{type(value).__name__}")
        shape = list(value.shape)
        want = [d.name if isinstance(d, _tile.DynDim) else d for d in dims]
        bad = len(dims) != len(shape)
        for d, n in zip(dims, shape):
            if isinstance(d, _tile.DynDim):
                if d.name in dyn and dyn[d.name][0] != n:
                    raise SourceError(f"{_site_of(fn)}: dynamic dimension {d.name} is {dyn[d.name][0]} for "
                                      f"{dyn[d.name][1]} but {n} for {name}")
                dyn.setdefault(d.name, (n, name))
            elif isinstance(d, int) and d != n:
                bad = True
        if bad:
            raise SourceError(f"{_site_of(fn)}: parameter {name} is annotated {want} (from the file's constants) "
                              f"but the case gives {shape}" + (f"; {hint}" if hint else ""))
        if isinstance(dtype, DType) and dtype != value.dtype:
            raise SourceError(f"{_site_of(fn)}: parameter {name} is annotated {dtype!r} but the case gives "
                              f"{value.dtype!r}")


def match_parameters(fn: Callable, provided: Sequence[str]) -> None:
    """Raise `SourceError` unless the names `provided` fit `fn`'s parameters exactly."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return
    names = [n for n, p in params.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    takes_kw = any(p.kind == p.VAR_KEYWORD for p in params.values())
    missing = [n for n in names if n not in provided and params[n].default is inspect.Parameter.empty]
    extra = [n for n in provided if n not in names] if not takes_kw else []
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"takes {', '.join(missing)} which the pair does not provide")
        if extra:
            parts.append(f"has no parameter for {', '.join(extra)}")
        raise SourceError(f"{_site_of(fn)}: entry {fn.__name__}({', '.join(names)}) " + " and ".join(parts)
                          + f" (the pair provides {', '.join(provided)})")


def call_entry(fn: Callable, args: Mapping[str, Any], hint: str = "") -> Any:
    """Call `fn` with `args` matched to its parameters by name (after `check_arguments`)."""
    match_parameters(fn, list(args))
    check_arguments(fn, args, hint)
    return fn(**args)


# ----------------------------------------------------------------------------------------
# Pairs from sources
# ----------------------------------------------------------------------------------------
def parse_assignments(text: str | Sequence[str] | None, what: str = "value") -> dict[str, Any]:
    """``'D=hidden_size,T=MOE_TOKENS'`` or ``['swiglu_limit=0.0']`` -> dict (values literal-eval'd
    when they parse as Python literals, else kept as strings)."""
    if not text:
        return {}
    parts = [text] if isinstance(text, str) else list(text)
    out: dict[str, Any] = {}
    for chunk in parts:
        for item in filter(None, (p.strip() for p in chunk.split(","))):
            key, sep, val = item.partition("=")
            if not sep or not key.strip():
                raise SourceError(f"malformed {what} {item!r}: expected NAME=VALUE")
            val = val.strip()
            try:
                out[key.strip()] = ast.literal_eval(val)
            except (ValueError, SyntaxError):
                out[key.strip()] = val
    return out


@dataclass(eq=False)
class SourceKernel:
    """A pair side that loads `ref` for each case's shape and calls its entry.

    Called like a transcribed kernel: ``kernel(**inputs, **outputs, cfg=shape)``. Shape
    dimensions named in `bind` become config overrides (``D -> hidden_size``), plus the
    fixed `config` overrides.
    """

    ref: SourceRef
    bind: Mapping[str, str] = field(default_factory=dict)
    config: Mapping[str, Any] = field(default_factory=dict)
    loader: SourceLoader = field(default_factory=SourceLoader)

    def overrides(self, cfg: Mapping[str, int] | None) -> dict[str, Any]:
        out = dict(self.config)
        for dim, key in self.bind.items():
            if cfg is None or dim not in cfg:
                raise SourceError(f"--bind {dim}={key}: the shape has no dimension {dim} "
                                  f"(it has {', '.join(cfg or ())})")
            out[key] = int(cfg[dim])
        return out

    def load(self, cfg: Mapping[str, int] | None = None) -> Callable:
        return self.loader.entry(self.ref, self.overrides(cfg))

    def __call__(self, cfg: Shape | None = None, **args: Any) -> Any:
        fn = self.load(cfg)
        unbound = [d for d in (cfg or {}) if d not in self.bind]
        hint = (f"bind the shape dimension to the config value the file reads, e.g. --bind "
                f"{unbound[0]}=hidden_size (bound now: {', '.join(f'{k}={v}' for k, v in self.bind.items()) or 'none'})"
                if unbound else "")
        return call_entry(fn, args, hint)

    @property
    def __name__(self) -> str:  # noqa: A003 - read by reports and error messages
        return f"{self.ref.label}:{self.ref.entry}"


def resolve_bind(pair_name: str, bind: Mapping[str, str] | None) -> dict[str, str]:
    if bind is not None:
        return dict(bind)
    return dict(DEFAULT_BINDS.get(pair_name, {}))


def source_pair(base: KernelPair, pre: SourceRef, retiled: SourceRef, bind: Mapping[str, str] | None = None,
                config: Mapping[str, Any] | None = None, loader: SourceLoader | None = None,
                name: str | None = None) -> KernelPair:
    """`base` with its pre and retiled programs replaced by kernel files (`SourceKernel`).

    Reference, recipes, outputs, contract, preconditions and shape space stay the pair's.
    `bind` maps shape dimensions to config values (default: `DEFAULT_BINDS` of the pair).
    """
    loader = loader or SourceLoader()
    b = resolve_bind(base.name, bind)
    unknown = [d for d in b if d not in base.shapes.dims]
    if unknown:
        raise SourceError(f"--bind names {', '.join(unknown)}, which {base.name} does not have "
                          f"(dimensions: {', '.join(base.shapes.dims)})")
    cfg = dict(config or {})
    return dataclasses.replace(
        base,
        name=name or f"{base.name}@source",
        pre=SourceKernel(pre, b, cfg, loader),
        retiled=SourceKernel(retiled, b, cfg, loader),
        sources=(),
        description=f"{base.name}: {pre.label}:{pre.entry} vs {retiled.label}:{retiled.entry}",
    )


def load_kernel(path: str, entry: str, rev: str | None = None, repo: str | None = None,
                config: Mapping[str, Any] | None = None) -> Callable:
    """The entry function of a kernel file, loaded for interactive use."""
    return SourceLoader().entry(SourceRef(path, entry, rev, repo), config)


def unsupported_in(messages: Sequence[str]) -> list[str]:
    """The messages (e.g. a check's kernel errors) that report an emulator coverage gap."""
    return [m for m in messages if "UnsupportedOpError" in m or "is not covered by the emulator" in m]


__all__ = ["SourceRef", "SourceLoader", "SourceKernel", "SourceError", "UnsupportedOpError", "source_pair",
           "load_kernel", "exec_with_overrides", "make_language_shim", "call_entry", "check_arguments", "match_parameters",
           "parse_assignments", "DEFAULT_BINDS", "unsupported_in"]
