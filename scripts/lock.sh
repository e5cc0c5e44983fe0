#!/usr/bin/env bash
# Refresh requirements.lock: the exact, hashed set of every dependency and test dependency
# (and the build backend) that scripts/setup.sh installs. torch is left out of the lock and
# installed by setup.sh as the pinned CPU build (EQUIV_TORCH_VERSION); the lock is resolved
# against that torch, so its dependencies are the CPU build's. pip-tools runs in a throwaway
# venv of its own, pinned too, so the lock does not depend on what .venv holds.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
TORCH_VERSION="${EQUIV_TORCH_VERSION:-2.13.0}"
PIP_TOOLS_VERSION=7.7.0
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$PYTHON" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet --disable-pip-version-check "pip-tools==${PIP_TOOLS_VERSION}"
echo "torch==${TORCH_VERSION}" > "$work/torch.txt"
CUSTOM_COMPILE_COMMAND="bash scripts/lock.sh" "$work/venv/bin/pip-compile" --quiet pyproject.toml --extra test --all-build-deps \
    --generate-hashes --strip-extras --unsafe-package torch --no-allow-unsafe \
    --no-emit-index-url --no-emit-find-links --no-emit-trusted-host \
    --constraint "$work/torch.txt" --output-file requirements.lock
echo "requirements.lock: $(grep -c '^[A-Za-z]' requirements.lock) packages pinned (torch ${TORCH_VERSION} installed apart)"
