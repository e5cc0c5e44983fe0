"""``NAME=VALUE,...`` text of the command line (``--bind``, ``--config``) as a dict."""

from __future__ import annotations

import ast
from typing import Any, Sequence

from equiv.errors import SourceError


# ----------------------------------------------------------------------------------------
# Pairs from sources
# ----------------------------------------------------------------------------------------
def parse_assignments(text: str | Sequence[str] | None, what: str = "value") -> dict[str, Any]:
    """``'D=hidden_size,T=MOE_TOKENS'`` or ``['swiglu_limit=0.0']`` -> dict (values literal-eval'd
    when they parse as Python literals, else kept as strings)."""
    if not text:
        return {}
    parts = [text] if isinstance(text, str) else list(text)
    out: dict[str, Any] = {}
    for chunk in parts:
        for item in filter(None, (p.strip() for p in chunk.split(","))):
            key, sep, val = item.partition("=")
            if not sep or not key.strip():
                raise SourceError(f"malformed {what} {item!r}: expected NAME=VALUE")
            val = val.strip()
            try:
                out[key.strip()] = ast.literal_eval(val)
            except (ValueError, SyntaxError):
                out[key.strip()] = val
    return out
