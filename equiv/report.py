"""The self-contained HTML report of one or more checks.

``render(checks)`` turns saved check results (``CheckResult.to_dict()``, the format
``equiv check --json`` writes under ``"checks"``) into one HTML page: a summary of every
pair, then per pair and output the verdict counts, a histogram of the pre↔retiled ULP
distance, histograms of each version's fractional ULP error against the float64 reference,
a picture of the unwritten / uninitialised-dependent regions, the hazards found, the shapes
and seeds tried and every non-equivalent case with its one-line repro.

The page needs no network: charts are matplotlib SVG (Agg backend, text kept as text)
inlined into a Jinja2 template (``equiv/templates/report.html.j2``) with inline CSS.
Histograms are aggregated over the cases of a pair × output by summing bucket counts.
"""

from __future__ import annotations

from __future__ import annotations

import datetime as _dt
import io
import re
from collections import Counter
from typing import Any, Iterable, Mapping, Sequence

from equiv import atomic
from equiv.compare import ERR_EDGES
from equiv.results import VERDICTS
from equiv.summary import poison_run_groups


# ----------------------------------------------------------------------------------------
# Bins
# ----------------------------------------------------------------------------------------
# pre↔retiled distance: compare.ulp_histogram gives power-of-two buckets ("0", "1", "2",
# "3-4", "5-8", ...); the report folds them into these fixed bins so every chart has the
# same, few, columns.
ULP_BINS: tuple[tuple[str, float], ...] = (
    ("0", 0), ("1", 1), ("2", 2), ("3–4", 4), ("5–8", 8), ("9–16", 16), ("17–64", 64),
    ("65–256", 256), ("257–4096", 4096), (">4096", float("inf")))
MISMATCH_BIN = "NaN/Inf"
ERR_BINS: tuple[str, ...] = tuple(f"≤{e:g}" for e in ERR_EDGES) + (f">{ERR_EDGES[-1]:g}",)
MAX_MAP_PANELS = 6          # region pictures per pair × output
MAX_FAILURES_SHOWN = 200    # non-equivalent cases listed per pair (the rest are counted)

VERDICT_ORDER = ("cannot judge", "regression", "rejected", "both-defect", "pre-defect", "equivalent")
MAP_COLOURS = {"unwritten": "#d62728", "uninitialised": "#7b3fb0"}


def _ulp_bin(label: str) -> str:
    if label.startswith("NaN"):
        return MISMATCH_BIN
    upper = float(label.split("-")[-1])
    for name, edge in ULP_BINS:
        if upper <= edge:
            return name
    return ULP_BINS[-1][0]


def aggregate_ulp(results: Iterable[Mapping[str, Any]], output: str) -> dict[str, int]:
    """Sum of the pre↔retiled ULP-distance buckets of `output` over `results`, in ULP_BINS."""
    hist: dict[str, int] = {name: 0 for name, _ in ULP_BINS}
    for r in results:
        o = r["outputs"].get(output)
        if not o or o["verdict"] == "rejected":
            continue
        for label, n in o.get("ulp_hist", {}).items():
            b = _ulp_bin(label)
            hist[b] = hist.get(b, 0) + int(n)
    if not hist.get(MISMATCH_BIN):
        hist.pop(MISMATCH_BIN, None)
    return hist


def aggregate_error(results: Iterable[Mapping[str, Any]], output: str) -> dict[str, dict[str, int]]:
    """side -> bin -> summed count of fractional ULP errors against the reference."""
    out = {side: {b: 0 for b in ERR_BINS} for side in ("pre", "retiled")}
    for r in results:
        o = r["outputs"].get(output)
        if not o:
            continue
        for side, e in o.get("error_vs_ref", {}).items():
            for label, n in e.get("hist", {}).items():
                out.setdefault(side, {b: 0 for b in ERR_BINS})
                out[side][label] = out[side].get(label, 0) + int(n)
    return out


# ----------------------------------------------------------------------------------------
# Charts
# ----------------------------------------------------------------------------------------
_RC = {
    "svg.fonttype": "none",       # text stays text: small and searchable
    "svg.hashsalt": "equiv",      # deterministic ids
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.edgecolor": "#888888",
    "figure.dpi": 72,
}


