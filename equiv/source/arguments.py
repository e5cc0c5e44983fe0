"""Calling an entry: the tensors a pair hands it matched to its parameters by name and
checked against their ``pl.Tensor[[...], dtype]`` annotations."""

from __future__ import annotations

import inspect
from typing import Any, Callable, Mapping, Sequence

from equiv import tile as _tile
from equiv.dtypes import DType
from equiv.tile.memory import Tensor
from equiv.errors import SourceError


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
