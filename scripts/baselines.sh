#!/usr/bin/env bash
# The zero-shot floors of every offline environment's test split: the embedded 0.5B student and
# the 1.5B teacher, without any synthesized data (issue [3/7]). Resumable: a rerun reads the
# finished episodes back. Results (tables, outcome matrices, every trajectory) are kept in
# results/<env>/. Long on 2 cores: run it in the background,
#   nohup bash scripts/baselines.sh > results/baselines.log 2>&1 & echo $! > results/baselines.pid
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=passive
for row in "zero-shot" "zero-shot (1.5B)"; do  # the 0.5B rows of every env first
  for env in sql shell code web; do
    echo "== $(date -u +%FT%TZ) $env: $row"
    lbi eval --config "configs/eval/$env.yaml" --only "$row" \
      --set "output_dir=results/$env" || echo "== $env: $row exited with $?"
  done
done
