#!/usr/bin/env bash
# The runs behind RESULTS.md, in the order that makes the most important rows exist first
# (issue [4/7]): synthesis with the 1.5B teacher, then the 0.5B zero-shot vs LbI-ICL rows.
# Resumable: every step skips finished work, so after an interruption rerun the same command:
#   nohup bash scripts/experiments.sh > results/experiments.log 2>&1 & echo $! > results/experiments.pid
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=passive
step() { echo "== $(date -u +%FT%TZ) $*"; "$@" || echo "== exited with $?: $*"; }
for docs_tasks in ${SQL_STEPS:-30:60 70:150 140:300}; do  # max_docs:max_tasks
  step lbi synth --config configs/experiments/sql.yaml --set "docs.max_docs=${docs_tasks%:*}" \
    --set "rollout.max_tasks=${docs_tasks#*:}"
done
