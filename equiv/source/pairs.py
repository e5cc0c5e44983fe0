"""Pairs from kernel files: a registered pair whose pre and retiled programs are two files
(or two revisions of one file), each loaded per case's shape."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from equiv.pair import KernelPair
from equiv.shapes import Shape
from equiv.errors import SourceError
from equiv.source.arguments import call_entry
from equiv.source.loader import SourceLoader
from equiv.source.ref import SourceRef


# Shape dimension -> config value the upstream file reads, per registered pair. A key that
# is a field of the config's dataclass instances (``hidden_size``) is replaced in every
# instance (FLASH, DEMO, PRO); a key that is a module constant (``MOE_TOKENS``) is rebound
# where the config assigns it; ``FLASH.hidden_size`` targets one instance.
DEFAULT_BINDS: dict[str, dict[str, str]] = {
    "expert_shared": {"T": "MOE_TOKENS", "D": "hidden_size", "I": "moe_intermediate_size", "L": "swiglu_limit"},
    # hc_post's token count is a pl.dynamic dimension (taken from the tensors), not a constant.
    "hc_post": {"D": "hidden_size"},
}


@dataclass(eq=False)
class SourceKernel:
    """A pair side that loads `ref` for each case's shape and calls its entry.

    Called like a transcribed kernel: ``kernel(**inputs, **outputs, cfg=shape)``. Shape
    dimensions named in `bind` become config overrides (``D -> hidden_size``), plus the
    fixed `config` overrides.
    """

    ref: SourceRef
    bind: Mapping[str, str] = field(default_factory=dict)
    config: Mapping[str, Any] = field(default_factory=dict)
    loader: SourceLoader = field(default_factory=SourceLoader)

    def overrides(self, cfg: Mapping[str, int] | None) -> dict[str, Any]:
        out = dict(self.config)
        for dim, key in self.bind.items():
            if cfg is None or dim not in cfg:
                raise SourceError(f"--bind {dim}={key}: the shape has no dimension {dim} "
                                  f"(it has {', '.join(cfg or ())})")
            out[key] = int(cfg[dim])
        return out

    def load(self, cfg: Mapping[str, int] | None = None) -> Callable:
        return self.loader.entry(self.ref, self.overrides(cfg))

    def __call__(self, cfg: Shape | None = None, **args: Any) -> Any:
        fn = self.load(cfg)
        unbound = [d for d in (cfg or {}) if d not in self.bind]
        hint = (f"bind the shape dimension to the config value the file reads, e.g. --bind "
                f"{unbound[0]}=hidden_size (bound now: {', '.join(f'{k}={v}' for k, v in self.bind.items()) or 'none'})"
                if unbound else "")
        return call_entry(fn, args, hint)

    @property
    def __name__(self) -> str:  # noqa: A003 - read by reports and error messages
        return f"{self.ref.label}:{self.ref.entry}"


def resolve_bind(pair_name: str, bind: Mapping[str, str] | None) -> dict[str, str]:
    if bind is not None:
        return dict(bind)
    return dict(DEFAULT_BINDS.get(pair_name, {}))


def source_pair(base: KernelPair, pre: SourceRef, retiled: SourceRef, bind: Mapping[str, str] | None = None,
                config: Mapping[str, Any] | None = None, loader: SourceLoader | None = None,
                name: str | None = None) -> KernelPair:
    """`base` with its pre and retiled programs replaced by kernel files (`SourceKernel`).

    Reference, recipes, outputs, contract, preconditions and shape space stay the pair's.
    `bind` maps shape dimensions to config values (default: `DEFAULT_BINDS` of the pair).
    """
    loader = loader or SourceLoader()
    b = resolve_bind(base.name, bind)
    unknown = [d for d in b if d not in base.shapes.dims]
    if unknown:
        raise SourceError(f"--bind names {', '.join(unknown)}, which {base.name} does not have "
                          f"(dimensions: {', '.join(base.shapes.dims)})")
    cfg = dict(config or {})
    return dataclasses.replace(
        base,
        name=name or f"{base.name}@source",
        pre=SourceKernel(pre, b, cfg, loader),
        retiled=SourceKernel(retiled, b, cfg, loader),
        sources=(),
        description=f"{base.name}: {pre.label}:{pre.entry} vs {retiled.label}:{retiled.entry}",
    )


def load_kernel(path: str, entry: str, rev: str | None = None, repo: str | None = None,
                config: Mapping[str, Any] | None = None) -> Callable:
    """The entry function of a kernel file, loaded for interactive use."""
    return SourceLoader().entry(SourceRef(path, entry, rev, repo), config)


def unsupported_in(messages: Sequence[str]) -> list[str]:
    """The messages (e.g. a check's kernel errors) that report an emulator coverage gap."""
    return [m for m in messages if "UnsupportedOpError" in m or "is not covered by the emulator" in m]
