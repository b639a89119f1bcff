#!/usr/bin/env bash
# Time-bounded fuzzing of every target (default 20 s each). Needs cargo-fuzz
# (installed here if missing); runs on stable Rust without a sanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH="${1:-20}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --version 0.13.2
# 16 codegen units: cargo-fuzz would build the whole tree as one unit per
# crate in release mode (minutes longer); a smoke run does not need its speed.
# `run` takes the same flags, or it would rebuild.
FLAGS=(-O -s none --codegen-units 16)
cargo fuzz build "${FLAGS[@]}"
for t in gguf safetensors gguf_tokenizer config dataset; do
  mkdir -p "fuzz/corpus/$t"
  seeds=()
  [ -d "fuzz/seeds/$t" ] && seeds=("fuzz/seeds/$t")
  echo "== fuzz $t (${SECONDS_EACH}s)"
  log="fuzz/target/smoke-$t.log"
  mkdir -p fuzz/target
  if ! cargo fuzz run "${FLAGS[@]}" "$t" "fuzz/corpus/$t" "${seeds[@]}" -- \
      -max_total_time="$SECONDS_EACH" -rss_limit_mb=4096 -max_len=8192 -print_final_stats=1 >"$log" 2>&1; then
    tail -n 30 "$log"
    echo "fuzz target $t found a failure"
    exit 1
  fi
  grep -E "^(Done|stat::number_of_executed_units|stat::new_units_added)" "$log" || true
done
