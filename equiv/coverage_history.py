"""``equiv coverage --since DATE``: the DSL census at every first-parent revision of a branch
since a date (or the last one of each week), and over their union.

A gate judges pull requests against base revisions as old as the oldest open one, so the
emulator must cover what the kernel files used then, not only at the tip. Each distinct file
version (git blob) is parsed once; a revision's census is the sum of its files' censuses,
and the union is the census of every distinct file version seen at any of the revisions
(a name counts as used once per file version that uses it).
"""

from __future__ import annotations

import datetime as _dt
import os
import textwrap
from dataclasses import dataclass
from typing import Sequence

from equiv import git
from equiv.coverage import Census, Report, report, scan
from equiv.errors import CoverageError


@dataclass
class Revision:
    commit: str
    date: str  # the committer date, YYYY-MM-DD
    report: Report

    def line(self, width: int = 80) -> str:
        """``DATE COMMIT  covered K of N names (U of M uses)``, then the missing names (if
        any) wrapped to `width` on indented lines."""
        head = f"{self.date} {self.commit[:8]}  {self.report.last_line()}"
        missing = [r.entry for r in self.report.rows if not r.covered]
        if not missing:
            return head
        return head + "\n" + textwrap.fill("missing: " + ", ".join(missing), width, initial_indent="  ",
                                           subsequent_indent="    ", break_on_hyphens=False)

    def to_dict(self) -> dict:
        return {"commit": self.commit, "date": self.date,
                "covered_names": self.report.covered_names, "total_names": len(self.report.rows),
                "covered_uses": self.report.covered_uses, "total_uses": self.report.total_uses,
                "missing": [r.entry for r in self.report.rows if not r.covered]}


@dataclass
class History:
    revisions: list[Revision]
    union: Report

    @property
    def complete(self) -> bool:
        return self.union.complete

    def render(self, missing_only: bool = False, width: int = 80) -> str:
        lines = [f"{len(self.revisions)} first-parent revisions "
                 f"({self.revisions[0].date} .. {self.revisions[-1].date})"]
        lines += [r.line(width) for r in self.revisions]
        lines.append("union over those revisions (every distinct file version once):")
        lines.append(self.union.render(missing_only=missing_only, width=width))
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"revisions": [r.to_dict() for r in self.revisions], "union": self.union.to_dict()}


def first_parent_revisions(repo: str, since: str, head: str = "HEAD", weekly: bool = False) -> list[tuple[str, str]]:
    """``[(commit, YYYY-MM-DD)]`` of `head`'s first-parent history committed on or after
    `since`, oldest first; with `weekly`, the last revision of each ISO week."""
    if not os.path.isdir(repo):
        raise CoverageError(f"--repo {repo}: no such directory")
    try:
        _dt.date.fromisoformat(since)
    except ValueError:
        raise CoverageError(f"--since {since}: not a date (YYYY-MM-DD)") from None
    try:
        tip = git.output(repo, "rev-parse", "--verify", f"{head}^{{commit}}", error=CoverageError).strip()
    except CoverageError:
        raise CoverageError(f"--rev {head}: not a revision of {repo}") from None
    out = git.output(repo, "log", "--first-parent", "--reverse", "--format=%H %cs", f"--since={since}T00:00:00", tip,
                     error=CoverageError)
    revs = [tuple(line.split()) for line in out.splitlines() if line.strip()]
    revs = [(c, d) for c, d in revs if d >= since]  # --since also keeps older commits git met on the way
    if not revs:
        raise CoverageError(f"--since {since}: no first-parent revision of {head} since then in {repo}")
    if weekly:
        last: dict[tuple[int, int], tuple[str, str]] = {}
        for c, d in revs:
            last[_dt.date.fromisoformat(d).isocalendar()[:2]] = (c, d)
        revs = list(last.values())
    return revs  # type: ignore[return-value]


def _listing(repo: str, commit: str, paths: Sequence[str]) -> dict[str, str]:
    """``{path: blob}`` of the ``.py`` files under `paths` at `commit` (a path absent then is
    skipped: directories come and go over months)."""
    out = git.output(repo, "ls-tree", "-r", commit, "--", *paths, error=CoverageError)
    files = {}
    for line in out.splitlines():
        meta, _, path = line.partition("\t")
        parts = meta.split()
        if len(parts) == 3 and parts[1] == "blob" and path.endswith(".py"):
            files[path] = parts[2]
    return files


def _merge(parts: Sequence[tuple[str, Census]]) -> Census:
    """One census of several files' censuses (each under the path it is reported as)."""
    total = Census()
    for path, c in parts:
        total.scanned += c.scanned
        total.unparsable += [path for _ in c.unparsable]
        for entry, n in c.uses.items():
            total.uses[entry] += n
            total.files.setdefault(entry, set()).add(path)
            total.kinds[entry] = c.kinds[entry]
    return total


def history(repo: str, since: str, paths: Sequence[str] = ("models",), head: str = "HEAD",
            weekly: bool = False) -> History:
    """The census at each first-parent revision of `head` since `since`, and their union."""
    revs = first_parent_revisions(repo, since, head, weekly)
    paths = [p.rstrip("/") or "." for p in paths] or ["models"]
    listings = {c: _listing(repo, c, paths) for c, _ in revs}
    if not any(listings.values()):
        raise CoverageError(f"{', '.join(paths)}: no Python files under it at any revision since {since}")
    blobs = sorted({b for files in listings.values() for b in files.values()})
    texts = git.read_objects(repo, blobs, error=CoverageError)
    per_blob: dict[str, Census] = {}
    first_path: dict[str, str] = {}
    for files in listings.values():
        for path, blob in files.items():
            if blob not in per_blob:
                per_blob[blob] = scan({path: texts[blob]})
                first_path[blob] = path
    out = [Revision(c, d, report(_merge([(p, per_blob[b]) for p, b in listings[c].items()]))) for c, d in revs]
    union = report(_merge([(f"{first_path[b]}@{b[:8]}", per_blob[b]) for b in blobs]))
    return History(out, union)
