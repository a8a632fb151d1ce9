#!/usr/bin/env bash
# Create .venv (once) and install trbench with its pinned dependencies into it.
# Extras to install may be given as arguments, e.g. `bash scripts/setup.sh ray`.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
    echo "trbench needs Python 3.11 or newer (found $("$PYTHON" --version))" >&2; exit 2; }
  "$PYTHON" -m venv .venv
fi
extras="dev"
for extra in "$@"; do extras="$extras,$extra"; done
# torch is pinned to 2.13.0; where a CPU-only build of it is offered locally it is preferred,
# which avoids several GB of CUDA packages. Users with a GPU install their own torch first.
.venv/bin/python -m pip install --quiet --upgrade pip setuptools
.venv/bin/python -m pip install --quiet -e ".[${extras}]"
