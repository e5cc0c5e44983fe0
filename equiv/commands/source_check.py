"""``equiv check --source PATH:ENTRY --pre-rev A --retiled-rev B``: check kernel files as written.

Source mode replaces a registered pair's transcribed tile programs with two PyPTO kernel
files (two revisions of one file, or two files) loaded through `equiv.source`, and keeps the
pair's reference, input recipes, outputs, contract and shape space (or ones given here).
See docs/source-mode.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.util
import os
import shlex
import sys
from typing import Any

from equiv import registry
from equiv.errors import ShapeError, SourceError, UnknownPairError, UsageError
from equiv.results import CheckResult
from equiv.check import check, plan
from equiv.commands.outputs import write_results
from equiv.commands.common import fixed_from, request_from
from equiv.pair import Contract, KernelPair
from equiv.progress import Progress
from equiv.runner import make_inputs
from equiv.source.loader import SourceLoader
from equiv.source.ref import SourceRef
from equiv.tile.errors import UnsupportedOpError
from equiv.source.arguments import match_parameters
from equiv.source.assignments import parse_assignments
from equiv.source.pairs import source_pair, unsupported_in
from equiv.summary import render, wrap


SOURCE_OPTIONS = ("source", "pre_source", "retiled_source", "pre_rev", "retiled_rev", "repo", "bind", "config",
                  "pair_file", "reference", "inputs", "contract", "pair_free", "model")


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "source mode", "run PyPTO kernel files as they are written (docs/source-mode.md); the pair's "
                       "reference, input recipes, outputs, contract and shapes are reused")
    g.add_argument("--source", metavar="PATH:ENTRY",
                   help="kernel file and its @pl.jit entry function, e.g. "
                        "models/deepseek/v4/expert_shared.py:expert_shared_test")
    g.add_argument("--pre-rev", metavar="REV", help="git revision of --source to use as pre (e.g. a8cdc047^)")
    g.add_argument("--retiled-rev", metavar="REV", help="git revision of --source to use as retiled")
    g.add_argument("--repo", metavar="PATH",
                   help="git repository (work tree or bare) the revisions and paths belong to (default: .)")
    g.add_argument("--pre-source", metavar="PATH[:ENTRY]", help="a separate pre kernel file (instead of a revision)")
    g.add_argument("--retiled-source", metavar="PATH[:ENTRY]", help="a separate retiled kernel file")
    g.add_argument("--bind", metavar="DIM=KEY,...",
                   help="shape dimension -> config value the file reads, e.g. 'D=hidden_size,T=MOE_TOKENS' "
                        "(default: the pair's known binding; '' for none)")
    g.add_argument("--config", action="append", metavar="KEY=VALUE",
                   help="fixed config override for every case, e.g. swiglu_limit=0.0 (repeatable)")
    g.add_argument("--pair-file", metavar="FILE.py:NAME", help="use a KernelPair defined in a Python file")
    g.add_argument("--reference", metavar="FILE.py:FUNC", help="float64 reference(inputs, cfg) to use instead")
    g.add_argument("--inputs", metavar="FILE.py:FUNC", help="input recipe(cfg, generator) to use instead")
    g.add_argument("--contract", metavar="bit-exact|N[:DTYPE]",
                   help="contract to hold the pair to instead (N = max ULP, default dtype bf16); pair-free: "
                        "overrides the file's own '# equiv: contract' comment")
    g.add_argument("--pair-free", action="store_true",
                   help="check the file with nothing registered (docs/pypto-lib.md): the entry, inputs, golden "
                        "and modes come from the file's __main__ call of golden.run_jit; implied when no "
                        "registered pair matches or --source names no :ENTRY (then every entry is checked)")
    g.add_argument("--strict", action="store_true",
                   help="pair-free: exit 1 when either side has a defect (unwritten or uninitialised elements, "
                        "out-of-range accesses, races), shared ones included; without it they are listed and "
                        "the exit is the verdict's")
    g.add_argument("--model", metavar="NAME",
                   help="pair-free: the config instance whose sizes the file sees, whatever name it imports "
                        "(FLASH, PRO, DEMO)")


def wants_source(args: argparse.Namespace) -> bool:
    return any(getattr(args, k, None) not in (None, [], False) for k in SOURCE_OPTIONS)


# ----------------------------------------------------------------------------------------
# Argument handling
# ----------------------------------------------------------------------------------------
def load_object(spec: str, what: str) -> Any:
    """``FILE.py:NAME`` or ``package.module:NAME``."""
    target, sep, name = spec.rpartition(":")
    if not sep or not name:
        raise UsageError(f"{what} {spec!r}: expected FILE.py:NAME or module:NAME")
    if target.endswith(".py") or os.path.isfile(target):
        if not os.path.isfile(target):
            raise UsageError(f"{what} {spec!r}: no file {target}")
        mod_name = f"_equiv_cli_{abs(hash(os.path.abspath(target)))}"
        spec_ = importlib.util.spec_from_file_location(mod_name, target)
        module = importlib.util.module_from_spec(spec_)
        sys.modules[mod_name] = module
        spec_.loader.exec_module(module)  # type: ignore[union-attr]
    else:
        module = importlib.import_module(target)
    try:
        return getattr(module, name)
    except AttributeError:
        raise UsageError(f"{what} {spec!r}: {target} has no {name}") from None


def parse_contract(text: str) -> Contract:
    from equiv.pair import parse_contract as parse

    try:
        return parse(text)
    except ValueError as exc:
        raise UsageError(f"--{exc}") from None


def _candidates(ref: SourceRef) -> list[str]:
    stem = os.path.splitext(os.path.basename(ref.path))[0]
    entry = ref.entry
    bare = entry.removesuffix("_test")
    return [stem, f"{stem}.{bare}", bare, entry]


def infer_pair_name(ref: SourceRef) -> str:
    names = registry.names()
    norm = {n.replace(".", "_"): n for n in names}
    for cand in _candidates(ref):
        if cand in names:
            return cand
        if cand.replace(".", "_") in norm:
            return norm[cand.replace(".", "_")]
    raise UsageError(f"cannot tell which registered pair {ref.path}:{ref.entry} is; name it "
                     f"(equiv check NAME --source ...) or give --pair-file. Registered: {', '.join(names)}")


def source_refs(args: argparse.Namespace) -> tuple[SourceRef, SourceRef]:
    try:
        base = SourceRef.parse(args.source, repo=args.repo) if args.source else None
        entry = base.entry if base else next(
            (e for e in (_entry_of(args.pre_source), _entry_of(args.retiled_source)) if e), None)
    except SourceError as exc:
        raise UsageError(str(exc)) from None
    refs = []
    for side in ("pre", "retiled"):
        own = getattr(args, f"{side}_source")
        rev = getattr(args, f"{side}_rev")
        if own:
            ref = SourceRef.parse(own, rev=rev, repo=args.repo, default_entry=entry)
        elif base is not None:
            ref = base.with_rev(rev)
        else:
            raise UsageError(f"no {side} kernel: give --source PATH:ENTRY (with --{side}-rev) or --{side}-source")
        if ref.rev is not None and args.repo is None and not os.path.isdir(".git") and not _inside_git("."):
            raise UsageError(f"--{side}-rev {ref.rev}: not inside a git repository; give --repo PATH")
        refs.append(ref)
    return refs[0], refs[1]


def _entry_of(spec: str | None) -> str | None:
    if not spec:
        return None
    _, sep, entry = spec.rpartition(":")
    return entry if sep and entry.isidentifier() else None


def _inside_git(path: str) -> bool:
    from equiv import git

    return git.succeeds(path, "rev-parse", "--git-dir")


def base_pair(args: argparse.Namespace, pre: SourceRef) -> KernelPair:
    if args.pair_file:
        pair = load_object(args.pair_file, "--pair-file")
        if not isinstance(pair, KernelPair):
            raise UsageError(f"--pair-file {args.pair_file}: {type(pair).__name__} is not a KernelPair")
    else:
        name = args.name or infer_pair_name(pre)
        try:
            pair = registry.get(name)
        except UnknownPairError as exc:
            raise UsageError(str(exc)) from None
    changes: dict[str, Any] = {}
    if args.reference:
        changes["reference"] = load_object(args.reference, "--reference")
    if args.inputs:
        fn = load_object(args.inputs, "--inputs")
        changes["recipes"] = {getattr(fn, "__name__", "inputs"): fn}
    if args.contract:
        changes["contract"] = parse_contract(args.contract)
    return dataclasses.replace(pair, **changes) if changes else pair


def repro_prefix(args: argparse.Namespace, base: KernelPair) -> str:
    parts = ["equiv", "check"]
    if not args.pair_file:
        parts.append(base.name)
    for opt in ("source", "pre_rev", "retiled_rev", "repo", "pre_source", "retiled_source", "bind", "pair_file",
                "reference", "inputs", "contract"):
        v = getattr(args, opt, None)
        if v is not None:
            parts += [f"--{opt.replace('_', '-')}", v]
    for c in args.config or ():
        parts += ["--config", c]
    return " ".join(shlex.quote(p) for p in parts)


# ----------------------------------------------------------------------------------------
# Running
# ----------------------------------------------------------------------------------------
def build(args: argparse.Namespace) -> tuple[KernelPair, KernelPair]:
    """(the base pair, the pair whose sides are the kernel files)."""
    try:
        pre, retiled = source_refs(args)
        base = base_pair(args, pre)
        bind = parse_assignments(args.bind, "--bind") if args.bind is not None else None
        config = parse_assignments(args.config, "--config")
        loader = SourceLoader()
        pair = source_pair(base, pre, retiled, bind={k: str(v) for k, v in bind.items()} if bind is not None else None,
                           config=config, loader=loader)
    except SourceError as exc:
        raise UsageError(str(exc)) from None
    return base, dataclasses.replace(pair, command=repro_prefix(args, base))


def preflight(pair: KernelPair, args: argparse.Namespace) -> None:
    """Load both files for the first shape both sides accept, so a missing file, revision,
    entry or override, or a module-level name the emulator lacks, stops with one message."""
    try:
        cases = plan(pair, args.shapes, 1 if args.shapes == "fuzz" else args.examples, args.seed, args.recipe,
                     fixed_from(args))
    except (ShapeError, ValueError, KeyError) as exc:
        raise UsageError(f"{pair.name}: {exc}") from None
    shape = next((c.shape for c in cases if not pair.rejection("pre", c.shape)
                  and not pair.rejection("retiled", c.shape)), None)
    if shape is None:
        return
    case = next(c for c in cases if c.shape == shape)
    try:
        provided = [*make_inputs(pair, case), *pair.outputs(shape)]
    except Exception:  # a recipe that fails is reported by the check itself
        provided = None
    for side in ("pre", "retiled"):
        try:
            fn = pair.kernel(side).load(shape)
            if provided is not None:
                match_parameters(fn, provided)
        except (SourceError, UnsupportedOpError, SyntaxError) as exc:
            raise UsageError(f"{side}: {exc}") from None


def kernel_errors(result: CheckResult) -> list[str]:
    return [e for r in result.results for e in r.errors.values()]


def run(args: argparse.Namespace) -> int:
    if not (args.source or args.pre_source or args.retiled_source):
        raise UsageError("--pre-rev/--retiled-rev/--bind/--config/--pair-file/--reference/--inputs/--contract "
                         "belong to source mode: give --source PATH:ENTRY (or --pre-source/--retiled-source)")
    if args.examples is not None and args.examples < 0:
        raise UsageError("--examples must be ≥ 0")
    _, pair = build(args)
    request = request_from(args, progress=Progress())
    preflight(pair, args)
    progress = request.progress
    try:
        result = check(pair, request)
    except (ShapeError, ValueError, KeyError) as exc:
        raise UsageError(f"{pair.name}: {exc}") from None
    progress.clear()
    write_results([result.to_dict()], args.json, args.report)
    print("\n".join(wrap(pair.description)))
    print(render(result))
    errors = kernel_errors(result)
    gaps = sorted(set(unsupported_in(errors)) | set(result.gaps()))
    binding = sorted({e for e in errors if e.startswith("SourceError")})
    if gaps or binding:
        print("\nequiv check: the kernel files could not be run as the pair needs, so these verdicts say "
              "nothing about the kernels:", file=sys.stderr)
        for e in gaps + binding:
            print(f"  {e}", file=sys.stderr)
        return 2
    return 1 if result.failed else 0
