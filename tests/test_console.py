"""Console output people read: fits 80 columns, progress rewritten in place on a terminal (plain
lines in a pipe), no stale or wrapped lines, counts per case never mixed with counts per output.

The terminal test runs ``equiv check --all`` through a pseudo-terminal of 80 columns and
replays what it wrote through a small terminal model (carriage return, line feed, clear to
end of line, and the automatic wrap at the last column), then reads the final screen."""

from __future__ import annotations

import dataclasses
import fcntl
import io
import os
import re
import select
import struct
import subprocess
import sys
import termios

import pytest

import equiv
from equiv import registry
from equiv.cli import main
from equiv.pair import project_root
from equiv.progress import CLEAR_EOL, Progress
from equiv.results import Case
from equiv.summary import render, render_summary, table, wrap_command
from tests.broken_combine import drops_tail

COLUMNS = 80
COMBINE = equiv.get("moe.combine")


class Terminal:
    """Enough of a VT100 to tell what is left on screen: printable text, CR, LF, ESC[K, and the
    automatic wrap when a character lands past the last column (counted: a wrapped line)."""

    def __init__(self, columns: int):
        self.columns = columns
        self.lines: list[list[str]] = [[]]
        self.row = self.col = 0
        self.wraps = 0

    def feed(self, text: str) -> None:
        i = 0
        while i < len(text):
            ch = text[i]
            if ch == "\x1b":
                m = re.match(r"\x1b\[([0-9;]*)([A-Za-z])", text[i:])
                assert m, f"unexpected escape {text[i:i + 8]!r}"
                if m.group(2) == "K":
                    del self.lines[self.row][self.col:]
                else:
                    raise AssertionError(f"escape {m.group(0)!r} not expected from equiv")
                i += m.end()
                continue
            if ch == "\r":
                self.col = 0
            elif ch == "\n":
                self.row += 1
                if self.row == len(self.lines):
                    self.lines.append([])
                self.col = 0  # the pty's output processing turns \n into \r\n
            else:
                if self.col >= self.columns:
                    self.wraps += 1
                    self.row += 1
                    if self.row == len(self.lines):
                        self.lines.append([])
                    self.col = 0
                line = self.lines[self.row]
                line.extend(" " * (self.col - len(line)))
                if self.col < len(line):
                    line[self.col] = ch
                else:
                    line.append(ch)
                self.col += 1
            i += 1

    def screen(self) -> list[str]:
        return ["".join(line).rstrip() for line in self.lines]


DRIVER = """
import sys
from equiv import registry
keep = sys.argv[1].split(",")
registry.names()  # load the registry, then keep only the pairs asked for
for name in [k for k in registry._PAIRS if k not in keep]:
    del registry._PAIRS[name]
assert sorted(registry._PAIRS) == sorted(keep), sorted(registry._PAIRS)
from equiv.cli import main
sys.exit(main(sys.argv[2:]))
"""


def _run_in_pty(argv: list[str], pairs: str, columns: int = COLUMNS) -> tuple[int, str]:
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "COLUMNS", "LINES")}
    env["TERM"] = "xterm"
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, pairs, *argv], stdin=slave, stdout=slave, stderr=slave,
                            cwd=project_root(), env=env, close_fds=True)
    os.close(slave)
    chunks = []
    while True:
        ready, _, _ = select.select([master], [], [], 120)
        if not ready:
            proc.kill()
            raise AssertionError("no output for 120 s")
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return proc.wait(timeout=60), b"".join(chunks).decode("utf-8", "replace")


def test_check_all_in_an_80_column_terminal_leaves_no_wrapped_or_stale_lines():
    pairs = "csa.sparse_index,indexer.qr_rope"
    code, raw = _run_in_pty(["check", "--all", "--shapes", "nominal"], pairs)
    assert code == 0, raw[-3000:]
    assert "\r" in raw.replace("\r\n", "") and CLEAR_EOL in raw, "the progress line was not live"
    term = Terminal(COLUMNS)
    term.feed(raw)
    screen = term.screen()
    assert term.wraps == 0, "\n".join(screen)
    assert all(len(line) <= COLUMNS for line in screen)
    stale = [line for line in screen if "ETA" in line or "/s," in line]
    assert not stale, stale
    text = "\n".join(screen)
    # each pair streamed with its own result, then the summary and one overall line, last
    assert text.index("csa.sparse_index: OK") < text.index("indexer.qr_rope: OK") < text.index("verdicts (cases, worst output)")
    assert [line for line in screen if line.strip()][-1].startswith("result: OK (no regression) — 2 pairs")


