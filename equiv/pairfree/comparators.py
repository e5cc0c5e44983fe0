"""The comparison helpers of pypto-lib's ``golden`` package, as the recording stand-in serves them.

A model file's ``run_jit(..., compare_fn={"out": ratio_allclose(atol=..., rtol=...)})`` names
the comparison that decides its device test. The stand-in hands out these implementations, so
the recorded ``compare_fn`` can be run on emulated outputs (`equiv.pairfree.contract`). They
follow the documented semantics of the harness (same signature, same pass rule); each returns
``(passed, detail)`` and records its worst element in ``detail``'s first line.

Helpers not modelled here stay inert markers (`unmodelled`): the file's test of that output is
reported as not predicted, never as a pass.
"""

from __future__ import annotations

from typing import Any, Callable

import torch


def _index(shape: torch.Size, flat: int) -> list[int]:
    return [int(i) for i in torch.unravel_index(torch.tensor(flat), tuple(shape))] if len(shape) else []


def _prefix(actual: torch.Tensor, expected: torch.Tensor, valid_rows: int | None, valid_axis: int,
            zero_tail: bool) -> tuple[torch.Tensor, torch.Tensor, str]:
    """The leading `valid_rows` along `valid_axis` (all of it when None); with `zero_tail` the
    dropped part must be zero."""
    if valid_rows is None:
        return actual, expected, ""
    total = actual.shape[valid_axis]
    if not 0 <= valid_rows <= total:
        return actual, expected, f"valid_rows={valid_rows} is outside axis {valid_axis} of length {total}"
    if zero_tail:
        nonzero = int(actual.narrow(valid_axis, valid_rows, total - valid_rows).count_nonzero())
        if nonzero:
            return actual, expected, f"the tail past valid_rows={valid_rows} holds {nonzero} nonzero values"
    return actual.narrow(valid_axis, 0, valid_rows), expected.narrow(valid_axis, 0, valid_rows), ""


def _nonfinite(actual: torch.Tensor, expected: torch.Tensor) -> str:
    counts = [(label, int(torch.isnan(t).sum()), int(torch.isinf(t).sum()))
              for label, t in (("actual", actual), ("expected", expected))]
    if not any(n or i for _, n, i in counts):
        return ""
    return "non-finite values: " + "; ".join(f"{label} NaN={n} Inf={i}" for label, n, i in counts)


def _compared(actual: torch.Tensor, expected: torch.Tensor, valid_rows: int | None, valid_axis: int,
              zero_tail: bool) -> tuple[torch.Tensor, torch.Tensor, str]:
    """The region a comparator judges, as float32 on the CPU, or why it fails before any
    tolerance applies (a bad valid_rows, a nonzero tail, a non-finite value)."""
    a, e, why = _prefix(actual, expected, valid_rows, valid_axis, zero_tail)
    if why or a.numel() == 0:
        return a, e, why
    a, e = a.cpu().to(torch.float32), e.cpu().to(torch.float32)
    return a, e, _nonfinite(a, e)


def worst_text(actual: torch.Tensor, expected: torch.Tensor, diff: torch.Tensor, tol: torch.Tensor | None) -> str:
    flat = int(torch.argmax(diff.flatten()))
    at = _index(diff.shape, flat)
    a, e = float(actual.flatten()[flat]), float(expected.flatten()[flat])
    text = f"worst at {at}: emulated {a:.8g}, golden {e:.8g}, |diff| {float(diff.flatten()[flat]):.4g}"
    return text + (f" (tol {float(tol.flatten()[flat]):.4g})" if tol is not None else "")


