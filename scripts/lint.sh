#!/usr/bin/env bash
# The checks CI makes before the tests: ruff's lint rules and formatting, and mypy (over the
# installed layout, scripts/typecheck.sh). Installs the lint extra into .venv when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh lint >/dev/null
VENV=${TRBENCH_VENV:-.venv}
"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .
bash scripts/typecheck.sh
