#!/usr/bin/env bash
# Create .venv with the pinned CPU build of torch and equiv installed editable (with test extras).
# Pinning torch first matters: an unpinned torch in a fresh environment pulls a multi-GB CUDA build.
# An environment already set up for this pyproject.toml and torch version is reused as it is
# (equiv is installed editable, so code changes need no reinstall); delete .venv to rebuild it.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
TORCH_VERSION="${EQUIV_TORCH_VERSION:-2.13.0}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
STAMP=.venv/.equiv-setup
WANT="torch==${TORCH_VERSION} $(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
    rm -f "$STAMP"
    .venv/bin/python -m pip install --quiet --disable-pip-version-check "torch==${TORCH_VERSION}"
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
    echo "$WANT" > "$STAMP"
fi
.venv/bin/python -c "import torch, equiv; print(f'equiv {equiv.__version__} with torch {torch.__version__}')" || {
    echo "setup: .venv cannot import torch and equiv; delete .venv and run this again" >&2
    exit 1
}
