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
from equiv.memory import Tensor
from equiv.tile import access, control, elementwise, matmul, movement, reductions, values

NAMES: dict[str, Any] = {
    # --- values and dtypes ---------------------------------------------------------------
    "Tile": values.Tile,
    "INT8": dtypes.INT8, "INT16": dtypes.INT16, "INT32": dtypes.INT32, "INT64": dtypes.INT64,
    "UINT8": dtypes.UINT8, "FP16": dtypes.FP16, "BF16": dtypes.BF16, "FP32": dtypes.FP32,
    "INDEX": dtypes.INDEX,
    "cast": values.cast,
    "const": values.const,
    # --- annotations, decorators, control and blocks -------------------------------------
    "Tensor": Tensor,
    "Out": control.Out, "InOut": control.InOut, "Scalar": control.Scalar,
    "Level": control.Level,
    "Level.CORE_GROUP": control.Level.CORE_GROUP, "Level.CORE": control.Level.CORE,
    "Level.HOST": control.Level.HOST,
    "jit": control.jit, "jit.inline": control.jit.inline, "jit.host": control.jit.host,
    "spmd": control.spmd, "parallel": control.parallel, "range": control.range,
    "pipeline": control.pipeline, "at": control.at,
    "dynamic": access.dynamic, "DynDim": access.DynDim,
    # --- memory: tensors, windows, scalars -----------------------------------------------
    "create_tensor": access.create_tensor, "full": access.full, "arange": access.arange,
    "slice": access.slice, "reshape": access.reshape, "read": access.read, "write": access.write,
    "assemble": access.assemble, "set_validshape": access.set_validshape, "fillpad": access.fillpad,
    "AtomicType": access.AtomicType, "AtomicType.Add": access.AtomicType.Add,
    "AtomicType.NONE": access.AtomicType.NONE,
    "PadValue": access.PadValue, "PadValue.zero": access.PadValue.zero,
    "PadValue.min": access.PadValue.min, "PadValue.max": access.PadValue.max,
    "tensor.dim": access.tensor.dim,
    # --- elementwise and broadcasts ------------------------------------------------------
    "add": elementwise.add, "sub": elementwise.sub, "mul": elementwise.mul, "div": elementwise.div,
    "maximum": elementwise.maximum, "minimum": elementwise.minimum, "neg": elementwise.neg,
    "abs": elementwise.abs, "exp": elementwise.exp, "recip": elementwise.recip,
    "sqrt": elementwise.sqrt, "rsqrt": elementwise.rsqrt, "min": elementwise.min, "max": elementwise.max,
    "row_expand_mul": elementwise.row_expand_mul, "row_expand_add": elementwise.row_expand_add,
    "row_expand_sub": elementwise.row_expand_sub, "row_expand_div": elementwise.row_expand_div,
    "col_expand_mul": elementwise.col_expand_mul, "col_expand_add": elementwise.col_expand_add,
    # --- reductions ----------------------------------------------------------------------
    "row_max": reductions.row_max, "row_min": reductions.row_min, "row_sum": reductions.row_sum,
    # --- matmul --------------------------------------------------------------------------
    "matmul": matmul.matmul, "matmul_acc": matmul.matmul_acc,
    # --- data movement -------------------------------------------------------------------
    "gather": movement.gather,
    # --- sort ----------------------------------------------------------------------------
    # --- distributed (pypto.language.distributed) ----------------------------------------
}
