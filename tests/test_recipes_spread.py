"""Recipes that spread magnitudes per row, column and channel, and the steered fuzzing:
a changed clamp floor that whole-tensor recipes never reach is caught."""

from __future__ import annotations

import dataclasses

import torch

import equiv
from equiv.dtypes import FP32
from equiv.inputs import ADVERSARIAL, adversarial_values, axis_exponents, generator, with_adversarial
from equiv.pair import KernelPair
from equiv.shapes import Dim, ShapeSpace
from tests import observe_kernels as K


def _realistic(cfg, gen):
    return {"x": torch.randn(cfg.R, cfg.C, generator=gen),
            "row_scale": 0.5 + torch.rand(cfg.R, 1, generator=gen),
            "col_scale": 0.5 + torch.rand(1, cfg.C, generator=gen)}


def _reference(inputs, cfg):
    t = inputs["x"].double() * inputs["row_scale"].double() * inputs["col_scale"].double()
    return {"y": t / t.abs().amax(dim=1, keepdim=True).clamp_min(K.AMAX_EPS)}


ROWQUANT = KernelPair(
    name="test.rowquant", pre=K.rowquant, retiled=K.rowquant_copy, reference=_reference,
    outputs=lambda cfg: {"y": ((cfg.R, cfg.C), FP32)},
    recipes=with_adversarial(_realistic, free_inputs=("row_scale", "col_scale")),
    shapes=ShapeSpace(dims={"R": Dim(1, 16), "C": Dim(64, 256, step=64)},
                      presets={"nominal": [dict(R=8, C=64)]}),
    accuracy_slack=1e9,  # the fixture judges pre vs retiled only
)
BROKEN = dataclasses.replace(ROWQUANT, retiled=K.rowquant_floor_x10)
OLD_KINDS = [k for k in ADVERSARIAL if k != "spread"]


def test_axis_exponents_scale_whole_rows_and_columns():
    e = axis_exponents((6, 5), generator(3))
    # the sum of one exponent per row and one per column: rank-2 structure, row differences
    # are the same in every column
    d = e[1:] - e[:-1]
    assert torch.equal(d, d[:, :1].expand_as(d))
    assert float(e.min()) <= -4  # some row or column is small
    x = adversarial_values("spread", torch.ones(64, 1), generator(0))
    assert (x < 2.0**-4).any() and (x >= 0.25).any()  # per-row magnitudes spread


def test_changed_clamp_floor_missed_by_whole_tensor_recipes():
    r = equiv.check(BROKEN, shapes="fuzz", examples=10, recipes=OLD_KINDS + ["realistic"], seed=1)
    assert r.ok  # the old recipes never produce a row whose |max| lies between 1e-4 and 1e-3


def test_changed_clamp_floor_caught_by_spread_recipe():
    r = equiv.check(BROKEN, shapes="fuzz", examples=10, seed=1)
    assert not r.ok and r.regressions
    assert any(c.case.recipe == "spread" for c in r.regressions)


def test_correct_retile_passes_every_recipe():
    r = equiv.check(ROWQUANT, shapes="fuzz", examples=10, seed=1)
    assert r.ok
    assert not r.decision_gaps("retiled")
