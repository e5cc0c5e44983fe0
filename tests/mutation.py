"""Deliberately broken kernels made from a real one by editing one line of its source."""

from __future__ import annotations

import inspect
import os
from types import ModuleType
from typing import Callable


def edited_kernel(module: ModuleType, entry: str, old: str, new: str, name: str = "edited") -> Callable:
    """``module.entry`` compiled from the module's source with the text `old` (which must occur
    exactly once) replaced by `new`. Errors and hazards point at ``<module dir>/<name>.py``."""
    src = inspect.getsource(module)
    assert src.count(old) == 1, f"expected exactly one {old!r} in {module.__name__}"
    filename = os.path.join(os.path.dirname(module.__file__), f"{name}.py")
    namespace: dict = {"__name__": f"{module.__name__.rsplit('.', 1)[0]}.{name}"}
    exec(compile(src.replace(old, new), filename, "exec"), namespace)
    return namespace[entry]
