"""Writer attribution: each output element's last writing site and block, and the cause of an
unwritten region (the other version's writers, this version's loop and block count)."""

from __future__ import annotations

import dataclasses
import inspect

import torch

import equiv
from equiv.dtypes import FP32
from equiv.tile.sites import SITES
from equiv.tile.context import RunContext, running
from equiv.tile.memory import Tensor
from equiv.observe import Observer
from equiv.options import Options
from equiv.pair import KernelPair
from equiv.shapes import Dim, ShapeSpace
from tests import observe_kernels as K


def _line(fn, text: str) -> int:
    lines, start = inspect.getsourcelines(fn)
    return start + next(i for i, ln in enumerate(lines) if text in ln)


COPY = KernelPair(
    name="test.copy", pre=K.copy_blocks, retiled=K.copy_blocks,
    reference=lambda inputs, cfg: {"y": inputs["x"].double()},
    outputs=lambda cfg: {"y": ((2, cfg.C), FP32)},
    recipes={"realistic": lambda cfg, gen: {"x": torch.randn(2, cfg.C, generator=gen)}},
    shapes=ShapeSpace(dims={"C": Dim(128, 256, step=64)}, presets={"nominal": [dict(C=256)]}))


def test_every_stored_element_names_its_site():
    ctx = RunContext(Options())
    ctx.attach(Observer())  # an observed run keeps the site map
    with running(ctx):
        x = Tensor.from_torch("x", torch.arange(8.0).reshape(2, 4))
        y = Tensor("y", (2, 4), FP32)
        y[:, 0:2] = x[:, 0:2]
        line_a = inspect.currentframe().f_lineno - 1
        y[:, 2:4] = x[:, 2:4]
        line_b = inspect.currentframe().f_lineno - 1
    names = [[SITES[i] for i in row] for row in y.site_ids.tolist()]
    assert names[0][0].endswith(f"test_attribution.py:{line_a}") and names[1][1] == names[0][0]
    assert names[0][3].endswith(f"test_attribution.py:{line_b}")


def test_unwritten_region_is_attributed_to_the_other_versions_store_and_this_loop():
    r = equiv.check(dataclasses.replace(COPY, retiled=K.copy_one_block), shapes="C=256")
    assert r.failed
    out = r.results[0].outputs["y"]
    why = [a for a in out.attribution if a["side"] == "retiled" and a["what"] == "unwritten"]
    assert len(why) == 1
    text = why[0]["text"]
    store = f"observe_kernels.py:{_line(K.copy_blocks, 'y[:, b * 64')}"
    loop = f"observe_kernels.py:{_line(K.copy_one_block, 'pl.spmd(C // 128')}"
    # pre wrote cols 128..256 in blocks 2-3 of its stage; retiled's loop runs C // 128 = 2 blocks
    # (the store of retiled covers cols 0..128 only)
    assert f"pre writes y[0:2, 128:256] at {store}, blocks 2–3 of stage copy_cols" in text
    assert "retiled's stage copy_cols at" in text and "runs 2 blocks" in text and loop in text
    assert "pl.spmd(C // 128" in text  # the loop's own source line
    assert any("pl.spmd(C // 128" in line for line in why[0]["sources"].values())
    assert any(x.startswith("why retiled unwritten:") for x in out.reasons)


def test_correct_retile_has_no_attribution():
    r = equiv.check(COPY, shapes="nominal")
    assert r.ok
    assert all(not o.attribution for c in r.results for o in c.outputs.values())
