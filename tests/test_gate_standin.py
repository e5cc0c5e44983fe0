"""The CPU stand-in for recording: a ``__main__`` block the meta device cannot run (it reads a
value with ``.item()``, calls ``bincount``, makes an input's value itself, imports a pypto
module the emulator lacks, or names its entry through an alias) is still compared, so a
harness-only edit of it is ``unchanged`` and runs no kernel, while a real change still runs.
"""

from __future__ import annotations

from equiv.pairfree import fingerprint as fp
from equiv.pairfree import plan as planning
from equiv.pairfree import standin
from tests.test_gate_pr import gate, no_kernel_runs, renamed_flag
from tests.test_pairfree import FILE, commit, kernel, repo  # noqa: F401 - `repo` is a fixture

ARGS = "    args = parser.parse_args()\n"


def in_block(text: str, lines: str) -> str:
    """`lines` (4-space indented) run in the __main__ block after its arguments are parsed."""
    return text.replace(ARGS, ARGS + lines)


READS_VALUES = (
    "    import torch\n"
    "    n = int(torch.ones(1).item())\n"                       # .item(): no value on meta
    "    counts = torch.bincount(torch.tensor([0, 1, 1]))\n"    # no meta kernel
    "    assert n == 1 and int(counts[1]) == 2\n"
)


def test_item_and_bincount_block_with_a_flag_renamed_is_unchanged_and_runs_nothing(repo, capsys, monkeypatch):  # noqa: F811
    base = commit(repo, {FILE: in_block(kernel(tile=4, blocks="T // T_TILE - 1"), READS_VALUES)})
    head = commit(repo, {FILE: in_block(renamed_flag(kernel(tile=4, blocks="T // T_TILE - 1")), READS_VALUES)})
    (c,) = fp.compare_file(str(repo), base, FILE, head, FILE)
    assert c.unchanged and "recorded on the CPU stand-in" in c.why, c.why
    started = no_kernel_runs(monkeypatch)  # base has a hole: any run would fail the gate
    assert gate(repo, base, "--head", head) == 0
    out = capsys.readouterr().out
    assert started == [] and f"UNCHANGED     {FILE}:scale_test" in out


def test_item_block_with_a_kernel_change_runs(repo, capsys):  # noqa: F811
    base = commit(repo, {FILE: in_block(kernel(tile=4), READS_VALUES)})
    head = commit(repo, {FILE: in_block(renamed_flag(kernel(tile=4, blocks="T // T_TILE - 1")), READS_VALUES)})
    (c,) = fp.compare_file(str(repo), base, FILE, head, FILE)
    assert not c.unchanged and not c.harness_only and c.why == f"changed: {FILE}:scale_test", c.why
    assert gate(repo, base, "--head", head, "--recipe", "realistic", "--model", "DEMO") == 1
    assert "unwritten" in capsys.readouterr().out


def valued(scale: str) -> str:
    """An input whose value the block makes itself, from a value it reads (meta has none)."""
    return kernel(tile=4).replace(
        "run_jit(fn=scale_test, specs=build_tensor_specs(),",
        "import torch\n"
        f"    s = torch.tensor([{scale}]).item()\n"
        "    specs = build_tensor_specs()\n"
        "    specs[0].init_value = torch.full([T, D], s)\n"
        "    run_jit(fn=scale_test, specs=specs,")


def test_a_value_the_block_makes_is_compared_by_its_bytes(repo):  # noqa: F811
    base = commit(repo, {FILE: valued("1.5")})
    head = commit(repo, {FILE: renamed_flag(valued("1.5"))})
    (c,) = fp.compare_file(str(repo), base, FILE, head, FILE)
    assert c.unchanged and "CPU stand-in" in c.why, c.why
    head2 = commit(repo, {FILE: renamed_flag(valued("2.5"))})
    (c,) = fp.compare_file(str(repo), head, FILE, head2, FILE)
    assert not c.unchanged and "the recorded run_jit call changed: default: specs" in c.why, c.why


def test_block_beyond_the_memory_cap_is_run_at_its_own_sizes(repo, monkeypatch):  # noqa: F811
    # the stand-in's child may add 64 MiB; the block asks for 512 MiB after reading a value
    monkeypatch.setattr(standin, "MEMORY_BYTES", 64 << 20)
    big = "    import torch\n    _ = torch.ones(1).item()\n    big = torch.ones(1 << 27)\n"
    base = commit(repo, {FILE: in_block(kernel(tile=4), big)})
    head = commit(repo, {FILE: in_block(renamed_flag(kernel(tile=4)), big)})
    (c,) = fp.compare_file(str(repo), base, FILE, head, FILE)
    assert not c.unchanged and c.harness_only and "nor on the CPU stand-in" in c.why, c.why
    assert "can't allocate memory" in c.why and "the recording's memory cap" in c.why, c.why
    # Kernel and golden are the same: it runs at the file's own sizes only, not at every model.
    planned = planning.plan_file(str(repo), base, FILE, head, FILE)
    assert [(p.entry, p.model) for p in planned] == [("scale_test", None)]
    head2 = commit(repo, {FILE: in_block(renamed_flag(kernel(tile=2)), big)})
    models = {p.model for p in planning.plan_file(str(repo), base, FILE, head2, FILE)}
    assert None in models and "PRO" in models


