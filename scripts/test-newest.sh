#!/usr/bin/env bash
# Run the tests against the newest releases pyproject.toml's ranges allow (torch stays the pinned
# CPU build), in a venv of its own (.venv-newest), rebuilt on every run. This is how an upstream
# release that will break equiv shows up before the lock is refreshed: a failure here warns, it
# does not block (the README's test command installs from requirements.lock).
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
TORCH_VERSION="${EQUIV_TORCH_VERSION:-2.13.0}"
rm -rf .venv-newest
"$PYTHON" -m venv .venv-newest || exit 1
TORCH_FROM=()
[ -n "${EQUIV_TORCH_INDEX:-}" ] && TORCH_FROM=(--index-url "$EQUIV_TORCH_INDEX")
.venv-newest/bin/python -m pip install --quiet --disable-pip-version-check "${TORCH_FROM[@]}" "torch==${TORCH_VERSION}" || exit 1
.venv-newest/bin/python -m pip install --quiet --disable-pip-version-check --upgrade \
    --upgrade-strategy eager -e '.[test]' "torch==${TORCH_VERSION}" || exit 1
.venv-newest/bin/python -m pip freeze --disable-pip-version-check --exclude-editable \
    | diff <(grep -o '^[A-Za-z0-9_.-]*==[^ ]*' requirements.lock | tr '[:upper:]_' '[:lower:]-' | sort) \
           <(tr '[:upper:]_' '[:lower:]-' | grep -v '^torch==' | sort) \
    | sed -n 's/^> /newer than the lock: /p'
.venv-newest/bin/python -m pytest -n 2 -q "$@"
rc=$?
[ "$rc" = 5 ] && { echo "error: pytest collected no tests" >&2; exit 1; }
exit "$rc"
