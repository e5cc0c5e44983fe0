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

from typing import Any, Callable, Mapping, Sequence

import torch

from equiv import numerics
from equiv.pair import Recipe
from equiv.shapes import Shape

ADVERSARIAL: tuple[str, ...] = ("binades", "ties", "zeros", "subnormals", "extremes", "spread")


def _sign(shape, gen) -> torch.Tensor:
    return torch.randint(0, 2, shape, generator=gen).to(torch.float64) * 2 - 1


def adversarial_values(kind: str, like: torch.Tensor, gen: torch.Generator, spread: int = 24) -> torch.Tensor:
    """A tensor shaped and typed like `like`, filled with the `kind` adversarial distribution."""
    shape = tuple(like.shape)
    fmt = numerics.format_of(like.dtype)
    p = fmt.mantissa_bits + 1
    if kind == "binades":
        mant = 1 + torch.rand(shape, generator=gen, dtype=torch.float64)
        exps = torch.randint(-spread, spread + 1, shape, generator=gen).to(torch.float64)
        x = _sign(shape, gen) * mant * torch.exp2(exps)
    elif kind == "ties":
        ints = torch.randint(-(2**p) + 1, 2**p, shape, generator=gen).to(torch.float64)
        x = ints * 2.0 ** (-p + 2)
    elif kind == "zeros":
        base = like.to(torch.float64)
        zero = torch.rand(shape, generator=gen) < 0.5
        x = torch.where(zero, _sign(shape, gen) * 0.0, base)
    elif kind == "subnormals":
        k = torch.randint(-p, 3, shape, generator=gen).to(torch.float64)
        x = _sign(shape, gen) * (1 + torch.rand(shape, generator=gen, dtype=torch.float64)) \
            * fmt.min_normal * torch.exp2(k)
    elif kind == "spread":
        x = like.to(torch.float64) * torch.exp2(axis_exponents(shape, gen))
        cap = fmt.max_finite / 8  # leave headroom for the kernel's own sums
        x = torch.where(x.abs() > cap, torch.sign(x) * cap, x)
    elif kind == "extremes":
        frac = torch.rand(shape, generator=gen, dtype=torch.float64) * 0.5 + 0.25
        x = _sign(shape, gen) * frac * fmt.max_finite / 8
    else:
        raise ValueError(f"unknown adversarial recipe {kind!r}; known: {', '.join(ADVERSARIAL)}")
    return numerics.cast(x, fmt)


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
        tiny = torch.rand(n, generator=gen) < small
        e = torch.where(tiny, -torch.randint(4, low + 1, (n,), generator=gen),
                        torch.randint(-2, high + 1, (n,), generator=gen)).to(torch.float64)
        view = [1] * len(shape)
        view[axis] = n
        total = total + e.reshape(view)
    return total


def with_adversarial(realistic: Recipe, free_inputs: Sequence[str],
                     kinds: Sequence[str] = ADVERSARIAL,
                     extra: Mapping[str, Recipe] | None = None) -> dict[str, Recipe]:
    """``{"realistic": realistic, kind: realistic-with-free-inputs-replaced, ...}``.

    `free_inputs` are the floating inputs that may take any value of their type (data, not
    scales or tables whose structure the kernel relies on).
    """
    recipes: dict[str, Recipe] = {"realistic": realistic}

    def make(kind: str) -> Recipe:
        def recipe(shape: Shape, gen: torch.Generator) -> dict[str, Any]:
            inputs = realistic(shape, gen)
            for name in free_inputs:
                inputs[name] = adversarial_values(kind, inputs[name], gen)
            return inputs
        recipe.__name__ = f"{kind}_recipe"
        recipe.__doc__ = f"realistic inputs with {', '.join(free_inputs)} drawn from '{kind}'"
        return recipe

    for kind in kinds:
        recipes[kind] = make(kind)
    recipes.update(extra or {})
    return recipes


def generator(seed: int) -> torch.Generator:
    """The CPU generator every recipe draws from (inputs are made on the CPU, then moved)."""
    return torch.Generator(device="cpu").manual_seed(int(seed))


RecipeFn = Callable[[Shape, torch.Generator], dict[str, Any]]
