"""Cache-line races of scalar writes.

A scalar write (``pl.write``, ``pl.tensor.write``, a scalar read-modify-write) goes through the
core's data cache and reaches global memory as a whole cache line, with no coherence between
cores: two blocks of one parallel stage that write *different* elements of one line lose one
of the updates on the device. Tile stores (DMA) bypass that cache and are not affected; two
blocks writing the *same* element are an element race, reported by the tensor itself.

The line of an element is its byte address in the tensor's memory (storage offset and
strides, in the element type's real size) divided by ``Options.cache_line_bytes``.
"""

from __future__ import annotations

from equiv.observe.events import STORED, Observer


class CacheLineObserver(Observer):
    def __init__(self, line_bytes: int = 64) -> None:
        self.line_bytes = max(1, int(line_bytes))
        # (storage, line) -> {block token: (site, element address)}
        self.lines: dict[tuple[int, int], dict[int, tuple[str, int]]] = {}
        # The storages written, held for the run: a tensor freed after its block (per-block
        # scratch) would otherwise hand its address to the next block's scratch, and writes to
        # two tensors that are distinct on the device would look like one cache line.
        self.storages: dict[int, object] = {}

    events = frozenset({STORED})

    def on_stored(self, ctx, tensor, window, mask, scalar: bool) -> None:
        if not scalar:
            return
        data = tensor.data
        offset = data.storage_offset() + sum(a * s for (a, _), s in zip(window, data.stride()))
        nbytes = max(1, tensor.dtype.bits // 8) if hasattr(tensor.dtype, "bits") else data.element_size()
        address = offset * nbytes
        storage = data.untyped_storage()
        self.storages.setdefault(storage.data_ptr(), storage)
        key = (storage.data_ptr(), address // self.line_bytes)
        from equiv.tile.sites import kernel_site

        site = kernel_site()
        token = ctx.current.token
        writers = self.lines.setdefault(key, {})
        for other, (other_site, other_addr) in writers.items():
            if other == token or other_addr == address:
                continue  # same block, or the same element (an element race, reported apart)
            node = ctx.races_with(other)
            if node is None:
                continue
            idx = [a for a, _ in window]
            ctx.record("cacheline-race", tensor.name,
                       f"scalar write of {tensor.name}{idx} by {ctx.block_label(ctx.current)} at {site} "
                       f"shares a {self.line_bytes}-byte cache line with a scalar write by "
                       f"{ctx.block_label(node)} at {other_site} (a different element): without "
                       f"coherence between cores one update is lost",
                       [(a, b) for a, b in window], site=site)
            break
        writers[token] = (site, address)
