#!/usr/bin/env bash
# Times the end-to-end and fault runs (real CLI, engine, talos plugin and program against the
# simulated nodes), build excluded: run `npm run setup` first. Budget: under 5 minutes together.
# Usage: bash scripts/bench-e2e.sh [runs]   (default 1)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-1}
for i in $(seq 1 "$runs"); do
  for file in test/engine/e2e.test.ts test/engine/faults.test.ts; do
    start=$(date +%s%N)
    npx vitest run "$file" --reporter=dot >/dev/null 2>&1 || { echo "$file failed; run it with npx vitest run $file" >&2; exit 1; }
    ms=$(( ($(date +%s%N) - start) / 1000000 ))
    printf 'run %d  %-22s %d.%d s\n' "$i" "$file" $((ms / 1000)) $((ms % 1000 / 100))
  done
done