def allclose(actual: torch.Tensor, expected: torch.Tensor, rtol: float, atol: float) -> tuple[bool, str]:
    """``torch.allclose`` (the harness's default for an output without a ``compare_fn``)."""
    a, e = actual.cpu(), expected.cpu()
    if a.dtype != e.dtype:
        e = e.to(a.dtype)
    ok = bool(torch.allclose(a, e, rtol=rtol, atol=atol))
    if ok:
        return True, ""
    af, ef = a.double(), e.double()
    close = torch.isclose(a, e, rtol=rtol, atol=atol)
    diff = torch.where(close, torch.zeros_like(af), (af - ef).abs().nan_to_num(float("inf")))
    return False, (f"{int((~close).sum())} of {a.numel()} elements outside atol {atol:g} + rtol {rtol:g}·|golden|; "
                   + worst_text(af, ef, diff, atol + rtol * ef.abs()))


def ratio_allclose(atol: float | None = None, rtol: float | None = None, max_error_ratio: float = 0.005,
                   max_show: int = 10, valid_rows: int | None = None, valid_axis: int = 0,
                   zero_tail: bool = False) -> Callable:
    """Pass when at most ``round(max_error_ratio · n)`` elements have |a − e| > atol + rtol·|e|;
    any NaN/Inf fails; atol/rtol default to the run's."""
    if not 0.0 <= max_error_ratio <= 1.0:
        raise ValueError(f"max_error_ratio must be in [0, 1], got {max_error_ratio}")

    def cmp(actual: torch.Tensor, expected: torch.Tensor, *, rtol: float = 1e-5, atol: float = 1e-5,
            **_: Any) -> tuple[bool, str]:
        at = atol if cmp.atol_override is None else cmp.atol_override
        rt = rtol if cmp.rtol_override is None else cmp.rtol_override
        a, e, why = _compared(actual, expected, valid_rows, valid_axis, zero_tail)
        if why:
            return False, why
        if a.numel() == 0:
            return True, ""
        diff = (a - e).abs()
        tol = at + rt * e.abs()
        bad = int((diff > tol).sum())
        allowed = round(max_error_ratio * a.numel())
        if bad <= allowed:
            return True, ""
        return False, (f"{bad} of {a.numel()} elements outside atol {at:g} + rtol {rt:g}·|golden| "
                       f"(allowed {allowed}); " + worst_text(a, e, diff, tol))

    cmp.atol_override = atol  # type: ignore[attr-defined]
    cmp.rtol_override = rtol  # type: ignore[attr-defined]
    cmp.__name__ = (f"ratio_allclose(atol={atol}, rtol={rtol}, max_error_ratio={max_error_ratio}"
                    + (f", valid_rows={valid_rows}, valid_axis={valid_axis}, zero_tail={zero_tail}"
                       if valid_rows is not None else "") + ")")
    return cmp


def ratio_reldiff(diff_thd: float = 0.01, pct_thd: float = 0.05, max_diff_hd: float = float("inf"),
                  max_show: int = 10, valid_rows: int | None = None, valid_axis: int = 0,
                  zero_tail: bool = False) -> Callable:
    """Relative difference with a floor on the denominator: an element is bad when it exceeds
    `diff_thd`; pass when at most ``round(pct_thd · n)`` are bad and the worst is below `max_diff_hd`."""

    def cmp(actual: torch.Tensor, expected: torch.Tensor, **_: Any) -> tuple[bool, str]:
        a, e, why = _compared(actual, expected, valid_rows, valid_axis, zero_tail)
        if why:
            return False, why
        if a.numel() == 0:
            return True, ""
        diff = (a - e).abs()
        floor = torch.full_like(a, (1.0 / (1 << 14)) / diff_thd)
        denom = torch.maximum(torch.maximum(a.abs(), e.abs()), floor) + 1e-9
        rdiff = torch.where(diff < diff_thd, diff, diff / denom)
        bad = rdiff > diff_thd
        n_bad = int(bad.sum())
        worst = float(rdiff[bad].max()) if n_bad else 0.0
        allowed = round(pct_thd * a.numel())
        if n_bad <= allowed and worst < max_diff_hd:
            return True, ""
        return False, (f"{n_bad} of {a.numel()} elements with relative difference > {diff_thd:g} (allowed "
                       f"{allowed}, worst {worst:.4g}, cap {max_diff_hd:g}); " + worst_text(a, e, rdiff, None))

    cmp.__name__ = f"ratio_reldiff(diff_thd={diff_thd}, pct_thd={pct_thd}, max_diff_hd={max_diff_hd})"
    return cmp


