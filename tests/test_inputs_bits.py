"""Inputs made fast are the inputs they were: for every registered pair, preset and recipe,
`make_inputs` gives the bits, dtypes and generator state after of the straightforward path
kept here (each recipe drawn afresh, adversarial values drawn as before, rounded by
`numerics.cast`); and the pieces of the fast path hold on the values that break roundings."""

from __future__ import annotations

import math

import pytest
import torch

from equiv import inputs, numerics, registry
from equiv.inputs import generator, narrow
from equiv.results import Case
from equiv.runner import make_inputs

# ---------------------------------------------------------------------------
# the reference path: adversarial values as they were drawn, chunked, rounded by numerics.cast


def _reference_values(kind: str, like: torch.Tensor, gen: torch.Generator, spread: int = 24) -> torch.Tensor:
    shape = tuple(like.shape)
    fmt = numerics.format_of(like.dtype)
    p = fmt.mantissa_bits + 1
    base = like.reshape(-1)

    def rand64(g, n):
        return torch.rand(n, generator=g, dtype=torch.float64)

    def randint(lo, hi):
        return lambda g, n: torch.randint(lo, hi, (n,), generator=g)

    def rand32(g, n):
        return torch.rand(n, generator=g)

    def signs(bits):
        return bits.to(torch.float64) * 2 - 1

    if kind == "binades":
        draws = [rand64, randint(-spread, spread + 1), randint(0, 2)]

        def combine(d, a, b):
            return signs(d[2]) * (1 + d[0]) * torch.exp2(d[1].to(torch.float64))
    elif kind == "ties":
        draws = [randint(-(2**p) + 1, 2**p)]

        def combine(d, a, b):
            return d[0].to(torch.float64) * 2.0 ** (-p + 2)
    elif kind == "zeros":
        draws = [rand32, randint(0, 2)]

        def combine(d, a, b):
            return torch.where(d[0] < 0.5, signs(d[1]) * 0.0, base[a:b].to(torch.float64))
    elif kind == "subnormals":
        draws = [randint(-p, 3), randint(0, 2), rand64]

        def combine(d, a, b):
            return signs(d[1]) * (1 + d[2]) * fmt.min_normal * torch.exp2(d[0].to(torch.float64))
    elif kind == "spread":
        draws = []
        vectors = [inputs._axis_draw(n, gen) if n > 1 else None for n in shape]
        cap = fmt.max_finite / 8

        def combine(d, a, b):
            idx = torch.arange(a, b, dtype=torch.int64)
            total = torch.zeros(b - a, dtype=torch.float64)
            for axis in range(len(shape) - 1, -1, -1):
                if vectors[axis] is not None:
                    total = total + vectors[axis][idx % shape[axis]]
                idx = idx // shape[axis]
            x = base[a:b].to(torch.float64) * torch.exp2(total)
            return torch.where(x.abs() > cap, torch.sign(x) * cap, x)
    else:
        assert kind == "extremes", kind
        draws = [rand64, randint(0, 2)]

        def combine(d, a, b):
            return signs(d[1]) * (d[0] * 0.5 + 0.25) * fmt.max_finite / 8
    n = base.numel()
    out = torch.empty(shape, dtype=fmt.torch_dtype)
    flat = out.view(-1)
    chunk = inputs.CHUNK
    if n <= chunk:
        flat.copy_(numerics.cast(combine([draw(gen, n) for draw in draws], 0, n), fmt))
        return out
    streams = []
    for draw in draws:  # every stream drawn twice: once to find where the next one starts
        streams.append(torch.Generator(device="cpu").set_state(gen.get_state()))
        for a in range(0, n, chunk):
            draw(gen, min(chunk, n - a))
    for a in range(0, n, chunk):
        b = min(a + chunk, n)
        flat[a:b] = numerics.cast(combine([draw(g, b - a) for draw, g in zip(draws, streams)], a, b), fmt)
    return out


