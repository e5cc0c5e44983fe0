#!/usr/bin/env bash
# Set up and run the main job: check every PR #672 pair at its nominal shapes and write the report.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
mkdir -p reports
.venv/bin/equiv check --all --shapes nominal --json reports/pr672.json --report reports/pr672.html "$@"
