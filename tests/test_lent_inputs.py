"""Inputs lent to a kernel run instead of copied (`Tensor.from_torch(borrow=True)`): every way
a kernel writes global memory copies the caller's tensor first and the run gives it back, so a
run on lent inputs computes what a run on copies computes and leaves the inputs as they were."""

import pytest
import torch

import equiv
from equiv.tile import memory
from equiv import tile as pl
from equiv.tile.context import RunContext, running
from equiv.tile.memory import Tensor
from equiv.options import Options
from equiv.results import Case
from equiv.runner import _run_once, make_inputs
from equiv.tile import rewrite

N, R, C = 4, 2, 8


@pytest.fixture
def lend_everything(monkeypatch):
    monkeypatch.setattr(memory, "BORROW_BYTES", 0)


def writes_by_store(x: pl.Tensor, out: pl.Tensor) -> None:
    t = pl.load(x, [0, 0], [R, C])
    pl.store(pl.add(t, 1.0), [0, 0], x)  # the kernel updates its input in place
    out[0:R, :] = pl.load(x, [0, 0], [R, C])


def writes_by_setitem(x: pl.Tensor, out: pl.Tensor) -> None:
    x[R : 2 * R, :] = pl.mul(x[0:R, :], 3.0)
    out[0:R, :] = x[R : 2 * R, :]


def writes_a_scalar(x: pl.Tensor, out: pl.Tensor) -> None:
    pl.write(x, [0, 0], 42.0)
    out[0:R, :] = x[0:R, :]


def adds_atomically(x: pl.Tensor, out: pl.Tensor) -> None:
    pl.store(pl.load(x, [0, 0], [R, C]), [R, 0], x, atomic=pl.AtomicType.Add)
    out[0:R, :] = x[R : 2 * R, :]


def batched_stage_writes(x: pl.Tensor, out: pl.Tensor) -> None:
    for b in pl.spmd(N, name_hint="rows"):
        x[b * R : b * R + R, :] = pl.neg(out[b * R : b * R + R, :])
    for b in pl.spmd(N, name_hint="back"):
        out[b * R : b * R + R, :] = x[b * R : b * R + R, :]


def reads_only(x: pl.Tensor, out: pl.Tensor) -> None:
    out[0:R, :] = pl.mul(x[0:R, :], 2.0)


KERNELS = [writes_by_store, writes_by_setitem, writes_a_scalar, adds_atomically, batched_stage_writes]


def run(kernel, x: torch.Tensor, borrow: bool, out_init: torch.Tensor | None = None):
    ctx = RunContext(Options(seed=1))
    with running(ctx):
        arg = Tensor.from_torch("x", x, borrow=borrow)
        out = Tensor("out", [N * R, C], pl.FP32)
        if out_init is not None:
            out.store(((0, N * R), (0, C)), out_init.double())
        try:
            rewrite.batched_kernel(kernel)(x=arg, out=out)
        finally:
            lent = dict(ctx.borrowed)
            ctx.give_back()
    return out.data.clone(), arg, lent


@pytest.mark.parametrize("kernel", KERNELS)
def test_a_run_that_writes_a_lent_input_gives_it_back_and_computes_what_a_copy_computes(lend_everything, kernel):
    x = torch.arange(N * R * C, dtype=torch.float32).reshape(N * R, C) / 4
    pristine = x.clone()
    init = torch.full((N * R, C), 0.5)
    copied, _, _ = run(kernel, x, borrow=False, out_init=init)
    assert torch.equal(x, pristine)
    for _ in range(2):  # the second run sees the input as it was
        got, arg, lent = run(kernel, x, borrow=True, out_init=init)
        assert arg.data.untyped_storage().data_ptr() == x.untyped_storage().data_ptr()  # lent, not copied
        assert [entry[1] is not None for entry in lent.values()] == [True]  # copied before its first write
        assert torch.equal(got, copied)
        assert torch.equal(x, pristine)


def test_an_input_only_read_is_never_copied(lend_everything):
    x = torch.randn(N * R, C)
    _, arg, lent = run(reads_only, x, borrow=True)
    assert arg.data.untyped_storage().data_ptr() == x.untyped_storage().data_ptr()
    assert [entry[1] for entry in lent.values()] == [None]


def test_small_inputs_and_ones_needing_conversion_are_copied():
    ctx = RunContext(Options())
    with running(ctx):
        small = torch.randn(4, 4)
        assert Tensor.from_torch("s", small, borrow=True).data.data_ptr() != small.data_ptr()
        bf16 = torch.randn(4, 4).to(torch.bfloat16)  # stored as float32: a conversion
        assert Tensor.from_torch("b", bf16, borrow=True).data.dtype == torch.float32
        assert not ctx.borrowed


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    # inputs may hold NaN (which torch.equal calls unequal to itself)
    if a.is_floating_point():
        width = {2: torch.int16, 4: torch.int32, 8: torch.int64}[a.element_size()]
        return torch.equal(a.view(width), b.view(width))
    return torch.equal(a, b)


@pytest.mark.parametrize("name", sorted(equiv.names()))
def test_registered_pairs_give_the_same_bits_on_lent_inputs(monkeypatch, name):
    pair = equiv.get(name)
    shape = pair.shapes.preset(next(iter(pair.shapes.presets)))[0]
    case = Case(shape, "realistic", 0)
    inputs = make_inputs(pair, case)
    pristine = {k: v.clone() for k, v in inputs.items() if isinstance(v, torch.Tensor)}
    results = {}
    for lend in (False, True):
        monkeypatch.setattr(memory, "BORROW_BYTES", 0 if lend else 1 << 62)
        for side in ("pre", "retiled"):
            outs, findings, error = _run_once(pair.kernel(side), pair, case, inputs, Options(seed=3), side)
            results[lend, side] = ({k: (t.data.clone(), t.written.clone()) for k, t in outs.items()}, findings, error)
            assert all(_same_bits(inputs[k], v) for k, v in pristine.items())
    for side in ("pre", "retiled"):
        (a, fa, ea), (b, fb, eb) = results[False, side], results[True, side]
        assert fa == fb and str(ea) == str(eb)
        for k in a:
            assert torch.equal(a[k][1], b[k][1])
            assert a[k][0].nan_to_num(7.25).tolist() == b[k][0].nan_to_num(7.25).tolist()
