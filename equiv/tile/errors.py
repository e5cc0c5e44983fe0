"""The emulator's errors: what a kernel did wrong or used that the emulator does not cover,
located at the kernel's source line, and the signals a batched stage gives up with
(caught by `equiv.tile.batch.stages.guard`: the stage runs again one block at a time)."""

from __future__ import annotations

from equiv.tile.sites import kernel_site


class KernelError(Exception):
    """An error in a kernel program, located at the kernel's source line."""

    def __init__(self, message: str, site: str | None = None):
        self.site = site or kernel_site()
        super().__init__(f"{self.site}: {message}")


class OutOfBoundsError(KernelError):
    pass


class UnsupportedOpError(KernelError):
    """The kernel uses a DSL name or form the emulator does not cover: the run cannot be
    judged (never a verdict). ``op`` names the construct, the message adds the kernel's line."""

    def __init__(self, op: str, site: str | None = None, detail: str = ""):
        self.op = op
        extra = f" ({detail})" if detail else ""
        super().__init__(f"{op} is not covered by the emulator{extra}; the DSL table is "
                         f"equiv/tile/table.py", site)


class BatchFallback(Exception):
    """The stage cannot run batched here; it runs again one block at a time."""

    def __init__(self, why: str):
        self.site = kernel_site()  # the kernel line that made the batch give up
        super().__init__(why)


class PerBlockPoison(BatchFallback):
    """An op called once for every block drew patterned poison, which differs per block: the
    op runs again once per lane (`call`); outside an op the stage runs one block at a time."""


def fallback(why: str) -> None:
    raise BatchFallback(why)


class LaneSplit(BatchFallback):
    """The blocks of a batched attempt take different paths at a kernel line (a comparison,
    ``if``, a loop bound): the attempt is abandoned and each group of blocks that agree
    (`keys`, one per lane) runs batched on its own."""

    def __init__(self, why: str, keys: list):
        super().__init__(why)
        self.keys = keys