def _saturated_as_it_was(cfg, gen: torch.Generator) -> dict:
    """expert_shared's saturated recipe as first written: every draw and product in int64."""
    from kernels.expert_shared.pair import W2_GEN, gen_shared_weight

    T, D, I = cfg.T, cfg.D, cfg.I
    sign_x = torch.randint(0, 2, (T, D), generator=gen) * 2 - 1
    x_i8 = (sign_x * 127).to(torch.int8)
    x_sd = torch.full((T, 1), 3.5 / 127.0, dtype=torch.float32)

    def aligned(out):
        token = torch.randint(0, T, (out,), generator=gen)
        agree = torch.rand(out, 1, generator=gen)
        same = torch.rand(out, D, generator=gen) < agree
        rand_sign = torch.randint(0, 2, (out, D), generator=gen) * 2 - 1
        flip = torch.randint(0, 2, (out, 1), generator=gen) * 2 - 1
        sign = torch.where(same, sign_x[token] * flip, rand_sign)
        mag = torch.randint(64, 128, (out, D), generator=gen)
        s = (40.0 / (D * 96.0 * 3.5)) * (0.5 + torch.rand(out, generator=gen))
        return (sign * mag).to(torch.int8), s.float()

    w1, s1 = aligned(I)
    w3, s3 = aligned(I)
    w2, s2 = gen_shared_weight(D, I, *W2_GEN, gen)
    return {"x_local_i8": x_i8, "x_local_scale_dq": x_sd,
            "shared_w1": w1, "shared_w1_scale": s1, "shared_w3": w3, "shared_w3_scale": s3,
            "shared_w2": w2, "shared_w2_scale": s2}


# recipes of a pair's own whose code changed for speed: the code they had
AS_IT_WAS = {("expert_shared", "saturated"): _saturated_as_it_was}


def _unwrapped(recipe):
    return getattr(recipe, "__wrapped__", recipe) if getattr(recipe, "remembers", False) else recipe


def _reference_inputs(pair, recipe: str, shape, gen: torch.Generator) -> dict:
    fn = pair.recipes[recipe]
    made_of = getattr(fn, "adversarial", None)
    if made_of is None:
        return AS_IT_WAS.get((pair.name, recipe), _unwrapped(fn))(shape, gen)
    kind, realistic, free = made_of
    got = realistic(shape, gen)
    for name in free:
        got[name] = _reference_values(kind, got[name], gen)
    return got


def _same(got: dict, want: dict, where: str) -> None:
    assert list(got) == list(want), where
    for name, w in want.items():
        g = got[name]
        if isinstance(w, torch.Tensor):
            assert isinstance(g, torch.Tensor) and g.dtype == w.dtype and g.shape == w.shape, (where, name)
            if w.is_floating_point():
                bits = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[w.element_size()]
                assert torch.equal(g.contiguous().view(bits), w.contiguous().view(bits)), (where, name)
            else:
                assert torch.equal(g, w), (where, name)
        else:
            assert g == w or (isinstance(w, float) and math.isnan(w) and math.isnan(g)), (where, name)


def _all_cases():
    for pair in registry.all_pairs():
        for shape in pair.shapes.all_presets():
            yield pytest.param(pair.name, shape, id=f"{pair.name}-{shape}")


@pytest.mark.parametrize("name,shape", list(_all_cases()))
def test_every_recipe_makes_the_bits_of_the_reference_path(name, shape):
    pair = registry.get(name)
    for seed in (0, 5):
        for recipe in pair.recipes:
            fn = pair.recipes[recipe]
            derived = hasattr(fn, "adversarial") or getattr(fn, "remembers", False)
            if seed and not derived:
                continue  # a pair's own recipe: no draw of it is remembered, one seed is enough
            where = f"{name} {shape} {recipe} seed {seed}"
            want_gen = generator(seed)
            want = _reference_inputs(pair, recipe, shape, want_gen)
            if derived:  # made as a check makes it; then again, from what the first one left
                _same(make_inputs(pair, Case(shape, recipe, seed)), want, where)
            gen = generator(seed)  # and the generator is left where the reference leaves it
            _same(fn(shape, gen), want, where + (" (again)" if derived else ""))
            assert torch.equal(gen.get_state(), want_gen.get_state()), where


# ---------------------------------------------------------------------------
# the pieces