def test_piped_progress_is_plain_lines_every_n_cases():
    buf = io.StringIO()
    progress = Progress(stream=buf, live=False, every=2)
    case = Case(COMBINE.shapes.parse("T=4,D=32"), "ties", 0)
    for done in range(6):
        progress("moe.combine", done, 6, case)
    progress("moe.combine", 6, 6, None)
    lines = buf.getvalue().splitlines()
    assert [line.split(" cases")[0] for line in lines] == ["moe.combine 2/6", "moe.combine 4/6"]
    assert all("ETA" in line and "/s" in line and "\r" not in line for line in lines)


def test_piped_progress_also_speaks_when_cases_are_slow():
    buf = io.StringIO()
    progress = Progress(stream=buf, live=False, every=100, every_seconds=0.0)
    case = Case(COMBINE.shapes.parse("T=4,D=32"), "ties", 0)
    for done in range(3):
        progress("expert_shared", done, 3, case)
    assert [line.split(" cases")[0] for line in buf.getvalue().splitlines()] == ["expert_shared 1/3",
                                                                                "expert_shared 2/3"]


def test_live_progress_rewrites_one_line_cut_to_the_terminal():
    buf = io.StringIO()
    progress = Progress(stream=buf, live=True)
    progress._columns = lambda: 40
    case = Case(COMBINE.shapes.parse("T=4,D=32"), "subnormals", 0)
    progress("moe.combine", 1, 6, case)
    progress.clear()
    out = buf.getvalue()
    assert out.startswith("\r") and out.endswith("\r" + CLEAR_EOL)
    status = out.split("\r")[1].removesuffix(CLEAR_EOL)
    assert 0 < len(status) <= 39 and status.startswith("moe.combine 1/6 cases")


def test_verdict_output_fits_80_columns_with_long_reasons():
    r = equiv.check(dataclasses.replace(COMBINE, retiled=drops_tail), shapes="T=8,D=64;T=7,D=96",
                    recipes=["realistic", "binades"], shrink_budget=2)
    text = render(r, max_width=80)
    assert max(len(line) for line in text.splitlines()) <= 80, text
    assert "result: REGRESSION — regression in moe.combine" in text
    # the header names every dimension of the shapes the cases ran at
    assert "shapes T=8,D=64;T=7,D=96: T=8,D=64,TOPK=6; T=7,D=96,TOPK=6" in text
    # a wrapped repro is still one shell command
    for line in text.splitlines():
        if line.rstrip().endswith("\\"):
            assert line.rstrip().endswith(" \\")


def test_summary_counts_cases_never_outputs(capsys):
    # csa.sparse_index has two outputs: per case × output counts would read double the cases
    r = equiv.check("csa.sparse_index", shapes="nominal", recipes=["realistic"])
    assert len(r.counts) == 2
    text = render_summary([r], max_width=80)
    row = next(line for line in text.splitlines() if line.startswith("csa.sparse_index"))
    n = len(r.results)
    assert re.search(rf"\b{n}\s+equivalent {n}\b", row), row


def test_tables_wrap_text_and_align_numbers():
    text = table(["name", "n", "what"], [["a", 1, "word " * 30], ["bb", 22, "short"]], max_width=40)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 40
    assert lines[2].startswith("a      1  word") and lines[-1].startswith("bb    22  short")


def test_repro_commands_wrap_with_continuations():
    cmd = "equiv check expert_shared --shapes 'T=8,D=7168,I=3072,L=10' --recipe subnormals --seed 0"
    lines = wrap_command(cmd, "    ", 60)
    assert all(len(line) <= 60 for line in lines) and len(lines) > 1
    joined = " ".join(line.strip().removesuffix("\\").strip() for line in lines)
    assert joined == cmd


def test_list_fits_80_columns(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 80
    assert all(name in out for name in registry.names())


def test_wider_terminals_get_wider_tables(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "160")
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2].rstrip().endswith("nominal,demo,flash,pro")


def test_markdown_verdict_table_counts_cases_too():
    from equiv.markdown import render_markdown

    r = equiv.check("csa.sparse_index", shapes="nominal", recipes=["realistic"])
    row = next(line for line in render_markdown([r], "equiv check").splitlines() if line.startswith("| `csa"))
    n = len(r.results)
    assert f"| {n} | {n} | 0 | 0 | 0 | 0 |" in row, row  # cases, then cases by worst verdict


@pytest.mark.parametrize("command", [[], ["check"], ["list"], ["bench"], ["report"], ["gate"], ["replay"],
                                     ["compare"]])
def test_help_fits_80_columns(capsys, monkeypatch, command):
    monkeypatch.setenv("COLUMNS", "80")
    with pytest.raises(SystemExit):
        main([*command, "--help"])
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 80, out
