#!/usr/bin/env bash
# Create .venv with the pinned CPU build of torch and exactly the versions in requirements.lock
# (hash-checked), then install equiv editable. Nothing is resolved here: every package comes from
# the lock, so a fresh machine gets the set the tests were run with. torch is installed first, by
# its pinned version, so no CUDA build is pulled.
# An environment already set up for the same lock, pyproject.toml and torch version is reused as
# it is (equiv is installed editable, so code changes need no reinstall); a changed lock rebuilds
# it. Refresh the lock with `bash scripts/lock.sh`.
# EQUIV_TORCH_INDEX names an index to take torch from (where the default index would serve a CUDA
# build, as on a hosted CI runner: PyTorch's CPU index).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
TORCH_VERSION="${EQUIV_TORCH_VERSION:-2.13.0}"
PIP=(.venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps)
TORCH_FROM=()
if [ -n "${EQUIV_TORCH_INDEX:-}" ]; then
    TORCH_FROM=(--index-url "$EQUIV_TORCH_INDEX")
fi
STAMP=.venv/.equiv-setup
WANT="torch==${TORCH_VERSION} $(cat requirements.lock pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ -x .venv/bin/python ] && [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
    # Set up for another lock (or half set up): start again, so no package outside the lock stays.
    rm -rf .venv
fi
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
    "${PIP[@]}" "${TORCH_FROM[@]}" "torch==${TORCH_VERSION}"
    "${PIP[@]}" --require-hashes -r requirements.lock
    "${PIP[@]}" --no-build-isolation -e .
    .venv/bin/python -m pip check --disable-pip-version-check >/dev/null || {
        .venv/bin/python -m pip check --disable-pip-version-check >&2
        echo "setup: the installed set is inconsistent; refresh the lock with 'bash scripts/lock.sh'" >&2
        exit 1
    }
    echo "$WANT" > "$STAMP"
fi
.venv/bin/python -c "import torch, equiv; print(f'equiv {equiv.__version__} with torch {torch.__version__}')" || {
    echo "setup: .venv cannot import torch and equiv; delete .venv and run this again" >&2
    exit 1
}
