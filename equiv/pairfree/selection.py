"""Which model files a change reaches: the changed ones and every file that imports one.

pypto-lib splits a model across sibling modules imported by bare name (``from config import
FLASH``, ``from rmsnorm import rmsnorm``), each resolved in the importing file's own
directory; its CI runs every runnable file that transitively imports a changed one. The gate
selects the same way, and also follows bare names that resolve to a package or module at
the repository root (``golden``), since a file that imports one sees its change too.

The head side may be a revision or the working tree (``head=None``: uncommitted and untracked
files included, as ``git diff`` and ``git status`` see them).
"""

from __future__ import annotations

import ast
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterable, Mapping
from equiv import git
from equiv.errors import SelectionError

# Where the bare-name sibling-import graph lives (pypto-lib's runnable trees).
SOURCE_ROOTS = ("models", "examples")
# Files pypto-lib keeps out of its graph (work in progress, never run).
DRAFT_SUFFIX = "_draft.py"

_IMPORT_LINE = re.compile(r"^\s*(?:from\s+([A-Za-z_]\w*)|import\s+([A-Za-z_]\w*))", re.MULTILINE)


@dataclass(frozen=True)
class Changed:
    """One changed path: where it was at base (None: added) and is at head (None: deleted)."""

    base_path: str | None
    head_path: str | None
    status: str  # A, M, D, R


def changed_paths(repo: str, base: str, head: str | None) -> list[Changed]:
    """Paths that differ from the merge base of `base` and `head` to `head` (renames followed).
    `head` None: the working tree, with untracked files that are not ignored."""
    if head is not None:
        out = git.output_bytes(repo, "diff", "-M", "--name-status", f"{base}...{head}",
                               error=SelectionError).decode()
    else:
        merge_base = git.output_bytes(repo, "merge-base", base, "HEAD", error=SelectionError).decode().strip()
        out = git.output_bytes(repo, "diff", "-M", "--name-status", merge_base, error=SelectionError).decode()
    changes = []
    for line in out.splitlines():
        parts = line.split("\t")
        status = parts[0][:1]
        if status == "D":
            changes.append(Changed(parts[1], None, "D"))
        elif status in ("R", "C"):
            changes.append(Changed(parts[1] if status == "R" else None, parts[2], status))
        elif status == "A":
            changes.append(Changed(None, parts[1], "A"))
        else:
            changes.append(Changed(parts[1], parts[1], "M"))
    if head is None:
        untracked = git.output_bytes(repo, "ls-files", "--others", "--exclude-standard",
                                     error=SelectionError).decode().splitlines()
        changes += [Changed(None, p, "A") for p in untracked if p]
    return changes


class Tree:
    """The ``.py`` files of one revision (or the working tree) under the source roots and at
    the repository root, with their text, read in one pass."""

    def __init__(self, repo: str, rev: str | None):
        self.repo, self.rev = repo, rev
        self.texts: dict[str, str] = {}
        if rev is None:
            for root in ("",) + SOURCE_ROOTS:
                self._walk_disk(root)
        else:
            names = git.output_bytes(repo, "ls-tree", "-r", "--name-only", rev, error=SelectionError).decode().splitlines()
            wanted = [n for n in names if n.endswith(".py") and (
                n.split("/")[0] in SOURCE_ROOTS or _root_module(n) is not None)]
            self.texts = dict(zip(wanted, _cat(repo, rev, wanted)))

    def _walk_disk(self, root: str) -> None:
        top = os.path.join(self.repo, root) if root else self.repo
        if not os.path.isdir(top):
            return
        tracked_or_visible = None
        for dirpath, dirs, files in os.walk(top):
            dirs[:] = [d for d in dirs if not d.startswith(".") and d != "__pycache__"]
            rel_dir = os.path.relpath(dirpath, self.repo)
            rel_dir = "" if rel_dir == "." else rel_dir
            if not root and rel_dir and (rel_dir.split(os.sep)[0] in SOURCE_ROOTS):
                dirs[:] = []  # walked on its own
                continue
            for name in files:
                rel = os.path.join(rel_dir, name) if rel_dir else name
                if not name.endswith(".py") or (not root and _root_module(rel) is None):
                    continue
                if tracked_or_visible is None:
                    tracked_or_visible = _visible(self.repo)
                if rel not in tracked_or_visible:
                    continue  # ignored by git: not part of the work
                try:
                    with open(os.path.join(self.repo, rel), encoding="utf-8") as fh:
                        self.texts[rel] = fh.read()
                except (OSError, UnicodeDecodeError):
                    continue

    def files(self) -> list[str]:
        return sorted(self.texts)


def _visible(repo: str) -> set[str]:
    out = git.output_bytes(repo, "ls-files", "--cached", "--others", "--exclude-standard",
                           error=SelectionError).decode()
    return set(out.splitlines())


def _root_module(path: str) -> str | None:
    """The bare module name a repository-root file answers to (``golden/spec.py`` -> golden)."""
    parts = path.split("/")
    if len(parts) == 1 and path.endswith(".py"):
        return path[:-3]
    if parts[0] not in SOURCE_ROOTS and len(parts) >= 2 and not parts[0].startswith("."):
        return parts[0]
    return None


