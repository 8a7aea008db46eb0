#!/usr/bin/env bash
# Cold and warm start of `scratchgd train --epochs 1`: wall seconds of the whole process.
# Cold = numba's cache files of the package removed first (as right after installing).
# Run from the repository root: bash benchmarks/cold_start.sh [repeats]
set -euo pipefail
repeats=${1:-3}
run() { /usr/bin/time -f "%e" python -m scratchgd train --epochs 1 --no-progress "$@" 2>&1 >/dev/null | tail -1; }
for i in $(seq "$repeats"); do
  find scratchgd -name '*.nbi' -delete -o -name '*.nbc' -delete
  echo "numba cold: $(run --backend numba) s"
  echo "numba warm: $(run --backend numba) s"
  echo "numpy:      $(run --backend numpy) s"
done
