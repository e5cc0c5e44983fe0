"""Where a kernel file comes from: a path on disk or at a git revision of a repository,
the entry function to call, and reading it and its siblings from there."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from dataclasses import dataclass

from equiv import git
from equiv.errors import SourceError


@dataclass(frozen=True)
class SourceRef:
    """One kernel file: `path` (repo-relative with `rev`, else a file on disk, relative to
    `repo` when given), the `entry` function to call, and an optional git revision."""

    path: str
    entry: str
    rev: str | None = None
    repo: str | None = None

    @classmethod
    def parse(cls, spec: str, rev: str | None = None, repo: str | None = None,
              default_entry: str | None = None) -> "SourceRef":
        """``'models/x.py:entry'`` (or ``'models/x.py'`` with `default_entry`)."""
        path, sep, entry = spec.rpartition(":")
        if not sep or not entry.isidentifier():
            path, entry = spec, default_entry or ""
        if not entry:
            raise SourceError(f"{spec!r}: name the entry function as PATH:FUNCTION, "
                              f"e.g. models/deepseek/v4/hc_post.py:hc_post_test")
        return cls(path, entry, rev, repo)

    def with_rev(self, rev: str | None) -> "SourceRef":
        return dataclasses.replace(self, rev=rev)

    @property
    def commit(self) -> str | None:
        if self.rev is None:
            return None
        return _resolve_commit(self.repo or ".", self.rev)

    @property
    def label(self) -> str:
        """How sites in this file are named: ``a8cdc047:models/x.py`` or the path."""
        if self.rev is None:
            return self.disk_path()
        return f"{self.commit[:8]}:{self.path}"

    def disk_path(self) -> str:
        return os.path.normpath(os.path.join(self.repo, self.path) if self.repo else self.path)

    def directory(self) -> str:
        return os.path.dirname(self.path)

    def read(self, path: str | None = None) -> str:
        """Text of `path` (default: this file) at this reference's revision or on disk."""
        path = path or self.path
        if self.rev is None:
            full = os.path.join(self.repo, path) if self.repo else path
            try:
                with open(full, encoding="utf-8") as fh:
                    return fh.read()
            except OSError as exc:
                raise SourceError(f"cannot read {full}: {exc.strerror}") from None
        return git.output(self.repo or ".", "show", f"{self.commit}:{path}", error=SourceError)

    def sibling(self, name: str) -> str | None:
        """Path of sibling module `name` (``<dir>/<name>.py`` or the package ``<dir>/<name>/__init__.py``)
        if it exists, else None."""
        for stem in (f"{name}.py", os.path.join(name, "__init__.py")):
            rel = os.path.join(self.directory(), stem) if self.directory() else stem
            if self.exists(rel):
                return rel
        return None

    def exists(self, rel: str) -> bool:
        """Whether repo-relative file `rel` exists at this reference's revision (or on disk)."""
        if self.rev is None:
            full = os.path.join(self.repo, rel) if self.repo else rel
            return os.path.isfile(full)
        return rel in _tree_files(self.repo or ".", self.commit, os.path.dirname(rel))

    def module_path(self, dotted: str) -> str | None:
        """Where ``import a.b`` finds its file at this revision: beside this file first, then at
        the repository root (``a/b.py`` or ``a/b/__init__.py``); None when neither has it."""
        parts = dotted.split(".")
        for base in dict.fromkeys((self.directory(), "")):
            for stem in (os.path.join(*parts) + ".py", os.path.join(*parts, "__init__.py")):
                rel = os.path.normpath(os.path.join(base, stem)) if base else stem
                if self.exists(rel):
                    return rel
        return None

    def identity(self) -> str:
        """A key that changes whenever the file's text can: commit + path, or content hash."""
        if self.rev is not None:
            return f"{self.commit}:{self.path}"
        text = self.read()
        return f"disk:{os.path.abspath(self.disk_path())}:{hashlib.sha256(text.encode()).hexdigest()[:16]}"


_COMMITS: dict[tuple[str, str], str] = {}
_TREES: dict[tuple[str, str, str], frozenset[str]] = {}


def _resolve_commit(repo: str, rev: str) -> str:
    key = (os.path.abspath(repo), rev)
    if key not in _COMMITS:
        try:
            _COMMITS[key] = git.output(repo, "rev-parse", "--verify", f"{rev}^{{commit}}", error=SourceError).strip()
        except SourceError as exc:
            raise SourceError(f"revision {rev!r} not found in {repo}: {exc}") from None
    return _COMMITS[key]


def _tree_files(repo: str, commit: str, directory: str) -> frozenset[str]:
    key = (os.path.abspath(repo), commit, directory)
    if key not in _TREES:
        args = ["ls-tree", "--name-only", commit] + ([directory.rstrip("/") + "/"] if directory else [])
        _TREES[key] = frozenset(git.output(repo, *args, error=SourceError).splitlines())
    return _TREES[key]
