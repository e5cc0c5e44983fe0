"""Results files: the document every checking command writes with ``--json`` (its schema
version), read back and validated, and the files of several shards merged into one run."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from equiv.results import VERDICTS
from equiv.errors import ResultsError


SCHEMA_VERSION = 1  # of the results JSON (`equiv check/gate/compare --json`); bump on an incompatible change
_CHECK_KEYS = ("pair", "contract", "shapes", "counts", "results")
_RESULT_KEYS = ("case", "verdicts", "outputs")


def _validate_check(path: str, i: int, chk: Any) -> dict:
    where = f"{path}: check {i + 1}"
    if not isinstance(chk, dict):
        raise ResultsError(f"{where} is a {type(chk).__name__}, not a saved check")
    missing = [k for k in _CHECK_KEYS if k not in chk]
    if missing:
        raise ResultsError(f"{where} ({chk.get('pair', '?')}) lacks {', '.join(missing)}: partial results")
    results = chk["results"]
    if not isinstance(results, list) or not results:
        raise ResultsError(f"{where} ({chk['pair']}) has no cases: nothing to report")
    for j, r in enumerate(results):
        if not isinstance(r, dict) or any(k not in r for k in _RESULT_KEYS):
            raise ResultsError(f"{where} ({chk['pair']}): case {j + 1} lacks "
                               f"{', '.join(k for k in _RESULT_KEYS if not isinstance(r, dict) or k not in r)}: "
                               f"partial results")
    counted = {sum(c.values()) for c in chk["counts"].values()} if isinstance(chk["counts"], dict) else {-1}
    if counted and counted != {len(results)}:
        raise ResultsError(f"{where} ({chk['pair']}): its verdict counts cover {', '.join(map(str, sorted(counted)))} "
                           f"cases but it holds {len(results)}: partial results (a truncated or edited file)")
    return chk


def load_checks(paths: Sequence[str]) -> list[dict]:
    """Checks from saved JSON results: ``{"schema_version": 1, "checks": [...]}`` (older files without
    a version, a list of checks or one check are read too). Raises `ResultsError` for a file that is
    empty, partial (a check without cases, or whose counts do not match its cases) or of a newer
    schema; FileNotFoundError / json.JSONDecodeError pass through."""
    import json

    checks: list[dict] = []
    for path in paths:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
        if not text.strip():
            raise ResultsError(f"{path}: empty file, not saved check results")
        data = json.loads(text)
        if isinstance(data, dict) and "schema_version" in data:
            version = data["schema_version"]
            if not isinstance(version, int) or version > SCHEMA_VERSION:
                raise ResultsError(f"{path}: results schema version {version!r}; this equiv reads up to "
                                   f"{SCHEMA_VERSION} (upgrade equiv)")
        if isinstance(data, dict) and "checks" in data:
            data = data["checks"]
        if isinstance(data, dict) and "pair" in data:
            data = [data]
        if not isinstance(data, list):
            raise ResultsError(f"{path}: not saved check results (expected {{\"checks\": [...]}} "
                               f"as `equiv check --json` writes)")
        if not data:
            raise ResultsError(f"{path}: holds no checks: nothing to report")
        checks.extend(_validate_check(path, i, c) for i, c in enumerate(data))
    return checks


def _case_key(result: Mapping[str, Any]) -> str:
    import json

    return json.dumps(result.get("case"), sort_keys=True, default=str)


def merge_checks(checks: Sequence[Mapping[str, Any]]) -> list[dict]:
    """One check per pair: the checks of a pair (shards of one run) joined, in first-seen order.

    Cases are concatenated (a case present in two shards is kept once), counts recomputed from
    the cases, seconds summed, and the shape labels joined. Checks of one pair under different
    contracts cannot be merged (ResultsError)."""
    merged: dict[str, dict] = {}
    for chk in checks:
        name = chk["pair"]
        if name not in merged:
            merged[name] = {**chk, "results": [], "counterexamples": [], "seconds": 0.0, "_seen": set(),
                            "_cx_seen": set(), "_shapes": []}
        m = merged[name]
        if m["contract"] != chk["contract"]:
            raise ResultsError(f"{name}: results under contracts {m['contract']} and {chk['contract']} cannot be "
                               f"merged into one report")
        for r in chk["results"]:
            key = _case_key(r)
            if key not in m["_seen"]:
                m["_seen"].add(key)
                m["results"].append(r)
        for r in chk.get("counterexamples", []):
            key = _case_key(r)
            if key not in m["_cx_seen"]:
                m["_cx_seen"].add(key)
                m["counterexamples"].append(r)
        m["seconds"] += float(chk.get("seconds", 0.0))
        if chk["shapes"] not in m["_shapes"]:
            m["_shapes"].append(chk["shapes"])
    out = []
    for m in merged.values():
        counts: dict[str, dict[str, int]] = {}
        for r in m["results"]:
            for output, verdict in r["verdicts"].items():
                c = counts.setdefault(output, {v: 0 for v in VERDICTS})
                c[verdict] = c.get(verdict, 0) + 1
        m["counts"] = counts
        m["shapes"] = " + ".join(m["_shapes"])
        m["seconds"] = round(m["seconds"], 3)
        for k in ("_seen", "_cx_seen", "_shapes"):
            del m[k]
        out.append(m)
    return out


def merge_results(paths: Sequence[str]) -> list[dict]:
    """Load several results files (e.g. the shards of one run) and merge them: one check per pair.
    The input of `equiv report a.json b.json ...`; raises `ResultsError` as `load_checks` does."""
    return merge_checks(load_checks(paths))
