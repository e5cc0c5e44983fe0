"""Golden audit: is a model file's golden further from the exact result than its kernel?

pypto-lib fixes goldens by hand (ties rounded away from zero where the kernel rounds to even,
reductions in another order or dtype). For one entry at the file's own shapes this compares

* the golden **as written** (what the device test compares against),
* a **float64** run of the same golden — promoted when it never narrows itself, else
  **widened**: its narrowing casts (``.float()``, ``.to(bf16)``, ``dtype=torch.float32`` in
  factories) keep float64 while it runs — and
* the kernel's emulated output,

and reports ``golden suspect`` where the golden differs from the kernel and is the further of
the two from float64, with the elements, the size of the gap and the likely cause: the rounding
mode (the two are neighbours whose midpoint is the value: a tie; the golden took the odd,
away-from-zero one), the accumulation dtype (the golden is several units off), or the order of
a reduction (otherwise). A golden that reinterprets bits (``.view(torch.int32)``) cannot be
widened; then only the tie signature is looked for, and where golden and kernel differ otherwise
the line says ``undecided``.
"""

from __future__ import annotations

import contextlib
import re
import types
from dataclasses import dataclass, field
from typing import Any, Iterator

import torch

from equiv import numerics
from equiv.pairfree import contract as fc
from equiv.pairfree.reference import _tensors


_NARROW = (torch.float32, torch.float16, torch.bfloat16)
_FACTORIES = ("zeros", "ones", "empty", "full", "tensor", "as_tensor", "zeros_like", "ones_like", "empty_like",
              "full_like", "arange", "linspace", "rand", "randn")


def _wide(d: Any) -> Any:
    return torch.float64 if isinstance(d, torch.dtype) and d in _NARROW else d


@contextlib.contextmanager
def widened() -> Iterator[None]:
    """While inside, narrowing casts and float32/bf16/fp16 factories give float64 instead."""
    T = torch.Tensor
    saved = {name: getattr(T, name) for name in ("to", "float", "half", "bfloat16", "type")}
    factories = {name: getattr(torch, name) for name in _FACTORIES}

    def to(self: torch.Tensor, *args: Any, **kw: Any) -> torch.Tensor:
        args = tuple(_wide(a) for a in args)
        if "dtype" in kw:
            kw["dtype"] = _wide(kw["dtype"])
        return saved["to"](self, *args, **kw)

    def type_(self: torch.Tensor, dtype: Any = None, *args: Any, **kw: Any) -> Any:
        return saved["type"](self) if dtype is None else saved["type"](self, _wide(dtype), *args, **kw)

    def factory(fn: Any) -> Any:
        def make(*args: Any, **kw: Any) -> Any:
            if "dtype" in kw:
                kw["dtype"] = _wide(kw["dtype"])
            return fn(*args, **kw)
        return make

    try:
        T.to = to  # type: ignore[method-assign]
        T.float = T.half = T.bfloat16 = lambda self, *a, **k: saved["to"](self, torch.float64)  # type: ignore
        T.type = type_  # type: ignore[method-assign]
        for name, fn in factories.items():
            setattr(torch, name, factory(fn))
        yield
    finally:
        for name, fn in saved.items():
            setattr(T, name, fn)
        for name, fn in factories.items():
            setattr(torch, name, fn)


@contextlib.contextmanager
def float_bit_views() -> Iterator[list[torch.Tensor]]:
    """While inside, every float32 tensor reinterpreted as int32 (``x.view(torch.int32)``, how a
    golden rounds by hand) is kept: the value before the golden's own rounding."""
    seen: list[torch.Tensor] = []
    view = torch.Tensor.view

    def recording(self: torch.Tensor, *args: Any, **kw: Any) -> torch.Tensor:
        if len(args) == 1 and args[0] is torch.int32 and self.dtype == torch.float32:
            seen.append(self.detach().clone())
        return view(self, *args, **kw)

    torch.Tensor.view = recording  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        torch.Tensor.view = view  # type: ignore[method-assign]


def _away(x: torch.Tensor) -> torch.Tensor:
    """float32 -> bfloat16 rounding half away from zero, on the bit pattern."""
    bits = (x.contiguous().view(torch.int32) + 0x8000) & -0x10000
    return bits.view(torch.float32)


