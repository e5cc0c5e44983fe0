"""What the suite expects of each registered pair: the verdict per shape, and where defects lie.

PR #672 claims all six retiled kernels equivalent to the kernels they replace (qkv's q-head
inv_rms within 1 BF16 ULP). The specs under ``shared/spec/kernels/`` analyse where that holds.
The properties check the harness against this table, so a tool that stopped seeing the
expert_shared hole, or started inventing one elsewhere, fails — not only a kernel that regresses.

Each entry gives, for any shape of the pair's domain, the verdict every output must get
(under every input recipe and option variant), and optionally the defective region of each
version as a fragment of the region text the harness reports.

A pair without an entry fails ``test_every_registered_pair_has_an_expectation``: add one
when you add a pair.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

from equiv.shapes import Shape


@dataclass(frozen=True)
class Expectation:
    verdict: Callable[[Shape], str]
    why: str
    # side -> fragment the reported unwritten/uninitialised region text contains, per shape (None: no defect)
    defects: Callable[[Shape], Mapping[str, str | None]] | None = None


def _rows(lo: int, hi: int) -> str | None:
    return None if lo >= hi else ("all rows" if lo == 0 else f"rows [{lo}, {hi})")


# --- moe.combine ---------------------------------------------------------------------------------
def moe_combine(s: Shape) -> str:
    return "equivalent" if s.T % 4 == 0 else "pre-defect"


def moe_combine_defects(s: Shape) -> Mapping[str, str | None]:
    return {"pre": _rows(4 * (s.T // 4), s.T), "retiled": None}


# --- expert_shared -------------------------------------------------------------------------------
def expert_shared(s: Shape) -> str:
    """Element-level model of both versions' coverage (spec §6.3).

    PRE: requant covers rows [0, 8·(T div 8)) and w2 columns [0, 1024·(D div 1024)); the rest
    of ``sh`` is computed from uninitialised scratch. RETILED: every row, but the dequant/store
    stage only columns [0, 4096·(D div 4096)) — the PRO hole (D = 7168: columns 4096..7167).
    Both assert T ≤ 16 or T % 16 == 0.
    """
    if not (s.T <= 16 or s.T % 16 == 0):
        return "rejected"
    pre_rows, pre_cols = 8 * (s.T // 8), 1024 * (s.D // 1024)
    ret_cols = 4096 * (s.D // 4096)
    # an element retiled leaves unwritten that pre computes: a row pre covers, a column in [ret_cols, pre_cols)
    if pre_rows > 0 and ret_cols < pre_cols:
        return "regression"
    pre_bad = pre_rows < s.T or pre_cols < s.D
    ret_bad = ret_cols < s.D
    if pre_bad:
        return "both-defect" if ret_bad else "pre-defect"
    return "equivalent"


def expert_shared_defects(s: Shape) -> Mapping[str, str | None]:
    ret_cols = 4096 * (s.D // 4096)
    return {"retiled": None if ret_cols >= s.D else ("all cols" if ret_cols == 0 else f"cols [{ret_cols}, {s.D})")}


# --- hc_post -------------------------------------------------------------------------------------
def hc_post(s: Shape) -> str:
    """PRE writes rows [0, 8·(T div 8)), RETILED rows [0, 4·(T div 4)) (spec: T_TILE 8 → 4)."""
    if s.T % 8 == 0:
        return "equivalent"
    return "pre-defect" if s.T % 4 == 0 else "both-defect"


def hc_post_defects(s: Shape) -> Mapping[str, str | None]:
    def dim0(lo, hi):
        return None if lo >= hi else ("all dim0" if lo == 0 else f"dim0 [{lo}, {hi})")
    return {"pre": dim0(8 * (s.T // 8), s.T), "retiled": dim0(4 * (s.T // 4), s.T)}


# --- qkv.q_head_rope -----------------------------------------------------------------------------
def qkv_q_head_rope(s: Shape) -> str:
    """Both versions process tokens in blocks of 8; a tail of T mod 8 tokens is left in both.
    Where both write, within 1 BF16 ULP under every row_sum order model (the PR's claim)."""
    return "equivalent" if s.T % 8 == 0 else "both-defect"


def qkv_defects(s: Shape) -> Mapping[str, str | None]:
    return {"pre": _rows(8 * (s.T // 8), s.T)}


# --- csa.sparse_index ----------------------------------------------------------------------------
def csa_sparse_index(s: Shape) -> str:
    """PRE covers rows [0, 8·(T div 8)) of T = B·S (its decode asserts keep T % 8 == 0
    upstream); RETILED fills every row."""
    return "equivalent" if (s.B * s.S) % 8 == 0 else "pre-defect"


def csa_defects(s: Shape) -> Mapping[str, str | None]:
    t = s.B * s.S
    return {"pre": _rows(8 * (t // 8), t), "retiled": None}


EXPECTED: dict[str, Expectation] = {
    "moe.combine": Expectation(
        moe_combine, "bit-exact; PRE's T/4 blocks of 4 tokens leave rows [4·(T div 4), T) unwritten",
        moe_combine_defects),
    "expert_shared": Expectation(
        expert_shared, "bit-exact where both write; RETILED's w2 dequant covers only D div 4096 column blocks "
                       "(regression at PRO, D = 7168); PRE's requant drops rows for T mod 8 ≠ 0",
        expert_shared_defects),
    "hc_post": Expectation(
        hc_post, "bit-exact; T_TILE 8 → 4: PRE drops T mod 8 rows, RETILED T mod 4", hc_post_defects),
    "qkv.q_head_rope": Expectation(
        qkv_q_head_rope, "≤ 1 BF16 ULP (inv_rms reordering); both drop the T mod 8 token tail", qkv_defects),
    "csa.sparse_index": Expectation(
        csa_sparse_index, "bit-exact; PRE covers rows in blocks of 8 tokens", csa_defects),
    "indexer.qr_rope": Expectation(
        lambda s: "equivalent", "bit-exact everywhere in the domain (B·S ≤ 16)"),
}
