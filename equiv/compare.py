"""Per-output comparison of pre, retiled and the float64 reference, and the verdict.

Verdicts (DESIGN.md):

``equivalent``   pre and retiled agree within the contract, both cover every element, and
                 retiled is no less accurate against the reference than pre
``regression``   the retiled version breaks the contract where pre honours it: different bits,
                 more ULP than allowed, elements unwritten or dependent on uninitialised memory
                 that pre got right, an exception, a memory hazard (out-of-range access, race)
                 that pre does not have, or an accuracy drop against the float64 reference
``pre-defect``   pre has defective elements and retiled is right: the retile fixed something
``both-defect``  both versions leave defective elements (retiled adds none of its own)
``rejected``     the shape is outside a version's declared preconditions

Hazards (out-of-range accesses and races) are judged separately from values: a hazard the
retiled version introduces is a regression; a hazard pre already has is reported as a
finding of pre without changing the verdict of values that agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from equiv import numerics
from equiv.pair import Contract
from equiv.results import OutputResult


@dataclass
class SideRun:
    """One version run on one case (merged over its two poison runs)."""

    side: str
    outputs: dict[str, torch.Tensor] = field(default_factory=dict)   # native dtype, CPU
    written: dict[str, torch.Tensor] = field(default_factory=dict)   # bool masks
    poisoned: dict[str, torch.Tensor] = field(default_factory=dict)  # differs between poison runs
    # Differs between schedules (equiv.schedules), its per-element spread (ULP; integers: |a − b|),
    # the order-dependent operations the runs executed and how many schedules ran.
    nondeterministic: dict[str, torch.Tensor] = field(default_factory=dict)
    spread: dict[str, torch.Tensor] = field(default_factory=dict)
    order_ops: list[dict] = field(default_factory=list)
    order_free: dict[str, torch.Tensor] = field(default_factory=dict)  # tensor -> added to by 2+ blocks
    schedules: int = 1
    hazards: list[dict] = field(default_factory=list)
    error: str | None = None
    rejected: str | None = None
    gap: str | None = None  # the emulator lacks an op or form this version uses (cannot judge)
    # Whether the patterned-poison run ran, and why ({"ran": bool, "why": text}; equiv.runner).
    poison_run: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------------------
# Regions and histograms
# ----------------------------------------------------------------------------------------
def _count(mask: torch.Tensor) -> int:
    """Set elements of a bool mask (count_nonzero: many times faster than sum on CPU)."""
    return int(torch.count_nonzero(mask))


def _any(mask: torch.Tensor) -> bool:
    return _count(mask) > 0


def _ranges(flags: torch.Tensor) -> list[list[int]]:
    idx = flags.nonzero().flatten().tolist()
    out: list[list[int]] = []
    for i in idx:
        if out and out[-1][1] == i:
            out[-1][1] = i + 1
        else:
            out.append([i, i + 1])
    return out


def region(mask: torch.Tensor, dim_names: tuple[str, ...] = ()) -> dict[str, Any]:
    """Describe the set elements of `mask` as index ranges.

    Product-shaped sets (e.g. rows 8..9 × every column) are given exactly as per-dimension
    ranges; other sets as a bounding box plus a count.
    """
    mask = mask.to("cpu")
    count = _count(mask)
    if count == 0:
        return {"count": 0}
    ndim = mask.dim()
    per_dim = []
    for d in range(ndim):
        other = tuple(x for x in range(ndim) if x != d)
        per_dim.append(mask.any(dim=other) if other else mask)
    product = per_dim[0]
    for d in range(1, ndim):
        product = product.unsqueeze(-1) & per_dim[d].view(*([1] * d), -1)
    exact = bool((product == mask).all())
    ranges = [_ranges(f) for f in per_dim]
    names = dim_names or tuple(f"dim{d}" for d in range(ndim))
    if exact:
        text = " × ".join(
            f"{n} " + ", ".join(f"[{a}, {b})" for a, b in r)
            if not (len(r) == 1 and r[0] == [0, mask.shape[d]]) else f"all {n}"
            for d, (n, r) in enumerate(zip(names, ranges)))
    else:
        box = [[r[0][0], r[-1][1]] for r in ranges]
        text = f"{count} elements within " + " × ".join(f"{n} [{a}, {b})" for n, (a, b) in zip(names, box))
    return {"count": count, "exact": exact, "ranges": ranges, "text": text,
            "shape": list(mask.shape)}


def coverage_map(mask: torch.Tensor, max_rows: int = 48, max_cols: int = 96) -> list[list[float]]:
    """Fraction of set elements per cell of a coarse grid over the mask viewed as 2-D."""
    m = mask.to("cpu").reshape(mask.shape[0] if mask.dim() else 1, -1).to(torch.float64)
    rows, cols = m.shape
    rb, cb = -(-rows // max_rows), -(-cols // max_cols)
    pr, pc = -(-rows // rb) * rb - rows, -(-cols // cb) * cb - cols
    m = torch.nn.functional.pad(m, (0, pc, 0, pr), value=0.0)
    cells = m.reshape(m.shape[0] // rb, rb, m.shape[1] // cb, cb).mean(dim=(1, 3))
    return [[round(float(v), 3) for v in row] for row in cells]


def ulp_bucket_label(b: int) -> str:
    if b <= 2:
        return str(b)
    return f"{2 ** (b - 2) + 1}-{2 ** (b - 1)}"


def ulp_histogram(dist: torch.Tensor) -> dict[str, int]:
    """Counts of pre↔retiled ULP distances in power-of-two buckets, plus NaN/Inf mismatches."""
    if dist.numel() and bool((dist >= 0).all()):
        # Distances 0, 1 and 2 are buckets of their own, counted in one pass; only larger
        # ones need their bucket computed.
        low = torch.bincount(dist.reshape(-1).clamp(max=3), minlength=4).tolist()
        hist = {str(b): int(low[b]) for b in range(3) if low[b]}
        if low[3]:
            mism = dist >= numerics.MISMATCH
            hist.update(_far_buckets(dist[(dist > 2) & ~mism]))
            if _count(mism):
                hist["NaN/Inf mismatch"] = _count(mism)
        return hist
    return _ulp_histogram_any(dist)


def _far_buckets(d: torch.Tensor) -> dict[str, int]:
    """Buckets of distances above 2 (below MISMATCH), in ascending order."""
    hist: dict[str, int] = {}
    if d.numel():
        bucket = torch.floor(torch.log2((d - 1).double())).long() + 2
        counts = torch.bincount(bucket)
        for v in counts.nonzero().flatten().tolist():
            hist[ulp_bucket_label(int(v))] = int(counts[v])
    return hist


def _ulp_histogram_any(dist: torch.Tensor) -> dict[str, int]:
    """ulp_histogram for any int64 distances (the form kept for negative ones, which the
    one-pass count cannot take; no distance is negative)."""
    hist: dict[str, int] = {}
    mism = dist >= numerics.MISMATCH
    d = dist[~mism]
    if d.numel():
        bucket = torch.where(d == 0, torch.zeros_like(d),
                             torch.floor(torch.log2(torch.clamp(d - 1, min=1).double())).long() + 2)
        bucket = torch.where(d == 1, torch.ones_like(bucket), bucket)
        bucket = torch.where(d == 2, torch.full_like(bucket, 2), bucket)
        vals, counts = torch.unique(bucket, return_counts=True)
        for v, c in zip(vals.tolist(), counts.tolist()):
            hist[ulp_bucket_label(int(v))] = int(c)
    if _count(mism):
        hist["NaN/Inf mismatch"] = _count(mism)
    return hist


ERR_EDGES = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 64.0, 256.0, 4096.0)
_ERR_LABELS = tuple(f"≤{edge:g}" for edge in ERR_EDGES) + (f">{ERR_EDGES[-1]:g}",)


def error_histogram(err: torch.Tensor) -> dict[str, int]:
    """Counts of fractional ULP errors against the reference in fixed buckets."""
    # No NaN (it fails the test) and nothing below 0: one pass, bucket i holding
    # ERR_EDGES[i-1] < e ≤ ERR_EDGES[i], the last e > 4096 (inf too); the edges are exact in
    # every float format.
    if err.dtype.is_floating_point and err.numel():
        lo, hi = torch.aminmax(err)
        if bool(lo >= 0):
            return _error_histogram_sorted(err, float(hi))
    return _error_histogram_any(err)


def _error_histogram_sorted(err: torch.Tensor, top: float) -> dict[str, int]:
    """error_histogram of floating errors known to be ≥ 0 (so none is NaN), the largest `top`."""
    if top <= ERR_EDGES[0]:  # the common case of a correctly rounded output: one bucket
        return {_ERR_LABELS[0]: err.numel()}
    # Only the errors above the first edge need their bucket found: bucket i holds
    # ERR_EDGES[i-1] < e ≤ ERR_EDGES[i], the last e > 4096 (inf too).
    above = err[err > ERR_EDGES[0]]
    counts = torch.bincount(torch.bucketize(above, torch.tensor(ERR_EDGES, dtype=err.dtype)),
                            minlength=len(_ERR_LABELS)).tolist()
    counts[0] = err.numel() - above.numel()
    return {label: int(n) for label, n in zip(_ERR_LABELS, counts) if n}


def _error_histogram_any(err: torch.Tensor) -> dict[str, int]:
    """error_histogram for any errors (NaN and negative ones are in no bucket)."""
    hist: dict[str, int] = {}
    lo = 0.0
    for edge in ERR_EDGES:
        n = _count((err > lo) & (err <= edge)) + (_count(err == 0) if lo == 0.0 else 0)
        if n:
            hist[f"≤{edge:g}"] = n
        lo = edge
    n = _count(err > ERR_EDGES[-1])
    if n:
        hist[f">{ERR_EDGES[-1]:g}"] = n
    return hist


def bits_equal(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Elementwise: the same value (NaN matches NaN, ±0 match); integers compared exactly."""
    if a.dtype.is_floating_point:
        return numerics.ulp_distance(a, b) == 0
    return a == b


