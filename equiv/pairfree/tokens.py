"""A token count that spans several tiles, for the gate's default shapes.

A file's own token count often fits in one tile (a decode step: 4 requests x 2 tokens). A
kernel that loses the tail of its *second* tile then passes at the file's defaults, however
often it runs. So where a mode's token count fits in one tile of `TILE` tokens, the gate adds
one shape whose count spans several: the token constant grows by a whole tile's worth of
tokens, so the count exceeds `TILE` and keeps its remainder modulo every smaller power-of-two
tile (a file that asserts its count divides by its own tile still accepts it).

Token constants are the config constants the file names that a check may vary
(`equiv.pairfree.pair.SAFE_CONSTANT`), grouped by their prefix (``DECODE_BATCH`` and
``DECODE_SEQ`` count decode's tokens together); a group's count is their product. The one that
grows is the group's ``TOKENS``, else ``BATCH``, else ``SEQ`` constant. The shape is added
where it is affordable: the file accepts it, and its declared inputs fit the machine and are at
most `MAX_GROWTH` times the file's own or under `SMALL_BYTES` (seconds to build and run).
"""

from __future__ import annotations

import re
from typing import Any, Mapping

# Tokens per tile (pypto-lib's row tiles are at most 128 tokens).
TILE = 128
# The multi-tile shape may declare at most this many times the bytes of the file's own.
MAX_GROWTH = 4.0
SMALL_BYTES = 64 << 20
ORDER = ("TOKENS", "BATCH", "SEQ")


def _group(name: str) -> str:
    m = re.match(r"^(DECODE|PREFILL|MOE|MTP|NUM)_", name)
    return m.group(1) if m else ""


def candidates(constants: Mapping[str, int]) -> list[tuple[str, int, int]]:
    """(constant, value, grown value): per group of token constants whose count fits one tile,
    the one that grows, and to what."""
    groups: dict[str, dict[str, int]] = {}
    for name, v in constants.items():
        groups.setdefault(_group(name), {})[name] = int(v)
    out = []
    for members in groups.values():
        count = 1
        for v in members.values():
            count *= v
        if count > TILE or count <= 0:
            continue
        pick = next((n for kind in ORDER for n in sorted(members) if kind in n), None)
        if pick is None:
            continue
        others = count // members[pick]
        step = -(-TILE // others)  # whole tiles' worth of tokens for this constant
        out.append((pick, members[pick], members[pick] + step))
    return out


def spans(mod: Any, ref: Any, text: str, overrides: Mapping[str, Any]) -> dict[str, dict]:
    """In a recording child (meta device): per grown token constant, its value, the grown value
    and the bytes of the largest run_jit call at each (``bytes`` 0: the file refuses it)."""
    import torch

    from equiv.pairfree import discovery
    from equiv.pairfree import golden as golden_stub
    from equiv.pairfree.pair import SAFE_CONSTANT, _config_module
    from equiv.source import SourceLoader

    cfg = _config_module(mod)
    if cfg is None:
        return {}
    named = {k: v for k, v in vars(cfg).items() if SAFE_CONSTANT.match(k) and isinstance(v, int)
             and not isinstance(v, bool) and re.search(rf"\b{k}\b", text)}
    out: dict[str, dict] = {}
    for name, value, grown in candidates({k: v for k, v in named.items() if k not in overrides}):
        info = {"value": value, "to": grown, "bytes": 0}
        try:
            with torch.device("meta"):
                m = SourceLoader(stand_ins={"golden": golden_stub.make_module()}).load(
                    ref, {**overrides, name: grown})
                calls, _, err = discovery.run_main(m, text, [])
            if err is None and calls:
                info["bytes"] = max(sum(discovery._spec_bytes(s) for s in c.specs) for c in calls)
        except Exception:  # noqa: BLE001 - the file refuses the count (its assert): not added
            pass
        out[name] = info
    return out


def affordable(found: Mapping[str, Any] | None, own_bytes: int, available: int | None,
               memory_factor: int) -> list[tuple[str, int, int]]:
    """(constant, grown value, declared bytes) of the shapes to add."""
    out = []
    for name, info in (found or {}).items():
        b = int(info.get("bytes") or 0)
        if not b:
            continue
        if available is not None and b * memory_factor >= available:
            continue
        if b > SMALL_BYTES and own_bytes and b > MAX_GROWTH * own_bytes:
            continue
        out.append((name, int(info["to"]), b))
    return out
