"""Discovery: what a model file's ``__main__`` block asks the golden harness to run.

The block is executed as written, in the file's own module (loaded through `equiv.source`
with the recording ``golden`` stand-in), with a command line of its own so the file's
defaults apply. ``argparse`` is answered by a thin subclass that remembers the options the
block declares; when one of them chooses a mode (``--mode decode|prefill|all``), the block is
run once per mode so every mode the file defines is found. Nothing of pypto or a device runs.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import copy
import io
import os
import select
import signal
import sys
import traceback
import types
from dataclasses import dataclass, field
from typing import Iterator

import torch

from equiv.machine import available_memory_bytes
from equiv.pairfree import golden as golden_stub
from equiv.errors import DiscoveryError, InputsTooLarge

# Options whose choices select what the ``__main__`` block runs: a mode (decode, prefill) or,
# in files that hand several entries to run_jit, which entry (``--entry full|output|tp1``).
MODE_OPTIONS = ("--mode", "--modes", "-m", "--entry")
ALL_WORDS = ("all", "both")


@dataclass
class Discovered:
    """One ``run_jit`` call: the entry, under a mode label (``decode``, ``default``), nth call of it."""

    mode: str
    argv: tuple[str, ...]
    index: int          # position among the calls of this argv
    call: golden_stub.RunCall

    @property
    def entry(self) -> str:
        return self.call.entry

    @property
    def key(self) -> str:
        """How a case names it: ``entry`` or ``entry[mode]`` (``#n`` when one mode calls it twice)."""
        return self.call.entry


@dataclass
class Plan:
    """Every call found in a file, grouped by mode."""

    modes: dict[str, tuple[str, ...]] = field(default_factory=dict)  # mode -> argv
    found: list[Discovered] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # The first call with its inputs already made, by (argv, entry, index, seed): a file
    # without modes builds them while it is discovered (a Pro file's __main__ takes minutes
    # and GBs), and the first case takes them from here (`take`) instead of building again.
    inputs: dict[tuple, golden_stub.RunCall] = field(default_factory=dict)

    def take(self, argv: tuple[str, ...], entry: str, index: int, seed: int) -> golden_stub.RunCall | None:
        return self.inputs.pop((tuple(argv), entry, index, int(seed)), None)

    def entries(self) -> list[str]:
        return list(dict.fromkeys(d.entry for d in self.found))

    def of(self, entry: str) -> list[Discovered]:
        return [d for d in self.found if d.entry == entry]


def main_block(source: str, filename: str) -> ast.Module | None:
    """The body of the file's top-level ``if __name__ == "__main__":`` (None without one)."""
    tree = ast.parse(source, filename)
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Compare) \
                and isinstance(node.test.left, ast.Name) and node.test.left.id == "__name__" \
                and len(node.test.comparators) == 1 and isinstance(node.test.comparators[0], ast.Constant) \
                and node.test.comparators[0].value == "__main__":
            return ast.Module(body=node.body, type_ignores=[])
    return None


class _Parsers:
    """The ``argparse`` a ``__main__`` block imports: parsers parse the argv given here and
    remember their options (so modes can be found)."""

    def __init__(self, argv: list[str]):
        self.argv = argv
        self.actions: list[argparse.Action] = []
        outer = self

        class ArgumentParser(argparse.ArgumentParser):
            def parse_args(self, args=None, namespace=None):  # noqa: D401
                outer.actions.extend(self._actions)
                ns, rest = super().parse_known_args(outer.argv if args is None else args, namespace)
                return ns

            def parse_known_args(self, args=None, namespace=None):
                outer.actions.extend(self._actions)
                return super().parse_known_args(outer.argv if args is None else args, namespace)

            def exit(self, status=0, message=None):  # argparse errors must not end equiv
                raise DiscoveryError(f"the file's argument parser refused {outer.argv}: {message or status}")

        mod = types.ModuleType("argparse")
        mod.__dict__.update({k: v for k, v in argparse.__dict__.items() if not k.startswith("__")})
        mod.ArgumentParser = ArgumentParser  # type: ignore[attr-defined]
        self.module = mod


@contextlib.contextmanager
def _argparse_answered_by(module: types.ModuleType, parsers: _Parsers) -> Iterator[None]:
    b = module.__dict__["__builtins__"]
    b = b if isinstance(b, dict) else b.__dict__
    original = b["__import__"]

    def hook(name, globals=None, locals=None, fromlist=(), level=0):  # noqa: A002
        if level == 0 and name == "argparse":
            return parsers.module
        return original(name, globals, locals, fromlist, level)

    b["__import__"] = hook
    try:
        yield
    finally:
        b["__import__"] = original