class _Charts:
    """Renders matplotlib figures to inline SVG strings with document-unique ids."""

    def __init__(self) -> None:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt

        self.plt = plt
        self.n = 0

    def _svg(self, fig, kind: str) -> str:
        self.n += 1
        buf = io.StringIO()
        with self.plt.rc_context(_RC):
            fig.savefig(buf, format="svg", bbox_inches="tight", pad_inches=0.04,
                        metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
        self.plt.close(fig)
        return _scope_svg(buf.getvalue(), f"c{self.n}-", kind)

    def bars(self, series: Mapping[str, Mapping[str, int]], title: str, xlabel: str, kind: str,
             colours: Sequence[Any] = ("#4878a8", "#e08a2c")) -> str:
        """Bar chart of counts per bin, log-scale counts; several series side by side."""
        plt = self.plt
        with plt.rc_context(_RC):
            labels = list(next(iter(series.values())).keys())
            fig, ax = plt.subplots(figsize=(4.2, 2.0))
            k = len(series)
            width = 0.8 / k
            top = 1
            for i, (name, hist) in enumerate(series.items()):
                xs = [j + (i - (k - 1) / 2) * width for j in range(len(labels))]
                ys = [hist.get(lbl, 0) for lbl in labels]
                top = max(top, *ys)
                colour = colours[i % len(colours)]
                if callable(colour):
                    colour = [colour(lbl) for lbl in labels]
                ax.bar(xs, ys, width=width, label=name if k > 1 else None, color=colour, log=True)
            ax.set_yscale("log", nonpositive="clip")
            ax.set_ylim(0.7, top * 2.5)
            ax.set_xticks(range(len(labels)))
            ax.set_xticklabels(labels, rotation=30 if len(labels) > 6 else 0, ha="right" if len(labels) > 6 else "center")
            ax.set_xlabel(xlabel)
            ax.set_ylabel("elements")
            ax.set_title(title, loc="left")
            if k > 1:
                ax.legend(frameon=False, fontsize=7, loc="upper right")
            return self._svg(fig, kind)

    def maps(self, panels: Sequence[Mapping[str, Any]]) -> str:
        """Coverage pictures: one panel per (kind, case), the fraction of defective elements per cell."""
        plt = self.plt
        from matplotlib.colors import LinearSegmentedColormap

        with plt.rc_context(_RC):
            n = len(panels)
            cols = min(n, 3)
            rows = -(-n // cols)
            fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 1.9 * rows), squeeze=False)
            for ax in axes.flat[n:]:
                ax.axis("off")
            for ax, p in zip(axes.flat, panels):
                colour = MAP_COLOURS.get(p["what"], "#d62728")
                cmap = LinearSegmentedColormap.from_list(p["what"], ["#f4f4f4", colour])
                grid = p["grid"]
                nrows, ncols = p["shape"][0] if p["shape"] else len(grid), _cols(p["shape"], grid)
                ax.imshow(grid, cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest", aspect="auto",
                          extent=(0, ncols, nrows, 0))
                ax.set_title(f"{p['side']} {p['what']}\n{p['shape_text']}", loc="left", fontsize=7)
                ax.set_xlabel("column", fontsize=7)
                ax.set_ylabel("row", fontsize=7)
                ax.tick_params(labelsize=6)
            fig.tight_layout()
            return self._svg(fig, "region-map")


def _ulp_colour(label: str) -> str:
    return "#3f8f4f" if label == "0" else ("#6b2020" if label == MISMATCH_BIN else "#c8553d")


def _cols(shape: Sequence[int] | None, grid: Sequence[Sequence[float]]) -> int:
    if not shape:
        return len(grid[0]) if grid else 1
    n = 1
    for s in shape[1:]:
        n *= int(s)
    return n


_ID = re.compile(r'\bid="([^"]+)"')
_STRIP = (re.compile(r"<\?xml[^>]*\?>\s*"), re.compile(r"<!DOCTYPE[^>]*>\s*", re.S),
          re.compile(r"<metadata>.*?</metadata>\s*", re.S))


