"""Whether an entry's checked program is the same at two revisions, decided from what the
check runs, not from the file's text.

What a pair-free check of an entry runs: the ``@pl.jit`` entry and everything it reaches —
module-level functions, classes and values of the file, of the sibling modules and root
packages it imports (``config``, helpers), statements those modules run when loaded — and the
``run_jit`` call its ``__main__`` block records: specs (names, shapes, dtypes, how each input is
made), modes, tolerances, golden and comparison. Not what only a device run uses (the
``runtime_cfg`` of a DFX flag, a ``--compile-only`` option), nor comments, docstrings, or
definitions the entry never reaches.

Static first: every module-level definition is compared as its syntax tree (line numbers,
comments and docstrings left out), following only the names reached from the ``__main__``
block. When only the ``__main__`` block differs, both blocks are run on torch's meta device
(shapes and dtypes, no values, no kernel, no golden), in a forked child, and their recorded
calls are compared. A block the meta device cannot record (it reads a value, calls an op with
no meta kernel, or makes an input's value itself) is recorded on both sides again on the CPU
stand-in (`equiv.pairfree.standin`), where such values compare by their bytes.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import select
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from equiv.pairfree.reach import Source, _dump, _loaded, reach

# run_jit keywords only a device run reads.
DEVICE_ONLY = ("runtime_cfg", "compile_cfg", "compile_only", "runtime_dir", "save_data")
RUN_NAMES = ("run_jit", "run")


def _aliases(main: ast.Module | None) -> dict[str, list[str]]:
    """Names the block binds only to other names (``fn = l3_lm_head``, or per branch ``fn, specs
    = q_kv_split_test, ...``): the names each stands for."""
    bound: dict[str, list[ast.expr | None]] = {}

    def bind(target: ast.expr, value: ast.expr | None) -> None:
        if isinstance(target, ast.Name):
            bound.setdefault(target.id, []).append(value)
        elif isinstance(target, (ast.Tuple, ast.List)):
            values = value.elts if isinstance(value, (ast.Tuple, ast.List)) and \
                len(value.elts) == len(target.elts) else [None] * len(target.elts)
            for t, v in zip(target.elts, values):
                bind(t, v)
        else:
            for name in (x for x in ast.walk(target) if isinstance(x, ast.Name)):
                bound.setdefault(name.id, []).append(None)

    for n in ast.walk(main) if main is not None else ():
        if isinstance(n, ast.Assign):
            for t in n.targets:
                bind(t, n.value)
        elif isinstance(n, (ast.AugAssign, ast.AnnAssign, ast.For, ast.NamedExpr)):
            bind(n.target, None)
        elif isinstance(n, ast.With):
            for i in n.items:
                if i.optional_vars is not None:
                    bind(i.optional_vars, None)
    out = {k: list(dict.fromkeys(v.id for v in vs)) for k, vs in bound.items()
           if all(isinstance(v, ast.Name) and v.id != k for v in vs)}
    for k in list(out):  # chains (a = b; b = c)
        seen, names = {k}, []
        todo = list(out[k])
        while todo:
            n = todo.pop(0)
            if n in out and n not in seen:
                seen.add(n)
                todo += out[n]
            elif n not in out:
                names.append(n)
        out[k] = list(dict.fromkeys(names))
    return out


def main_entries(main: ast.Module | None) -> list[str]:
    """Names the ``__main__`` block hands to ``run_jit`` (first argument or ``fn=``; a name the
    block binds once to another stands for that one)."""
    out: list[str] = []
    if main is None:
        return out
    alias = _aliases(main)
    for n in ast.walk(main):
        if isinstance(n, ast.Call):
            f = n.func
            fname = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
            if fname not in RUN_NAMES:
                continue
            arg = n.args[0] if n.args else next((k.value for k in n.keywords if k.arg == "fn"), None)
            for name in (alias.get(arg.id, [arg.id]) if isinstance(arg, ast.Name) else []):
                if name not in out:
                    out.append(name)
    return out


@dataclass
class Static:
    """One file at one revision, as far as syntax tells."""

    entries: list[str]
    reached: dict[str, dict[str, str]]   # entry -> definition key -> syntax (all the block reaches)
    main: str                            # the __main__ block's syntax
    kernel: dict[str, dict[str, str]] = field(default_factory=dict)  # entry -> reach of entry + golden
    goldens: list[str] = field(default_factory=list)


def main_goldens(main: ast.Module | None) -> list[str]:
    """Names the ``__main__`` block passes as ``golden_fn``/``golden``."""
    out: list[str] = []
    alias = _aliases(main)
    for n in ast.walk(main) if main is not None else ():
        if isinstance(n, ast.keyword) and n.arg in ("golden_fn", "golden") and isinstance(n.value, ast.Name):
            out += alias.get(n.value.id, [n.value.id])
    return list(dict.fromkeys(out))


def static(src: Source, path: str) -> Static | None:
    mod = src.module(path)
    if mod is None:
        return None
    entries = main_entries(mod.main)
    main_names, main_attrs = _loaded(mod.main) if mod.main is not None else (set(), set())
    shared = {n for n in main_names if n in mod.defs} - set(entries)
    reached = {}
    for e in entries:
        r = reach(src, path, shared | {e})
        for base, attr in main_attrs:
            if base in mod.imports and mod.imports[base][1] is None:
                tpath = src.resolve(path, mod.imports[base][0])
                if tpath is not None:
                    r.update(reach(src, tpath, {attr}))
        reached[e] = r
    if not entries:  # run_jit is called from a function of the file: the block's whole reach
        reached[""] = reach(src, path, {n for n in main_names if n in mod.defs})
    goldens = [g for g in main_goldens(mod.main) if g in mod.defs]
    kernel = {e: reach(src, path, {e, *goldens}) for e in entries}
    return Static(entries, reached, _dump(mod.main) if mod.main is not None else "", kernel, goldens)


# ----------------------------------------------------------------------------------------
# Recorded: the run_jit calls of the __main__ block on the meta device
# ----------------------------------------------------------------------------------------
def _callable_id(fn: Any, values: bool = False, seen: set[int] | None = None) -> str:
    """A callable's code, and the code of the module functions it names, recursively (an input
    made by ``lambda: make_weights()`` changes when ``make_weights`` does). With `values` (a
    CPU recording), tensors its closure holds count by their bytes."""
    from equiv.pairfree.standin import digest

    code = getattr(fn, "__code__", None)
    if code is None:
        return f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', repr(type(fn)))}"
    seen = set() if seen is None else seen
    seen.add(id(fn))
    parts = [_code_hash(code)]
    glb = getattr(fn, "__globals__", {})
    for name in _names_of(code):
        g = glb.get(name)
        if g is not None and hasattr(g, "__code__") and id(g) not in seen:
            parts.append(f"{name}={_callable_id(g, values, seen)}")
        elif isinstance(g, (int, float, str, bool)):
            parts.append(f"{name}={g!r}")
    for cell in getattr(fn, "__closure__", None) or ():
        try:
            v = cell.cell_contents
        except ValueError:
            continue
        if hasattr(v, "__code__") and id(v) not in seen:
            parts.append(_callable_id(v, values, seen))
        elif isinstance(v, (int, float, str, bool)):
            parts.append(repr(v))
        elif values and hasattr(v, "shape") and hasattr(v, "dtype"):
            parts.append(digest(v))
    return "code:" + hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def _names_of(code: Any) -> list[str]:
    out = list(code.co_names)
    for c in code.co_consts:
        if hasattr(c, "co_code"):
            out += _names_of(c)
    return out


def _code_hash(code: Any) -> str:
    h = hashlib.sha256(code.co_code)
    h.update(repr(code.co_names).encode())
    for c in code.co_consts:
        h.update((_code_hash(c) if hasattr(c, "co_code") else repr(c)).encode())
    return h.hexdigest()[:16]


def summarize_call(call: Any, values: bool = False) -> tuple[dict, bool]:
    """What the check takes from a recorded call, JSON-able; and whether an input's value was
    made by the block itself (a tensor: not comparable from a meta run). With `values` (a CPU
    recording) such a value is compared by a digest of its bytes instead."""
    from equiv.pairfree import golden as g
    from equiv.pairfree.standin import digest

    valued = False
    specs = []
    for s in call.specs:
        if isinstance(s, g.TensorSpec):
            init = s.init_value
            if init is None or isinstance(init, (bool, int, float)):
                how = repr(init)
            elif callable(init):
                how = _callable_id(init, values)
            elif values and hasattr(init, "shape"):
                how = digest(init)
            else:
                how, valued = "value", True
            specs.append({"tensor": s.name, "shape": list(s.shape), "dtype": str(s.dtype), "init": how,
                          "out": bool(s.is_output), "resident": repr(s.resident)})
        elif isinstance(s, g.ScalarSpec):
            v = s.value
            tensor = hasattr(v, "shape")
            specs.append({"scalar": s.name, "dtype": str(s.dtype),
                          "value": (digest(v) if values else "value") if tensor else repr(v)})
            valued = valued or (tensor and not values)
        else:
            specs.append({"other": repr(type(s))})
    cmp = call.compare_fn
    if isinstance(cmp, Mapping):
        cmp = {str(k): getattr(v, "__name__", repr(type(v))) for k, v in cmp.items()}
    elif cmp is not None:
        cmp = getattr(cmp, "__name__", repr(type(cmp)))
    extra = {k: repr(v) for k, v in sorted(call.extra.items()) if k not in DEVICE_ONLY}
    return ({"entry": call.entry, "specs": specs, "golden": getattr(call.golden_fn, "__name__", None),
             "rtol": call.rtol, "atol": call.atol, "compare": cmp, "extra": extra}, valued)


def record(repo: str, rev: str | None, path: str, overrides: Mapping[str, Any] | None = None,
           models: bool = False, device: str = "meta") -> dict | None:
    """entry -> {mode: [summaries]} of the ``__main__`` block run on the meta device (or, with
    ``device="cpu"``, on the CPU stand-in: `equiv.pairfree.standin`), plus ``"<valued>"`` when
    a call had a value made in the block; None when it cannot run there."""
    from equiv.pairfree import standin

    if device == "cpu":
        answer = _in_child(lambda: _record(repo, rev, path, dict(overrides or {}), models, "cpu"),
                           standin.SECONDS, standin.memory_cap())
    else:
        answer = _in_child(lambda: _record(repo, rev, path, dict(overrides or {}), models))
    return answer if isinstance(answer, dict) else None


def unrecorded(rec: dict | None, entry: str | None = None) -> str | None:
    """Why a recording decides nothing (None: it does): no answer, an error, no call of
    `entry`, or an input value the block makes itself (meta)."""
    if rec is None:
        return "no recorded call"
    if rec.get("<error>"):
        why = str(rec["<error>"])
        return why + (" (the recording's memory cap)" if "MemoryError" in why or "allocate memory" in why else "")
    if not any(not k.startswith("<") for k in rec):
        return "no recorded call"
    if rec.get("<valued>"):
        return "it makes an input's value itself"
    return None


def record_pair(repo: str, base: str, base_path: str, head: str | None, head_path: str,
                overrides: Mapping[str, Any] | None, recorded: dict, entry: str | None = None) -> tuple:
    """(base, head, device) recordings that decide `entry`: the meta device's where they do,
    else both sides again on the CPU stand-in (the same device on both sides, so values and
    digests compare). Kept in `recorded` under ``base``/``head`` and ``base@cpu``/``head@cpu``."""
    if "base" not in recorded:
        recorded["base"] = record(repo, base, base_path, overrides)
    if "head" not in recorded:
        recorded["head"] = record(repo, head, head_path, overrides)
    pb, ph = recorded["base"], recorded["head"]
    if not (unrecorded(pb, entry) or unrecorded(ph, entry)):
        return pb, ph, "meta"
    if "base@cpu" not in recorded:
        recorded["base@cpu"] = record(repo, base, base_path, overrides, device="cpu")
        recorded["head@cpu"] = record(repo, head, head_path, overrides, device="cpu")
    cb, ch = recorded["base@cpu"], recorded["head@cpu"]
    if unrecorded(cb, entry) or unrecorded(ch, entry):
        return pb, ph, "meta"  # the stand-in decides nothing either: the meta reason is kept
    return cb, ch, "cpu"


def _without_kernel_rewrites() -> None:
    """In the recording child only: load files without the DSL rewrites kernels need to *run*
    (most of a load's time); no kernel runs here, and both revisions load the same way."""
    from equiv.tile import rewrite

    rewrite.compile_kernel_source = lambda source, filename: compile(source, filename, "exec", dont_inherit=True)
    rewrite.rewrite_module = lambda tree, filename: tree


def _record(repo: str, rev: str | None, path: str, overrides: dict, models: bool = False,
            device: str = "meta") -> dict:
    import contextlib

    import torch

    from equiv.pairfree import standin

    _without_kernel_rewrites()
    standin.prepare_child(values=device == "cpu")
    on = torch.device("meta") if device == "meta" else contextlib.nullcontext()

    from equiv.pairfree import discovery
    from equiv.pairfree import golden as golden_stub
    from equiv.source.loader import SourceLoader
    from equiv.source.ref import SourceRef

    ref = SourceRef(path, "", rev, repo)
    loader = SourceLoader(stand_ins={"golden": golden_stub.make_module()})
    text = ref.read()
    out: dict[str, Any] = {}
    valued = False
    values = device == "cpu"

    def run_block(argv: list[str]) -> tuple:
        if values:
            standin.seed_all()
        return discovery.run_main(mod, text, argv)

    with on:
        mod = loader.load(ref, overrides)
        calls, parsers, err = run_block([])
        modes = discovery._mode_choices(parsers)
        runs = [("default", calls, err)]
        if modes:
            runs = [(c, *run_block([modes[0], c])[::2]) for c in modes[1]]
        for mode, found, err in runs:
            if err is not None:  # the calls after it are unknown: nothing is decided from this record
                out["<error>"] = f"mode {mode}: {discovery.describe(err)}"
            for call in found:
                summary, v = summarize_call(call, values)
                valued = valued or v
                out.setdefault(call.entry, {}).setdefault(mode, []).append(summary)
    if valued:
        out["<valued>"] = True
    try:  # the other model instances (one more load each): only where an entry will run
        if models:
            out["<models>"] = _model_instances(mod, ref, text, overrides)
    except Exception:  # noqa: BLE001 - no config instances to offer: the file's own only
        pass
    try:  # a token count spanning several tiles (one more load): only where an entry will run
        if models and device == "meta":
            from equiv.pairfree import tokens

            out["<tokens>"] = tokens.spans(mod, ref, text, overrides)
    except Exception:  # noqa: BLE001 - no multi-tile shape to offer
        pass
    return out


def _fields(v: Any) -> str:
    import dataclasses

    return repr(sorted((f.name, repr(getattr(v, f.name))) for f in dataclasses.fields(v) if f.name != "name"))


def _model_instances(mod: Any, ref: Any, text: str, overrides: dict) -> dict:
    """The model instances of the file's config (module-level instances of the dataclass of the
    instance the file uses, one name per instance): hidden size, the bytes of the largest
    run_jit call's specs with that instance's sizes, and whether the file uses it as written."""
    import dataclasses

    import torch

    from equiv.pairfree import discovery
    from equiv.pairfree import golden as golden_stub
    from equiv.pairfree.pair import _config_module
    from equiv.source.overrides import MODEL_KEY
    from equiv.source.loader import SourceLoader

    cfg = _config_module(mod)
    if cfg is None:
        return {}
    used = {id(v) for v in mod.__dict__.values() if dataclasses.is_dataclass(v) and not isinstance(v, type)}
    kinds = {type(v) for v in mod.__dict__.values() if dataclasses.is_dataclass(v) and not isinstance(v, type)}
    out: dict[str, dict] = {}
    seen: set[int] = set()
    for name, v in list(cfg.__dict__.items()):
        if type(v) not in kinds or id(v) in seen or not hasattr(v, "hidden_size"):
            continue
        seen.add(id(v))
        out[name] = {"hidden": int(v.hidden_size), "default": id(v) in used, "fields": _fields(v)}
    defaults = [i["fields"] for i in out.values() if i["default"]]
    for info in out.values():  # an instance with the sizes of one the file uses adds nothing
        info["same_as_default"] = not info["default"] and info["fields"] in defaults
        del info["fields"]
    for name, info in out.items():
        if info["default"] or info["same_as_default"]:
            continue
        loader = SourceLoader(stand_ins={"golden": golden_stub.make_module()})
        try:
            with torch.device("meta"):
                m = loader.load(ref, {**overrides, MODEL_KEY: name})
                calls, _, _ = discovery.run_main(m, text, [])
            info["bytes"] = max((sum(discovery._spec_bytes(s) for s in c.specs) for c in calls), default=0)
        except Exception:  # noqa: BLE001 - the file refuses it (an assert): the check says so
            info["bytes"] = 0
    return out


# Seconds a recording child may take (a Pro file's block on the meta device: a few seconds).
RECORD_SECONDS = 120.0


def _in_child(fn: Callable[[], Any], seconds: float | None = None, memory: int | None = None) -> Any:
    """`fn()` in a forked child (what the block leaves behind stays there), as JSON; on a
    failure, ``{"<error>": why}`` (an exception, no answer after `seconds` — default
    `RECORD_SECONDS` — or a child that died); None without fork. `memory`: bytes of address
    space the child may add (an allocation beyond fails in the child)."""
    if not hasattr(os, "fork"):
        return None
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            try:
                if memory is not None:
                    from equiv.pairfree.standin import limit_child_memory

                    limit_child_memory(memory)
                data = json.dumps(fn(), sort_keys=True, default=repr).encode()
            except BaseException as exc:  # noqa: BLE001 - the parent reads why
                from equiv.pairfree.discovery import describe

                data = json.dumps({"<error>": describe(exc)}).encode()
            with os.fdopen(w, "wb") as fh:
                fh.write(data)
        finally:
            os._exit(0)
    os.close(w)
    chunks = []
    limit = RECORD_SECONDS if seconds is None else seconds
    try:
        deadline = time.monotonic() + limit
        while select.select([r], [], [], max(0.0, deadline - time.monotonic()))[0]:
            chunk = os.read(r, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
        else:
            os.kill(pid, 9)
            return {"<error>": f"given up after {limit:g} s"}
    finally:
        os.close(r)
        os.waitpid(pid, 0)
    try:
        return json.loads(b"".join(chunks))
    except ValueError:
        return {"<error>": "the recording child ended without an answer (killed, or out of memory)"}


# ----------------------------------------------------------------------------------------
# The comparison
# ----------------------------------------------------------------------------------------
@dataclass
class EntryChange:
    entry: str
    unchanged: bool
    why: str
    # The kernel and golden are the same at both revisions; only a harness edit that cannot be
    # compared makes the entry run (at the file's own sizes: other model instances would run
    # the same kernel and golden again).
    harness_only: bool = False


def compare_file(repo: str, base: str, base_path: str, head: str | None, head_path: str,
                 overrides: Mapping[str, Any] | None = None,
                 sources: tuple[Source, Source] | None = None,
                 recorded: dict[str, dict | None] | None = None) -> list[EntryChange]:
    """Per entry of the file (both revisions), whether the checked program is the same.
    `recorded` keeps the meta-device recordings made (``base``, ``head``) for the caller."""
    bsrc, hsrc = sources or (Source(repo, base), Source(repo, head))
    b, h = static(bsrc, base_path), static(hsrc, head_path)
    if b is None or h is None:
        names = (h or b).entries if (h or b) else []
        return [EntryChange(e, False, "the file cannot be parsed at one revision") for e in names] or \
            [EntryChange(os.path.basename(head_path), False, "the file cannot be parsed at one revision")]
    out = []
    recorded = {} if recorded is None else recorded
    if not b.entries and not h.entries:
        return _compare_indirect(repo, base, base_path, head, head_path, b, h, overrides, recorded, bsrc, hsrc)
    for e in dict.fromkeys([*h.entries, *b.entries]):
        if e not in b.entries or e not in h.entries:
            out.append(EntryChange(e, False, f"called at {'head' if e in h.entries else 'base'} only"))
            continue
        kernel = _differ(_relabel(b.kernel[e], base_path, head_path), h.kernel[e])
        if kernel:
            out.append(EntryChange(e, False, "changed: " + _shown(kernel)))
            continue
        harness = _differ(_relabel(b.reached[e], base_path, head_path), h.reached[e])
        if not harness and b.main == h.main:
            out.append(EntryChange(e, True, "the entry, what it reaches and the __main__ block are unchanged"))
            continue
        pb, ph, device = record_pair(repo, base, base_path, head, head_path, overrides, recorded, e)
        on = " (recorded on the CPU stand-in)" if device == "cpu" else ""
        if unrecorded(pb, e) == "it makes an input's value itself" or \
                unrecorded(ph, e) == "it makes an input's value itself":
            out.append(EntryChange(e, False, "the __main__ block changed and makes an input's value itself",
                                   harness_only=True))
        elif unrecorded(pb, e) or unrecorded(ph, e):
            why = unrecorded(pb, e) or unrecorded(ph, e)
            cpu = unrecorded(recorded.get("base@cpu"), e) or unrecorded(recorded.get("head@cpu"), e)
            out.append(EntryChange(e, False, f"the __main__ block changed and cannot be compared on the meta "
                                             f"device ({why}) nor on the CPU stand-in ({cpu})", harness_only=True))
        elif e not in pb and e not in ph:  # named in the block, called on a path its defaults never take
            out.append(EntryChange(e, True, "called by neither revision's __main__ block under its defaults "
                                            f"(nothing to check){on}"))
        elif e not in pb or e not in ph:
            out.append(EntryChange(e, False, f"the __main__ block calls it at {'head' if e in ph else 'base'} only "
                                             f"(as recorded){on}"))
        else:
            out.append(_by_recorded_call(e, pb, ph, harness, on))
    return out


def _by_recorded_call(e: str, pb: Mapping, ph: Mapping, harness: list[str], on: str) -> EntryChange:
    """An entry whose kernel and golden are unchanged: the same program exactly when its
    recorded ``run_jit`` call is the same at both revisions."""
    if pb.get(e) != ph.get(e):
        return EntryChange(e, False, "the recorded run_jit call changed: " + _call_diff(pb.get(e), ph.get(e)) + on)
    what = "__main__ edits" + (f" and {_shown(harness)} (harness only)" if harness else "")
    return EntryChange(e, True, f"{what} change no recorded run_jit call{on}")


def _differ(a: Mapping[str, str], b: Mapping[str, str]) -> list[str]:
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def _shown(keys: list[str]) -> str:
    shown = [k.replace(":<load>", " (module-level statements)") for k in keys]
    return ", ".join(shown[:6]) + (f" and {len(shown) - 6} more" if len(shown) > 6 else "")


def _compare_indirect(repo: str, base: str, base_path: str, head: str | None, head_path: str, b: Static,
                      h: Static, overrides: Mapping[str, Any] | None, recorded: dict,
                      bsrc: Source, hsrc: Source) -> list[EntryChange]:
    """A ``__main__`` block that reaches ``run_jit`` through a function of its own (no entry named
    in the block): the whole reach of the block decides, and the recordings name the entries."""
    rb, rh = _relabel(b.reached[""], base_path, head_path), h.reached[""]
    differ = _differ(rb, rh)
    if not differ and b.main == h.main:
        return [EntryChange("(file)", True, "the __main__ block and everything it reaches are unchanged")]
    pb, ph, device = record_pair(repo, base, base_path, head, head_path, overrides, recorded)
    on = " (recorded on the CPU stand-in)" if device == "cpu" else ""
    if unrecorded(pb) or unrecorded(ph):
        why = "changed: " + _shown(differ) if differ else "the __main__ block changed"
        cpu = unrecorded(recorded.get("base@cpu")) or unrecorded(recorded.get("head@cpu"))
        return [EntryChange("(file)", False, why + f" (its run_jit calls cannot be recorded on the meta device "
                                                   f"({unrecorded(pb) or unrecorded(ph)}) nor on the CPU stand-in "
                                                   f"({cpu}))")]
    names = [e for e in dict.fromkeys([*ph, *pb]) if not e.startswith("<")]
    out = []
    for e in names:
        goldens = {c.get("golden") for calls in (ph.get(e) or {}).values() for c in calls} | {
            c.get("golden") for calls in (pb.get(e) or {}).values() for c in calls}
        roots = {e, *(g for g in goldens if g)}
        kernel = _differ(_relabel(reach(bsrc, base_path, roots), base_path, head_path), reach(hsrc, head_path, roots))
        out.append(EntryChange(e, False, "changed: " + _shown(kernel)) if kernel
                   else _by_recorded_call(e, pb, ph, differ, on))
    return out


def _relabel(reached: dict[str, str], base_path: str, head_path: str) -> dict[str, str]:
    """Base's keys under head's path (a renamed file's definitions are the same definitions)."""
    if base_path == head_path:
        return reached
    return {(head_path + k[len(base_path):] if k.startswith(base_path + ":") else k): v for k, v in reached.items()}


def _call_diff(a: Any, b: Any) -> str:
    if not isinstance(a, dict) or not isinstance(b, dict):
        return "calls differ"
    if set(a) != set(b):
        return f"modes {', '.join(sorted(a))} -> {', '.join(sorted(b))}"
    for mode in a:
        for ca, cb in zip(a[mode], b[mode]):
            keys = [k for k in ca if ca.get(k) != cb.get(k)]
            if keys:
                return f"{mode}: {', '.join(keys)}"
        if len(a[mode]) != len(b[mode]):
            return f"{mode}: number of calls"
    return "calls differ"
