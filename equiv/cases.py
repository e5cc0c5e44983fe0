"""Saved cases: every non-equivalent case of a check, stored so that ``equiv replay`` reruns it.

A saved case is one ``.pt`` file (``torch.save`` of a plain dict, loaded back with
``weights_only=True``) under ``<root>/<pair>/``, holding:

* the case: shape, input recipe, seed, option variant; the emulator options it ran under;
* the inputs themselves, so a replay does not depend on the recipe, and their digest:
  scalars inline, each tensor once per content digest in ``<root>/<pair>/inputs/<sha256>.pt``
  (cases of one pair that share a tensor, e.g. the same weights under seven input recipes,
  share its file; the file is checked against its name when replayed). A caller may cap the size of saved inputs (``max_input_bytes``; the
  gate saves at most 16 MiB per case): a larger case keeps only the digest, and its replay
  regenerates the inputs from recipe and seed and refuses if they no longer match;
* the pair's ``source_hash()`` and, per side, which kernel function ran
  (``module:qualname``) and a hash of the file it is defined in;
* the verdicts, reasons and repro line of the original run;
* a SHA-256 digest of the output bits of both versions (values, written masks,
  uninitialised-dependence masks), per side and output, and one over everything.

Files are written to a temporary name in the destination folder and moved into place with
``os.replace``, so an interrupted run leaves either the whole case or none of it.

Replay (`replay`) looks the pair up in the registry, refuses (unless forced) when its
sources changed since the case was saved, reruns the case from the saved inputs and
compares verdicts and digests.

Variants: a case saved from ``dataclasses.replace(pair, retiled=fn)`` records ``fn`` as
``module:qualname``. Replay re-imports it when that is possible (a module-level function);
a variant built from a lambda, a closure or a function defined inside another function
cannot be found again, and its replay stops with an explanation (``--force`` replays the
registered pair instead).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import inspect
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

import torch

from equiv import runner
from equiv import registry
from equiv.errors import CaseError, UnknownPairError
from equiv import atomic
from equiv.options import Options
from equiv.pair import KernelPair
from equiv.runner import SIDES, make_inputs, run_side
from equiv.results import Case, CaseResult
from equiv.shapes import Shape

FORMAT = "equiv-case/1"
DEFAULT_DIR = os.path.join("reports", "cases")


# ----------------------------------------------------------------------------------------
# Kernel identity
# ----------------------------------------------------------------------------------------
def kernel_ref(fn: Callable) -> str:
    """``module:qualname`` of a kernel function."""
    return f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', getattr(fn, '__name__', '?'))}"


def kernel_file_hash(fn: Callable) -> str | None:
    """SHA-256 of the file defining `fn` (None when it has no file)."""
    try:
        path = inspect.getsourcefile(inspect.unwrap(fn))
    except TypeError:
        return None
    if not path or not os.path.isfile(path):
        return None
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def importable(ref: str) -> bool:
    return "<" not in ref and ":" in ref and not ref.startswith("?")


def import_kernel(ref: str) -> Callable:
    module, _, qualname = ref.partition(":")
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _registered(pair: KernelPair) -> KernelPair | None:
    try:
        return registry.get(pair.name)
    except UnknownPairError:
        return None


def is_variant(pair: KernelPair) -> bool:
    """True when `pair`'s kernels are not those of the registered pair of the same name."""
    reg = _registered(pair)
    return reg is None or any(kernel_ref(pair.kernel(s)) != kernel_ref(reg.kernel(s)) for s in SIDES)


# ----------------------------------------------------------------------------------------
# Output digests
# ----------------------------------------------------------------------------------------
def _bits(t: torch.Tensor) -> bytes:
    t = t.detach().to("cpu").contiguous()
    if t.dtype == torch.bool:
        t = t.to(torch.uint8)
    return t.reshape(-1).view(torch.uint8).numpy().tobytes()


