"""A finding's cause is the first operation whose result differs, observed in traced runs
(`equiv.observe.cause`), at its kernel line: an atomic split-K sum is order-dependent and
names the atomic add, a wrong scale names the multiply, a read of memory nothing wrote names
the read, whatever the lines after them (the stores the older attribution named) show."""

from __future__ import annotations

import json

import pytest

from tests import test_schedules as sk
from tests.test_pairfree import FILE, check, commit, kernel, make_repo, repo  # noqa: F401 (fixture)


def line_of(text: str, marker: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if marker in line)


def outputs(doc: dict, name: str) -> list[dict]:
    got = [r["outputs"][name] for c in doc["checks"] for r in c["results"]]
    assert got, doc
    return got


def run(repo, path, a, b, tmp_path):
    out = tmp_path / "r.json"
    rc = check(repo, path, a, b, "--json", str(out), "--report", str(tmp_path / "r.html"))
    return rc, json.loads(out.read_text())


@pytest.fixture
def splitk_repo(tmp_path):
    r = make_repo(tmp_path)
    (r / "models" / "toy" / "config.py").write_text(sk.CONFIG)
    sk.git(r, "add", "models/toy/config.py")
    return r


def test_atomic_split_k_retile_is_caused_by_the_order_of_the_adds(splitk_repo, capsys, tmp_path):
    retiled = sk.source(sk.ATOMIC)
    a = commit(splitk_repo, {sk.FILE: sk.source(sk.FIXED)})
    b = commit(splitk_repo, {sk.FILE: retiled})
    rc, doc = run(splitk_repo, sk.FILE, a, b, tmp_path)
    assert rc == 1
    line = line_of(retiled, "# ATOMIC")
    for y in outputs(doc, "y"):
        assert y["verdict"] == "regression"
        cause = y["cause"]
        assert cause["kind"] == "order" and cause["side"] == "retiled"
        assert cause["site"].endswith(f"splitk.py:{line}")  # the atomic add, not the matmuls before it
        assert cause["text"].startswith("order-dependent")
        assert "uninitialised" not in cause["text"]
    out = capsys.readouterr().out
    assert "cause (observed): order-dependent" in out and f"splitk.py:{line}" in out


SCALED = '''u = pl.mul(t, {scale})  # SCALE
        v = pl.add(u, 1.0)  # SHIFT
        pl.store(v, [b * T_TILE, 0], y)  # STORE'''


def _scaled(tile: int, scale: str) -> str:
    return kernel(tile=tile, body=SCALED.format(scale=scale)).replace(
        'tensors["y"][:] = tensors["x"] * 2.0', 'tensors["y"][:] = tensors["x"] * 2.0 + 1.0')


def test_a_wrong_scale_names_the_multiply(repo, capsys, tmp_path):
    retiled = _scaled(2, "3.0")
    a = commit(repo, {FILE: _scaled(4, "2.0")})
    b = commit(repo, {FILE: retiled})
    rc, doc = run(repo, FILE, a, b, tmp_path)
    assert rc == 1
    for y in outputs(doc, "y"):
        assert y["verdict"] == "regression"
        cause = y["cause"]
        assert cause["kind"] == "difference"
        # The multiply's line, not the load before it (same values) nor the add and store after.
        assert cause["site"].endswith(f"scale.py:{line_of(retiled, '# SCALE')}")
        assert "pl.mul(t, 3.0)" in cause["text"] and "pl.mul(t, 2.0)" in cause["text"]  # both sides' lines
    # Nothing hidden: the console, the JSON and the HTML report all name it.
    page = (tmp_path / "r.html").read_text()
    for shown in (capsys.readouterr().out, json.dumps(doc), page):
        assert "cause (observed): the first operation of retiled whose result differs" in shown
        assert f"scale.py:{line_of(retiled, '# SCALE')}" in shown


def test_a_correct_retile_has_no_cause(repo, tmp_path):
    a = commit(repo, {FILE: _scaled(4, "2.0")})
    b = commit(repo, {FILE: _scaled(2, "2.0")})
    rc, doc = run(repo, FILE, a, b, tmp_path)
    assert rc == 0
    for y in outputs(doc, "y"):
        assert y["verdict"] == "equivalent" and y["cause"] is None


UNINIT = '''s = pl.create_tensor([T_TILE, D], dtype=pl.FP32)
        old = pl.load(s, [0, 0], [T_TILE, D])  # READ
        u = pl.add(pl.mul(t, 2.0), pl.mul(old, 0.0))
        pl.store(u, [b * T_TILE, 0], y)  # STORE'''


def test_a_read_of_unwritten_scratch_names_the_read(repo, capsys, tmp_path):
    retiled = kernel(tile=2, body=UNINIT)
    a = commit(repo, {FILE: kernel(tile=4)})
    b = commit(repo, {FILE: retiled})
    rc, doc = run(repo, FILE, a, b, tmp_path)
    assert rc == 1
    read, store = line_of(retiled, "# READ"), line_of(retiled, "# STORE")
    for y in outputs(doc, "y"):
        assert y["verdict"] == "regression"
        cause = y["cause"]
        assert cause["kind"] == "uninitialised" and cause["side"] == "retiled"
        assert cause["site"].endswith(f"scale.py:{read}")  # the read, not the store that wrote y
        assert f"scale.py:{store}" not in cause["text"]
    assert f"cause (observed): retiled reads uninitialised memory" in capsys.readouterr().out


def test_a_line_past_the_cap_is_named_as_not_compared(monkeypatch):
    import torch

    from equiv.observe import cause

    monkeypatch.setattr(cause, "CAP", 4)
    a, b = cause.OpTrace(), cause.OpTrace()
    for t, shift in ((a, 0.0), (b, 0.5)):
        t._add("k.py:1", torch.arange(40, dtype=torch.int64) + int(shift * 2))  # 40 distinct: past the cap
        t._add("k.py:2", torch.tensor([1, 2, 3]) * (1 if t is a else 2))
    hit = cause.first_difference(a, b, same_program=True)
    assert hit["site"] == "k.py:2" and hit["not_compared"] == ["k.py:1"]
    assert "not compared" in cause._cause("order", "retiled", hit, "order-dependent: first is")["text"]
    none = cause.first_difference(a, a, same_program=True)
    assert none["site"] is None
    assert cause._cause("order", "retiled", none, "x")["text"].startswith("not found")
