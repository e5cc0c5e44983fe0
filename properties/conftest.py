"""Profiles of the property suite: how much of each pair's domain is searched.

Choose with ``pytest --equiv-profile ci|dev|thorough`` or ``EQUIV_PROFILE=...`` (default ``ci``).

=========  ======================  ==================  ===========================
profile    fuzz cases per pair     presets run under   largest fuzz case (elements)
=========  ======================  ==================  ===========================
ci         4                       realistic recipe    2**23 inputs + outputs
dev        25                      every recipe        2**25
thorough   200                     every recipe        unbounded
=========  ======================  ==================  ===========================

Hypothesis keeps failing examples in ``.equiv-cache/hypothesis`` (the project's cache
directory), so a counterexample found once is tried first on the next run. The profile's
Hypothesis settings apply to this suite's tests only; Hypothesis' global default is untouched.
"""

from __future__ import annotations

import os

import pytest

from equiv.pair import project_root
from properties import profiles
from properties.profiles import PROFILES, Profile


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--equiv-profile", choices=sorted(PROFILES), default=None,
                     help="property-suite profile: ci (few fuzz cases, default), dev, thorough; "
                          "or set EQUIV_PROFILE")


def current_profile(config: pytest.Config) -> Profile:
    name = config.getoption("--equiv-profile", default=None) or os.environ.get("EQUIV_PROFILE") or "ci"
    if name not in PROFILES:
        raise pytest.UsageError(f"EQUIV_PROFILE={name!r}: expected one of {', '.join(sorted(PROFILES))}")
    return PROFILES[name]


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    profiles.ACTIVE = current_profile(config)


def pytest_report_header(config: pytest.Config) -> str:
    p = current_profile(config)
    return (f"equiv profile: {p.name} ({p.fuzz_examples} fuzz cases per pair, presets under "
            f"{'every recipe' if p.all_recipes_on_presets else 'the realistic recipe'}; "
            f"hypothesis database {os.path.relpath(profiles.CACHE_DIR, project_root())})")


@pytest.fixture(scope="session")
def equiv_profile(request: pytest.FixtureRequest) -> Profile:
    return current_profile(request.config)
