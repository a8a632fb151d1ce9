#!/usr/bin/env bash
# Type-check trbench as it is installed: the folders base/, algos/, suites/ and analysis/ are the
# packages trbench.base, trbench.algos, ... (pyproject.toml's package-dir), which mypy cannot map
# from the source layout itself. A view of the installed layout made of symlinks lets it follow
# every import across the layers.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VIEW=$(mktemp -d)
trap 'rm -rf "$VIEW"' EXIT
mkdir "$VIEW/trbench"
for path in trbench/*; do ln -s "$ROOT/$path" "$VIEW/trbench/"; done
for folder in base algos suites analysis; do ln -s "$ROOT/$folder" "$VIEW/trbench/$folder"; done
cd "$VIEW"
"$ROOT/${TRBENCH_VENV:-.venv}/bin/mypy" --config-file "$ROOT/pyproject.toml" -p trbench "$@" |
  sed "s#^trbench/\(base\|algos\|suites\|analysis\)/#\1/#"