def _scope_svg(svg: str, prefix: str, kind: str) -> str:
    """Inline-ready SVG: no XML prolog or metadata, ids prefixed so several SVGs share a page."""
    for pat in _STRIP:
        svg = pat.sub("", svg)
    for old in set(_ID.findall(svg)):
        new = prefix + old
        svg = svg.replace(f'id="{old}"', f'id="{new}"').replace(f"#{old})", f"#{new})") \
                 .replace(f'"#{old}"', f'"#{new}"')
    svg = re.sub(r"\n\s*", "\n", svg)
    return svg.replace("<svg ", f'<svg class="chart" data-kind="{kind}" role="img" ', 1)


# ----------------------------------------------------------------------------------------
# The page model
# ----------------------------------------------------------------------------------------
def _shape_text(shape: Mapping[str, int]) -> str:
    return ",".join(f"{k}={v}" for k, v in shape.items())


def _variant_text(variant: Sequence[Sequence[Any]]) -> str:
    return ",".join(f"{k}={v}" for k, v in variant) or "default"


def _worst(verdicts: Iterable[str]) -> str:
    vs = set(verdicts)
    return next((v for v in VERDICT_ORDER if v in vs), "equivalent")


def _narrowed(r: Mapping[str, Any]) -> bool:
    return any("narrowed contract" in reason for o in r["outputs"].values() for reason in o.get("reasons", []))


def pair_status(check: Mapping[str, Any]) -> str:
    """'regression', 'narrowed' or 'ok' for one saved check."""
    results = check.get("results", [])
    if any("regression" in r["verdicts"].values() for r in results):
        return "regression"
    if any(_narrowed(r) for r in results):
        return "narrowed"
    return "ok"


def _map_panels(results: Sequence[Mapping[str, Any]], output: str) -> tuple[list[dict], int]:
    """Region pictures for `output`: the first case of each (map kind, tensor shape), capped."""
    seen: dict[tuple, dict] = {}
    cases_with_maps = 0
    for r in results:
        o = r["outputs"].get(output)
        if not o or not o.get("maps"):
            continue
        cases_with_maps += 1
        for key, grid in o["maps"].items():
            side, _, what = key.partition(" ")
            region = (o.get({"unwritten": "unwritten", "nondeterministic": "nondeterministic"}.get(what, "poisoned"))
                      or {}).get(side, {})
            shape = tuple(region.get("shape") or ())
            k = (key, shape)
            if k in seen:
                seen[k]["cases"] += 1
                continue
            why = next((a for a in o.get("attribution", []) if a.get("side") == side
                        and a.get("what") == what), None)
            seen[k] = {"side": side, "what": what, "grid": grid, "shape": list(shape),
                       "shape_text": _shape_text(r["case"]["shape"]), "text": region.get("text", ""),
                       "count": region.get("count", 0), "cases": 1,
                       # writer attribution: why, with both versions' source lines
                       "why": why["text"] if why else "",
                       "sources": sorted((why or {}).get("sources", {}).items())}
    panels = list(seen.values())
    # one picture per kind first, then more shapes of each kind
    panels.sort(key=lambda p: (p["side"] != "retiled", p["what"]))
    return panels[:MAX_MAP_PANELS], len(panels)


def _decision_rows(decisions: Mapping[str, Any]) -> dict:
    """Decision coverage of a check: per version the totals and the sites with an outcome that
    never occurred (equiv.observe.decisions)."""
    rows = [dict(g, side=side) for side in ("retiled", "pre")
            for g in decisions.get(side, {}).get("gaps", [])]
    totals = {side: (d.get("covered", 0), d.get("outcomes", 0), d.get("sites", 0))
              for side, d in decisions.items()}
    return {"rows": rows, "totals": totals}


