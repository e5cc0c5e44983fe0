"""Shared fixtures of the emulator's op tests."""

import pytest

from equiv.tile.context import RunContext, running
from equiv.options import Options


@pytest.fixture
def ctx():
    """A kernel run context (seeded poison and block order) active for the test."""
    with running(RunContext(Options(seed=3))) as c:
        yield c
