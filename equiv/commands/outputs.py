"""What every checking command writes besides the console: the results document (``--json``,
the input of ``equiv report``) and the HTML report (``--report``), each announced on stderr."""

from __future__ import annotations

import sys
from typing import Any, Mapping, Sequence

from equiv.commands.common import results_document, write_json_atomic


def write_results(checks: Sequence[Mapping[str, Any]], json_path: str | None, report_path: str | None,
                  gate: Mapping[str, Any] | None = None) -> None:
    """Write `checks` (``CheckResult.to_dict()`` documents) to `json_path` and as a report to
    `report_path` (either may be None); `gate` adds the gate's own record to the document."""
    if json_path:
        doc = results_document(checks)
        if gate is not None:
            doc["gate"] = dict(gate)
        write_json_atomic(json_path, doc)
        print(f"results written to {json_path}", file=sys.stderr)
    if report_path:
        from equiv import report

        report.write_report(list(checks), report_path)
        print(f"report written to {report_path}", file=sys.stderr)