def run_main(module: types.ModuleType, source: str, argv: list[str], seed: int | None = None
             ) -> tuple[list[golden_stub.RunCall], _Parsers, BaseException | None]:
    """Execute the ``__main__`` block of `module` (loaded from `source`) with `argv`.

    With `seed`, torch's global generator is seeded (and restored after) and every recorded
    call's inputs are created at the call, so the same seed gives the same inputs.
    """
    label = module.__file__ or "<kernel>"
    body = main_block(source, label)
    if body is None:
        raise DiscoveryError(f"{label} has no `if __name__ == \"__main__\":` block to take the entry, specs "
                             f"and golden from")
    code = compile(body, label, "exec", dont_inherit=True)
    parsers = _Parsers(list(argv))
    saved_name = module.__dict__.get("__name__")
    saved_argv = list(sys.argv)
    error: BaseException | None = None
    with contextlib.ExitStack() as stack:
        if seed is not None:
            stack.enter_context(torch.random.fork_rng(devices=[]))
            torch.manual_seed(int(seed))
        calls = stack.enter_context(golden_stub.recording(materialize_inputs=seed is not None))
        stack.enter_context(_argparse_answered_by(module, parsers))
        stack.enter_context(contextlib.redirect_stdout(io.StringIO()))  # the block's banners
        module.__dict__["__name__"] = "__main__"
        before = set(module.__dict__)
        sys.argv[:] = [label, *argv]
        try:
            exec(code, module.__dict__)  # noqa: S102 - the file's own __main__ block
        except SystemExit as exc:  # after run_jit, a block may exit on a failed result
            if exc.code not in (None, 0):
                error = exc
        except Exception as exc:  # noqa: BLE001 - reported with the calls found before it
            error = exc
        finally:
            module.__dict__["__name__"] = saved_name
            sys.argv[:] = saved_argv
            _forget_main_names(module, before)
    return calls, parsers, error


def _mode_choices(parsers: _Parsers) -> tuple[str, list[str]] | None:
    for action in parsers.actions:
        if any(o in MODE_OPTIONS for o in action.option_strings) and action.choices:
            opt = next(o for o in action.option_strings if o.startswith("--")) if any(
                o.startswith("--") for o in action.option_strings) else action.option_strings[0]
            return opt, [str(c) for c in action.choices if str(c) not in ALL_WORDS]
    return None


class _Dropped:
    """A spec's ``init_value`` that discovery does not keep (only *whether* it had one matters
    to a plan: an in-out output); the values are made per case by `materialized`."""

    def __repr__(self) -> str:
        return "<init_value not kept by discovery>"


DROPPED = _Dropped()


def _drop_values(call: golden_stub.RunCall) -> None:
    """Forget the values a recorded call's specs hold (closures over the file's weights: Pro
    expert weights are GBs, and a plan lives for the whole check)."""
    for s in call.specs:
        if isinstance(s, golden_stub.TensorSpec) and s.init_value is not None:
            s.init_value = DROPPED
        elif isinstance(s, golden_stub.ScalarSpec) and isinstance(s.value, torch.Tensor) and s.value.numel() > 1:
            s.value = DROPPED


def _forget_main_names(module: types.ModuleType, before: set[str]) -> None:
    """Drop what the ``__main__`` block bound in the module that holds tensor data (``specs =
    build_tensor_specs()``): the module lives as long as the check."""
    for name in set(module.__dict__) - before:
        v = module.__dict__[name]
        held = [v] if not isinstance(v, (list, tuple, dict)) else list(v.values() if isinstance(v, dict) else v)
        if any(isinstance(x, (torch.Tensor, golden_stub.TensorSpec)) for x in held):
            del module.__dict__[name]


# Seconds the sizing child may take before it is given up (a Pro file's block: ~3 s).
SIZING_SECONDS = 120.0


def declared_input_bytes(module: types.ModuleType, source: str) -> int | None:
    """Bytes of the tensor specs of the file's largest ``run_jit`` call, found by running the
    ``__main__`` block on torch's meta device: shapes and dtypes only, nothing allocated, no
    values computed (a whole-model file that declares hundreds of GB answers in seconds).

    It runs in a forked child process: whatever the block leaves behind (a module-level cache
    of tables built from meta tensors) must not reach the real run. None where there is no
    fork (not POSIX), or the block does not get to a ``run_jit`` call on the meta device (it
    reads a value, for instance ``.item()``, which a meta tensor does not have)."""
    if not hasattr(os, "fork"):
        return None
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: size, answer, leave without running any exit handler
        answer = -1
        try:
            os.close(read_end)
            answer = _size_on_meta(module, source)
        finally:
            os.write(write_end, str(answer).encode())
            os._exit(0)
    os.close(write_end)
    data = b""
    try:
        while select.select([read_end], [], [], SIZING_SECONDS)[0]:
            chunk = os.read(read_end, 64)
            if not chunk:
                break
            data += chunk
    finally:
        os.close(read_end)
        if not data:  # no answer in time: the child is given up
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    size = int(data) if data.strip().lstrip(b"-").isdigit() else -1
    return size if size >= 0 else None


