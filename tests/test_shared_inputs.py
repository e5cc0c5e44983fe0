"""A case's large inputs that a run holds in another form (a bf16 weight lives in float32) are
converted once per case and shared read-only by both versions and every poison and schedule
variant, never copied per run; a version that writes one still cannot change what the next
run or the other version sees."""

from __future__ import annotations

import torch

from equiv import shared_inputs
from equiv.dtypes import BF16, FP32
from equiv.options import Options
from equiv.pair import KernelPair
from equiv.runner import Case, run_case
from equiv.shapes import Dim, Shape, ShapeSpace
from equiv.tile import memory
from equiv import tile as pl

SEEN: list[torch.Tensor] = []  # each run's storage of x, kept alive so no address is reused


def reads(x, y, cfg):
    SEEN.append(x.data)
    t = pl.load(x, [0, 0], [2, cfg.C])
    pl.store(pl.cast(t, pl.FP32), [0, 0], y)


def writes_then_reads(x, y, cfg):
    SEEN.append(x.data)
    t = pl.load(x, [0, 0], [2, cfg.C])
    pl.store(pl.add(t, t), [0, 0], x)  # doubles its input in place
    pl.store(pl.cast(pl.load(x, [0, 0], [2, cfg.C]), pl.FP32), [0, 0], y)


X = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0], [-1.5] * 8], dtype=torch.bfloat16)


def _pair(pre, retiled) -> KernelPair:
    return KernelPair(
        name="test.shared_inputs", pre=pre, retiled=retiled,
        reference=lambda inputs, cfg: {"y": inputs["x"].double()},
        outputs=lambda cfg: {"y": ((2, cfg.C), FP32)},
        recipes={"realistic": lambda cfg, gen: {"x": X.clone()}},
        shapes=ShapeSpace(dims={"C": Dim(8, 8)}, presets={"nominal": [dict(C=8)]}))


def _lend_everything(monkeypatch) -> None:
    monkeypatch.setattr(memory, "BORROW_BYTES", 0)
    monkeypatch.setattr(shared_inputs, "BORROW_BYTES", 0)


def test_a_bf16_input_is_converted_once_per_case_and_lent_to_every_run(monkeypatch):
    _lend_everything(monkeypatch)
    SEEN.clear()
    r = run_case(_pair(reads, reads), Case(Shape({"C": 8}), "realistic", 0), Options(schedules=3))
    assert r.verdicts == {"y": "equivalent"}
    assert len(SEEN) >= 6  # 2 versions x (NaN run + 2 schedule runs)
    assert all(t.dtype == BF16.storage for t in SEEN)
    # one storage for every run of both versions: nothing was converted or copied per run
    assert len({t.untyped_storage().data_ptr() for t in SEEN}) == 1


def test_a_version_writing_its_shared_input_changes_nothing_for_the_next_run_or_the_other(monkeypatch):
    _lend_everything(monkeypatch)
    SEEN.clear()
    case = Case(Shape({"C": 8}), "realistic", 0)
    r = run_case(_pair(reads, writes_then_reads), case, keep_runs=True)
    # retiled doubles x in every one of its runs from the original values, and pre (run
    # before it) reads the original: retiled's y is 2x, a regression against the reference
    assert torch.equal(r.runs["pre"].outputs["y"], X.float())
    assert torch.equal(r.runs["retiled"].outputs["y"], 2 * X.float())
    assert r.verdicts == {"y": "regression"}
    # pre after retiled: still the original x in both of its runs
    r2 = run_case(_pair(writes_then_reads, reads), case, keep_runs=True)
    assert torch.equal(r2.runs["retiled"].outputs["y"], X.float())
    assert not bool(r2.runs["pre"].poisoned["y"].any())  # both of pre's runs saw one x
    # the DSL type of the shared input is bf16, as the kernel declared it, not float32
    assert shared_inputs.storage_forms({"x": X}, "cpu")["x"].dtype == BF16
