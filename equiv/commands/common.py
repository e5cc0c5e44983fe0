"""Argument handling shared by subcommands: pair lookup, device, options, the check request."""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from typing import Any, Mapping, Sequence

from equiv import atomic
from equiv import registry
from equiv.errors import UnknownPairError, UsageError
from equiv.options import ROW_SUM_ORDERS, Options
from equiv.pair import KernelPair
from equiv.request import CheckRequest


def add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="cpu", help="torch device to emulate on: cpu (default) or cuda")
    p.add_argument("--row-sum-order", choices=ROW_SUM_ORDERS,
                   help="pin one row_sum order model (default: the pair's sweep, else a2a3)")
    p.add_argument("--one-by-one", action="store_true",
                   help="run the blocks of every parallel stage one at a time instead of batched "
                        "(same results, slower; for comparing the two)")
    p.add_argument("--schedules", type=int, default=2, metavar="K",
                   help="run each version of each case under K schedules (block orders, atomic-add "
                        "arrival, rank turns); an output whose bits differ between them is "
                        "nondeterministic (default 2; 1 turns the check off)")
    p.add_argument("--second-poison-run", choices=("auto", "always"), default="auto",
                   help="auto (default): leave out a version's patterned-poison run where it cannot "
                        "differ (one schedule, its NaN-poison run raised nothing and read no "
                        "uninitialised memory); always: run it every time (same results)")
    p.add_argument("--variant-processes", choices=("auto", "off"), default="auto",
                   help="auto (default): make a version's schedule runs in child processes beside its "
                        "first run where a CPU is free and the inputs are 16 MiB to 1 GiB; off: every run "
                        "in this process (same results)")
    p.add_argument("--detectors", metavar="NAMES",
                   help="comma-separated detectors the runs have (default: every one: races, rank-races, "
                        "out-of-range, decisions, cache-lines, attribution; docs/observers.md)")


def resolve_pair(name: str) -> KernelPair:
    try:
        return registry.get(name)
    except UnknownPairError as exc:
        raise UsageError(str(exc)) from None


def options_from(args: argparse.Namespace) -> Options:
    device = args.device
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise UsageError(f"--device {device}: no CUDA device is available to torch on this machine "
                             f"(torch {torch.__version__}); run with --device cpu")
    elif device != "cpu":
        raise UsageError(f"--device {device!r}: expected cpu or cuda")
    schedules = getattr(args, "schedules", 2)
    if schedules < 1:
        raise UsageError(f"--schedules {schedules}: expected 1 or more (1 runs one schedule, no nondeterminism check)")
    detectors = getattr(args, "detectors", None)
    chosen = tuple(n.strip() for n in detectors.split(",") if n.strip()) if detectors is not None else None
    options = Options(device=device, batch_blocks=not getattr(args, "one_by_one", False), schedules=schedules,
                      detectors=chosen, second_poison_run=getattr(args, "second_poison_run", "auto"),
                      variant_processes=getattr(args, "variant_processes", "auto"))
    from equiv.observe import clients

    try:
        clients.validate(options)
    except ValueError as exc:
        raise UsageError(f"--detectors {detectors}: {exc}") from None
    return options


def request_from(args: argparse.Namespace, **more: Any) -> CheckRequest:
    """The check request the arguments ask for (shapes, examples, seed, recipes, options, pinned
    options); `more` sets the fields a command decides itself (progress, budgets, shard...)."""
    fields: dict[str, Any] = dict(shapes=args.shapes, examples=args.examples, seed=args.seed,
                                  recipes=args.recipe, options=options_from(args), fixed=fixed_from(args))
    fields.update(more)
    return CheckRequest(**fields)


def fixed_from(args: argparse.Namespace) -> dict[str, Any]:
    return {"row_sum_order": args.row_sum_order} if getattr(args, "row_sum_order", None) else {}


def write_json_atomic(path: str, data: Any) -> None:
    """Write JSON so that an interrupted run never leaves a half-written file."""
    write_text_atomic(path, json.dumps(data, indent=1, default=str))


def write_text_atomic(path: str, text: str) -> None:
    atomic.write_text(path, text)


def check_output_paths(paths: Mapping[str, str | None], directories: Sequence[str] = ()) -> None:
    """Refuse, before anything runs, output paths a run could not write at its end.

    `paths` maps an option (``--json``) to its value (None/'' = not asked for); options named in
    `directories` take a folder (created if missing, but only inside an existing one). Each
    writable place is probed by creating and removing a temporary file, since permission bits
    say nothing for root or read-only mounts. Nothing is left behind."""
    seen: dict[str, str] = {}
    for option, path in paths.items():
        if not path:
            continue
        full = os.path.abspath(path)
        if full in seen:
            raise UsageError(f"{option} {path}: also given to {seen[full]}; give each output its own path")
        seen[full] = option
        if option in directories:
            if os.path.exists(full) and not os.path.isdir(full):
                raise UsageError(f"{option} {path}: exists and is not a directory")
            place = full if os.path.isdir(full) else os.path.dirname(full)
        else:
            if os.path.isdir(full):
                raise UsageError(f"{option} {path}: is a directory; give a file path")
            place = os.path.dirname(full)
        if not os.path.isdir(place):
            what = "exists but is not a directory" if os.path.exists(place) else "does not exist"
            raise UsageError(f"{option} {path}: the directory {os.path.dirname(path) or place} {what}")
        try:
            fd, probe = tempfile.mkstemp(dir=place, prefix=".equiv-probe-")
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise UsageError(f"{option} {path}: cannot write in {place} ({exc.strerror or exc})") from None


def results_document(checks: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The results JSON every subcommand writes (input of `equiv report`)."""
    from equiv.results_files import SCHEMA_VERSION

    return {"schema_version": SCHEMA_VERSION, "checks": list(checks)}
