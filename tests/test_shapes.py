"""Shape spaces: parsing, domains, presets, and the fuzz strategy's bias and coverage."""

import pytest
from hypothesis import given, settings

import equiv
from equiv.check import plan
from equiv.shapes import Dim, Shape, ShapeSpace
from equiv.errors import ShapeError

HIDDEN = {"moe.combine": "D", "expert_shared": "D", "hc_post": "D"}


@pytest.mark.parametrize("name, dim", sorted(HIDDEN.items()))
def test_hidden_size_7168_is_in_the_domain_and_drawn_by_default_fuzzing(name, dim):
    pair = equiv.get(name)
    assert pair.shapes.dims[dim].contains(7168)
    assert 7168 in pair.shapes.dims[dim].favour
    assert any(c.shape[dim] == 7168 for c in plan(pair, "fuzz", examples=0))
    assert any(s[dim] == 7168 for s in pair.shapes.preset("pro"))


def test_every_pair_has_the_named_presets():
    for pair in equiv.all_pairs():
        assert {"nominal", "demo", "flash", "pro"} <= set(pair.shapes.presets), pair.name


SPACE = ShapeSpace(dims={"T": Dim(1, 64, tiles=(8,)), "D": Dim(16, 512, step=16, favour=(256,))},
                   presets={"nominal": [{"T": 8, "D": 256}]},
                   constraints=[("T <= D", lambda s: s.T <= s.D)])


def test_parse_fills_unspecified_dims_from_nominal():
    assert SPACE.parse("T=3") == Shape(T=3, D=256)
    assert str(SPACE.parse("D=32,T=9")) == "T=9,D=32"


@pytest.mark.parametrize("text, message", [
    ("T=x", "malformed shape"), ("T=0", "outside the domain 1..64"), ("D=17", "multiple of 16"),
    ("T=64,D=32", "violates the constraint T <= D"), ("K=1", "unknown dimension(s) K"),
])
def test_parse_errors_name_the_constraint(text, message):
    with pytest.raises(ShapeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        SPACE.parse(text)


def test_interesting_values_are_tile_multiples_and_neighbours():
    vals = Dim(1, 40, tiles=(8,)).interesting()
    assert {7, 8, 9, 15, 16, 17, 31, 32, 33} <= set(vals)
    assert all(1 <= v <= 40 for v in vals)


@settings(max_examples=50, deadline=None)
@given(SPACE.strategy())
def test_strategy_stays_in_the_domain(shape):
    SPACE.validate(shape)
    assert list(shape) == ["T", "D"]


def test_fuzz_plan_is_reproducible_and_starts_with_every_preset_under_every_recipe():
    pair = equiv.get("moe.combine")
    a = plan(pair, "fuzz", examples=5, seed=4)
    assert a == plan(pair, "fuzz", examples=5, seed=4)
    explicit = {(c.shape, c.recipe) for c in a}
    for s in pair.shapes.all_presets():
        for r in pair.recipes:
            assert (s, r) in explicit
    assert len(a) == len(pair.shapes.all_presets()) * len(pair.recipes) + 5


def test_presets_shape_set_is_every_named_preset():
    pair = equiv.get("expert_shared")
    shapes = {c.shape for c in plan(pair, "presets", recipes=["realistic"])}
    assert shapes == set(pair.shapes.all_presets())
    assert any(s["D"] == 7168 for s in shapes)
