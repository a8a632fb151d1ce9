#!/usr/bin/env bash
# Create .venv (once) and install trbench with its pinned dependencies into it.
# Extras to install may be given as arguments, e.g. `bash scripts/setup.sh ray`.
# The install is editable, so code changes need no reinstall: pip runs only when pyproject.toml
# changed since the last install, or an extra is asked for that is not installed yet.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${TRBENCH_VENV:-.venv}
# what the last successful install was made from: pyproject.toml's checksum, then one extra a line
STAMP="$VENV/.trbench-installed"

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
    echo "trbench needs Python 3.11 or newer (found $("$PYTHON" --version))" >&2; exit 2; }
  "$PYTHON" -m venv "$VENV"
fi

wanted=$(printf '%s\n' dev "$@")
project_sum=$(cksum < pyproject.toml)
installed=$(if [ -f "$STAMP" ]; then tail -n +2 "$STAMP"; fi)

# whether the stamp matches pyproject.toml and lists every wanted extra, and trbench imports
install_is_current() {
  [ -f "$STAMP" ] && [ "$(head -n 1 "$STAMP")" = "$project_sum" ] || return 1
  local extra
  for extra in $wanted; do
    printf '%s\n' "$installed" | grep -qxF -- "$extra" || return 1
  done
  "$VENV/bin/python" -c 'import trbench' 2>/dev/null
}

if install_is_current; then
  echo "trbench is installed in $VENV and pyproject.toml is unchanged; nothing to install"
  exit 0
fi

# extras installed before stay installed, so they are kept in the stamp and in the install
extras=$(printf '%s\n' $wanted $installed | awk 'NF && !seen[$0]++' | paste -sd, -)
rm -f "$STAMP"
# torch is pinned to 2.13.0; where a CPU-only build of it is offered locally it is preferred,
# which avoids several GB of CUDA packages. Users with a GPU install their own torch first.
"$VENV/bin/python" -m pip install --quiet --upgrade pip setuptools
"$VENV/bin/python" -m pip install --quiet -e ".[${extras}]"
{ echo "$project_sum"; tr ',' '\n' <<< "$extras"; } > "$STAMP"
