#!/usr/bin/env bash
# Cold and warm start of `scratchgd train --epochs 1`: wall seconds of the whole process.
# Cold = numba's cache empty (as right after installing): NUMBA_CACHE_DIR points at a
# temporary folder that is emptied before each cold run, wherever the package is installed.
# Run from the repository root: bash benchmarks/cold_start.sh [repeats]
# (python benchmarks/compile_profile.py says which kernels the cold seconds go to.)
set -euo pipefail
repeats=${1:-3}
NUMBA_CACHE_DIR=$(mktemp -d)
export NUMBA_CACHE_DIR
trap 'rm -rf "$NUMBA_CACHE_DIR"' EXIT
run() { /usr/bin/time -f "%e" python -m scratchgd train --epochs 1 --no-progress "$@" 2>&1 >/dev/null | tail -1; }
for i in $(seq "$repeats"); do
  find "$NUMBA_CACHE_DIR" -mindepth 1 -delete
  echo "numba cold: $(run --backend numba) s"
  echo "numba warm: $(run --backend numba) s"
  echo "numpy:      $(run --backend numpy) s"
done