def digest_runs(pair: KernelPair, case: Case, inputs: Mapping[str, Any], options: Options) -> dict[str, Any]:
    """Run both versions on `inputs` and hash their output bits.

    Returns ``{"all": hex, "sides": {side: {output: hex}}}``. A rejected side hashes its
    rejection message, a side that raised hashes its error text along with its outputs.
    """
    return _digest_sides({side: run_side(pair, side, case, inputs, options) for side in SIDES})


def _digest_sides(runs: Mapping[str, Any]) -> dict[str, Any]:
    sides: dict[str, dict[str, str]] = {}
    total = hashlib.sha256()
    for side in SIDES:
        run = runs[side]
        per: dict[str, str] = {}
        if run.rejected:
            per["<rejected>"] = hashlib.sha256(run.rejected.encode()).hexdigest()
        else:
            for name in sorted(run.outputs):
                h = hashlib.sha256()
                for what, t in (("value", run.outputs[name]), ("written", run.written[name]),
                                ("uninitialised", run.poisoned[name])):
                    h.update(f"{what}:{t.dtype}:{tuple(t.shape)}:".encode())
                    h.update(_bits(t))
                per[name] = h.hexdigest()
            if run.error:
                per["<error>"] = hashlib.sha256(run.error.encode()).hexdigest()
        sides[side] = per
        for name in sorted(per):
            total.update(f"{side}/{name}={per[name]};".encode())
    return {"all": total.hexdigest(), "sides": sides}


def input_digest(inputs: Mapping[str, Any]) -> str:
    """SHA-256 over the inputs' names, dtypes, shapes and bits (scalars by value)."""
    h = hashlib.sha256()
    for name in sorted(inputs):
        v = inputs[name]
        if isinstance(v, torch.Tensor):
            h.update(f"{name}:{v.dtype}:{tuple(v.shape)}:".encode())
            h.update(_bits(v))
        else:
            h.update(f"{name}={type(v).__name__}:{v!r};".encode())
    return h.hexdigest()


def _input_bytes(inputs: Mapping[str, Any]) -> int:
    return sum(v.numel() * v.element_size() for v in inputs.values() if isinstance(v, torch.Tensor))


def run_case_capturing(pair: KernelPair, case: Case, options: Options) -> tuple[CaseResult, dict[str, Any]]:
    """`runner.run_case` once, with a digest of each version's output bits."""
    result = runner.run_case(pair, case, options, keep_runs=True)
    return result, _digest_sides(result.runs)


# ----------------------------------------------------------------------------------------
# Saving
# ----------------------------------------------------------------------------------------
_UNSAFE = re.compile(r"[^A-Za-z0-9._=,+-]+")


def _safe(text: str) -> str:
    return _UNSAFE.sub("_", text).strip("_") or "_"


def case_filename(pair: KernelPair, case: Case) -> str:
    """``<shape>__<recipe>__s<seed>[__<variant>][__variant-<hash>].pt``."""
    parts = [str(case.shape), case.recipe, f"s{case.seed}"]
    if case.variant:
        parts.append(case.variant_label)
    if is_variant(pair):
        refs = "|".join(kernel_ref(pair.kernel(s)) for s in SIDES)
        parts.append("variant-" + hashlib.sha256(refs.encode()).hexdigest()[:8])
    return "__".join(_safe(p) for p in parts) + ".pt"


def case_path(root: str, pair: KernelPair, case: Case) -> str:
    return os.path.join(root, _safe(pair.name), case_filename(pair, case))


