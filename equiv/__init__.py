"""equiv: numerical-equivalence verification of re-tiled tile kernels.

    import dataclasses, equiv
    pair = equiv.get("moe.combine")
    result = equiv.check(pair, shapes="fuzz")
    result = equiv.check(dataclasses.replace(pair, retiled=my_kernel), shapes="T=10,D=256")
"""

from typing import Any

from equiv import check as _check_module
from equiv.results import Case, CaseResult, CheckResult
from equiv.errors import KernelSignatureError, ShapeError
from equiv.options import Options
from equiv.pair import BIT_EXACT, Contract, KernelPair, within_ulp
from equiv.registry import all_pairs, get, names
from equiv.request import CheckRequest
from equiv.runner import run_case
from equiv.shapes import Dim, Shape, ShapeSpace



def check(pair: KernelPair | str, *args: Any, **kwargs: Any) -> CheckResult:
    """`equiv.check.check` with registered pairs known by name (``equiv.check("moe.combine")``)
    and run by ``jobs`` worker processes."""
    return _check_module.check(pair, *args, lookup=get, **kwargs)


__all__ = [
    "check", "CheckRequest", "CheckResult", "KernelSignatureError", "Options", "KernelPair", "Contract", "BIT_EXACT", "within_ulp",
    "get", "names", "all_pairs", "Case", "CaseResult", "run_case", "Shape", "ShapeSpace", "Dim", "ShapeError",
]
__version__ = "0.1.0"
