#!/usr/bin/env bash
# Set up and run the main job: check every PR #672 pair at every named preset (nominal, demo, flash,
# pro) and write the report. Exits 1 when a pair regresses — PR #672's expert_shared does at pro.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
mkdir -p reports
# one worker process per CPU runs the cases of each pair side by side (same results)
.venv/bin/equiv check --all --shapes presets --jobs "$(nproc 2>/dev/null || echo 1)" --json reports/pr672.json --report reports/pr672.html "$@"
