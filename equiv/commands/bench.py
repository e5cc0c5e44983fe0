"""``equiv bench``: how fast the emulator runs each pair."""

from __future__ import annotations

import argparse
import sys
import time

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
    p.add_argument("names", nargs="*", metavar="NAME|FILE",
                   help="pair names (default: every pair); with --repo, model files of that clone "
                        "(path/to/file.py): each checked against itself at --rev in a process of its own")
    p.add_argument("--presets", default="demo,flash,pro", help="comma-separated presets (default demo,flash,pro)")
    p.add_argument("--repeat", type=int, default=1, help="runs per measurement, best kept (default 1)")
    p.add_argument("--fuzz-examples", type=int, default=4, help="fuzz cases for the throughput figure (0 = skip)")
    p.add_argument("--json", metavar="PATH", help="also write the numbers as JSON")
    p.add_argument("--repo", metavar="PATH", default=None,
                   help="a pypto-lib clone: time the model FILEs named (wall time and peak memory of a "
                        "same-revision pair-free check each), else its unmodified kernel files of PR #672 "
                        "(expert_shared and hc_post, both revisions) through source mode")
    p.add_argument("--rev", default="HEAD", help="with --repo and FILEs: the revision checked (default HEAD)")
    p.add_argument("--memory-limit", type=float, default=14.0, metavar="GIB",
                   help="with FILEs: stop a file's check above this resident memory (default 14)")
    p.add_argument("--file-timeout", type=float, default=1800.0, metavar="S",
                   help="with FILEs: stop a file's check after this many seconds (default 1800)")
    p.add_argument("--recipe", action="append", default=None, metavar="NAME",
                   help="with FILEs: the input recipes of the check (repeatable; default realistic; "
                        "'all': every recipe the file's inputs take, as equiv check and the gate run)")
    p.add_argument("--per-run-only", action="store_true",
                   help="time one run of each version only, not the whole cases a check runs")
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
    files = [n for n in args.names if n.endswith(".py")]
    if files and not args.repo:
        raise UsageError(f"{files[0]}: a model file is benchmarked in a pypto-lib clone; give --repo PATH")
    if files:
        return _run_files(args, files)
    pairs = [resolve_pair(n) for n in args.names] if args.names else registry.all_pairs()
    presets = [p.strip() for p in args.presets.split(",") if p.strip()]
    rows, throughput = [], {}
    per_case = not args.per_run_only
    for pair in pairs:
        if missing := [p for p in presets if p not in pair.shapes.presets]:
            raise UsageError(f"{pair.name} has no preset {missing[0]!r} (has {', '.join(pair.shapes.presets)})")
    started = time.perf_counter()
    for i, pair in enumerate(pairs, 1):
        for preset in presets:
            rows += bench_preset(pair, preset, options, repeat=args.repeat, per_case=per_case)
        if args.fuzz_examples:
            throughput[pair.name] = fuzz_throughput(pair, options, args.fuzz_examples)
        # The table comes at the end: say on stderr that the run is alive, pair by pair.
        print(f"bench: {pair.name} done ({i}/{len(pairs)} pairs, {len(rows)} rows, "
              f"{time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)
    repo_rows, repo_notes = ([], [])
    if args.repo:
        repo_rows, repo_notes = bench_repo(args.repo, presets, options, repeat=args.repeat)
        rows += repo_rows
    print(f"device: {options.device}")
    print(table(["pair", "preset", "shape", "pre s", "retiled s", "reference s", "overhead ×", "cases",
                 "case s", "case ref s", "per case ×", "batched", "loops as lanes", "peak RSS MB"],
                [[r.pair, r.preset, r.shape, f"{r.pre_s:.3f}", f"{r.retiled_s:.3f}", f"{r.reference_s:.4f}",
                  f"{r.overhead:.0f}", str(r.cases or "-"), f"{r.case_s:.3f}" if r.cases else "-",
                  f"{r.case_reference_s:.4f}" if r.cases else "-", f"{r.case_overhead:.0f}" if r.cases else "-",
                  r.batched, r.as_lanes, f"{r.peak_rss_mb:.0f}"] for r in rows]))
    print(f"geometric mean overhead: {geometric_mean_overhead(rows):.1f}× over {len(rows)} rows; "
          f"largest {max((r.overhead for r in rows), default=0):.0f}× (one run of a version)")
    cased = [r for r in rows if r.cases]
    if cased:
        print(f"per-case overhead: geometric mean {geometric_mean_overhead(rows, per_case=True):.1f}× over "
              f"{len(cased)} rows; largest {max(r.case_overhead for r in cased):.0f}× (whole cases: every "
              f"recipe and option variant, both versions under all poison and schedule variants, "
              f"against their float64 reference)")
    if cased:
        print("where a case's time goes (ms per case: its inputs, both versions' runs under every poison "
              "and schedule variant, the float64 reference, and the rest: comparison and judging):")
        print(table(["pair", "preset", "inputs", "runs", "reference", "rest"],
                    [[r.pair, r.preset] + [f"{1000 * v / r.cases:.1f}" for v in (
                        r.case_inputs_s, r.case_runs_s, r.case_reference_s,
                        max(r.case_s - r.case_inputs_s - r.case_runs_s - r.case_reference_s, 0.0))]
                     for r in cased]))
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
                                      "rows": [dict(r.__dict__, overhead=r.overhead,
                                                    case_overhead=r.case_overhead if r.cases else None)
                                               for r in rows],
                                      "geometric_mean_overhead": geometric_mean_overhead(rows),
                                      "geometric_mean_case_overhead":
                                          geometric_mean_overhead(rows, per_case=True) if cased else None,
                                      "fuzz_cases_per_second": throughput, "notes": repo_notes})
    return 0


def _run_files(args: argparse.Namespace, files: list[str]) -> int:
    """`equiv bench --repo R FILE...`: one row per model file, each checked in its own process."""
    from equiv.bench_files import bench_file

    if args.memory_limit <= 0 or args.file_timeout <= 0:
        raise UsageError("--memory-limit and --file-timeout must be > 0")
    rows = []
    for path in files:
        recipes = () if "all" in (args.recipe or ()) else tuple(args.recipe or ("realistic",))
        rows.append(bench_file(args.repo, args.rev, path, args.memory_limit, args.file_timeout, recipes=recipes))
        r = rows[-1]
        print(f"{r.path} at {r.rev}: {r.outcome}, {r.seconds:.0f} s, peak {r.peak_gib:.1f} GiB", flush=True)
    print(f"same-revision pair-free checks at {args.rev} (decode shapes, else the file's defaults; "
          f"recipes {', '.join(args.recipe or ['realistic'])}; seed 0):")
    print(table(["file", "outcome", "time s", "peak GiB"],
                [[r.path, r.outcome + "".join(
                    f"; {e['entry']}: " + (", ".join(f"{v} {n}" for v, n in e["counts"].items()) or e["outcome"])
                    for e in r.entries), f"{r.seconds:.0f}", f"{r.peak_gib:.1f}"] for r in rows]))
    if args.json:
        write_json_atomic(args.json, {"repo": args.repo, "memory_limit_gib": args.memory_limit,
                                      "files": [r.to_dict() for r in rows]})
    return 0 if all(not r.outcome.startswith(("stopped", "error")) for r in rows) else 1


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
