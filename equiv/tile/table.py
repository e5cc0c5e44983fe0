"""The DSL table: every ``pl.*`` name the emulator covers, and what implements it.

This is the one list of covered names. `equiv.tile` (imported by kernels as ``pl``) is
built from it, source mode's ``pypto.language`` shim exposes exactly these names, and
``equiv coverage`` reads it to say which names a repository's kernels use that are missing.
Dotted keys are members of sub-namespaces (``tile.add`` is ``pl.tile.add``). To add an op:
implement it in the family file it belongs to, then add its name(s) here.
"""

from __future__ import annotations

from typing import Any

from equiv import dtypes
from equiv.tile.memory import Tensor
from equiv.tile import control, elementwise, matmul, movement, reductions, values
from equiv.tile import access, assembly, elements, scratch
from equiv.tile import blocks, legacy
from equiv.tile.batch import wrapping
from equiv.tile import sort as sorting

NAMES: dict[str, Any] = {
    # --- values and dtypes ---------------------------------------------------------------
    "Tile": values.Tile,
    "INT8": dtypes.INT8, "INT16": dtypes.INT16, "INT32": dtypes.INT32, "INT64": dtypes.INT64,
    "UINT8": dtypes.UINT8, "FP16": dtypes.FP16, "BF16": dtypes.BF16, "FP32": dtypes.FP32,
    "INDEX": dtypes.INDEX, "UINT32": dtypes.UINT32, "BOOL": dtypes.BOOL,
    "cast": values.cast,
    "const": values.const,
    # --- annotations, decorators, control and blocks -------------------------------------
    "Tensor": Tensor,
    "Out": control.Out, "InOut": control.InOut, "Scalar": control.Scalar,
    "Level": control.Level,
    "Level.CORE_GROUP": control.Level.CORE_GROUP, "Level.CORE": control.Level.CORE,
    "Level.HOST": control.Level.HOST,
    "jit": control.jit, "jit.inline": control.jit.inline, "jit.host": control.jit.host,
    "spmd": blocks.spmd, "parallel": control.parallel, "range": control.range,
    "pipeline": control.pipeline, "at": control.at,
    "dynamic": scratch.dynamic, "DynDim": scratch.DynDim,
    "jit.incore": control.jit.incore, "jit.extern": control.jit.extern,
    "scope": control.scope, "manual_scope": control.manual_scope, "ScopeMode": control.ScopeMode,
    "ScopeMode.AUTO": control.ScopeMode.AUTO, "ScopeMode.MANUAL": control.ScopeMode.MANUAL,
    "unroll": control.unroll, "yield_": control.yield_, "no_dep": control.no_dep,
    "auto_chunk": control.auto_chunk, "split": control.split, "cross_core_slot": control.cross_core_slot,
    "prefetch.make_context": control.prefetch.make_context,
    "prefetch.async_prefetch": control.prefetch.async_prefetch,
    "program": control.program, "function": control.function, "inline": control.inline,
    "FunctionType": control.FunctionType,
    **{f"FunctionType.{t}": getattr(control.FunctionType, t) for t in (
        "Opaque", "Orchestration", "InCore", "AIC", "AIV", "Group", "Spmd", "Inline", "Graph")},
    # forms pypto has renamed or retired since 2026-06-01 (equiv/tile/legacy.py)
    "incore": legacy.incore, "auto_incore": legacy.auto_incore,
    "chunked_loop_optimizer": legacy.chunked_loop_optimizer,
    "Role": legacy.Role, "Role.Orchestrator": legacy.Role.Orchestrator, "Role.SubWorker": legacy.Role.SubWorker,
    "Tuple": legacy.Tuple,
    "spmd_submit": blocks.spmd_submit,
    "get_block_idx": blocks.get_block_idx, "tile.get_block_idx": blocks.get_block_idx,
    "get_block_num": blocks.get_block_num, "tile.get_block_num": blocks.get_block_num,
    "get_subblock_idx": blocks.get_subblock_idx, "tile.get_subblock_idx": blocks.get_subblock_idx,
    "split_aiv": blocks.split_aiv, "aiv_shard": blocks.aiv_shard, "aic_gather": blocks.aic_gather,
    "SplitMode": blocks.SplitMode, "SplitMode.NONE": blocks.SplitMode.NONE,
    "SplitMode.UP_DOWN": blocks.SplitMode.UP_DOWN, "SplitMode.LEFT_RIGHT": blocks.SplitMode.LEFT_RIGHT,
    "TASK_ID": blocks.TASK_ID, "TaskId": (control.Scalar, blocks.TASK_ID),
    "Array": blocks.Array, "array.create": blocks.array_create,
    "array.get_element": blocks.array_get_element, "array.update_element": blocks.array_update_element,
    "system.task_dummy": blocks.task_dummy, "system.syncall": blocks.syncall,
    # --- memory: tensors, windows, scalars -----------------------------------------------
    "create_tensor": scratch.create_tensor, "full": access.full, "arange": access.arange,
    "slice": access.slice, "reshape": access.reshape, "read": elements.read, "write": elements.write,
    "assemble": assembly.assemble, "set_validshape": assembly.set_validshape, "fillpad": assembly.fillpad,
    "AtomicType": assembly.AtomicType, "AtomicType.Add": assembly.AtomicType.Add,
    "AtomicType.NONE": assembly.AtomicType.NONE,
    "PadValue": assembly.PadValue, "PadValue.zero": assembly.PadValue.zero,
    "PadValue.min": assembly.PadValue.min, "PadValue.max": assembly.PadValue.max,
    "tensor.dim": scratch.tensor.dim,
    "MemorySpace": scratch.MemorySpace,
    **{f"MemorySpace.{m}": getattr(scratch.MemorySpace, m) for m in (
        "DDR", "Vec", "Mat", "Left", "Right", "Acc", "Bias", "LeftScale", "RightScale", "ScalarLocal")},
    "load": access.load, "store": assembly.store, "move": access.move,
    "create_tile": scratch.create_tile, "create_l1": scratch.create_l1,
    "tile.create": scratch.create_tile, "tile.create_tile": scratch.create_tile,
    "tile.load": access.load, "tile.store": assembly.store, "tile.move": access.move,
    "tile.slice": assembly.tile_slice, "tile.assemble": assembly.tile_assemble,
    "tile.read": elements.read, "tile.write": elements.write,
    "tile.reshape": access.reshape, "tile.set_validshape": assembly.set_validshape,
    "tile.full": access.full, "tile.fillpad": assembly.fillpad, "tile.arange": access.arange,
    "tensor.create": scratch.create_tensor, "tensor.read": elements.read, "tensor.write": elements.write,
    "tensor.set_validshape": assembly.tensor_set_validshape, "tensor.arange": access.arange,
    "tensor.create_l1": scratch.create_l1, "tensor.reshape": access.reshape,
    # --- elementwise and broadcasts ------------------------------------------------------
    "add": elementwise.add, "sub": elementwise.sub, "mul": elementwise.mul, "div": elementwise.div,
    "maximum": elementwise.maximum, "minimum": elementwise.minimum, "neg": elementwise.neg,
    "abs": elementwise.abs, "exp": elementwise.exp, "log": elementwise.log, "recip": elementwise.recip,
    "sqrt": elementwise.sqrt, "rsqrt": elementwise.rsqrt, "fmods": elementwise.fmods,
    "cmp": elementwise.cmp, "min": elementwise.min, "max": elementwise.max,
    "row_expand": elementwise.row_expand, "col_expand": elementwise.col_expand,
    "row_expand_mul": elementwise.row_expand_mul, "row_expand_add": elementwise.row_expand_add,
    "row_expand_sub": elementwise.row_expand_sub, "row_expand_div": elementwise.row_expand_div,
    "row_expand_max": elementwise.row_expand_max, "row_expand_min": elementwise.row_expand_min,
    "row_expand_expdif": elementwise.row_expand_expdif,
    "col_expand_mul": elementwise.col_expand_mul, "col_expand_add": elementwise.col_expand_add,
    "col_expand_sub": elementwise.col_expand_sub, "col_expand_div": elementwise.col_expand_div,
    "col_expand_max": elementwise.col_expand_max, "col_expand_min": elementwise.col_expand_min,
    "col_expand_expdif": elementwise.col_expand_expdif,
    **{f"tile.{name}": getattr(elementwise, name) for name in (
        "add", "sub", "mul", "div", "maximum", "minimum", "neg", "abs", "exp", "log", "recip", "sqrt",
        "rsqrt", "fmods", "cmp", "row_expand", "col_expand", "row_expand_mul", "row_expand_add",
        "row_expand_sub", "row_expand_div", "row_expand_max", "row_expand_min", "row_expand_expdif",
        "col_expand_mul", "col_expand_add", "col_expand_sub", "col_expand_div", "col_expand_max",
        "col_expand_min", "col_expand_expdif")},
    "tile.cmps": elementwise.cmp, "tile.cast": values.cast,
    # --- reductions ----------------------------------------------------------------------
    "row_max": reductions.row_max, "row_min": reductions.row_min, "row_sum": reductions.row_sum,
    "col_sum": reductions.col_sum, "col_max": reductions.col_max, "col_min": reductions.col_min,
    "row_argmax": reductions.row_argmax, "row_argmin": reductions.row_argmin,
    **{f"tile.{name}": getattr(reductions, name) for name in (
        "row_max", "row_min", "row_sum", "col_sum", "col_max", "col_min", "row_argmax", "row_argmin")},
    # --- matmul --------------------------------------------------------------------------
    "matmul": matmul.matmul, "matmul_acc": matmul.matmul_acc,
    "tile.matmul": matmul.matmul, "tile.matmul_acc": matmul.matmul_acc,
    # --- data movement -------------------------------------------------------------------
    "gather": movement.gather, "tensor.gather": movement.gather, "tile.gather": movement.tile_gather,
    "tile.gather_mask": movement.gather_mask,
    "tile.MaskPattern": movement.MaskPattern,
    **{f"tile.MaskPattern.{p}": getattr(movement.MaskPattern, p) for p in (
        "P0101", "P1010", "P0001", "P0010", "P0100", "P1000", "P1111")},
    "scatter": movement.scatter, "tensor.scatter": movement.scatter,
    "concat": movement.concat, "tile.concat": movement.concat,
    "transpose": movement.transpose, "tile.transpose": movement.transpose,
    "tile.transpose_view": movement.transpose_view,
    "gather_row": movement.gather_row, "tensor.gather_row": movement.gather_row,
    # --- sort ----------------------------------------------------------------------------
    "sort32": sorting.sort32, "tensor.sort32": sorting.sort32, "tile.sort32": sorting.sort32,
    "mrgsort": sorting.mrgsort, "tensor.mrgsort": sorting.mrgsort, "tile.mrgsort": sorting.mrgsort,
    # --- distributed (pypto.language.distributed) ----------------------------------------
}

