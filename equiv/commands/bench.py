"""``equiv bench``: how fast the emulator runs each pair."""

from __future__ import annotations

import argparse

from equiv import registry
from equiv.bench import bench_preset, bench_repo, fuzz_throughput, geometric_mean_overhead
from equiv.errors import UsageError
from equiv.commands.common import add_run_options, options_from, resolve_pair, write_json_atomic
from equiv.summary import table


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="time pre, retiled and the reference per pair and preset",
                       description="Wall time of one run of pre, retiled and the float64 reference at each "
                                   "preset (best of --repeat), the emulator's overhead against the reference, "
                                   "fuzzing throughput (cases/s) and the process's peak memory.")
    p.add_argument("name", nargs="?", help="pair name (default: every pair)")
    p.add_argument("--presets", default="demo,flash,pro", help="comma-separated presets (default demo,flash,pro)")
    p.add_argument("--repeat", type=int, default=1, help="runs per measurement, best kept (default 1)")
    p.add_argument("--fuzz-examples", type=int, default=4, help="fuzz cases for the throughput figure (0 = skip)")
    p.add_argument("--json", metavar="PATH", help="also write the numbers as JSON")
    p.add_argument("--repo", metavar="PATH", default=None,
                   help="a pypto-lib clone: also time its unmodified kernel files (PR #672's "
                        "expert_shared and hc_post, both revisions) through source mode")
    add_run_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from equiv.commands.common import check_output_paths

    if args.repeat < 1:
        raise UsageError(f"--repeat {args.repeat}: must be ≥ 1 (runs per measurement, best kept)")
    if args.fuzz_examples < 0:
        raise UsageError(f"--fuzz-examples {args.fuzz_examples}: must be ≥ 0 (0 skips the throughput figure)")
    check_output_paths({"--json": args.json})
    options = options_from(args)
    pairs = [resolve_pair(args.name)] if args.name else registry.all_pairs()
    presets = [p.strip() for p in args.presets.split(",") if p.strip()]
    rows, throughput = [], {}
    for pair in pairs:
        for preset in presets:
            if preset not in pair.shapes.presets:
                raise UsageError(f"{pair.name} has no preset {preset!r} (has {', '.join(pair.shapes.presets)})")
            rows += bench_preset(pair, preset, options, repeat=args.repeat)
        if args.fuzz_examples:
            throughput[pair.name] = fuzz_throughput(pair, options, args.fuzz_examples)
    repo_rows, repo_notes = ([], [])
    if args.repo:
        repo_rows, repo_notes = bench_repo(args.repo, presets, options, repeat=args.repeat)
        rows += repo_rows
    print(f"device: {options.device}")
    print(table(["pair", "preset", "shape", "pre s", "retiled s", "reference s", "overhead ×", "batched",
                 "loops as lanes", "peak RSS MB"],
                [[r.pair, r.preset, r.shape, f"{r.pre_s:.3f}", f"{r.retiled_s:.3f}", f"{r.reference_s:.4f}",
                  f"{r.overhead:.0f}", r.batched, r.as_lanes, f"{r.peak_rss_mb:.0f}"] for r in rows]))
    print(f"geometric mean overhead: {geometric_mean_overhead(rows):.1f}× over {len(rows)} rows; "
          f"largest {max((r.overhead for r in rows), default=0):.0f}×")
    _print_reasons("stages run one block at a time (batched: stages run as one computation; "
                   "see docs/batching.md):", [(r.pair, r.stages) for r in rows], ("batched", "split"))
    _print_reasons("loops in batched stages run iteration by iteration (docs/batching.md):",
                   [(r.pair, r.loops) for r in rows], ("as lanes",))
    for note in repo_notes:
        print(f"note: {note}")
    if throughput:
        print()
        print(table(["pair", "fuzz cases/s"], [[k, f"{v:.2f}"] for k, v in throughput.items()]))
    if args.json:
        write_json_atomic(args.json, {"device": options.device,
                                      "rows": [dict(r.__dict__, overhead=r.overhead) for r in rows],
                                      "geometric_mean_overhead": geometric_mean_overhead(rows),
                                      "fuzz_cases_per_second": throughput, "notes": repo_notes})
    return 0


def _print_reasons(title: str, counts: list[tuple[str, dict | None]], done: tuple[str, ...]) -> None:
    """Under `title`, each reason (a kernel line and why) that kept a stage or loop from
    batching, with the pairs it happened in; nothing when there is none."""
    reasons: dict[str, set[str]] = {}
    for pair, whys in counts:
        for why in whys or {}:
            if why not in done:
                reasons.setdefault(why, set()).add(pair)
    if reasons:
        print(title)
        for why, pairs in sorted(reasons.items()):
            print(f"  {', '.join(sorted(pairs))}: {why}")
