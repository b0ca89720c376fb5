#!/usr/bin/env bash
# Wall time of one synthesis run and one evaluation row, before and after the managed
# llama-server (issue [2/7]), on the same small shipped configs, each side in its own worktree:
#   before = 84f031d (llama-cpp-python in-process, one request at a time, as shipped)
#   after  = AFTER_REV (default 90e6988: the managed llama-server, concurrency = slots)
# The before side needs a llama-cpp-python==0.3.36 wheel (pip builds it: ≈ 8.5 min). Run on a
# quiet machine; a rerun skips the steps already timed:
#   bash bench/server_before_after.sh [OUT]      # OUT defaults to /tmp/lbi-before-after
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-/tmp/lbi-before-after}
BEFORE_REV=84f031d
AFTER_REV=${AFTER_REV:-90e6988}
mkdir -p "$OUT"

side() {  # side NAME REV [PIP ARGS...]: a worktree at REV with its own venv over this Python
  local name=$1 rev=$2; shift 2
  if [ ! -d "$OUT/$name-src" ]; then git worktree add -f "$OUT/$name-src" "$rev"; fi
  if [ ! -x "$OUT/$name-venv/bin/lbi" ]; then
    python3 -m venv --system-site-packages "$OUT/$name-venv"
    if [ $# -gt 0 ]; then "$OUT/$name-venv/bin/pip" install -q "$@"; fi
    "$OUT/$name-venv/bin/pip" install -q --no-deps -e "$OUT/$name-src"
  fi
}
CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF" \
  side before "$BEFORE_REV" llama-cpp-python==0.3.36
side after "$AFTER_REV"

run() {  # run NAME SIDE ARGS...: time one lbi command with an empty LLM cache
  local name=$1 side=$2; shift 2
  if [ -f "$OUT/$name/seconds" ]; then return; fi
  rm -rf "${OUT:?}/$name" && mkdir -p "$OUT/$name"
  local start; start=$(date +%s.%N)
  if (cd "$OUT/$side-src" && LBI_CACHE_DIR="$OUT/$name/llm-cache" "$OUT/$side-venv/bin/lbi" "$@" \
        --set "output_dir=$OUT/$name/out" >"$OUT/$name/log.txt" 2>&1); then
    echo "$(date +%s.%N) - $start" | bc >"$OUT/$name/seconds"
  else
    echo "$name failed; see $OUT/$name/log.txt" >&2
  fi
}

run synth-before before synth --config configs/sql.yaml
run synth-after after synth --config configs/sql.yaml
run eval-before before eval --config configs/eval/sql.yaml --only zero-shot
run eval-after after eval --config configs/eval/sql.yaml --only zero-shot
for name in synth-before synth-after eval-before eval-after; do
  echo "$name: $(cat "$OUT/$name/seconds" 2>/dev/null || echo '—') s"
done
