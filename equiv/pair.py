"""What a kernel pair declares: two programs, a reference, inputs, shapes and a contract.

A pair is a frozen dataclass, so a variant is one call away::

    pair = equiv.get("moe.combine")
    broken = dataclasses.replace(pair, retiled=my_combine)
    result = equiv.check(broken, shapes="fuzz")
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import torch

from equiv.dtypes import DType
from equiv.shapes import Shape, ShapeSpace

Kernel = Callable[..., Any]
Reference = Callable[[Mapping[str, Any], Shape], Mapping[str, torch.Tensor]]
Recipe = Callable[[Shape, torch.Generator], dict[str, Any]]
Precondition = tuple[str, Callable[[Shape], bool]]


@dataclass(frozen=True)
class Contract:
    """What pre and retiled must agree to, per floating output.

    ``max_ulp == 0`` is bit-exact. Integer outputs are always compared exactly.
    """

    max_ulp: int = 0
    dtype: str = "bf16"

    def __post_init__(self) -> None:
        # Validated here so every way of building a contract (a pair's declaration, --contract in
        # check's source mode and in compare) rejects a bound or a dtype ULPs cannot be counted in.
        from equiv.numerics import format_of

        if isinstance(self.max_ulp, bool) or not isinstance(self.max_ulp, int) or self.max_ulp < 0:
            raise ValueError(f"contract max_ulp must be an integer ≥ 0, not {self.max_ulp!r}")
        try:
            fmt = format_of(self.dtype)
        except ValueError:
            raise ValueError(f"contract dtype {self.dtype!r}: ULPs are counted in bf16, fp16 or fp32") from None
        object.__setattr__(self, "dtype", fmt.name)

    @property
    def bit_exact(self) -> bool:
        return self.max_ulp == 0

    def __str__(self) -> str:
        return "bit-exact" if self.bit_exact else f"≤ {self.max_ulp} {self.dtype.upper()} ULP"


BIT_EXACT = Contract(0)


def within_ulp(n: int, dtype: str = "bf16") -> Contract:
    return Contract(n, dtype)


def parse_contract(text: str) -> Contract:
    """``bit-exact`` (or ``0``) or ``N[:DTYPE]`` (N ULP counted in DTYPE: bf16 default, fp16, fp32).

    Raises ValueError with a one-line message on anything else (``1:bogus``, ``-1``, ``x``).
    """
    t = text.strip().lower()
    if t in ("bit-exact", "bitexact", "exact", "0"):
        return BIT_EXACT
    n, sep, dtype = t.partition(":")
    n = n.removesuffix("ulp").removesuffix("-").strip()
    if not (n.isascii() and n.isdigit()) or (sep and not dtype.strip()):
        raise ValueError(f"contract {text!r}: expected bit-exact or N[:DTYPE], e.g. 1 or 1:bf16")
    try:
        return within_ulp(int(n), dtype.strip() or "bf16")
    except ValueError as exc:
        raise ValueError(f"contract {text!r}: {exc}") from None


@dataclass(frozen=True)
class KernelPair:
    """A pre-retile / retiled kernel pair and everything needed to check it.

    Attributes:
        name: registry name, e.g. ``"moe.combine"``.
        pre, retiled: the two tile programs, called as ``kernel(**inputs, **outputs, cfg=shape)``
            with inputs and outputs as emulator tensors (scalars stay Python numbers).
        reference: float64 reference: ``reference(inputs, shape) -> {output: float64 tensor}``,
            inputs as torch tensors.
        outputs: ``outputs(shape) -> {name: (shape, DType)}``.
        recipes: named input generators ``recipe(shape, generator) -> {name: tensor or scalar}``;
            the first is the realistic one.
        shapes: the shape space.
        contract: the bound the pair claims between pre and retiled.
        pre_requires, retiled_requires: preconditions each version asserts, as
            ``(message, predicate)``; a shape only one side rejects is reported.
        sweep: option values the check runs every case under, e.g.
            ``{"row_sum_order": ("sequential", "pairwise", "a2a3")}``.
        sources: files (repo-relative) the pair covers; a change to one selects this pair.
        accuracy_slack: how many ULP retiled's max error vs the reference may exceed pre's.
        description: one line for ``equiv list``.
        command: the command prefix that reruns this pair in a repro line (default
            ``equiv check NAME``); source mode sets one that names the kernel files.
    """

    name: str
    pre: Kernel
    retiled: Kernel
    reference: Reference
    outputs: Callable[[Shape], Mapping[str, tuple[Sequence[int], DType]]]
    recipes: Mapping[str, Recipe]
    shapes: ShapeSpace
    contract: Contract = BIT_EXACT
    pre_requires: Sequence[Precondition] = ()
    retiled_requires: Sequence[Precondition] = ()
    sweep: Mapping[str, Sequence[Any]] = field(default_factory=dict)
    sources: Sequence[str] = ()
    accuracy_slack: float = 1.0
    description: str = ""
    command: str = ""

    def kernel(self, side: str) -> Kernel:
        if side not in ("pre", "retiled"):
            raise ValueError(f"side must be 'pre' or 'retiled', not {side!r}")
        return self.pre if side == "pre" else self.retiled

    def requires(self, side: str) -> Sequence[Precondition]:
        return self.pre_requires if side == "pre" else self.retiled_requires

    def rejection(self, side: str, shape: Shape) -> str | None:
        """The first precondition of `side` that `shape` violates, or None."""
        for message, pred in self.requires(side):
            if not pred(shape):
                return message
        return None

    def source_hash(self, root: str | None = None) -> str:
        """SHA-256 over the pair's source files (a replay refuses a stale case)."""
        root = root or project_root()
        h = hashlib.sha256()
        for rel in sorted(self.sources):
            path = os.path.join(root, rel)
            files = [path] if os.path.isfile(path) else sorted(
                os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs if f.endswith(".py"))
            for p in files:
                h.update(os.path.relpath(p, root).encode())
                with open(p, "rb") as fh:
                    h.update(fh.read())
        return h.hexdigest()


def project_root() -> str:
    """The directory holding ``equiv/``, ``kernels/`` and ``reference/``."""
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
