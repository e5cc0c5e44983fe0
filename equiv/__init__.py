"""equiv: numerical-equivalence verification of re-tiled tile kernels.

    import dataclasses, equiv
    pair = equiv.get("moe.combine")
    result = equiv.check(pair, shapes="fuzz")
    result = equiv.check(dataclasses.replace(pair, retiled=my_kernel), shapes="T=10,D=256")
"""

from equiv.results import Case, CaseResult, CheckResult
from equiv.check import check
from equiv.errors import KernelSignatureError, ShapeError
from equiv.options import Options
from equiv.pair import BIT_EXACT, Contract, KernelPair, within_ulp
from equiv.registry import all_pairs, get, names
from equiv.runner import run_case
from equiv.shapes import Dim, Shape, ShapeSpace

__all__ = [
    "check", "CheckResult", "KernelSignatureError", "Options", "KernelPair", "Contract", "BIT_EXACT", "within_ulp",
    "get", "names", "all_pairs", "Case", "CaseResult", "run_case", "Shape", "ShapeSpace", "Dim", "ShapeError",
]
__version__ = "0.1.0"
