"""Decision coverage: per kernel line, which outcomes of max/min, cmp, casts, scalar `if`
tests and index guards occurred, and the gaps a check reports."""

from __future__ import annotations

import dataclasses

import torch

import equiv
from equiv.dtypes import FP32
from equiv.tile.context import RunContext, running
from equiv.tile.memory import Tensor
from equiv.observe import decisions as cov
from equiv.observe.decisions import DecisionObserver
from equiv.options import Options
from equiv.shapes import Shape
from tests import observe_kernels as K
from tests.test_recipes_spread import ROWQUANT


def _observe(kernel, inputs: dict, outputs: dict, **cfg):
    ctx = RunContext(Options())
    obs = DecisionObserver()
    ctx.attach(obs)
    with running(ctx):
        args = {k: Tensor.from_torch(k, v) for k, v in inputs.items()}
        outs = {k: Tensor(k, shape, dt) for k, (shape, dt) in outputs.items()}
        result = kernel(**args, **outs, cfg=Shape(cfg))
    return obs.sites, outs, result


def _by_op(sites: dict) -> dict[str, tuple[str, set]]:
    return {rec.op: (site, rec.seen) for site, rec in sites.items()}


def test_maximum_records_which_operand_won_per_site():
    x = torch.tensor([[1.0, -2.0], [3e-6, -1e-6]])
    ones = torch.ones(2, 1), torch.ones(1, 2)
    sites, outs, _ = _observe(K.rowquant, {"x": x, "row_scale": ones[0], "col_scale": ones[1]},
                              {"y": ((2, 2), FP32)}, R=2, C=2)
    maxes = {s: r for s, r in sites.items() if r.op == "maximum"}
    assert len(maxes) == 2  # |t| and the eps floor are two kernel lines
    floor = [r for s, r in maxes.items() if s.endswith(":" + str(_line(K._rowquant, "amax = pl.maximum")))][0]
    # row 0: amax 2 > eps (first won); row 1: amax 3e-6 < 1e-4 (second won)
    assert floor.seen == {"first won", "second won"}
    # the value check (independent arithmetic): row 1 divided by the floor
    assert torch.allclose(outs["y"].data[1].double(), torch.tensor([3e-6, -1e-6], dtype=torch.float64) / 1e-4, rtol=1e-6)
    # row of small values only: the floor's second operand never wins without it
    sites2, _, _ = _observe(K.rowquant, {"x": x[:1], "row_scale": ones[0][:1], "col_scale": ones[1]},
                            {"y": ((1, 2), FP32)}, R=1, C=2)
    floor2 = [r for s, r in sites2.items() if r.op == "maximum" and r.seen != {"first won", "second won"}]
    assert floor2 and floor2[0].missing() == ["second won"]


def _line(fn, text: str) -> int:
    import inspect

    lines, start = inspect.getsourcelines(fn)
    return start + next(i for i, ln in enumerate(lines) if text in ln)


def test_scalar_if_index_guard_and_saturating_cast():
    flags = torch.tensor([1.0, -1.0, 300.0, 0.5])
    sites, outs, q = _observe(K.scalar_if, {"flags": flags}, {"out": ((4,), FP32)}, N=4)
    ops = _by_op(sites)
    site, seen = ops["scalar >"]
    assert site.endswith(f":{_line(K.scalar_if, 'if v > 0')}") and seen == {"true", "false"}
    assert torch.equal(outs["out"].data, torch.tensor([1.0, 2.0, 1.0, 1.0], dtype=torch.float64))
    # pl.min(4, 4): a tie, neither operand won
    assert ops["pl.min"][1] == set()
    # 300 saturates to 127, the rest are in range
    assert ops["cast to INT8"][1] == {"saturated", "in range"}
    assert q.data.tolist() == [1, -1, 127, 1]  # round: ties away from zero (0.5 -> 1)
    # only positive flags: the `else` branch never runs, and the record says so
    sites2, _, _ = _observe(K.scalar_if, {"flags": torch.tensor([1.0, 2.0])}, {"out": ((2,), FP32)}, N=2)
    assert _by_op(sites2)["scalar >"][1] == {"true"}
    assert _by_op(sites2)["pl.min"][1] == {"first won"}  # 2 < 4
    assert _by_op(sites2)["cast to INT8"][1] == {"in range"}


def test_traced_scalars_degrade_to_plain_numbers():
    from equiv.tile.scalars import TracedFloat, traced

    v = traced(2.5)
    assert isinstance(v, TracedFloat)
    assert type(v + 1) is float and type(v * 2) is float and v + 1 == 3.5
    assert type(traced(3) // 2) is int


def test_check_lists_unexercised_sites_and_declared_reasons():
    pair = dataclasses.replace(ROWQUANT, name="test.rowquant.decisions")
    r = equiv.check(pair, shapes="R=4,C=64", recipes=["realistic"])
    gaps = r.decision_gaps("retiled")
    assert len(gaps) == 1 and gaps[0]["op"] == "maximum" and gaps[0]["missing"] == ["second won"]
    assert "never occurred in 1 case" in gaps[0]["text"]
    assert r.to_dict()["decisions"]["retiled"]["gaps"][0]["site"] == gaps[0]["site"]
    key = gaps[0]["site"].rsplit("/", 1)[-1]
    cov.declare_unreachable(pair.name, {key: "rows are normalised by construction"})
    try:
        r2 = equiv.check(pair, shapes="R=4,C=64", recipes=["realistic"])
        assert not r2.decision_gaps("retiled")
        assert r2.decision_gaps("retiled", declared=True)[0]["reason"] == "rows are normalised by construction"
    finally:
        cov.UNREACHABLE.pop(pair.name, None)


def test_correct_pair_covers_every_outcome_with_spread_inputs():
    r = equiv.check(ROWQUANT, shapes="R=8,C=64", recipes=["spread"], examples=3)
    assert r.ok
    assert r.decisions["retiled"]["gaps"] == []


def test_declared_unreachable_sites_point_at_decisions():
    """A reason-table key must name a kernel line that decides (a stale line number after a
    kernel edit would silently excuse nothing)."""
    import os

    from equiv import registry

    for name in registry.names():
        registry.get(name)
    decides = ("pl.cast", "pl.maximum", "pl.minimum", "pl.cmp", "pl.min(", "pl.max(", "if ")
    checked = 0
    for pair_name, table in cov.UNREACHABLE.items():
        kernel_dir = os.path.dirname(registry.get(pair_name).pre.__code__.co_filename)
        for key in table:
            path, line = key.rsplit(":", 1)
            with open(os.path.join(kernel_dir, path)) as f:
                text = f.readlines()[int(line) - 1]
            assert any(d in text for d in decides), f"{pair_name} {key}: {text.strip()}"
            checked += 1
    assert checked >= 10
