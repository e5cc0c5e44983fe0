"""Shape spaces: the sizes a kernel pair is checked at.

A `ShapeSpace` names the pair's dimensions, their domains and the constraints between them,
gives named presets (``nominal`` = the upstream configurations, ``demo``, ``flash``, ``pro``),
and builds a Hypothesis strategy over the domain that favours tile multiples and their
neighbours (where tiling bugs live) and always includes values such as hidden_size 7168.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Iterator, Mapping, Sequence

from hypothesis import strategies as st
from equiv.errors import ShapeError


class Shape(Mapping[str, int]):
    """An immutable assignment of sizes to dimension names, e.g. ``T=8,D=7168``.

    Kernels read sizes as attributes: ``cfg.T``, ``cfg.D``.
    """

    __slots__ = ("_dims",)

    def __init__(self, dims: Mapping[str, int] | None = None, **kw: int):
        d = dict(dims or {})
        d.update(kw)
        object.__setattr__(self, "_dims", {k: int(v) for k, v in d.items()})

    def __getattr__(self, name: str) -> int:
        if name.startswith("__"):
            raise AttributeError(name)  # (pickle probes dunders before _dims exists)
        try:
            return self._dims[name]
        except KeyError:
            raise AttributeError(f"shape has no dimension {name!r} (has {', '.join(self._dims)})") from None

    def __setattr__(self, name, value):
        raise AttributeError("Shape is immutable")

    def __getitem__(self, k: str) -> int:
        return self._dims[k]

    def __iter__(self) -> Iterator[str]:
        return iter(self._dims)

    def __len__(self) -> int:
        return len(self._dims)

    def __hash__(self) -> int:
        return hash(tuple(sorted(self._dims.items())))

    def __eq__(self, other) -> bool:
        return isinstance(other, Mapping) and dict(self._dims) == dict(other)

    def __str__(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self._dims.items())

    def __repr__(self) -> str:
        return f"Shape({self})"

    def replace(self, **kw: int) -> "Shape":
        return Shape(self._dims, **kw)

    def __reduce__(self):
        return (Shape, (dict(self._dims),))


@dataclass(frozen=True)
class Dim:
    """One dimension: an inclusive integer range, the tiles it is cut by, and values to favour."""

    lo: int
    hi: int
    tiles: tuple[int, ...] = ()
    favour: tuple[int, ...] = ()
    step: int = 1  # the dimension only takes multiples of `step` (e.g. a head count of 64k)
    doc: str = ""

    def contains(self, v: int) -> bool:
        return self.lo <= v <= self.hi and v % self.step == 0

    def interesting(self) -> list[int]:
        """Tile multiples and their ±1 neighbours inside the domain, plus the favoured values."""
        vals = set(self.favour) | {self.lo, self.hi}
        for t in self.tiles:
            for k in range(1, 5):
                for v in (k * t - 1, k * t, k * t + 1):
                    vals.add(v)
        return sorted(v for v in vals if self.contains(v))

    def strategy(self) -> st.SearchStrategy[int]:
        favoured = self.interesting()
        anywhere = st.integers(self.lo // self.step, self.hi // self.step).map(lambda k: k * self.step) \
            .filter(self.contains)
        if self.favour:
            return st.one_of(st.sampled_from(sorted(set(self.favour))), st.sampled_from(favoured), anywhere)
        return st.one_of(st.sampled_from(favoured), anywhere)


Constraint = tuple[str, Callable[[Shape], bool]]


@dataclass(frozen=True)
class ShapeSpace:
    """The domain of a kernel pair's sizes.

    Attributes:
        dims: name -> `Dim`.
        constraints: ``(message, predicate)`` pairs every shape must satisfy (the message says
            what is required, e.g. ``"D % 512 == 0"``).
        presets: name -> list of shapes; must contain ``nominal``.
        defaults: values for dimensions a literal shape leaves out.
    """

    dims: Mapping[str, Dim]
    presets: Mapping[str, Sequence[Mapping[str, int]]]
    constraints: Sequence[Constraint] = ()
    defaults: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if "nominal" not in self.presets:
            raise ValueError("a shape space needs a 'nominal' preset (the upstream configurations)")
        for name, shapes in self.presets.items():
            for s in shapes:
                self.validate(Shape(s), what=f"preset {name!r}")

    def validate(self, shape: Shape, what: str = "shape") -> Shape:
        missing = [d for d in self.dims if d not in shape]
        if missing:
            raise ShapeError(f"{what} {shape} lacks {', '.join(missing)}")
        extra = [d for d in shape if d not in self.dims]
        if extra:
            raise ShapeError(f"{what} {shape}: unknown dimension(s) {', '.join(extra)}; "
                             f"this pair's dimensions are {', '.join(self.dims)}")
        for name, dim in self.dims.items():
            v = shape[name]
            if not dim.contains(v):
                step = f", multiple of {dim.step}" if dim.step > 1 else ""
                raise ShapeError(f"{what} {shape}: {name}={v} outside the domain {dim.lo}..{dim.hi}{step}"
                                 + (f" ({dim.doc})" if dim.doc else ""))
        for message, pred in self.constraints:
            if not pred(shape):
                raise ShapeError(f"{what} {shape} violates the constraint {message}")
        return shape

    def parse(self, text: str) -> Shape:
        """``'T=10,D=256'`` -> Shape; unspecified dims take ``defaults``, then the first nominal."""
        values: dict[str, int] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            # ASCII digits only: int() would read '٨' or '８' as 8 and hide a typo in the shape.
            m = re.fullmatch(r"([A-Za-z_][A-Za-z_0-9]*)\s*=\s*(-?[0-9]+)", part, flags=re.ASCII)
            if not m:
                raise ShapeError(f"malformed shape {text!r}: expected NAME=INT pairs (ASCII digits) separated "
                                 f"by commas, e.g. '{','.join(f'{d}={v}' for d, v in self.base().items())}'")
            if m.group(1) in values:
                raise ShapeError(f"shape {text!r} gives {m.group(1)} twice")
            values[m.group(1)] = int(m.group(2))
        unknown = [k for k in values if k not in self.dims]
        if unknown:
            raise ShapeError(f"shape {text!r}: unknown dimension(s) {', '.join(unknown)}; "
                             f"this pair's dimensions are {', '.join(self.dims)}")
        return self.validate(Shape({**self.base(), **values}))

    def base(self) -> dict[str, int]:
        return {**dict(self.presets["nominal"][0]), **dict(self.defaults)}

    def preset(self, name: str) -> list[Shape]:
        return [Shape(s) for s in self.presets[name]]

    def all_presets(self) -> list[Shape]:
        seen: list[Shape] = []
        for shapes in self.presets.values():
            for s in shapes:
                if Shape(s) not in seen:
                    seen.append(Shape(s))
        return seen

    def strategy(self) -> st.SearchStrategy[Shape]:
        """Shapes in the domain, favouring tile multiples ±1 and the favoured values."""
        def ok(s: Shape) -> bool:
            try:
                self.validate(s)
                return True
            except ShapeError:
                return False

        order = list(self.dims)
        return st.fixed_dictionaries({k: d.strategy() for k, d in self.dims.items()}) \
            .map(lambda d: Shape({k: d[k] for k in order})).filter(ok)