def _distance(a: torch.Tensor, b: torch.Tensor, dtype: str | None = None) -> torch.Tensor:
    """Elementwise distance in ULPs of the contract's `dtype` (integers: 1 = differs).

    Outputs stored in `dtype` count representable steps. Outputs in another float format count
    |a - b| in units of `dtype`'s spacing at max(|a|, |b|), rounded up: an fp32 output judged
    under a BF16 contract is 1 BF16 ULP off when the two values are at most one BF16 step apart
    at their magnitude (and 0 only when bit-equal). Non-finite values follow ulp_distance."""
    if not a.dtype.is_floating_point:
        return (a != b).to(torch.int64)  # integers: ULP has no meaning
    steps = numerics.ulp_distance(a, b)
    if dtype is None or numerics.format_of(dtype).torch_dtype == a.dtype:
        return steps
    a64, b64 = a.to(torch.float64), b.to(torch.float64)
    spacing = numerics.ulp_of(torch.maximum(a64.abs(), b64.abs()), numerics.format_of(dtype))
    scaled = torch.ceil((a64 - b64).abs() / spacing)
    finite = torch.isfinite(a64) & torch.isfinite(b64)
    return torch.where(finite & (steps != 0), scaled.clamp(max=numerics.MISMATCH).to(torch.int64), steps)


