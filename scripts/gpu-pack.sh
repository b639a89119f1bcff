#!/usr/bin/env bash
# Pack the CUDA binary and the default model for a GPU machine that has no
# Rust and no network, in two parts of under 64 MiB each (the most one remote
# call may carry with the working tree): .gpu-carry/p1 (binary, gzip, and the
# model's first 40 MB) and .gpu-carry/p2 (the rest). On the GPU machine, from the repo root:
#
#   call 1 (carry .gpu-carry/p1):  scripts/gpu-pack.sh --unpack .gpu-carry/p1 /tmp/ie
#   call 2 (carry .gpu-carry/p2):  scripts/gpu-pack.sh --unpack .gpu-carry/p2 /tmp/ie &&
#       INFER_EVAL_CACHE=/tmp/ie/cache scripts/gpu-check.sh /tmp/ie/infer-eval-cuda "$OUT/gpu-check"
#
# --unpack copies a part into DIR and, once both halves are there, joins the
# model into DIR/cache/models/ and unpacks the binary.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--unpack" ]; then
  src=$2 dir=$3
  mkdir -p "$dir/cache/models"
  cp "$src"/* "$dir/"
  if [ -e "$dir/model.part1" ] && [ -e "$dir/model.part2" ]; then
    name=$(cat "$dir/model.name")
    cat "$dir/model.part1" "$dir/model.part2" >"$dir/cache/models/$name"
    (cd "$dir" && sha256sum -c model.sha256)
    gunzip -c "$dir/infer-eval-cuda.gz" >"$dir/infer-eval-cuda"
    chmod +x "$dir/infer-eval-cuda"
    echo "gpu-pack: ready in $dir"
  fi
  exit 0
fi
BIN=${1:-target/cuda/infer-eval-cuda}
[ -x "$BIN" ] || { echo "gpu-pack: $BIN not found; run scripts/build-cuda.sh first" >&2; exit 1; }
MODEL=$(cargo run --release -q -- fetch llama)
rm -rf .gpu-carry && mkdir -p .gpu-carry/p1 .gpu-carry/p2
gzip -9 -c "$BIN" >.gpu-carry/p1/infer-eval-cuda.gz
# The gzipped binary (about 18 MB) rides with the smaller first part.
half=40000000
head -c "$half" "$MODEL" >.gpu-carry/p1/model.part1
tail -c +"$(( half + 1 ))" "$MODEL" >.gpu-carry/p2/model.part2
basename "$MODEL" >.gpu-carry/p1/model.name
(cd "$(dirname "$MODEL")" && sha256sum "$(basename "$MODEL")") | sed 's#  #  cache/models/#' >.gpu-carry/p1/model.sha256
du -sh .gpu-carry/p1 .gpu-carry/p2
