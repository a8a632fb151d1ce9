#!/usr/bin/env bash
# The main job: set up (if needed), run the quickstart comparison suite, write its report.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/trbench run suites/quickstart.toml
.venv/bin/trbench report results/quickstart
echo "report: results/quickstart/report/report.html"
