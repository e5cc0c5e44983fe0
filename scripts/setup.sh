#!/usr/bin/env bash
# Create .venv with the pinned CPU build of torch and equiv installed editable (with test extras).
# Pinning torch first matters: an unpinned torch in a fresh environment pulls a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
TORCH_VERSION="${EQUIV_TORCH_VERSION:-2.13.0}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check "torch==${TORCH_VERSION}"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
.venv/bin/python -c "import torch, equiv; print(f'equiv {equiv.__version__} with torch {torch.__version__}')"
