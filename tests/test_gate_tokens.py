"""The gate's default shapes add a token count that spans several tiles where the file's own
fits one: a kernel that loses the tail of its second 128-token tile is caught by the default
gate, and a correct one passes."""

from __future__ import annotations

from equiv.pairfree import plan as planning
from equiv.pairfree import tokens
from tests.test_gate_pr import gate
from tests.test_pairfree import FILE, commit, kernel, repo  # noqa: F401 - `repo` is a fixture

FULL = "T // T_TILE"
# Full 128-row tiles, then the tail. The defect handles the tail only when it is the first
# tile (T < 128): at the file's own 8 tokens both are right; at 136 the second tile's 8 rows
# stay unwritten.
TAIL = '''
    if T % T_TILE and {cond}:
        r = T % T_TILE
        t = pl.load(x, [T - r, 0], [r, D])
        pl.store(pl.mul(t, 2.0), [T - r, 0], y)
'''


def tiled(cond: str) -> str:
    text = kernel(tile=128, blocks=FULL)
    return text.replace("    return y\n", TAIL.format(cond=cond).lstrip("\n") + "    return y\n", 1)


CORRECT = tiled("True")
LOSES_SECOND_TAIL = tiled("T // T_TILE == 0")


def test_candidates_grow_one_constant_per_group_past_one_tile():
    assert tokens.candidates({"TOKENS": 8}) == [("TOKENS", 8, 136)]
    assert tokens.candidates({"DECODE_BATCH": 4, "DECODE_SEQ": 2, "PREFILL_BATCH": 1, "PREFILL_SEQ": 512}) \
        == [("DECODE_BATCH", 4, 68)]  # 68 x 2 = 136 tokens; prefill's 512 already spans tiles
    assert tokens.candidates({"TOKENS": 256}) == []


def test_a_kernel_losing_the_second_tile_s_tail_is_caught_by_the_default_gate(repo, capsys):  # noqa: F811
    base = commit(repo, {FILE: CORRECT})
    head = commit(repo, {FILE: LOSES_SECOND_TAIL})
    planned = planning.plan_file(str(repo), base, FILE, head, FILE)
    assert ("scale_test", {"TOKENS": 136}) in [(p.entry, p.config) for p in planned]
    assert gate(repo, base, "--head", head, "--recipe", "realistic") == 1
    out = capsys.readouterr().out
    assert f"PASS          {FILE}:scale_test (" in out  # the file's own 8 tokens: one tile, right
    assert f"FAIL          {FILE}:scale_test [TOKENS=136]" in out and "unwritten" in out


def test_a_correct_multi_tile_kernel_passes(repo, capsys):  # noqa: F811
    base = commit(repo, {FILE: kernel(tile=4)})
    head = commit(repo, {FILE: CORRECT})
    assert gate(repo, base, "--head", head, "--recipe", "realistic") == 0
    out = capsys.readouterr().out
    assert f"PASS          {FILE}:scale_test [TOKENS=136]" in out and "gate: PASS" in out


def test_a_multi_tile_count_beyond_the_growth_bound_is_not_added(repo, monkeypatch):  # noqa: F811
    monkeypatch.setattr(tokens, "SMALL_BYTES", 4096)  # 136 tokens declare 17 kB, 17x the bytes of 8
    base = commit(repo, {FILE: CORRECT})
    head = commit(repo, {FILE: LOSES_SECOND_TAIL})
    assert [p.config for p in planning.plan_file(str(repo), base, FILE, head, FILE)] == [{}, {}]