def _hazards(results: Sequence[Mapping[str, Any]]) -> list[dict]:
    seen: dict[tuple, dict] = {}
    for r in results:
        for side, hs in r.get("hazards", {}).items():
            for h in hs:
                key = (side, h.get("kind"), h.get("tensor"), h.get("site"))
                if key in seen:
                    seen[key]["cases"] += 1
                else:
                    seen[key] = {"side": side, "kind": h.get("kind", "?"), "tensor": h.get("tensor", "?"),
                                 "site": h.get("site", "?"), "detail": h.get("detail", ""), "cases": 1,
                                 "first": _shape_text(r["case"]["shape"])}
    return sorted(seen.values(), key=lambda h: (h["side"] != "retiled", h["kind"]))


def _shapes_tried(results: Sequence[Mapping[str, Any]]) -> list[dict]:
    rows: dict[str, dict] = {}
    for r in results:
        c = r["case"]
        key = _shape_text(c["shape"])
        row = rows.setdefault(key, {"shape": key, "cases": 0, "recipes": set(), "seeds": set(),
                                    "variants": set(), "verdicts": Counter()})
        row["cases"] += 1
        row["recipes"].add(c["recipe"])
        row["seeds"].add(c["seed"])
        row["variants"].add(_variant_text(c.get("variant", [])))
        for v in r["verdicts"].values():
            row["verdicts"][v] += 1
    out = []
    for row in rows.values():
        seeds = sorted(row["seeds"])
        out.append({"shape": row["shape"], "cases": row["cases"], "recipes": ", ".join(sorted(row["recipes"])),
                    "seeds": ", ".join(map(str, seeds[:8])) + (f" … ({len(seeds)})" if len(seeds) > 8 else ""),
                    "variants": ", ".join(sorted(row["variants"])),
                    "worst": _worst(row["verdicts"]),
                    "verdicts": ", ".join(f"{v} {row['verdicts'][v]}" for v in VERDICT_ORDER if row["verdicts"][v])})
    return out


def _reason_label(reason: str, verdict: str) -> str:
    """What a reason line is: a note about pre alone (a hazard retiled does not have) is not
    what made the output a regression, so it is not labelled with the output's verdict."""
    return "note, pre only" if reason.startswith("note: ") else verdict


_SIZE_DETAILS = (re.compile(r" \(\d+ elements\)"), re.compile(r"^\d+ of \d+ elements"))


def cause(reason: str) -> str:
    """A reason without its per-case sizes: the same finding in another case reads the same."""
    for pattern in _SIZE_DETAILS:
        reason = pattern.sub("", reason)
    return reason


def _region_counts(o: Mapping[str, Any], side: str) -> tuple[int, int]:
    """(unwritten, uninitialised-dependent) element counts of one output of one case, for `side`."""
    return (int((o.get("unwritten") or {}).get(side, {}).get("count", 0)),
            int((o.get("poisoned") or {}).get(side, {}).get("count", 0)))


def findings_by_cause(results: Sequence[Mapping[str, Any]]) -> list[dict]:
    """Non-equivalent outputs grouped by cause: one entry per (output, verdict, reasons without
    sizes), with the cases, recipes and shapes it occurs in and the elements it affects. The same
    finding under seven input recipes is one entry, not seven."""
    groups: dict[tuple, dict] = {}
    for r in results:
        c = r["case"]
        for name, o in r["outputs"].items():
            if o["verdict"] == "equivalent":
                continue
            reasons = [x for x in o.get("reasons", []) if not x.startswith("note: ")]
            key = (name, o["verdict"], tuple(cause(x) for x in reasons))
            g = groups.setdefault(key, {"output": name, "verdict": o["verdict"], "reasons": reasons,
                                        "notes": [x for x in o.get("reasons", []) if x.startswith("note: ")],
                                        "cases": 0, "recipes": [], "shapes": [], "regions": [],
                                        "unwritten": {"pre": 0, "retiled": 0}, "poisoned": {"pre": 0, "retiled": 0},
                                        "repro": r.get("repro", "")})
            g["cases"] += 1
            if c["recipe"] not in g["recipes"]:
                g["recipes"].append(c["recipe"])
            shape = _shape_text(c["shape"])
            if shape not in g["shapes"]:
                g["shapes"].append(shape)
            for side in ("pre", "retiled"):
                un, po = _region_counts(o, side)
                g["unwritten"][side] = max(g["unwritten"][side], un)
                g["poisoned"][side] = max(g["poisoned"][side], po)
                for what, regions in (("unwritten", o.get("unwritten") or {}), ("uninitialised-dependent",
                                                                                 o.get("poisoned") or {}),
                                      ("nondeterministic", o.get("nondeterministic") or {})):
                    text = regions.get(side, {}).get("text")
                    entry = f"{side} {what}: {text}" if text else None
                    if entry and entry not in g["regions"]:
                        g["regions"].append(entry)
    order = {v: i for i, v in enumerate(VERDICT_ORDER)}
    return sorted(groups.values(), key=lambda g: (order.get(g["verdict"], 9), -g["cases"]))


