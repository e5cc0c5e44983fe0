"""Batched blocks: the blocks of a ``pl.spmd`` / ``pl.parallel`` stage run as one computation
along a leading axis, with results bit-for-bit those of running them one after another.

Why: most of an emulated kernel's time is Python and torch dispatch on small tiles, paid once
per block. Run together, a stage of `n` blocks pays it once.

How a stage runs (``Options.batch_blocks``, default on):

1. The loop ``for i in pl.spmd(n): BODY`` is rewritten when the kernel is loaded
   (`equiv.tile.rewrite`) into ``for i in attempts(pl.spmd(n)): with guard(): BODY``.
2. `attempts` first yields one `Lanes` value: the block indices of all `n` blocks, in the
   run's seeded block order. BODY runs once. Tiles computed from lanes carry a leading
   axis of length `n` (lane `k` is the `k`-th block of the order); ops that are not
   written for that axis run once per lane and their results are stacked (`call`).
3. Side effects are deferred: a store records an event (tensor, window, values, kernel
   line, lane) instead of writing. Loads read memory as it was when the stage began.
4. When BODY ends, the blocks' nodes are made in the block order and the events applied:
   all at once where that provably writes the same (`_bulk_plan`: no element stored twice,
   nothing out of range, no racing earlier writer, no observer), else replayed block by
   block through the same `Tensor.store` a one-by-one run calls, inside the same block
   nodes. Either way written-masks, last-writer maps, race findings, writer attribution and
   observers see what a one-by-one run makes them see.
5. Anything that would make the batched run differ raises `BatchFallback` (caught by
   `guard`): control flow on block data (``if``, ``range``, ``int()`` of a lane value), a
   load of a tensor the stage writes, an access outside a tensor, poison drawn from the
   run's generator, a nested parallel stage, block-identity queries, barriers, ranks,
   in-place writes of block data into a tile without the lane axis, atomic adds. Nothing has been written
   by then, so the stage simply runs again one block at a time in the same order: a kernel
   that cannot be batched is slower, never different.

`equiv.tile.rewrite` only rewrites loops whose body cannot leak state between blocks
through Python names (no name bound in the body is used elsewhere in the function, no
``break``/``return``), which is what makes running BODY once equal to running it per block.

The package, one concern a file (the `Lanes` value type itself is `equiv.tile.lanes`, below
the tiles that carry it): `deferred` (deferred stores and how they are applied), `grids`
(lane windows as one strided view), `stages` (the runtime of rewritten loops: `attempts`,
`guard`, `iterations`) and `wrapping` (ops handed lane values).
"""