# Every function is made batch-aware (equiv.tile.batch): called per block when a batched
# stage hands it block-dependent values, or, for block identity, task ids, arrays and
# barriers, a reason for that stage to run one block at a time.
#
# Ops listed here are written for tiles with a leading lane axis and run once for all blocks
# (each is tested against its per-lane run, tests/tile/test_batch.py); every other op runs
# per lane inside a batched stage.
BATCH_NATIVE = frozenset({
    "cast", "tile.cast",
    *(f"{p}{op}" for p in ("", "tile.") for op in (
        "add", "sub", "mul", "div", "maximum", "minimum", "neg", "abs", "exp", "sqrt", "recip", "rsqrt",
        "row_expand", "col_expand", "row_expand_mul", "row_expand_add", "row_expand_sub",
        "row_expand_div", "row_expand_max", "row_expand_min", "col_expand_mul", "col_expand_add",
        "col_expand_sub", "col_expand_div", "col_expand_max", "col_expand_min",
        "row_max", "row_min", "row_sum", "matmul", "matmul_acc", "reshape")),
})
BATCH_EXPANDED = frozenset({"gather"})
# Block identity answers for a batched stage itself (every block's index).
# Loops take bounds that differ per block (each iteration a lane value).
BATCH_AWARE = frozenset({"get_block_idx", "tile.get_block_idx", "get_block_num", "tile.get_block_num",
                         "range", "pipeline", "read", "tile.read", "tensor.read"})
# Element-wise binary ops take a per-block scalar operand along the lane axis.
BATCH_LANE_SCALARS = frozenset(f"{p}{op}" for p in ("", "tile.")
                               for op in ("add", "sub", "mul", "div", "maximum", "minimum"))
NAMES = wrapping.wrap_table(NAMES, BATCH_NATIVE, BATCH_EXPANDED, {
    blocks.__name__: "task ids, arrays, lanes and barriers are per block",
}, aware=BATCH_AWARE, lane_scalars=BATCH_LANE_SCALARS)
