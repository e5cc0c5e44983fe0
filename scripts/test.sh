#!/usr/bin/env bash
# Set up, check the import contract (.importlinter) and run the whole test suite (what CI runs).
# pytest's exit code 5 (no tests collected) means the setup is broken, so it fails the run like
# any other error.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    # The HTML report is tested in a real browser.
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
        || echo "warning: could not install chromium; the browser test will be skipped" >&2
fi
# The import contract (.importlinter): the layers and no cycle, checked before any test runs.
.venv/bin/lint-imports --no-cache || exit 1
.venv/bin/python -m pytest -n 2 -q "$@"
rc=$?
if [ "$rc" = 5 ]; then
    echo "error: pytest collected no tests — the test setup is broken" >&2
    exit 1
fi
exit "$rc"