def pre_rounding(golden: torch.Tensor, seen: list[torch.Tensor]) -> torch.Tensor | None:
    """Of the float32 values a golden reinterpreted as bits, the one its BF16 output is the
    half-away rounding of (the golden's value before it rounded), shaped as the output."""
    if golden.dtype != torch.bfloat16:
        return None
    g = golden.to(torch.float32).flatten()
    for t in seen:
        if t.numel() == g.numel() and bool((_away(t.flatten()) == g).all()):
            return t.reshape(golden.shape)
    return None


def float64_run(call: Any, inputs: Any, how: str) -> tuple[dict[str, torch.Tensor] | None, str]:
    """The golden in float64 (promoted when faithful, else widened), and how (or why not)."""
    try:
        tensors = _tensors(call, inputs, promote=True)
        if how == "float64":
            call.golden_fn(tensors)
            label = "promoted to float64"
        else:
            with widened():
                call.golden_fn(tensors)
            label = "widened to float64 (its narrowing casts kept float64)"
    except Exception as exc:  # noqa: BLE001 - a golden that cannot run wide (bit reinterpretation, …)
        text = str(exc).splitlines()[0] if str(exc) else ""
        text = text if len(text) <= 160 else text[:157] + "…"
        return None, f"no float64 run of the golden (it fails when widened: {type(exc).__name__}: {text})"
    outs = fc.output_specs(call)
    return {n: tensors[n].to(torch.float64) for n in outs}, label


@dataclass
class Suspect:
    output: str
    count: int
    elements: list  # [i, j, ...] per element, or "seed N [i, j]" over several seeds
    gap: float       # the largest (golden − kernel) distance from float64, in units of the output dtype
    cause: str
    gap_text: str = ""  # said instead of the gap where the gap is not a distance from float64

    def text(self) -> str:
        at = ", ".join(str(e) for e in self.elements[:4]) + (" …" if self.count > 4 else "")
        gap = self.gap_text or (f"{self.gap:.3g} ULP further from float64 than the kernel" if self.gap == self.gap
                                else "the float64 value is not known")
        return f"{self.output}: {self.count} element(s) at {at}; {gap}; likely cause: {self.cause}"


@dataclass
class AuditResult:
    entry: str
    mode: str
    reference: str
    suspects: list[Suspect] = field(default_factory=list)
    differing: dict[str, int] = field(default_factory=dict)  # output -> elements golden != kernel
    error: str = ""

    @property
    def verdict(self) -> str:
        if self.error:
            return "cannot audit"
        if self.suspects:
            return "golden suspect"
        if any(self.differing.values()) and self.reference.startswith("no float64"):
            return "undecided"  # they differ and nothing says which is closer to the exact value
        return "golden agrees"

    def line(self) -> str:
        if self.error:
            return f"{self.entry} [{self.mode}]: cannot audit — {self.error}"
        diff = ", ".join(f"{k} {v}" for k, v in self.differing.items() if v) or "none"
        head = f"{self.entry} [{self.mode}]: {self.verdict} — golden ≠ kernel elements: {diff}; float64: {self.reference}"
        return head + "".join(f"; {s.text()}" for s in self.suspects)


def _odd(x: torch.Tensor, fmt: Any) -> torch.Tensor:
    """Whether the last mantissa bit of `x` (a value of format `fmt`) is set."""
    ulp = numerics.ulp_of(x, fmt)
    return torch.remainder(torch.round(x.abs() / ulp), 2) == 1


MANUAL_ROUNDING = re.compile(r"\.view\(\s*torch\.u?int(16|32)\s*\)|0x8000|0x7fff|-0x10000|0xffff0000", re.IGNORECASE)


def rounds_by_hand(golden: Any) -> str:
    """The golden's own rounding by bit manipulation (``(bits + 0x8000) & -0x10000``), if any: the
    text found, in it or a module-level function it calls."""
    from equiv.pairfree.reference import _source

    module_globals = getattr(golden, "__globals__", {})
    seen: set[str] = set()
    todo = [golden]
    while todo:
        fn = todo.pop()
        if getattr(fn, "__name__", "?") in seen:
            continue
        seen.add(getattr(fn, "__name__", "?"))
        text = _source(fn)
        m = MANUAL_ROUNDING.search(text)
        if m:
            return f"{fn.__name__}: {m.group(0)}"
        for ident in set(re.findall(r"\b([A-Za-z_]\w*)\s*\(", text)):
            obj = module_globals.get(ident)
            if isinstance(obj, types.FunctionType) and obj.__globals__ is module_globals:
                todo.append(obj)
    return ""


