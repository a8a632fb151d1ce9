#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite, learning tests included.
# Pass pytest arguments to narrow it, e.g. `bash scripts/test.sh -m "not slow"`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh ray envpool tensorboard sb3 lint
# with no arguments: the tests and the kernel benchmarks, each benchmark run once as a test
if [ "$#" -eq 0 ]; then set -- tests benchmarks; fi
exec .venv/bin/python -m pytest -q "$@"