def _ref_error(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    if x.dtype.is_floating_point:
        return numerics.ulp_error(x, ref, numerics.format_of(x.dtype))
    return torch.where(x.to(torch.float64) == ref, 0.0, float("inf"))


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether `a` and `b` hold the same bits everywhere (same dtype and shape; NaN payloads
    included), which makes every distance between them 0."""
    if a is b:
        return True
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype.is_floating_point:
        view = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[a.element_size()]
        return torch.equal(a.view(view), b.view(view))
    return torch.equal(a, b)


def _error_vs_ref(x: torch.Tensor, ref: torch.Tensor, both: torch.Tensor, whole: bool) -> dict[str, Any]:
    """Max, histogram and mean of `x`'s error against `ref` over the compared elements `both`
    (`whole`: all of them), the error computed on those elements alone."""
    if x.shape == ref.shape == both.shape:
        e = _ref_error(x.reshape(-1), ref.reshape(-1)) if whole else _ref_error(x[both], ref[both])
    else:  # broadcast against the reference as the elementwise error does
        e = _ref_error(x, ref)[both]
    if not e.numel():
        return {"max": 0.0, "hist": error_histogram(e), "mean": 0.0}
    lo, hi = torch.aminmax(e)
    if bool(lo >= 0):  # no NaN, nothing below 0
        top = float(hi)
        hist = _error_histogram_sorted(e, top)
        if top < float("inf"):  # all finite: the mean is over e itself
            return {"max": top, "hist": hist, "mean": float(e.mean())}
        finite = e[e < top]  # the finite ones (nothing is NaN or -inf)
        return {"max": top, "hist": hist, "mean": float(finite.mean()) if finite.numel() else 0.0}
    finite = e[torch.isfinite(e)]
    return {"max": float(e.max()), "hist": error_histogram(e),
            "mean": float(finite.mean()) if finite.numel() else 0.0}


def _copy_summary(summary: dict[str, Any]) -> dict[str, Any]:
    return {**summary, "hist": dict(summary["hist"])}


def _element(idx: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(i) for i in idx) + "]"


def _value_text(v: torch.Tensor) -> str:
    if v.dtype.is_floating_point:
        return f"{float(v):.9g}"
    return str(int(v))


def how_short(a: torch.Tensor, d: int) -> int | str:
    if not a.dtype.is_floating_point:
        return "differs"
    return d if d < numerics.MISMATCH else "NaN/Inf mismatch"


def _hazard_kinds(run: SideRun) -> set[tuple[str, str]]:
    return {(h["kind"], h["tensor"]) for h in run.hazards}


def compare_output(name: str, pre: SideRun, ret: SideRun, ref: torch.Tensor | None, contract: Contract,
                   accuracy_slack: float = 1.0, dim_names: tuple[str, ...] = ()) -> OutputResult:
    """Compare one output of a case and decide its verdict."""
    reasons: list[str] = []
    if pre.gap or ret.gap:
        for run in (pre, ret):
            if run.gap:
                reasons.append(f"cannot judge: {run.side} uses what the emulator lacks: {run.gap}")
        return OutputResult(name, "cannot judge", reasons)
    if pre.rejected or ret.rejected:
        for run in (pre, ret):
            if run.rejected:
                reasons.append(f"{run.side} rejects this shape: {run.rejected}")
        if pre.rejected and not ret.rejected:
            reasons.append("retiled accepts a shape pre rejected (widened contract)")
        if ret.rejected and not pre.rejected:
            reasons.append("retiled rejects a shape pre accepts (narrowed contract)")
        return OutputResult(name, "rejected", reasons)

    if pre.error and ret.error:
        # Neither version produced anything to compare: whether the kernel or the emulator is
        # at fault, a verdict (both-defect, exit 0) would claim a check that never ran.
        same = pre.error == ret.error
        what = f"both raised {pre.error}" if same else f"pre raised {pre.error}; retiled raised {ret.error}"
        reasons.append(f"cannot judge: {what} — nothing was compared (a kernel error, or a limitation "
                       f"of the emulator if the kernel is right)")
        return OutputResult(name, "cannot judge", reasons)
    bad: dict[str, torch.Tensor] = {}
    res = OutputResult(name, "equivalent", reasons)
    for run in (pre, ret):
        if run.error:
            reasons.append(f"{run.side} raised: {run.error}")
            shape = (pre if run is ret else ret).outputs.get(name)
            bad[run.side] = torch.ones(shape.shape if shape is not None else (), dtype=torch.bool)
            continue
        unwritten = ~run.written[name]
        poisoned = run.poisoned[name] & run.written[name]
        bad[run.side] = unwritten | poisoned
        nondet = run.nondeterministic.get(name)
        if nondet is not None and nondet.shape == unwritten.shape:
            nondet = nondet & ~bad[run.side]
            bad[run.side] = bad[run.side] | nondet
            if _any(nondet):
                _nondeterministic(res, run, name, nondet, dim_names)
        if _any(unwritten):
            res.unwritten[run.side] = region(unwritten, dim_names)
            res.maps[f"{run.side} unwritten"] = coverage_map(unwritten)
            reasons.append(f"{run.side} leaves {res.unwritten[run.side]['text']} of {name} unwritten "
                           f"({res.unwritten[run.side]['count']} elements)")
        if _any(poisoned):
            res.poisoned[run.side] = region(poisoned, dim_names)
            res.maps[f"{run.side} uninitialised"] = coverage_map(poisoned)
            reasons.append(f"{run.side} output {res.poisoned[run.side]['text']} of {name} depends on "
                           f"uninitialised memory ({res.poisoned[run.side]['count']} elements)")

    regression = False
    if ret.error and not pre.error:
        regression = True
    if not pre.error and not ret.error:
        a, b = pre.outputs[name], ret.outputs[name]
        both = ~(bad["pre"] | bad["retiled"])
        # Every element compared: the masks select nothing away, so whole tensors are used as
        # they are instead of copies of them.
        whole = both.shape == a.shape == b.shape and bool(both.all())
        res.compared = both.numel() if whole else _count(both)
        # Bit-identical outputs (both versions the same run, or a retile that changes no bit):
        # every distance is 0, no element breaks the contract, and both have the same error
        # against the reference.
        same = _same_bits(a, b)
        allowed = contract.max_ulp if a.dtype.is_floating_point else 0
        if same:
            res.differing, res.max_ulp = 0, 0
            res.ulp_hist = {"0": res.compared} if res.compared else {}
        else:
            full = _distance(a, b, contract.dtype)
            dist = full.reshape(-1) if whole and full.shape == both.shape else full[both]
            res.differing = _count(dist != 0)
            res.max_ulp = int(dist.max()) if dist.numel() else 0
            res.ulp_hist = ulp_histogram(dist)
            over = (full > allowed) & both
            over = _free_order(res, pre, name, over)
            if _any(over):
                first = tuple(int(i) for i in over.nonzero()[0].tolist())
                d = int(full[first])
                res.first_difference = {"index": list(first), "pre": _value_text(a[first]),
                                        "retiled": _value_text(b[first]),
                                        "ulp": how_short(a, d)}
                how = how_short(a, d)
                how = f"{how} ULP" if isinstance(how, int) else how
                reasons.append(
                    f"{res.differing if allowed == 0 else _count(over)} of {res.compared} elements of {name} "
                    f"break the contract ({contract if a.dtype.is_floating_point else 'exact'}); first at "
                    f"{_element(first)}: pre {_value_text(a[first])}, retiled {_value_text(b[first])} ({how}, "
                    f"allowed {allowed})")
                regression = True
        _same_schedule(res, pre, ret, name, a, b)
        if ref is not None:
            ref_cpu = ref.to("cpu", torch.float64)
            res.error_vs_ref["pre"] = _error_vs_ref(a, ref_cpu, both, whole)
            res.error_vs_ref["retiled"] = (_copy_summary(res.error_vs_ref["pre"]) if same
                                           else _error_vs_ref(b, ref_cpu, both, whole))
            pm, rm = res.error_vs_ref["pre"]["max"], res.error_vs_ref["retiled"]["max"]
            if rm > pm + accuracy_slack:
                reasons.append(f"accuracy drop on {name}: retiled max error vs float64 reference "
                               f"{rm:.3g} ULP > pre's {pm:.3g} ULP + {accuracy_slack:g}")
                regression = True

    new_bad = bad["retiled"] & ~bad["pre"] if bad["retiled"].shape == bad["pre"].shape else bad["retiled"]
    if _any(new_bad):
        regression = True
    new_hazards = _hazard_kinds(ret) - _hazard_kinds(pre)
    for h in ret.hazards:
        if (h["kind"], h["tensor"]) in new_hazards:
            reasons.append(f"retiled {h['kind']} on {h['tensor']} at {h['site']}: {h['detail']}")
            regression = True
    for h in pre.hazards:
        if (h["kind"], h["tensor"]) not in _hazard_kinds(ret):
            reasons.append(f"note: pre {h['kind']} on {h['tensor']} at {h['site']}: {h['detail']}")

    pre_bad, ret_bad = _any(bad["pre"]), _any(bad["retiled"])
    if regression:
        res.verdict = "regression"
    elif pre_bad and not ret_bad:
        res.verdict = "pre-defect"
    elif pre_bad and ret_bad:
        res.verdict = "both-defect"
    else:
        res.verdict = "equivalent"
    return res


def _nondeterministic(res: OutputResult, run: SideRun, name: str, nondet: torch.Tensor,
                      dim_names: tuple[str, ...]) -> None:
    """Report the elements of `name` whose bits differ between `run`'s schedules."""
    from equiv import schedules

    spread = run.spread.get(name)
    top = int(spread[nondet].max()) if spread is not None else 0
    ops = schedules.responsible(name, run.order_ops, run.hazards)
    info = region(nondet, dim_names)
    info.update(spread=top, schedules=run.schedules, operations=[schedules.describe_op(e) for e in ops[:5]])
    res.nondeterministic[run.side] = info
    res.maps[f"{run.side} nondeterministic"] = coverage_map(nondet)
    how = "NaN/Inf mismatch" if top >= numerics.MISMATCH else f"{top} ULP" if run.outputs[name].dtype.is_floating_point \
        else f"{top}"
    why = ("; order-dependent: " + "; ".join(info["operations"][:3])) if ops else \
        "; no atomic add or race recorded (blocks of one stage read what others of it write)"
    res.reasons.append(f"{run.side} output {info['text']} of {name} is nondeterministic: its bits differ between "
                       f"{run.schedules} schedules ({info['count']} elements, spread up to {how}){why}")


def _same_schedule(res: OutputResult, pre: SideRun, ret: SideRun, name: str, a: torch.Tensor,
                   b: torch.Tensor) -> None:
    """Where either version is nondeterministic, compare both under the same schedule (the
    outputs kept are schedule 0's) and say whether a difference lies within pre's own spread."""
    from equiv import schedules

    nd = [r.nondeterministic.get(name) for r in (pre, ret)]
    # A mask with no element set adds nothing to `flaky` below.
    nd = [m for m in nd if m is not None and m.shape == a.shape and _any(m)]
    if not nd or a.shape != b.shape:
        return
    flaky = nd[0] if len(nd) == 1 else nd[0] | nd[1]
    for r in (pre, ret):
        flaky = flaky & r.written[name] & ~r.poisoned[name]
    if not _any(flaky):
        return
    dist = schedules.spread(a, b)
    differ = flaky & (dist != 0)
    n = _count(differ)
    if not n:
        res.reasons.append(f"note: under the same schedule pre and retiled agree bit for bit on the "
                           f"{_count(flaky)} nondeterministic elements of {name}")
        return
    own = pre.spread.get(name)
    within = _count(differ & (dist <= own)) if own is not None and own.shape == dist.shape else 0
    res.reasons.append(f"note: under the same schedule {n} of the {_count(flaky)} nondeterministic elements of "
                       f"{name} differ between pre and retiled; {within} of them within pre's own schedule spread")


def _free_order(res: OutputResult, pre: SideRun, name: str, over: torch.Tensor) -> torch.Tensor:
    """`over` less the elements pre sums from atomic adds of several blocks: their bits are one
    of pre's schedules' (the order is free), so retiled differing there breaks no bit-exact
    claim pre could make. Said in a note; the accuracy check still covers them."""
    free = pre.order_free.get(name)
    if free is None or free.shape != over.shape:
        return over
    loose = over & free
    n = _count(loose)
    if n:
        res.reasons.append(f"note: {n} elements of {name} differ where pre adds atomic adds of several blocks in "
                           f"an order the device leaves free (pre's bits there are one schedule's; not a contract "
                           f"break, the accuracy check still applies)")
    return over & ~free