def error_distribution(diff_thds: Any = None, quantiles: Any = None, always_pass: bool = True) -> Callable:
    """A measuring comparator: passes, unless `always_pass` is off and a value is NaN/Inf."""

    def cmp(actual: torch.Tensor, expected: torch.Tensor, **_: Any) -> tuple[bool, str]:
        a = actual.cpu().to(torch.float32)
        bad = int((~torch.isfinite(a)).sum())
        if bad and not always_pass:
            return False, f"{bad} non-finite values in the output"
        return True, ""

    cmp.__name__ = f"error_distribution(always_pass={always_pass})"
    return cmp


def mapped_pool_ratio_allclose(mapping_name: str, *, mapping_shape: tuple, block_size: int,
                               leading_rank_axis: bool = False, pool_name: str = "pool", atol: float | None = None,
                               rtol: float | None = None, max_error_ratio: float = 0.005) -> Callable:
    """Rows of a block-major pool named by the input `mapping_name` (−1: none) compared with
    `ratio_allclose`; every other row must equal the golden exactly."""
    inner = ratio_allclose(atol=atol, rtol=rtol, max_error_ratio=max_error_ratio)

    def cmp(actual: torch.Tensor, expected: torch.Tensor, **kw: Any) -> tuple[bool, str]:
        if actual.shape != expected.shape:
            return False, f"{pool_name} shape {tuple(actual.shape)} differs from the golden's {tuple(expected.shape)}"
        mapping = (kw.get("inputs") or {}).get(mapping_name)
        if not isinstance(mapping, torch.Tensor):
            return False, f"the comparison needs the input {mapping_name!r}"
        ranks = int(mapping_shape[0]) if leading_rank_axis else 1
        lead = 2 if leading_rank_axis else 1
        rows = int(torch.tensor(actual.shape[:lead]).prod()) * block_size // ranks
        a = actual.cpu().reshape(ranks, rows, -1)
        e = expected.cpu().reshape(ranks, rows, -1)
        m = mapping.cpu().to(torch.int64).reshape(ranks, -1)
        if bool((m < -1).any()) or bool((m >= rows).any()):
            return False, f"{mapping_name} holds a row outside [-1, {rows})"
        mapped = torch.zeros(ranks, rows, dtype=torch.bool)
        for r in range(ranks):
            mapped[r, m[r][m[r] >= 0]] = True
        stray = ~mapped & ~(a == e).all(dim=-1)
        if bool(stray.any()):
            r, row = (int(i) for i in stray.nonzero()[0])
            return False, f"unmapped {pool_name} row {row} (rank {r}) differs from the golden"
        if not bool(mapped.any()):
            return True, ""
        ok, detail = inner(a[mapped], e[mapped], **kw)
        return ok, "" if ok else f"mapped rows of {pool_name}: {detail}"

    cmp.__name__ = f"mapped_pool_ratio_allclose(mapping={mapping_name}, atol={atol}, rtol={rtol})"
    return cmp


class Unmodelled:
    """A comparison helper equiv does not model: calling it builds another marker, so the output
    it guards is reported as not predicted."""

    def __init__(self, name: str):
        self.__name__ = name

    def __call__(self, *args: Any, **kwargs: Any) -> "Unmodelled":
        return self


MODELLED: dict[str, Callable] = {
    "ratio_allclose": ratio_allclose,
    "ratio_reldiff": ratio_reldiff,
    "error_distribution": error_distribution,
    "mapped_pool_ratio_allclose": mapped_pool_ratio_allclose,
}