def _tricky(fmt: numerics.FloatFormat, n: int) -> torch.Tensor:
    """float64 values at and between the format's values: ties (even and odd), just off
    ties, subnormals and below, the overflow threshold, signed zeros and infinities."""
    gen = generator(11)
    q = fmt.mantissa_bits
    vals = [0.0, -0.0, math.inf, -math.inf, fmt.max_finite, -fmt.max_finite, fmt.min_normal,
            fmt.min_normal * 2.0 ** -q, fmt.min_normal * 2.0 ** -(q + 1), fmt.min_normal * 2.0 ** -(q + 2),
            1e-300, -1e-300, 5e-324, 1e300]
    ulp_max = 2.0 ** (math.floor(math.log2(fmt.max_finite)) - q)
    vals += [fmt.max_finite + ulp_max / 2, fmt.max_finite + ulp_max / 2 * (1 - 2**-40),
             -(fmt.max_finite + ulp_max / 2)]
    for k in range(-3, 4):
        for e in (0, 1, -20, fmt.emin, fmt.emin - 3):
            one = 2.0 ** e
            tie = one * (1 + (2 * k + 1) * 2.0 ** -(q + 1))
            vals += [tie, -tie, math.nextafter(tie, 0), math.nextafter(tie, math.inf)]
    fixed = torch.tensor(vals, dtype=torch.float64)
    mant = 1 + torch.rand(n, generator=gen, dtype=torch.float64)
    exps = torch.randint(fmt.emin - q - 4, 2 - fmt.emin, (n,), generator=gen).to(torch.float64)
    sign = torch.randint(0, 2, (n,), generator=gen).to(torch.float64) * 2 - 1
    return torch.cat([fixed, sign * mant * torch.exp2(exps)])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("n", [3, 5000])  # short: the scalar conversion loops; long: the vector ones
def test_narrow_rounds_as_numerics_cast_does(dtype, n):
    fmt = numerics.format_of(dtype)
    x = _tricky(fmt, n)
    want = numerics.cast(x, fmt)
    got = narrow(x, fmt)
    bits = torch.int32 if dtype is torch.float32 else torch.int16
    assert got.dtype == dtype
    assert torch.equal(got.view(bits), want.view(bits))
    # NaN, whatever its sign and payload, is numerics.cast's
    nan = x.clone()
    nan[::7] = float("nan")
    nan[1::7] = -float("nan")
    assert torch.equal(narrow(nan, fmt).view(bits), numerics.cast(nan, fmt).view(bits))


def test_narrow_without_the_round_to_odd_step_is_caught():
    """A single native float64 -> bf16 conversion is not the correct rounding everywhere
    (the check above would catch such a shortcut): it rounds twice through float32."""
    fmt = numerics.format_of(torch.bfloat16)
    x = _tricky(fmt, 5000)
    assert not torch.equal(x.to(torch.float32).to(torch.bfloat16).view(torch.int16),
                           numerics.cast(x, fmt).view(torch.int16))


def test_a_remembered_recipe_draws_again_for_another_shape_or_seed():
    calls = []

    def recipe(shape, gen):
        calls.append(dict(shape))
        return {"x": torch.rand(4, generator=gen) * shape["T"]}

    from equiv.shapes import Shape

    fn = inputs.remembered(recipe)
    a, b = Shape(T=1), Shape(T=2)
    first = fn(a, generator(0))
    g = generator(0)
    again = fn(a, g)
    assert len(calls) == 1 and torch.equal(first["x"], again["x"])
    assert torch.equal(g.get_state(), _state_after(recipe, a, 0))  # where the recipe leaves it
    calls.clear()
    assert not torch.equal(fn(b, generator(0))["x"], first["x"]) and len(calls) == 1  # another shape
    assert not torch.equal(fn(a, generator(1))["x"], first["x"]) and len(calls) == 2  # another seed
    g = generator(0)
    torch.rand(1, generator=g)  # the same seed, drawn from further on: another state
    assert not torch.equal(fn(a, g)["x"], first["x"]) and len(calls) == 3
    # a caller replacing an entry of its dict leaves the remembered draw alone
    mine = fn(a, generator(0))
    mine["x"] = torch.zeros(4)
    assert torch.equal(fn(a, generator(0))["x"], first["x"])


def _state_after(recipe, shape, seed: int) -> torch.Tensor:
    g = generator(seed)
    recipe(shape, g)
    return g.get_state()


@pytest.mark.parametrize("low,high", [(0, 2), (-24, 25), (-128, 128), (-129, 128), (-128, 129),
                                      (-(2**15), 2**15), (-(2**15) - 1, 2**15), (-(2**24) + 1, 2**24)])
def test_integer_draws_in_a_narrow_dtype_are_the_int64_draws(low, high):
    for n in (7, 3000):
        want_gen, gen = generator(n), generator(n)
        want = torch.randint(low, high, (n,), generator=want_gen)
        got = inputs._randint(low, high)(gen, n)
        assert torch.equal(got.to(torch.int64), want) and torch.equal(gen.get_state(), want_gen.get_state())
