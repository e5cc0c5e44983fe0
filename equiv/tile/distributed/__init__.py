"""``pypto.language.distributed`` (``pld``): the ranks of a multi-rank program, run in one process.

A multi-rank PyPTO program has three levels: a ``@pl.jit.host`` orchestrator allocates
window buffers (``pld.alloc_window_buffer``), takes typed views of them (``pld.window``)
and, in a loop over ``pld.world_size()``, dispatches a per-device program with
``device=r``; each rank's program then exchanges data with its peers through the windows
(``pld.tensor.put``, ``pld.tile.remote_store``, ``pld.tile.remote_load``) and orders the
exchanges with signals (``pld.system.notify`` / ``pld.system.wait``) or collectives.

The emulation:

* **Each rank has its own memory.** A window buffer has one zero-filled instance per rank
  (the runtime zeroes freshly allocated windows); ``x[r]`` of a host tensor is the rank's
  slice of it (a view: writes land in the caller's tensor).
* **Ranks run as cooperating threads, one at a time.** Ranks start in a seeded shuffled
  order (`equiv.tile.context.RunContext.block_order`, like SPMD blocks); a rank runs until it
  finishes or waits on a signal that is not yet satisfied, then the next rank (in that
  order) that can run does. A wait no rank can ever satisfy is reported as a deadlock
  with the waiting sites.
* **Remote writes are stores into the peer's instance** with the usual bounds checks,
  written-masks and last-writer tokens; ``AtomicAdd`` notifies and ``atomic=Add`` stores
  add with one rounding to the element type.
* **Cross-rank races are found with vector clocks.** A notify releases everything its rank
  wrote before it; a wait that sees the signal acquires it. A window element written by two
  ranks, or by a rank and its owner, with no notify→wait chain between the two writes is
  recorded as a ``race`` finding, like two SPMD blocks writing one element. Atomic adds do
  not race with each other. Within one rank the SPMD rules hold unchanged.
* **Collectives** (``pld.tensor.allreduce``, ``barrier``, ``broadcast``, ``allgather``,
  ``reduce_scatter``, ``all_to_all``) are a rendezvous of every rank followed by each rank
  computing its result from the others' data as it was on arrival; reductions follow the
  mesh order (own data first, then peers in ascending rank, one rounding per step).

The world size comes from the run (``DistributedConfig(device_ids=...)`` of the file's
``golden.run_jit`` call): run the host entry under ``configured(n)``.

The package, one concern a file: `dsl_types` (the ``pld`` value types), `world` (ranks,
their memory, turns, signals, rendezvous), `host` (``@pl.jit.host``), `ops` (the ``pld``
ops) and `shims` (the ``pld`` table and source mode's modules). Cross-rank races are a
detector on the run's event stream (`equiv.tile.rank_races`), judged by the vector clocks
of `equiv.tile.clocks` (both outside this package, so the run context can install the
detector without importing the world).
"""
