"""Writer attribution: which kernel line and block last wrote each output element, and why a
region of one version is unwritten (or depends on uninitialised memory).

Every `Tensor.store` keeps, per element, the writing block's token (``Tensor.writer``) and the
interned kernel site of the store (``Tensor.site_ids``, `equiv.tile.sites.intern_site`). After a
run, `capture` keeps those maps of the outputs with each block's stage name, index and the
kernel line of its parallel loop; `explain` then names, for a bad region of one version, the
sites and blocks that wrote it in the other version, and this version's stages that write
the neighbouring elements with how many blocks their loops run.
"""

from __future__ import annotations

import linecache
import os
from dataclasses import dataclass, field
from typing import Mapping

import torch

from equiv.observe.events import RUN_END, Observer
from equiv.tile.sites import SITES


@dataclass
class Capture:
    """One version's writer maps of its outputs, and its block table."""

    site_ids: dict[str, torch.Tensor] = field(default_factory=dict)   # output -> int32 site id
    tokens: dict[str, torch.Tensor] = field(default_factory=dict)     # output -> writer token
    blocks: dict[int, tuple[str, int, str, int]] = field(default_factory=dict)  # token -> (stage name, block, loop site, stage id)
    stage_blocks: dict[tuple[str, str], int] = field(default_factory=dict)     # (name, loop site) -> blocks run


class WriterAttribution(Observer):
    """Keeps, at the end of the observed run, which site and block last wrote each output
    element (`capture`): the record's ``attribution``. (The site map it reads is kept by
    the stores of any run with a per-element client.)"""

    events = frozenset({RUN_END})

    def on_run_end(self, ctx, outputs: Mapping[str, object], record) -> None:
        record.attribution = capture(ctx, outputs)


def capture(ctx, outputs: Mapping[str, object]) -> Capture:
    cap = Capture()
    for name, t in outputs.items():
        sids = t.__dict__.get("site_ids")
        if sids is None:
            continue
        cap.site_ids[name] = sids.cpu()
        cap.tokens[name] = t.writer.cpu()
    per_stage: dict[tuple[str, str], set[tuple[int, int]]] = {}
    for token, node in ctx.nodes.items():
        if token == 0:
            continue
        site = getattr(node, "site", "") or ""
        cap.blocks[token] = (node.name, node.block, site, node.stage)
        per_stage.setdefault((node.name, site), set()).add((node.stage, node.block))
    for key, members in per_stage.items():
        stages = {s for s, _ in members}
        cap.stage_blocks[key] = len(members) // max(1, len(stages))  # blocks per run of the loop
    return cap


def _short(site: str) -> str:
    path, _, line = site.rpartition(":")
    return f"{os.path.basename(path)}:{line}"


def source_line(site: str) -> str:
    path, _, line = site.rpartition(":")
    if not line.isdigit():
        return ""
    return linecache.getline(path, int(line)).strip()


def _box(idx: torch.Tensor) -> str:
    return "[" + ", ".join(f"{int(idx[:, d].min())}:{int(idx[:, d].max()) + 1}" for d in range(idx.shape[1])) + "]"


def _blocks_text(blocks: list[int]) -> str:
    lo, hi = min(blocks), max(blocks)
    return f"block {lo}" if lo == hi else f"blocks {lo}–{hi}"


def writers(cap: Capture, name: str, mask: torch.Tensor) -> list[dict]:
    """Groups (site, stage) of the elements of `mask` that `cap` wrote, with block ranges."""
    if name not in cap.site_ids or not bool(mask.any()):
        return []
    sids, toks = cap.site_ids[name], cap.tokens[name]
    sel = mask & (sids >= 0)
    if not bool(sel.any()):
        return []
    out = []
    for sid in torch.unique(sids[sel]).tolist():
        at = sel & (sids == sid)
        toks_here = torch.unique(toks[at]).tolist()
        groups: dict[tuple[str, str], list[int]] = {}
        for tok in toks_here:
            stage, block, loop, _ = cap.blocks.get(int(tok), ("<kernel>", 0, "", 0))
            groups.setdefault((stage, loop), []).append(block)
        site = SITES[sid]
        for (stage, loop), blocks in groups.items():
            out.append({"site": site, "stage": stage, "loop": loop, "blocks": [min(blocks), max(blocks)],
                        "region": _box(at.nonzero()), "count": int(at.sum()),
                        "stage_blocks": cap.stage_blocks.get((stage, loop), len(set(blocks)))})
    return out


def explain(name: str, side: str, mask: torch.Tensor, caps: Mapping[str, Capture], what: str) -> dict:
    """Why `side` leaves `mask` of output `name` bad (`what`: "unwritten" / "uninitialised")."""
    other = "pre" if side == "retiled" else "retiled"
    theirs = writers(caps[other], name, mask) if other in caps else []
    # This version's own writers: of the region itself (poison) or of everything it did write.
    mine_mask = mask if what == "uninitialised" else ~mask
    mine = writers(caps[side], name, mine_mask) if side in caps else []
    parts = []
    for w in theirs:
        where = ("outside any parallel loop" if w["stage"] == "<kernel>" else
                 f"{_blocks_text(list(w['blocks']))} of stage {w['stage']}")
        parts.append(f"{other} writes {name}{w['region']} at {_short(w['site'])}, {where}")
    stage_names = {w["stage"] for w in theirs}
    mine_sorted = sorted(mine, key=lambda w: (w["stage"] not in stage_names, w["site"]))
    for w in mine_sorted[:2]:
        loop = f" (loop {_short(w['loop'])}: `{source_line(w['loop'])}`)" if w["loop"] else ""
        verb = "wrote it from uninitialised memory" if what == "uninitialised" else f"writes {name}{w['region']}"
        parts.append(f"{side}'s stage {w['stage']} at {_short(w['site'])} {verb} and runs "
                     f"{w['stage_blocks']} block{'s' if w['stage_blocks'] != 1 else ''}{loop}")
    if not mine and what == "unwritten" and side in caps:
        loops = sorted({(stage, loop) for stage, _, loop, _ in caps[side].blocks.values() if loop})
        ran = ", ".join(f"{stage} at {_short(loop)} ({caps[side].stage_blocks.get((stage, loop), 0)} blocks)"
                        for stage, loop in loops[:3])
        parts.append(f"{side} writes no element of {name}" + (f"; its parallel loops that ran: {ran}" if ran
                                                                  else " and runs no parallel block"))
    sources = {}
    for w in theirs + mine_sorted[:2]:
        for s in (w["site"], w["loop"]):
            if s:
                sources[s] = source_line(s)
    return {"side": side, "what": what, "text": "; ".join(parts), "other": theirs, "this": mine_sorted[:2],
            "sources": sources}