def _cat(repo: str, rev: str, paths: list[str]) -> list[str]:
    """Texts of `paths` at `rev` through one ``git cat-file --batch``."""
    if not paths:
        return []
    data = "".join(f"{rev}:{p}\n" for p in paths).encode()
    raw = git.output_bytes(repo, "cat-file", "--batch", error=SelectionError, data=data)
    out, pos = [], 0
    for _ in paths:
        nl = raw.index(b"\n", pos)
        header = raw[pos:nl].split()
        if len(header) < 3 or header[1] == b"missing":
            out.append("")
            pos = nl + 1
            continue
        size = int(header[2])
        out.append(raw[nl + 1:nl + 1 + size].decode("utf-8", errors="replace"))
        pos = nl + 1 + size + 1
    return out


def imported_names(text: str) -> set[str]:
    """First segments of every module the file imports by absolute name, at any depth
    (imports inside functions and ``__main__`` count), plus ``from . import x`` names."""
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return {m.group(1) or m.group(2) for m in _IMPORT_LINE.finditer(text)}
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
            elif node.level == 1 and not node.module:
                names.update(a.name for a in node.names)
            elif node.level == 1 and node.module:
                names.add(node.module.split(".")[0])
    return names


def is_model_file(text: str) -> bool:
    """A file the gate can check: its ``__main__`` block hands an entry to ``run_jit``."""
    return "__main__" in text and "run_jit" in text


def _module_key(path: str) -> tuple[str, str]:
    """(directory, bare name) a source-root file is imported by from its siblings."""
    d, name = os.path.split(path)
    if name == "__init__.py":
        d, name = os.path.split(d)
        return d, name
    return d, name[:-3]


def reverse_graph(tree: Tree) -> dict[str, set[str]]:
    """file -> the files that import it by bare name (a sibling of the importer, or a module
    or package at the repository root; every file of a root package stands for the package)."""
    siblings: dict[tuple[str, str], str] = {}
    roots: dict[str, list[str]] = defaultdict(list)
    for f in tree.files():
        if f.split("/")[0] in SOURCE_ROOTS:
            if not f.endswith(DRAFT_SUFFIX):
                siblings[_module_key(f)] = f
        else:
            name = _root_module(f)
            if name:
                roots[name].append(f)
    reverse: dict[str, set[str]] = defaultdict(set)
    for f in tree.files():
        if f.split("/")[0] not in SOURCE_ROOTS or f.endswith(DRAFT_SUFFIX):
            continue
        d = os.path.dirname(f)
        for name in imported_names(tree.texts[f]):
            target = siblings.get((d, name))
            if target is not None and target != f:
                reverse[target].add(f)
            elif target is None:
                for t in roots.get(name, ()):
                    reverse[t].add(f)
    return reverse


@dataclass
class Selection:
    """The model files to gate, each with why it is selected."""

    files: dict[str, str] = field(default_factory=dict)  # head path -> "changed" or "imports X"
    renamed_from: dict[str, str] = field(default_factory=dict)  # head path -> base path
    added: set[str] = field(default_factory=set)
    not_checkable: list[str] = field(default_factory=list)  # runnable, but no run_jit in __main__

    def base_path(self, path: str) -> str | None:
        if path in self.added:
            return None
        return self.renamed_from.get(path, path)


def select(changes: Iterable[Changed], tree: Tree) -> Selection:
    """Changed model files plus every model file that transitively imports a changed file."""
    changes = list(changes)
    reverse = reverse_graph(tree)
    seeds = [c.head_path for c in changes if c.head_path and c.head_path in tree.texts]
    why: dict[str, str] = {s: "changed" for s in seeds}
    stack = list(seeds)
    while stack:
        cur = stack.pop()
        for importer in sorted(reverse.get(cur, ())):
            if importer not in why:
                why[importer] = f"imports {cur}"
                stack.append(importer)
    sel = Selection()
    for c in changes:
        if c.head_path and c.base_path and c.base_path != c.head_path:
            sel.renamed_from[c.head_path] = c.base_path
        if c.head_path and c.base_path is None:
            sel.added.add(c.head_path)
    for path in sorted(why):
        if path.split("/")[0] not in SOURCE_ROOTS or not path.endswith(".py"):
            continue
        text = tree.texts.get(path, "")
        if is_model_file(text):
            sel.files[path] = why[path]
        elif "__main__" in text:
            sel.not_checkable.append(path)
    return sel


def select_change(repo: str, base: str, head: str | None) -> Selection:
    """`select` over what changed from `base` to `head` (None: the working tree)."""
    return select(changed_paths(repo, base, head), Tree(repo, head))


def texts_at(repo: str, rev: str | None, paths: Iterable[str]) -> Mapping[str, str]:
    """Texts of `paths` at `rev` (None: on disk); missing ones are left out."""
    paths = list(paths)
    if rev is None:
        out = {}
        for p in paths:
            try:
                with open(os.path.join(repo, p), encoding="utf-8") as fh:
                    out[p] = fh.read()
            except OSError:
                pass
        return out
    return {p: t for p, t in zip(paths, _cat(repo, rev, paths)) if t}
