"""A case's inputs, shared read-only by every run of it.

A run gives each tensor input to the kernel in the emulator's storage form (`DType.storage`:
bf16 and fp16 values live in float32). A large input already in that form is lent to the run
in place (`Tensor.from_torch(borrow=True)`); one that is not (a bf16 weight) used to be
converted by every run: both versions, each poison and schedule variant, a Pro-size weight
widened four times per case. `storage_forms` converts such an input once per case; every run
borrows the one converted tensor (a run that writes it copies it first and restores it at its
end, as for any lent input), and the case drops it before the reference runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch

from equiv import dtypes
from equiv.tile.memory import BORROW_BYTES


@dataclass(frozen=True)
class Stored:
    """An input in its storage form (`data`), with the DSL dtype it stands for."""

    data: torch.Tensor
    dtype: dtypes.DType

    @property
    def nbytes(self) -> int:
        return self.data.nbytes


def storage_forms(inputs: Mapping[str, Any], device: str) -> dict[str, Any]:
    """`inputs` with every tensor that a run would lend in storage form, but holds in another
    dtype or on another device, converted once (`Stored`); everything else as it is."""
    out: dict[str, Any] = {}
    for name, value in inputs.items():
        if isinstance(value, torch.Tensor):
            dt = dtypes.from_torch(value.dtype)
            size = value.numel() * torch.empty(0, dtype=dt.storage).element_size()
            if size >= BORROW_BYTES and (value.dtype != dt.storage or str(value.device) != str(torch.device(device))):
                value = Stored(value.to(device, dt.storage).contiguous(), dt)
        out[name] = value
    return out


def input_bytes(inputs: Mapping[str, Any]) -> int:
    """Bytes of the tensors of `inputs` (stored forms included)."""
    return sum(v.nbytes if isinstance(v, (torch.Tensor, Stored)) else 0 for v in inputs.values())