def _size_on_meta(module: types.ModuleType, source: str) -> int:
    try:
        with torch.device("meta"):
            calls, _, _ = run_main(module, source, [])
    except Exception:  # noqa: BLE001 - sizing is best effort; the real run reports errors
        return -1
    sizes = [sum(_spec_bytes(s) for s in call.specs) for call in calls]
    return max(sizes) if sizes else -1


def _spec_bytes(spec: object) -> int:
    if not isinstance(spec, golden_stub.TensorSpec):
        return 0
    n = 1
    for d in spec.shape:
        n *= int(d)
    return n * torch.empty(0, dtype=spec.dtype).element_size()


def check_fits(module: types.ModuleType, source: str) -> None:
    """Raise `InputsTooLarge` when the file's declared inputs exceed the memory available:
    running its ``__main__`` block for real would only end in the out-of-memory killer, which
    takes the whole check (and every other file of a gate run) down without a report."""
    need, have = declared_input_bytes(module, source), available_memory_bytes()
    if need is not None and have is not None and need > have:
        raise InputsTooLarge(
            f"its run_jit inputs declare {need / 2**30:.1f} GiB (largest call, as the file builds them), "
            f"more than the {have / 2**30:.1f} GiB of memory available here; check it on a machine with "
            f"more memory")


def discover(module: types.ModuleType, source: str, seed: int | None = None) -> Plan:
    """Every ``run_jit`` call of the file, per mode (inputs not kept). With `seed`, a file
    without modes keeps its first call's inputs made from `seed` (`Plan.take`)."""
    plan = Plan()
    calls, parsers, error = run_main(module, source, [], seed=seed)
    if error is not None and seed is not None:
        # Creating the inputs may be what failed: discover without them (the first case
        # creates them again and reports what goes wrong there).
        calls, parsers, error = run_main(module, source, [])
        seed = None
    modes = _mode_choices(parsers)
    if not modes and seed is not None and calls:
        first = calls[0]
        # A copy: the plan's own record of the call (below) keeps no values.
        plan.inputs[((), first.entry, 0, int(seed))] = copy.copy(first)
    for call in calls:
        call.materialized = None
    runs: list[tuple[str, list[str], list, BaseException | None]] = []
    if modes:
        opt, choices = modes
        for choice in choices:
            argv = [opt, choice]
            c, _, e = run_main(module, source, argv)
            runs.append((choice, argv, c, e))
    else:
        runs.append(("default", [], calls, error))
    for mode, argv, found, err in runs:
        plan.modes[mode] = tuple(argv)
        for i, call in enumerate(found):
            _drop_values(call)
            plan.found.append(Discovered(mode, tuple(argv), i, call))
        if err is not None:
            plan.notes.append(f"mode {mode}: the __main__ block raised {describe(err)} "
                              f"after {len(found)} run_jit call(s)")
    if not plan.found:
        why = plan.notes[0] if plan.notes else "it calls no golden.run_jit / golden.run"
        raise DiscoveryError(f"{module.__file__}: no run_jit call found in the __main__ block ({why})")
    return plan


def materialized(module: types.ModuleType, source: str, argv: tuple[str, ...], entry: str, index: int,
                 seed: int) -> golden_stub.RunCall:
    """The `index`-th call of `entry` under `argv`, with its inputs created from `seed`."""
    calls, _, error = run_main(module, source, list(argv), seed=seed)
    mine = [c for c in calls if c.entry == entry]
    if index >= len(mine):
        under = f"{module.__file__}: the __main__ block under {list(argv) or 'its defaults'}"
        if error is not None:
            raise DiscoveryError(f"{under} raised before its run_jit call of {entry} (call {index}), creating "
                                 f"the inputs from seed {seed}: {describe(error)}") from error
        raise DiscoveryError(f"{under} no longer calls run_jit for {entry} (call {index})")
    return mine[index]


def describe(exc: BaseException) -> str:
    """``Type: message at file:line`` (the innermost frame: where the file's code, or what
    it called, raised)."""
    from equiv.tile.sites import short_path

    frames = traceback.extract_tb(exc.__traceback__)
    where = f" at {short_path(frames[-1].filename)}:{frames[-1].lineno}" if frames else ""
    message = str(exc)
    return f"{type(exc).__name__}{': ' + message if message else ' (no message)'}{where}"