def test_block_past_the_time_box_is_given_up(repo, monkeypatch):  # noqa: F811
    monkeypatch.setattr(standin, "SECONDS", 1.0)
    slow = "    import time, torch\n    _ = torch.ones(1).item()\n    time.sleep(30)\n"
    base = commit(repo, {FILE: in_block(kernel(tile=4), slow)})
    head = commit(repo, {FILE: in_block(renamed_flag(kernel(tile=4)), slow)})
    (c,) = fp.compare_file(str(repo), base, FILE, head, FILE)
    assert not c.unchanged and "nor on the CPU stand-in (given up after 1 s)" in c.why, c.why


def aliased(text: str) -> str:
    """The entry and golden handed to run_jit through names the block binds (``fn = ...``)."""
    return text.replace("run_jit(fn=scale_test, specs=build_tensor_specs(), golden_fn=golden_scale,",
                        "fn = scale_test\n    golden_fn = golden_scale\n"
                        "    run_jit(fn=fn, specs=build_tensor_specs(), golden_fn=golden_fn,")


def test_entry_named_through_an_alias_is_compared_and_its_kernel_change_runs_everywhere(repo):  # noqa: F811
    base = commit(repo, {FILE: aliased(kernel(tile=4))})
    head = commit(repo, {FILE: aliased(renamed_flag(kernel(tile=4)))})
    (c,) = fp.compare_file(str(repo), base, FILE, head, FILE)
    assert c.entry == "scale_test" and c.unchanged, c
    head2 = commit(repo, {FILE: aliased(renamed_flag(kernel(tile=2)))})
    (c,) = fp.compare_file(str(repo), head, FILE, head2, FILE)
    assert not c.unchanged and not c.harness_only and "models/toy/scale.py:T_TILE" in c.why, c
    models = {p.model for p in planning.plan_file(str(repo), head, FILE, head2, FILE)}
    assert None in models and "PRO" in models


def test_block_that_configures_an_unemulated_pypto_module_is_compared(repo):  # noqa: F811
    backend = "    from pypto.backend import set_backend_type, BackendType\n" \
              "    set_backend_type(BackendType.Ascend910B)\n"
    base = commit(repo, {FILE: in_block(kernel(tile=4), backend)})
    head = commit(repo, {FILE: in_block(renamed_flag(kernel(tile=4)), backend)})
    (c,) = fp.compare_file(str(repo), base, FILE, head, FILE)
    assert c.unchanged, c.why


def test_an_entry_the_meta_device_cannot_size_is_sized_from_the_stand_in(repo):  # noqa: F811
    # the block's value changes the recorded call: the entry runs, sized by the stand-in's record
    base = commit(repo, {FILE: valued("1.5")})
    head = commit(repo, {FILE: valued("2.5")})
    (own, *_) = planning.plan_file(str(repo), base, FILE, head, FILE)
    assert not own.unchanged and own.estimate < planning.UNKNOWN_SECONDS
    assert own.shapes == ["[default]: outputs y[8, 16]; inputs x[8, 16]"]


def per_branch(text: str, split: bool) -> str:
    """The entry chosen per branch of the block (``fn, golden = ...`` on each path, pypto-lib's
    mode loops); with `split`, the path the defaults take calls ``twice_test`` instead."""
    from tests.test_gate_pr import with_second_entry

    text = with_second_entry(text).replace(
        "    run_jit(fn=twice_test, specs=build_tensor_specs(), golden_fn=golden_scale)", "")
    return text.replace(
        "    run_jit(fn=scale_test, specs=build_tensor_specs(), golden_fn=golden_scale,",
        f"    if {'True' if split else 'False'}:\n"
        "        fn, golden = twice_test, golden_scale\n"
        "    else:\n"
        "        fn, golden = scale_test, golden_scale\n"
        "    run_jit(fn=fn, specs=build_tensor_specs(), golden_fn=golden,")


def test_entries_bound_per_branch_are_each_compared(repo):  # noqa: F811
    base = commit(repo, {FILE: per_branch(kernel(tile=4), split=False)})
    head = commit(repo, {FILE: renamed_flag(per_branch(kernel(tile=4), split=False))})
    got = {c.entry: c for c in fp.compare_file(str(repo), base, FILE, head, FILE)}
    assert set(got) == {"twice_test", "scale_test"}
    assert got["scale_test"].unchanged and "change no recorded run_jit call" in got["scale_test"].why
    # twice_test is on a path the defaults never take: nothing the check would run
    assert got["twice_test"].unchanged and "called by neither revision" in got["twice_test"].why
    head2 = commit(repo, {FILE: renamed_flag(per_branch(kernel(tile=4), split=True))})
    got = {c.entry: c for c in fp.compare_file(str(repo), head, FILE, head2, FILE)}
    assert not got["twice_test"].unchanged and "calls it at head only" in got["twice_test"].why
    assert not got["scale_test"].unchanged and "calls it at base only" in got["scale_test"].why
