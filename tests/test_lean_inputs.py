"""Lean inputs: adversarial recipes made a chunk at a time straight into the narrow result,
with the bits (and the generator's state after) of drawing every stream whole."""

from __future__ import annotations

import pytest
import torch

from equiv import inputs, numerics
from equiv.inputs import ADVERSARIAL, adversarial_values, generator


def _sign(shape, gen):
    return torch.randint(0, 2, shape, generator=gen).to(torch.float64) * 2 - 1


def whole(kind: str, like: torch.Tensor, gen: torch.Generator, spread: int = 24) -> torch.Tensor:
    """Every stream drawn whole in float64, then cast: the definition the chunks must match."""
    shape = tuple(like.shape)
    fmt = numerics.format_of(like.dtype)
    p = fmt.mantissa_bits + 1
    if kind == "binades":
        mant = 1 + torch.rand(shape, generator=gen, dtype=torch.float64)
        exps = torch.randint(-spread, spread + 1, shape, generator=gen).to(torch.float64)
        x = _sign(shape, gen) * mant * torch.exp2(exps)
    elif kind == "ties":
        x = torch.randint(-(2**p) + 1, 2**p, shape, generator=gen).to(torch.float64) * 2.0 ** (-p + 2)
    elif kind == "zeros":
        zero = torch.rand(shape, generator=gen) < 0.5
        x = torch.where(zero, _sign(shape, gen) * 0.0, like.to(torch.float64))
    elif kind == "subnormals":
        k = torch.randint(-p, 3, shape, generator=gen).to(torch.float64)
        x = _sign(shape, gen) * (1 + torch.rand(shape, generator=gen, dtype=torch.float64)) \
            * fmt.min_normal * torch.exp2(k)
    elif kind == "spread":
        x = like.to(torch.float64) * torch.exp2(inputs.axis_exponents(shape, gen))
        cap = fmt.max_finite / 8
        x = torch.where(x.abs() > cap, torch.sign(x) * cap, x)
    else:  # extremes
        frac = torch.rand(shape, generator=gen, dtype=torch.float64) * 0.5 + 0.25
        x = _sign(shape, gen) * frac * fmt.max_finite / 8
    return numerics.cast(x, fmt)


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.view(torch.int16 if t.element_size() == 2 else torch.int32)


@pytest.mark.parametrize("kind", ADVERSARIAL)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_chunked_recipes_give_the_bits_of_whole_draws(kind, dtype, monkeypatch):
    like = (torch.randn(3, 5, 7, generator=generator(9)) * 3).to(dtype)
    want_gen = generator(4)
    want = whole(kind, like, want_gen)
    for chunk in (1 << 22, 16, 13, 1):  # one chunk, and chunks that split rows unevenly
        monkeypatch.setattr(inputs, "CHUNK", chunk)
        gen = generator(4)
        got = adversarial_values(kind, like, gen)
        assert got.dtype == dtype and got.shape == like.shape
        assert torch.equal(_bits(got), _bits(want)), (kind, chunk)
        # the next recipe's draws start where they did
        assert torch.equal(torch.rand(4, generator=gen), torch.rand(4, generator=generator(0).set_state(
            want_gen.get_state())))


GROWTH = """
import resource, sys, torch
from equiv.inputs import adversarial_values, generator
like = torch.zeros(40, 1 << 20, dtype=torch.bfloat16)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
out = adversarial_values(sys.argv[1], like, generator(1))
assert out.dtype == torch.bfloat16 and bool(torch.isfinite(out.float()).all())
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 2**10)
"""


@pytest.mark.parametrize("kind", ["binades", "spread"])
def test_a_large_input_is_made_without_its_float64_temporaries(kind):
    """40M bf16 elements (80 MiB), in a fresh process: drawn whole in float64 this took 30
    times its bytes."""
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", GROWTH, kind], capture_output=True, text=True, env=env, check=True)
    grew = float(out.stdout.split()[-1])
    assert grew < 1000, f"the {kind} recipe grew the peak by {grew:.0f} MiB for an 80 MiB input"


MAIN = '''
import torch


def entry(x, y, cache):
    pass


if __name__ == "__main__":
    from golden import TensorSpec, run_jit
    run_jit(fn=entry, golden_fn=None, specs=[
        TensorSpec("x", [4, 4], torch.bfloat16, init_value=torch.randn),
        TensorSpec("y", [1024, 1024], torch.float32, is_output=True),
        TensorSpec("cache", [4, 4], torch.float32, init_value=1.5, is_output=True)])
'''


def test_a_zero_filled_output_is_not_materialized_but_inputs_and_initial_values_are(monkeypatch):
    import sys
    import types

    from equiv.pairfree import discovery, specs
    from equiv.pairfree import golden as golden_stub

    monkeypatch.setitem(sys.modules, "golden", golden_stub.make_module())
    mod = types.ModuleType("fixture_lean")
    mod.__file__ = "fixture_lean.py"
    exec(compile(MAIN, "fixture_lean.py", "exec"), mod.__dict__)
    call = discovery.materialized(mod, MAIN, (), "entry", 0, seed=3)
    # the harness's zero fill of `y` (4 MiB here, GBs for a Pro output) is left to the runs
    # (poison) and the reference (its own zeros)
    assert set(call.materialized) == {"x", "cache"}
    got = specs.inputs_of(call)
    assert set(got) == {"x", specs.INITIAL_PREFIX + "cache"} and got["x"].dtype == torch.bfloat16
    assert torch.equal(got[specs.INITIAL_PREFIX + "cache"], torch.full((4, 4), 1.5))


def test_integer_valued_looks_at_every_chunk_and_agrees_with_the_whole_tensor():
    from equiv.pairfree.specs import integer_valued

    whole_numbers = torch.arange(0, 1000, dtype=torch.float32).to(torch.bfloat16)
    assert integer_valued(whole_numbers, chunk=64)
    for at in (0, 500, 999):  # a fraction in the first, a middle and the last chunk
        v = whole_numbers.clone()
        v[at] = 0.5
        assert not integer_valued(v, chunk=64) and not bool(torch.all(v == torch.round(v)))
    assert integer_valued(whole_numbers.reshape(10, 100), chunk=7)
