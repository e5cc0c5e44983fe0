"""``equiv report RESULTS.json [...] -o PATH``: the HTML report of saved check results."""

from __future__ import annotations

import argparse
import json
import sys

from equiv.errors import UsageError

DEFAULT_REPORT = "reports/report.html"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="write the HTML report of saved check results",
                       description="Render saved results (`equiv check --json`, `equiv gate --json`) as one "
                                   "self-contained HTML page: summary, ULP and error histograms, coverage "
                                   "maps, hazards, shapes tried and every failure with its repro. Several files "
                                   "(e.g. shards of one run) are merged: one section per pair. Empty or "
                                   "partial results are refused (exit 2).")
    p.add_argument("results", nargs="+", metavar="RESULTS.json", help="saved results; several are merged")
    p.add_argument("-o", "--output", default=DEFAULT_REPORT, metavar="PATH",
                   help=f"where to write the page (default {DEFAULT_REPORT})")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from equiv import report, results_files
    from equiv.commands.common import check_output_paths

    check_output_paths({"-o": args.output})
    try:
        checks = results_files.merge_results(args.results)
    except FileNotFoundError as exc:
        raise UsageError(f"no such results file: {exc.filename}") from None
    except IsADirectoryError as exc:
        raise UsageError(f"{exc.filename}: is a directory, not a results file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"not a JSON results file (truncated or not JSON): {exc}") from None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    report.write_report(checks, args.output)
    statuses = [report.pair_status(c) for c in checks]
    print(f"report of {len(checks)} check{'s' if len(checks) != 1 else ''} from {len(args.results)} file"
          f"{'s' if len(args.results) != 1 else ''} written to {args.output} "
          f"({sum(s == 'regression' for s in statuses)} with regressions)", file=sys.stderr)
    return 0
