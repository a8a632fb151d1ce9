#!/usr/bin/env bash
# The main job: set up (if needed), run the quickstart comparison suite, write its report. The
# report command ends with the final return of each algorithm (mean and 95% CI) and the report's path.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/trbench run suites/quickstart.toml
.venv/bin/trbench report results/quickstart