def _finite_max_error(compared: Sequence[Mapping[str, Any]], recipes: Sequence[str], side: str) -> tuple[float, list[str]]:
    """Largest error vs the reference over the cases where it is finite, and the recipes whose
    cases have an infinite one (a non-finite reference, or a result that overflowed)."""
    finite, infinite = 0.0, []
    for o, recipe in zip(compared, recipes):
        m = float(o.get("error_vs_ref", {}).get(side, {}).get("max", 0.0))
        if m != m or m in (float("inf"), float("-inf")):
            if recipe not in infinite:
                infinite.append(recipe)
        else:
            finite = max(finite, m)
    return finite, infinite


def _failure(r: Mapping[str, Any]) -> dict:
    c = r["case"]
    outs = []
    for name, o in r["outputs"].items():
        if o["verdict"] != "equivalent":
            outs.append({"name": name, "verdict": o["verdict"], "reasons": o.get("reasons", []),
                         "labelled": [(_reason_label(x, o["verdict"]), x) for x in o.get("reasons", [])]})
    errors = [f"{side}: {e}" for side, e in r.get("errors", {}).items()]
    return {"worst": _worst(r["verdicts"].values()), "shape": _shape_text(c["shape"]), "recipe": c["recipe"],
            "seed": c["seed"], "variant": _variant_text(c.get("variant", [])), "outputs": outs,
            "errors": errors, "repro": r.get("repro", ""), "narrowed": _narrowed(r)}


def _anchor(name: str) -> str:
    return "pair-" + re.sub(r"[^A-Za-z0-9_-]+", "-", name)


