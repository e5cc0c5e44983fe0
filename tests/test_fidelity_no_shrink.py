"""A case that cannot be judged is not shrunk: a smaller case would show the same emulator
gap again, and on a model file each try is a full run."""

from __future__ import annotations

import pytest

from equiv import runner
from equiv.check import check as run_check
from tests.test_pairfree import (FILE, _double, _double_with_unknown_keyword, _tiny_pair, check,  # noqa: F401
                                 commit, kernel, repo)


def _half_written(x, y, cfg):
    from equiv import tile as pl

    for b in pl.spmd(cfg.T // 2 - 1, name_hint="rows"):  # broken: the last two rows unwritten
        y[b * 2:b * 2 + 2, :] = pl.mul(x[b * 2:b * 2 + 2, :], 2.0)


@pytest.fixture
def runs(monkeypatch):
    seen = []
    real = runner.run_case

    def counted(pair, case, options, *a, **k):
        seen.append(case)
        return real(pair, case, options, *a, **k)

    monkeypatch.setattr(runner, "run_case", counted)
    return seen


def test_a_case_that_cannot_be_judged_is_not_shrunk(runs):
    result = run_check(_tiny_pair(_double, _double_with_unknown_keyword), shapes="T=8", shrink_budget=10)
    assert result.unjudged and len(result.counterexamples) == 1
    assert runs == []  # the case itself ran (in check); shrinking ran nothing more
    assert result.counterexamples[0].case.shape["T"] == 8


def test_a_regression_is_still_shrunk(runs):
    result = run_check(_tiny_pair(_double, _half_written), shapes="T=8", shrink_budget=10)
    assert result.regressions and runs  # shrinking tried smaller cases
    assert result.counterexamples[0].case.shape["T"] < 8


def test_pair_free_cannot_judge_is_not_shrunk(repo, capsys, monkeypatch):
    tries = []
    monkeypatch.setattr(runner, "shrink", lambda *a, **k: tries.append(a) or a[1])
    a = commit(repo, {FILE: kernel(tile=4)})
    b = commit(repo, {FILE: kernel(tile=4, body="pl.store(pl.frobnicate(t), [b * T_TILE, 0], y)")})
    assert check(repo, FILE, a, b, "--shapes", "fuzz", "--examples", "2") == 2
    assert "CANNOT JUDGE" in capsys.readouterr().out and tries == []
