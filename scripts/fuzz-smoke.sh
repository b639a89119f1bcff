#!/usr/bin/env bash
# Time-bounded fuzzing of every target (default 20 s each). Needs cargo-fuzz
# (installed here if missing); runs on stable Rust without a sanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH="${1:-20}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --version 0.13.2
cargo fuzz build -O -s none
for t in gguf safetensors gguf_tokenizer config dataset; do
  mkdir -p "fuzz/corpus/$t"
  seeds=()
  [ -d "fuzz/seeds/$t" ] && seeds=("fuzz/seeds/$t")
  echo "== fuzz $t (${SECONDS_EACH}s)"
  cargo fuzz run -O -s none "$t" "fuzz/corpus/$t" "${seeds[@]}" -- \
    -max_total_time="$SECONDS_EACH" -rss_limit_mb=4096 -max_len=8192 -print_final_stats=1 2>&1 \
    | grep -E "^(Done|stat::number_of_executed_units|SUMMARY)|panicked|ERROR" || true
  if [ "${PIPESTATUS[0]}" -ne 0 ]; then echo "fuzz target $t found a failure"; exit 1; fi
done
