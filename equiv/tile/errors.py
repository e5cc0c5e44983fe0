"""The emulator's errors: what a kernel did wrong or used that the emulator does not cover,
located at the kernel's source line, and the signals a batched stage gives up with."""

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