def build_model(checks: Sequence[Mapping[str, Any]], charts: _Charts | None = None) -> dict:
    """Everything the template shows, with the charts rendered."""
    charts = charts or _Charts()
    pairs = []
    for chk in checks:
        results = chk.get("results", [])
        totals = {v: 0 for v in VERDICTS}
        for counts in chk.get("counts", {}).values():
            for v, n in counts.items():
                totals[v] = totals.get(v, 0) + n
        outputs = []
        for name, counts in chk.get("counts", {}).items():
            considered = [r for r in results if name in r["outputs"]]
            compared = [r["outputs"][name] for r in considered if r["outputs"][name]["verdict"] != "rejected"]
            recipes = [r["case"]["recipe"] for r in considered if r["outputs"][name]["verdict"] != "rejected"]
            errs = {side: _finite_max_error(compared, recipes, side) for side in ("pre", "retiled")}
            unwritten = {side: sum(_region_counts(o, side)[0] for o in compared) for side in ("pre", "retiled")}
            poisoned = {side: sum(_region_counts(o, side)[1] for o in compared) for side in ("pre", "retiled")}
            ulp = aggregate_ulp(considered, name)
            err = aggregate_error(considered, name)
            panels, n_panels = _map_panels(considered, name)
            has_ref = any(sum(h.values()) for h in err.values())
            outputs.append({
                "name": name, "counts": counts, "cases": sum(counts.values()),
                "max_ulp": max((o.get("max_ulp", 0) for o in compared), default=0),
                "differing": sum(o.get("differing", 0) for o in compared),
                "compared": sum(o.get("compared", 0) for o in compared),
                "max_err": {s: errs[s][0] for s in ("pre", "retiled")},
                "err_infinite": sorted(set(errs["pre"][1]) | set(errs["retiled"][1])),
                "unwritten": unwritten, "poisoned": poisoned,
                "verdicts_text": ", ".join(f"{v} {counts.get(v, 0)}" for v in VERDICT_ORDER if counts.get(v)),
                "ulp_svg": charts.bars({"pre↔retiled": ulp}, f"{name}: pre↔retiled distance (summed over cases)",
                                       "ULP distance", "ulp-hist", colours=(_ulp_colour,))
                if sum(ulp.values()) else None,
                "err_svg": charts.bars({s: err[s] for s in ("pre", "retiled")},
                                       f"{name}: error vs float64 reference", "fractional ULP error",
                                       "error-hist") if has_ref else None,
                "map_svg": charts.maps(panels) if panels else None,
                "map_panels": panels, "map_more": n_panels - len(panels),
            })
        worst_counts = Counter(_worst(r["verdicts"].values()) for r in results)
        failures = [_failure(r) for r in results if set(r["verdicts"].values()) - {"equivalent"}]
        failures.sort(key=lambda f: VERDICT_ORDER.index(f["worst"]))
        counterexamples = [_failure(r) for r in chk.get("counterexamples", [])]
        status = pair_status(chk)
        pairs.append({
            "name": chk["pair"], "anchor": _anchor(chk["pair"]), "contract": chk.get("contract", ""),
            "shapes": chk.get("shapes", ""), "seed": chk.get("seed", 0), "seconds": chk.get("seconds", 0.0),
            "device": chk.get("options", {}).get("device", "cpu"), "options": chk.get("options", {}),
            "n_cases": len(results), "totals": totals, "status": status,
            "case_verdicts": ", ".join(f"{v} {worst_counts[v]}" for v in VERDICT_ORDER if worst_counts[v]),
            "findings": findings_by_cause(results),
            "unwritten": {side: sum(o["unwritten"][side] for o in outputs) for side in ("pre", "retiled")},
            "poisoned": {side: sum(o["poisoned"][side] for o in outputs) for side in ("pre", "retiled")},
            "max_ulp": max((o["max_ulp"] for o in outputs), default=0),
            "outputs": outputs, "hazards": _hazards(results), "shapes_tried": _shapes_tried(results),
            "poison_runs": poison_run_groups(results),
            "failures": failures[:MAX_FAILURES_SHOWN], "failures_more": max(0, len(failures) - MAX_FAILURES_SHOWN),
            "n_failures": len(failures), "n_regressions": sum(f["worst"] == "regression" for f in failures),
            "counterexamples": counterexamples,
            "decisions": _decision_rows(chk.get("decisions", {})),
            "own_contract": chk.get("own_contract", {}),
        })
    statuses = Counter(p["status"] for p in pairs)
    return {"pairs": pairs, "verdicts": VERDICTS, "statuses": statuses,
            "overall": "regression" if statuses["regression"] else ("narrowed" if statuses["narrowed"] else "ok"),
            "generated": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "version": _version(), "ulp_bins": [b for b, _ in ULP_BINS], "err_bins": ERR_BINS}


def _version() -> str:
    try:
        from equiv import __version__

        return __version__
    except Exception:  # pragma: no cover
        return "?"


def _environment():
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("equiv", "templates"),
                             autoescape=jinja2.select_autoescape(["html", "j2"]),
                             trim_blocks=True, lstrip_blocks=True)
    return env


def render(checks: Sequence[Mapping[str, Any]]) -> str:
    """The report page for `checks` (``CheckResult.to_dict()`` dicts) as one HTML string."""
    from markupsafe import Markup

    model = build_model(list(checks))
    for p in model["pairs"]:
        for o in p["outputs"]:
            for k in ("ulp_svg", "err_svg", "map_svg"):
                if o[k]:
                    o[k] = Markup(o[k])  # produced by matplotlib above, not from the results
    return _environment().get_template("report.html.j2").render(**model)


def write_report(checks: Sequence[Mapping[str, Any]], path: str) -> None:
    """Render `checks` and write the page to `path` atomically."""
    atomic.write_text(path, render(checks))


__all__ = ["render", "write_report", "build_model", "aggregate_ulp", "aggregate_error", "pair_status", "ULP_BINS",
           "ERR_BINS"]
