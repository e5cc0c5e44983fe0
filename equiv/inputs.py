"""Input recipes that expose reordering, shared by every pair.

A pair provides its realistic recipe (the upstream generator, spec §8). `with_adversarial`
adds recipes that replace the pair's free floating inputs with values chosen to make any
change of operation order or rounding visible:

``binades``     values spread over many binades, so sums in another order round differently
``ties``        small integers scaled to the type's precision, so sums land on rounding ties
``zeros``       half the elements ±0 (signed zeros), the rest realistic
``subnormals``  values around the smallest normal number of the type
``extremes``    magnitudes near the type's largest finite value (overflow behaviour)
``spread``      the realistic values rescaled by a power of two per row, per column and per
                channel (every axis of the tensor gets its own scale per index), a third of
                them far below the rest: rows, columns or channels of small magnitude next to
                large ones reach the decisions (clamp floors, epsilons, thresholds, selects)
                that whole-tensor scaling never does, since one scale per tensor moves every
                element together and per-row quantities then stay within a few binades
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable, Mapping, Sequence

import torch

from equiv import numerics, rounding
from equiv.pair import Recipe
from equiv.shapes import Shape

ADVERSARIAL: tuple[str, ...] = ("binades", "ties", "zeros", "subnormals", "extremes", "spread")


# Elements drawn and combined at a time: the float64 work of a recipe stays this size (8 MiB a
# temporary) however large the input; a whole Pro weight in float64 took 30x its own bytes.
CHUNK = 1 << 20


def _rand64(gen: torch.Generator, n: int) -> torch.Tensor:
    return torch.rand(n, generator=gen, dtype=torch.float64)


def _randint(low: int, high: int) -> Callable[[torch.Generator, int], torch.Tensor]:
    # randint draws the same values (and advances the generator alike) whatever integer
    # dtype holds them: the narrowest that holds low..high-1 writes a fraction of int64's bytes
    dtype = next(d for d in (torch.int8, torch.int16, torch.int32, torch.int64)
                 if torch.iinfo(d).min <= low and high - 1 <= torch.iinfo(d).max)
    return lambda gen, n: torch.randint(low, high, (n,), generator=gen, dtype=dtype)


def _rand32(gen: torch.Generator, n: int) -> torch.Tensor:
    return torch.rand(n, generator=gen)


def _signs(bits: torch.Tensor) -> torch.Tensor:
    return bits.to(torch.float64) * 2 - 1


_NATIVE_NARROW = (torch.bfloat16, torch.float16, torch.float32)


def narrow(x: torch.Tensor, fmt: numerics.FloatFormat) -> torch.Tensor:
    """`numerics.cast(x, fmt)` of float64 `x`, bit for bit, with a few native conversions
    where they give the same bits.

    `rounding.nearest_even_native` gives the single rounding `numerics.round_to` computes by
    scaling. A tensor holding NaN, and any tensor on a CPU that flushes subnormals, goes to
    `numerics.cast`: a NaN's narrow bits depend on which conversion loop (vector or scalar
    tail) reaches it, so only the same call gives the same bits."""
    if fmt.torch_dtype in _NATIVE_NARROW and not bool(torch.isnan(x).any()):
        got = rounding.nearest_even_native(x, fmt.torch_dtype)
        if got is not None:
            return got
    return numerics.cast(x, fmt)


def adversarial_values(kind: str, like: torch.Tensor, gen: torch.Generator, spread: int = 24) -> torch.Tensor:
    """A tensor shaped and typed like `like`, filled with the `kind` adversarial distribution.

    Each distribution is a few streams of random draws (each as long as `like`, drawn one
    after the other from `gen`) combined element by element. They are made `CHUNK` elements
    at a time straight into the narrow result, each stream's chunk drawn from its own copy of
    the generator's state at that stream's start, so the bits (and `gen`'s state after) are
    those of drawing every stream whole."""
    shape = tuple(like.shape)
    fmt = numerics.format_of(like.dtype)
    p = fmt.mantissa_bits + 1
    base = like.reshape(-1)
    if kind == "binades":
        draws = [_rand64, _randint(-spread, spread + 1), _randint(0, 2)]

        def combine(d, a, b):
            mant, exps, sign = d
            return _signs(sign) * (1 + mant) * torch.exp2(exps.to(torch.float64))
    elif kind == "ties":
        draws = [_randint(-(2**p) + 1, 2**p)]

        def combine(d, a, b):
            return d[0].to(torch.float64) * 2.0 ** (-p + 2)
    elif kind == "zeros":
        draws = [_rand32, _randint(0, 2)]

        def combine(d, a, b):
            zero, sign = d
            return torch.where(zero < 0.5, _signs(sign) * 0.0, base[a:b].to(torch.float64))
    elif kind == "subnormals":
        draws = [_randint(-p, 3), _randint(0, 2), _rand64]

        def combine(d, a, b):
            k, sign, mant = d
            return _signs(sign) * (1 + mant) * fmt.min_normal * torch.exp2(k.to(torch.float64))
    elif kind == "spread":
        draws = []
        exps = _exponent_table(shape, _axis_exponent_vectors(shape, gen))
        cap = fmt.max_finite / 8  # leave headroom for the kernel's own sums

        def combine(d, a, b):
            x = base[a:b].to(torch.float64) * torch.exp2(exps[a:b].to(torch.float64))
            return torch.where(x.abs() > cap, torch.sign(x) * cap, x)
    elif kind == "extremes":
        draws = [_rand64, _randint(0, 2)]

        def combine(d, a, b):
            frac, sign = d
            return _signs(sign) * (frac * 0.5 + 0.25) * fmt.max_finite / 8
    else:
        raise ValueError(f"unknown adversarial recipe {kind!r}; known: {', '.join(ADVERSARIAL)}")
    n = base.numel()
    out = torch.empty(shape, dtype=fmt.torch_dtype)
    flat = out.view(-1)
    if n <= CHUNK:
        flat.copy_(narrow(combine([draw(gen, n) for draw in draws], 0, n), fmt))
        return out
    # One generator per stream, at the state where that stream starts (found by drawing the
    # streams before it, chunk by chunk). The last stream draws from `gen` itself, which so
    # ends where drawing every stream whole ends, without drawing that stream twice.
    streams = []
    for i, draw in enumerate(draws):
        if i == len(draws) - 1:
            streams.append(gen)
            break
        streams.append(torch.Generator(device="cpu").set_state(gen.get_state()))
        for a in range(0, n, CHUNK):
            draw(gen, min(CHUNK, n - a))
    for a in range(0, n, CHUNK):
        b = min(a + CHUNK, n)
        flat[a:b] = narrow(combine([draw(g, b - a) for draw, g in zip(draws, streams)], a, b), fmt)
    return out


def _axis_exponent_vectors(shape: Sequence[int], gen: torch.Generator) -> list[torch.Tensor | None]:
    """Per axis of `shape`, its exponents as `axis_exponents` draws them (None: an axis of 1)."""
    return [_axis_draw(n, gen) if n > 1 else None for n in shape]


def _exponent_table(shape: Sequence[int], vectors: list[torch.Tensor | None]) -> torch.Tensor:
    """`axis_exponents` of `shape`, flat, as int16: the same sums (small integers, exact in
    float64 in any order), a quarter of float64's bytes, made by broadcasting rather than
    by dividing every flat position by each axis length."""
    total = torch.zeros(tuple(shape), dtype=torch.int16)
    for axis, e in enumerate(vectors):
        if e is not None:
            view = [1] * len(shape)
            view[axis] = shape[axis]
            total += e.to(torch.int16).reshape(view)  # |exponent| <= 24 per axis
    return total.reshape(-1)


def axis_exponents(shape: Sequence[int], gen: torch.Generator, low: int = 24, high: int = 3,
                   small: float = 1 / 3) -> torch.Tensor:
    """Per-index power-of-two exponents along every axis of `shape`, summed into one tensor.

    Along each axis (rows, columns, channels, batch) every index draws its own exponent:
    with probability `small` one of -`low`..-4 (a row/column/channel of small magnitude),
    else one of -2..`high`. The sum scales each element by its row's, column's and channel's
    factors at once."""
    total = torch.zeros(tuple(shape), dtype=torch.float64)
    for axis, n in enumerate(shape):
        if n <= 1:
            continue
        e = _axis_draw(n, gen, low, high, small)
        view = [1] * len(shape)
        view[axis] = n
        total = total + e.reshape(view)
    return total


def _axis_draw(n: int, gen: torch.Generator, low: int = 24, high: int = 3, small: float = 1 / 3) -> torch.Tensor:
    """One axis of `axis_exponents`: each of its `n` indices' exponent."""
    tiny = torch.rand(n, generator=gen) < small
    return torch.where(tiny, -torch.randint(4, low + 1, (n,), generator=gen),
                       torch.randint(-2, high + 1, (n,), generator=gen)).to(torch.float64)


def with_adversarial(realistic: Recipe, free_inputs: Sequence[str],
                     kinds: Sequence[str] = ADVERSARIAL,
                     extra: Mapping[str, Recipe] | None = None) -> dict[str, Recipe]:
    """``{"realistic": realistic, kind: realistic-with-free-inputs-replaced, ...}``.

    `free_inputs` are the floating inputs that may take any value of their type (data, not
    scales or tables whose structure the kernel relies on).
    """
    realistic = remembered(realistic)
    recipes: dict[str, Recipe] = {"realistic": realistic}

    def make(kind: str) -> Recipe:
        def recipe(shape: Shape, gen: torch.Generator) -> dict[str, Any]:
            inputs = realistic(shape, gen)
            for name in free_inputs:
                inputs[name] = adversarial_values(kind, inputs[name], gen)
            return inputs
        recipe.__name__ = f"{kind}_recipe"
        recipe.__doc__ = f"realistic inputs with {', '.join(free_inputs)} drawn from '{kind}'"
        # what it is made of, for whoever rebuilds it (the input tests' reference path)
        recipe.adversarial = (kind, realistic.__wrapped__, tuple(free_inputs))  # type: ignore[attr-defined]
        return recipe

    for kind in kinds:
        recipes[kind] = make(kind)
    recipes.update(extra or {})
    return recipes


# Draws `remembered` keeps per recipe: a check makes one shape's cases one after the other.
REMEMBERED = 2
# A draw larger than this is made again rather than held between cases.
REMEMBER_BYTES = 256 << 20


def remembered(recipe: Recipe) -> Recipe:
    """`recipe`, remembering its last draws by (shape, generator state) and restoring the
    state each draw left, so a repeat is the recipe's own result (same tensors, read-only:
    a run restores any input it writes) and leaves the generator where the recipe would.

    Every adversarial recipe of a case starts by drawing the realistic inputs from the same
    seed; drawn once per shape, that share of a case's inputs goes."""
    if getattr(recipe, "remembers", False):
        return recipe
    cache: OrderedDict[tuple, tuple[dict[str, Any], torch.Tensor]] = OrderedDict()

    def wrapped(shape: Shape, gen: torch.Generator) -> dict[str, Any]:
        key = (tuple(sorted(shape.items())), gen.get_state().numpy().tobytes())
        hit = cache.get(key)
        if hit is None:
            inputs = recipe(shape, gen)
            size = sum(v.nbytes for v in inputs.values() if isinstance(v, torch.Tensor))
            if size > REMEMBER_BYTES:
                return inputs
            hit = cache[key] = (inputs, gen.get_state())
            while len(cache) > REMEMBERED:
                cache.popitem(last=False)
        cache.move_to_end(key)
        gen.set_state(hit[1])
        return dict(hit[0])  # the recipes built on it replace entries, never tensors in place

    wrapped.__name__ = getattr(recipe, "__name__", "recipe")
    wrapped.__doc__ = recipe.__doc__
    wrapped.__wrapped__ = recipe  # type: ignore[attr-defined]
    wrapped.remembers = True  # type: ignore[attr-defined]
    wrapped.forget = cache.clear  # type: ignore[attr-defined]
    return wrapped


def generator(seed: int) -> torch.Generator:
    """The CPU generator every recipe draws from (inputs are made on the CPU, then moved)."""
    return torch.Generator(device="cpu").manual_seed(int(seed))


RecipeFn = Callable[[Shape, torch.Generator], dict[str, Any]]
