"""Config overrides: a sibling config module executed with some of its values rebound
*while* it runs (its AST rewritten), so constants derived from them follow."""

from __future__ import annotations

import __future__
import ast
import dataclasses
from typing import Any, Mapping

from equiv.tile import rewrite as _rewrite
from equiv.errors import SourceError


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
