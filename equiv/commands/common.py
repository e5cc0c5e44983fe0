"""Argument handling shared by subcommands: pair lookup, device, options."""

from __future__ import annotations

import argparse
import json
from typing import Any

from equiv import atomic, registry
from equiv.cli import UsageError
from equiv.options import ROW_SUM_ORDERS, Options
from equiv.pair import KernelPair


def add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="cpu", help="torch device to emulate on: cpu (default) or cuda")
    p.add_argument("--row-sum-order", choices=ROW_SUM_ORDERS,
                   help="pin one row_sum order model (default: the pair's sweep, else a2a3)")


def resolve_pair(name: str) -> KernelPair:
    try:
        return registry.get(name)
    except registry.UnknownPairError as exc:
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
    return Options(device=device)


def fixed_from(args: argparse.Namespace) -> dict[str, Any]:
    return {"row_sum_order": args.row_sum_order} if getattr(args, "row_sum_order", None) else {}


def write_json_atomic(path: str, data: Any) -> None:
    """Write JSON so that an interrupted run never leaves a half-written file."""
    write_text_atomic(path, json.dumps(data, indent=1, default=str))


def write_text_atomic(path: str, text: str) -> None:
    atomic.write_text(path, text)
