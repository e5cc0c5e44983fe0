"""What making a check's inputs costs, per registered pair and preset shape.

Each shape's cases are made as a check makes them: every input recipe in the pair's order,
seed 0, one after the other, on one thread, from nothing `inputs.remembered` holds (what a
recipe remembers between the cases of a shape counts as it does in a check); the fastest of
``--repeat`` such passes per shape (a pair's own memos are warm after the first). Prints
a markdown table of milliseconds per shape and per case; with two JSON documents written by
``--json``, a before/after table instead.

    python scripts/inputs_cost.py [--presets demo,flash,pro] [--repeat 3] [--json X.json]
    python scripts/inputs_cost.py --compare BEFORE.json AFTER.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def measure(presets: list[str], repeat: int = 3) -> list[dict]:
    import torch

    from equiv import registry
    from equiv.results import Case
    from equiv.runner import make_inputs

    torch.set_num_threads(1)  # as a check's runs are timed
    rows = []
    for pair in registry.all_pairs():
        for preset in presets:
            for shape in pair.shapes.preset(preset):
                best: dict = {}
                for _ in range(repeat):
                    for fn in pair.recipes.values():  # from nothing remembered, as a check starts a shape
                        getattr(fn, "forget", lambda: None)()
                    per_recipe = {}
                    for recipe in pair.recipes:
                        t0 = time.perf_counter()
                        make_inputs(pair, Case(shape, recipe, 0))
                        per_recipe[recipe] = time.perf_counter() - t0
                    if not best or sum(per_recipe.values()) < sum(best.values()):
                        best = per_recipe
                per_recipe = best
                rows.append({"pair": pair.name, "preset": preset, "shape": str(shape),
                             "cases": len(per_recipe), "seconds": per_recipe})
    return rows


def _ms(row: dict) -> float:
    return 1e3 * sum(row["seconds"].values())


def table(rows: list[dict]) -> str:
    out = ["| pair | preset | shape | cases | inputs ms (shape) | ms per case |", "| --- | --- | --- | ---: | ---: | ---: |"]
    for r in rows:
        out.append(f"| {r['pair']} | {r['preset']} | {r['shape']} | {r['cases']} | {_ms(r):.1f} | {_ms(r) / r['cases']:.1f} |")
    return "\n".join(out)


def compare(before: list[dict], after: list[dict]) -> str:
    old = {(r["pair"], r["preset"], r["shape"]): r for r in before}
    out = ["| pair | preset | cases | ms per case before | after | × |", "| --- | --- | ---: | ---: | ---: | ---: |"]
    for r in after:
        b = old.get((r["pair"], r["preset"], r["shape"]))
        if b is None:
            continue
        pb, pa = _ms(b) / b["cases"], _ms(r) / r["cases"]
        out.append(f"| {r['pair']} | {r['preset']} | {r['cases']} | {pb:.1f} | {pa:.1f} | {pb / max(pa, 1e-9):.1f} |")
    tb, ta = sum(map(_ms, before)), sum(map(_ms, after))
    out.append(f"| all | | | {tb:.0f} ms in all | {ta:.0f} ms in all | {tb / max(ta, 1e-9):.1f} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--presets", default="demo,flash,pro")
    ap.add_argument("--repeat", type=int, default=3, help="passes per shape, the fastest kept (default 3)")
    ap.add_argument("--json", metavar="PATH")
    ap.add_argument("--compare", nargs=2, metavar=("BEFORE", "AFTER"))
    args = ap.parse_args(argv)
    if args.compare:
        docs = [json.load(open(p)) for p in args.compare]
        print(compare(*docs))
        return 0
    rows = measure([p for p in args.presets.split(",") if p], args.repeat)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
