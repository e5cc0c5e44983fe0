"""Every git command equiv runs, in one place: revisions, trees, file texts and diffs of the
repositories it checks (never of its own checkout's state beyond what a caller asks).

Each call names the error type its caller reports (`SourceError`, `GateError`, ...), so a
failure reads as that caller's usage error with git's own explanation in it.
"""

from __future__ import annotations

import subprocess
from typing import Sequence


def _run(repo: str | None, args: Sequence[str], data: bytes | str | None, text: bool,
         error: type[Exception]) -> subprocess.CompletedProcess:
    cmd = ["git", *(["-C", repo] if repo is not None else []), *args]
    try:
        return subprocess.run(cmd, capture_output=True, input=data, text=text, check=False)
    except FileNotFoundError:
        raise error("git is not installed; revisions need git") from None


def _failure(repo: str | None, args: Sequence[str], out: subprocess.CompletedProcess) -> str:
    stderr = out.stderr.decode(errors="replace") if isinstance(out.stderr, bytes) else (out.stderr or "")
    stdout = out.stdout.decode(errors="replace") if isinstance(out.stdout, bytes) else (out.stdout or "")
    why = stderr.strip() or stdout.strip() or f"exit status {out.returncode}"
    where = f" (in {repo})" if repo is not None else ""
    return f"git {' '.join(args)}{where}: {why}"


def output(repo: str | None, *args: str, error: type[Exception] = RuntimeError, data: str | None = None) -> str:
    """Standard output of ``git -C repo ARGS`` (text); `error` with git's message on failure."""
    out = _run(repo, args, data, True, error)
    if out.returncode != 0:
        raise error(_failure(repo, args, out))
    return out.stdout


def output_bytes(repo: str | None, *args: str, error: type[Exception] = RuntimeError,
                 data: bytes | None = None) -> bytes:
    """`output` without decoding (object contents, NUL-separated listings)."""
    out = _run(repo, args, data, False, error)
    if out.returncode != 0:
        raise error(_failure(repo, args, out))
    return out.stdout


def succeeds(repo: str | None, *args: str) -> bool:
    """Whether ``git -C repo ARGS`` exits 0 (False also when git is missing)."""
    try:
        return subprocess.run(["git", *(["-C", repo] if repo is not None else []), *args],
                              capture_output=True, check=False).returncode == 0
    except FileNotFoundError:
        return False


def answer(repo: str | None, *args: str) -> str | None:
    """Standard output of a git query, or None where git says no (not a repository, no such
    revision) or is missing."""
    try:
        out = subprocess.run(["git", *(["-C", repo] if repo is not None else []), *args],
                             capture_output=True, text=True, check=False)
    except FileNotFoundError:
        return None
    return out.stdout if out.returncode == 0 else None


def read_objects(repo: str, objects: Sequence[str], error: type[Exception] = RuntimeError) -> dict[str, str]:
    """The text of each git object (a blob id or ``REV:PATH``) of `repo`, read by one
    ``git cat-file --batch``: hundreds of ``git show`` calls are slow."""
    out = output_bytes(repo, "cat-file", "--batch", error=error,
                       data="".join(f"{o}\n" for o in objects).encode())
    texts, pos = {}, 0
    for obj in objects:
        header_end = out.index(b"\n", pos)
        size = int(out[pos:header_end].split()[2])
        texts[obj] = out[header_end + 1:header_end + 1 + size].decode("utf-8", errors="replace")
        pos = header_end + 1 + size + 1
    return texts