def _plain_inputs(inputs: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in inputs.items():
        if isinstance(v, torch.Tensor):
            out[k] = v.detach().to("cpu").clone()
        elif isinstance(v, (bool, int, float, str)) or v is None:
            out[k] = v
        else:
            raise TypeError(f"input {k!r} of type {type(v).__name__} cannot be saved (tensors and scalars only)")
    return out


def save_atomic(obj: Any, path: str) -> None:
    """torch.save `obj` to `path` atomically (creating its folder)."""
    with atomic.atomic_file(path, "wb", make_dirs=True) as fh:
        torch.save(obj, fh)


BLOB_DIR = "inputs"  # beside the cases of a pair: <root>/<pair>/inputs/<sha256>.pt


def tensor_digest(t: torch.Tensor) -> str:
    """SHA-256 over a tensor's dtype, shape and bits: the name of its content-addressed file."""
    h = hashlib.sha256(f"{t.dtype}:{tuple(t.shape)}:".encode())
    h.update(_bits(t))
    return h.hexdigest()


def store_inputs(inputs: Mapping[str, Any], folder: str) -> dict[str, Any]:
    """Write each tensor of `inputs` once per content digest under `folder`/inputs; returns the
    record's ``input_files``: name -> ``{"sha256": digest}`` for tensors, the value for scalars."""
    record: dict[str, Any] = {}
    for name, v in inputs.items():
        if not isinstance(v, torch.Tensor):
            record[name] = v
            continue
        digest = tensor_digest(v)
        path = os.path.join(folder, BLOB_DIR, digest + ".pt")
        if not os.path.exists(path):  # the same content is already there: nothing to write
            save_atomic(v.contiguous(), path)
        record[name] = {"sha256": digest}
    return record


def load_inputs(record: Mapping[str, Any], folder: str) -> dict[str, Any]:
    """The inputs of a case saved with `store_inputs` (each file verified against its digest)."""
    inputs: dict[str, Any] = {}
    for name, v in record.items():
        if not isinstance(v, dict):
            inputs[name] = v
            continue
        path = os.path.join(folder, BLOB_DIR, v["sha256"] + ".pt")
        try:
            t = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise CaseError(f"input {name} of the case is stored in {path}, which is missing "
                            f"(copy the case's folder with its inputs/ subfolder)") from None
        except Exception as exc:
            raise CaseError(f"{path}: unreadable input {name} ({type(exc).__name__}: {exc})") from None
        if not isinstance(t, torch.Tensor) or tensor_digest(t) != v["sha256"]:
            raise CaseError(f"{path}: input {name} does not match its digest (the file is damaged)")
        inputs[name] = t
    return inputs


def case_record(pair: KernelPair, result: CaseResult, options: Options,
                max_input_bytes: int | None = None, digests: Mapping[str, Any] | None = None,
                folder: str | None = None) -> dict[str, Any]:
    """Everything a saved case holds (plain types and tensors only).

    Inputs larger than `max_input_bytes` are left out: the replay regenerates them from the
    recipe and seed and checks them against the saved input digest. `digests` (from
    `run_case_capturing`, which produced `result`) saves rerunning both versions to hash
    their output bits. With `folder` (the pair's folder of cases), tensors go to content-addressed
    files there (`store_inputs`) instead of into the record.
    """
    case = result.case
    inputs = _plain_inputs(make_inputs(pair, case))
    digests = digests or digest_runs(pair, case, inputs, options)
    keep = max_input_bytes is None or _input_bytes(inputs) <= max_input_bytes
    return {
        "format": FORMAT,
        "pair": pair.name,
        "case": case.to_dict(),
        "options": {k: v for k, v in options.to_dict().items()},
        "inputs": inputs if keep and folder is None else None,
        "input_files": store_inputs(inputs, folder) if keep and folder is not None else None,
        "inputs_digest": input_digest(inputs),
        "inputs_bytes": _input_bytes(inputs),
        "source_hash": pair.source_hash(),
        "sources": list(pair.sources),
        "kernels": {s: kernel_ref(pair.kernel(s)) for s in SIDES},
        "kernel_files": {s: kernel_file_hash(pair.kernel(s)) for s in SIDES},
        "variant_of_registered": is_variant(pair),
        "verdicts": dict(result.verdicts),
        "reasons": {k: list(o.reasons) for k, o in result.outputs.items()},
        "repro": result.repro(),
        "digest": digests["all"],
        "digests": digests["sides"],
        "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "torch": str(torch.__version__),
    }


def save_case(pair: KernelPair, result: CaseResult, options: Options, root: str = DEFAULT_DIR,
              max_input_bytes: int | None = None, digests: Mapping[str, Any] | None = None) -> str:
    """Save one case under `root`; returns its path."""
    path = case_path(root, pair, result.case)
    save_atomic(case_record(pair, result, options, max_input_bytes, digests, folder=os.path.dirname(path)), path)
    return path


def failing(results: Iterable[CaseResult]) -> list[CaseResult]:
    """The non-equivalent results, one per case."""
    out, seen = [], set()
    for r in results:
        if set(r.verdicts.values()) - {"equivalent"} and r.case not in seen:
            seen.add(r.case)
            out.append(r)
    return out


def save_results(pair: KernelPair, check_result, root: str = DEFAULT_DIR,
                 options: Options | None = None, max_input_bytes: int | None = None) -> list[str]:
    """Save every non-equivalent case of a `CheckResult` (counterexamples included)."""
    if options is None:
        options = Options(**check_result.options) if check_result.options else Options()
    # a result that kept its runs (check(..., keep_runs=True)) is hashed as it ran, not rerun
    return [save_case(pair, r, options, root, max_input_bytes,
                      _digest_sides(r.runs) if getattr(r, "runs", None) else None)
            for r in failing([*check_result.counterexamples, *check_result.results])]


# ----------------------------------------------------------------------------------------
# Loading and replaying
# ----------------------------------------------------------------------------------------
def load_case(path: str) -> dict[str, Any]:
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CaseError(f"no such saved case: {path}") from None
    except Exception as exc:
        raise CaseError(f"{path}: not a readable saved case ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CaseError(f"{path}: not a saved equiv case (format {data.get('format') if isinstance(data, dict) else '?'}"
                        f", expected {FORMAT})")
    if data.get("inputs") is None and data.get("input_files") is not None:
        # inputs stored by content digest beside the case: read them back into the record
        data["inputs"] = load_inputs(data["input_files"], os.path.dirname(os.path.abspath(path)))
    return data


def find_cases(path: str) -> list[str]:
    """`path` itself if it is a file, else every saved case below it (sorted; content-addressed
    input files are not cases)."""
    if os.path.isfile(path):
        return [path]
    if not os.path.isdir(path):
        raise CaseError(f"no such saved case or folder: {path}")
    found = sorted(os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs
                   if f.endswith(".pt") and not f.startswith(".tmp-") and os.path.basename(d) != BLOB_DIR)
    if not found:
        raise CaseError(f"no saved cases under {path}")
    return found


@dataclass
class Replay:
    path: str
    pair: str
    case: Case
    saved_verdicts: dict[str, str]
    verdicts: dict[str, str] = field(default_factory=dict)
    saved_digest: str = ""
    digest: str = ""
    differing_digests: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    result: CaseResult | None = None
    inputs_from: str = "saved"   # or "regenerated" (a case saved without its inputs)

    @property
    def same_verdicts(self) -> bool:
        return self.verdicts == self.saved_verdicts

    @property
    def same_bits(self) -> bool:
        return self.digest == self.saved_digest

    @property
    def reproduced(self) -> bool:
        return self.same_verdicts and self.same_bits


def staleness(data: Mapping[str, Any], pair: KernelPair) -> list[str]:
    """What changed since the case was saved (empty: nothing)."""
    changes = []
    now = pair.source_hash()
    if now != data["source_hash"]:
        changes.append(f"the sources of {pair.name} ({', '.join(pair.sources)}) changed since the case was saved "
                       f"(source hash {data['source_hash'][:12]} then, {now[:12]} now)")
    for side in SIDES:
        then = data.get("kernel_files", {}).get(side)
        cur = kernel_file_hash(pair.kernel(side))
        if then and cur and then != cur and not changes:
            changes.append(f"the file defining the {side} kernel {data['kernels'][side]} changed since the case "
                           f"was saved")
    return changes


def resolve(data: Mapping[str, Any], force: bool = False) -> KernelPair:
    """The pair to replay `data` with: the registered one, or its saved variant re-imported."""
    try:
        pair = registry.get(data["pair"])
    except UnknownPairError as exc:
        raise CaseError(f"the case's pair is not registered: {exc}") from None
    saved = data.get("kernels", {})
    swaps = {}
    for side in SIDES:
        ref = saved.get(side)
        if not ref or ref == kernel_ref(pair.kernel(side)):
            continue
        if importable(ref):
            try:
                swaps[side] = import_kernel(ref)
                continue
            except (ImportError, AttributeError) as exc:
                why = f"importing it failed ({type(exc).__name__}: {exc})"
        else:
            why = "it is not a module-level function (a lambda, closure or local function cannot be found again)"
        if not force:
            raise CaseError(
                f"this case was saved from a variant of {pair.name} whose {side} kernel is {ref} "
                f"(the registered one is {kernel_ref(pair.kernel(side))}), and {why}. Replay finds registered "
                f"pairs and module-level variant kernels only; --force replays the registered pair instead.")
    return dataclasses.replace(pair, **swaps) if swaps else pair


def replay(path: str, force: bool = False, device: str | None = None) -> Replay:
    """Rerun a saved case from its saved inputs.

    Raises `CaseError` when the case cannot be replayed: unreadable, unknown pair, an
    un-importable variant, or (unless `force`) sources changed since it was saved.
    """
    data = load_case(path)
    pair = resolve(data, force)
    case = Case.from_dict(data["case"])
    out = Replay(path, data["pair"], case, dict(data["verdicts"]), saved_digest=data["digest"])
    out.stale = staleness(data, pair)
    if out.stale and not force:
        raise CaseError("cannot replay " + path + ": " + "; ".join(out.stale)
                        + ". Re-run the check to save fresh cases, or pass --force to replay anyway.")
    opts = dict(data["options"])
    if device:
        opts["device"] = device
    options = Options(**opts)
    if data.get("inputs") is not None:
        inputs = data["inputs"]
        out.inputs_from = "saved"
    else:
        inputs = _plain_inputs(make_inputs(pair, case))
        out.inputs_from = "regenerated"
    if input_digest(inputs) != data["inputs_digest"]:
        why = ("the saved inputs do not match their digest (the file is damaged)" if out.inputs_from == "saved"
               else f"the case was saved without its inputs ({data.get('inputs_bytes', 0) / 2**20:.0f} MiB) and "
                    f"recipe {case.recipe!r} of {pair.name} now generates different inputs")
        if not force:
            raise CaseError(f"cannot replay {path}: {why}.")
        out.stale.append(why)

    def saved_inputs(shape: Shape, gen: torch.Generator) -> dict[str, Any]:
        return {k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in inputs.items()}

    recipes = dict(pair.recipes)
    recipes[case.recipe] = saved_inputs
    rp = dataclasses.replace(pair, recipes=recipes)
    out.result, digests = run_case_capturing(rp, case, options)
    out.verdicts = dict(out.result.verdicts)
    out.digest = digests["all"]
    saved_sides = data.get("digests", {})
    for side, per in digests["sides"].items():
        for name, h in per.items():
            if saved_sides.get(side, {}).get(name) != h:
                out.differing_digests.append(f"{side}/{name}")
    return out


__all__ = ["save_case", "save_results", "load_case", "find_cases", "replay", "Replay", "CaseError",
           "digest_runs", "case_path", "DEFAULT_DIR", "kernel_ref", "is_variant"]