def judge_output(name: str, golden: torch.Tensor, kernel: torch.Tensor, wide: torch.Tensor | None,
                 written: torch.Tensor | None = None, by_hand: str = "",
                 before: torch.Tensor | None = None) -> tuple[int, Suspect | None]:
    """(elements where golden ≠ kernel, the suspect finding or None) for one output.

    Flagged: elements where the golden is more than one unit of the output's dtype further from
    float64 than the kernel; and, in a BF16/FP16 output of a golden that rounds by hand
    (`by_hand`), ties: neighbours whose midpoint is the float64 value (or, without one, whose
    golden side is the odd, away-from-zero one), the golden having rounded away from zero where
    the kernel rounded to nearest even."""
    if not kernel.dtype.is_floating_point:
        return int((golden.to(kernel.dtype) != kernel).sum()), None
    fmt = numerics.format_of(kernel.dtype)
    g = golden.to(kernel.dtype).to(torch.float64)
    k = kernel.to(torch.float64)
    mask = (g != k) & torch.isfinite(g) & torch.isfinite(k)
    if written is not None:
        mask &= written
    n = int(mask.sum())
    if not n:
        return 0, None
    ulp = numerics.ulp_of(torch.maximum(g.abs(), k.abs()), fmt)
    if before is not None:
        # The golden's own value before it rounded: an exact float32 tie it rounded away from
        # zero, where round-to-nearest-even (the kernel's value) was right.
        low = before.contiguous().view(torch.int32) & 0xFFFF
        ties = mask & (low == 0x8000) & (k == before.to(torch.bfloat16).to(torch.float64))
        if bool(ties.any()):
            first = tuple(int(i) for i in ties.nonzero()[0])
            cause = (f"rounding mode — at {int(ties.sum())} exact float32 ties of its own value (e.g. "
                     f"{float(before[first]):.9g} at {list(first)}: golden {float(g[first]):.9g}, "
                     f"round-to-nearest-even {float(k[first]):.9g}) the golden rounds half away from zero "
                     f"({by_hand}) where the kernel rounds to nearest even")
            return n, Suspect(name, int(ties.sum()), ties.nonzero()[:8].tolist(), 1.0, cause,
                              "1 ULP off the correctly rounded value of its own float32 result")
    narrow = kernel.dtype in (torch.bfloat16, torch.float16)
    signature = ((g - k).abs() <= ulp) & (g.abs() > k.abs()) & _odd(g, fmt) & ~_odd(k, fmt)
    signature &= mask if (narrow and by_hand) else torch.zeros_like(mask)
    tie_cause = f"rounding mode — ties rounded away from zero (the golden rounds by hand: {by_hand}) " \
                f"where the kernel rounds to nearest even"
    if wide is not None:
        w = wide.to(torch.float64)
        further = ((g - w).abs() - (k - w).abs()) / ulp
        mid = (g + k) / 2
        tie = signature & ((w - mid).abs() <= numerics.ulp_of(mid, numerics.format_of(torch.float32)))
        bad = mask & ((further > 1) | tie)
        if not bool(bad.any()):
            return n, None
        gap = float(further[bad].max())
        if bool(tie[bad].all()):
            cause = tie_cause
        elif gap > 2:
            cause = "accumulation dtype — the golden is several units off where the kernel is not"
        else:
            cause = "order — a reduction summed in another order"
    else:
        # No float64 value: only the tie signature speaks, and only when it is not noise (a
        # one-unit difference of another cause looks like it one time in four).
        bad = signature
        one_unit = int((mask & ((g - k).abs() <= ulp)).sum())
        if not bool(bad.any()) or 2 * int(bad.sum()) <= one_unit:
            return n, None
        gap = float("nan")
        cause = tie_cause + " (each flagged element is the odd, away-from-zero neighbour of the kernel's value)"
    idx = bad.nonzero()[:8].tolist()
    return n, Suspect(name, int(bad.sum()), idx, gap, cause)
