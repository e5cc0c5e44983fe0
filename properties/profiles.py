"""The property suite's profiles (see conftest.py) and the Hypothesis settings of each.

The settings are applied to the suite's own tests only (``settings(profile.name)`` on each
``@given``), never loaded as Hypothesis' global default, so other test modules keep theirs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from hypothesis import HealthCheck, settings
from hypothesis.database import DirectoryBasedExampleDatabase

from equiv.pair import project_root

CACHE_DIR = os.path.join(project_root(), ".equiv-cache", "hypothesis")


@dataclass(frozen=True)
class Profile:
    name: str
    fuzz_examples: int             # Hypothesis max_examples of each pair's fuzz property
    all_recipes_on_presets: bool   # presets under every input recipe, or the realistic one only
    max_case_elements: int | None  # fuzz cases with more input + output elements are skipped

    @property
    def hypothesis(self) -> settings:
        return settings.get_profile(f"equiv-{self.name}")


PROFILES = {
    "ci": Profile("ci", 4, False, 1 << 23),
    "dev": Profile("dev", 25, True, 1 << 25),
    "thorough": Profile("thorough", 200, True, None),
}

for _p in PROFILES.values():
    settings.register_profile(
        f"equiv-{_p.name}", max_examples=_p.fuzz_examples, deadline=None, print_blob=True, derandomize=False,
        database=DirectoryBasedExampleDatabase(CACHE_DIR),
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large])

# set by conftest.pytest_configure from --equiv-profile / EQUIV_PROFILE before the tests are collected
ACTIVE: Profile = PROFILES.get(os.environ.get("EQUIV_PROFILE", ""), PROFILES["ci"])
