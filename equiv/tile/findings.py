"""A memory hazard one kernel run met: an access outside a tensor or a race."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Finding:
    """A memory hazard seen while running one kernel: out-of-range access or a race."""

    kind: str  # "oob-read" | "oob-write" | "race"
    tensor: str
    site: str
    detail: str
    count: int = 1
    # Bounding box (per dimension [lo, hi)) of the offending element indices.
    region: list[tuple[int, int]] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "tensor": self.tensor, "site": self.site, "detail": self.detail,
                "count": self.count, "region": [list(r) for r in self.region]}

    def describe(self) -> str:
        box = " × ".join(f"[{lo}, {hi})" for lo, hi in self.region)
        return f"{self.kind} on {self.tensor} at {self.site}: {self.detail}" + (f" (region {box})" if box else "")
