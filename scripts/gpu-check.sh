#!/usr/bin/env bash
# The whole CUDA check, on a machine with an NVIDIA GPU; prints one table.
#
#   scripts/gpu-check.sh BINARY [OUT_DIR]
#
# BINARY is the CUDA build (scripts/build-cuda.sh -> target/cuda/infer-eval-cuda);
# it needs no Rust and no network here: the model must already be in
# $INFER_EVAL_CACHE/models/ (or the default cache). It checks, in order:
#   1. the bit-exactness regression cases (tests/golden/bitexact.toml, CPU digests)
#      run on the GPU: every digest must equal the CPU's;
#   2. batch and prefill-chunk invariance on the GPU (built-in prompts, greedy and
#      sampled), and the same runs on this machine's CPU;
#   3. prefill and decode speed on the GPU (256-token prompt, 128 new tokens);
#   4. the contrast run: stock Candle CUDA (cuBLAS) against our engine.
# OUT_DIR (default gpu-check/) gets every log, cuda-check.json (case, CPU digest,
# CUDA digest) and contrast.json. Exit status: 0 only if every digest matched.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=$(realpath "$1")
OUT=${2:-gpu-check}
# The device under test; DEV=cpu dry-runs the script on a machine without a GPU.
DEV=${DEV:-cuda}
mkdir -p "$OUT"
for d in /usr/local/cuda-13.0/targets/x86_64-linux/lib /usr/local/cuda/targets/x86_64-linux/lib /usr/local/cuda/lib64; do
  [ -d "$d" ] && export LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
done
GPU=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1)
echo "gpu: ${GPU:-unknown}; binary: $BIN" | tee "$OUT/gpu.txt"
FAIL=0
t0=$(date +%s)

# 1. Regression cases on the GPU against the golden CPU digests.
"$BIN" bench bitexact --device "$DEV" --json "$OUT/bitexact-cuda.json" >"$OUT/bitexact-cuda.txt" 2>"$OUT/bitexact-cuda.log" || FAIL=1
cat "$OUT/bitexact-cuda.txt"
echo "[bitexact done at +$(( $(date +%s) - t0 ))s]"

# 2. Invariance: the same prompts on GPU and CPU, alone or batched, whole or chunked prefill.
digest() { grep -o 'digest [0-9a-f]* logits [0-9a-f]*' "$1" | tail -1; }
declare -A RUNS
for mode in greedy sampled; do
  args=(--model llama --max-tokens 48)
  [ "$mode" = sampled ] && args+=(--temperature 0.8 --top-p 0.95 --seed 7)
  for cfg in "dev 1 512" "dev 5 512" "dev 5 7" "dev 2 3" "cpu 1 512" "cpu 5 7"; do
    set -- $cfg
    name="$mode-$1-b$2-c$3"
    d=$1; [ "$d" = dev ] && d=$DEV
    "$BIN" --device "$d" "${args[@]}" --batch-size "$2" --prefill-chunk "$3" --out "$OUT/$name.json" \
      >/dev/null 2>"$OUT/$name.log" || FAIL=1
    RUNS[$name]=$(digest "$OUT/$name.log")
  done
done
echo "[invariance done at +$(( $(date +%s) - t0 ))s]"

# 3. Speed on the GPU, 3 runs.
for i in 1 2 3; do
  "$BIN" bench speed --device "$DEV" --prompt-tokens 256 --gen-tokens 128 2>>"$OUT/speed.log"
done >"$OUT/speed.jsonl"
echo "[speed done at +$(( $(date +%s) - t0 ))s]"

# 4. Contrast: stock Candle on the GPU.
"$BIN" bench contrast --device "$DEV" --out "$OUT/contrast.json" >"$OUT/contrast.txt" 2>"$OUT/contrast.log" || echo "contrast failed: $(tail -1 "$OUT/contrast.log")"
echo "[contrast done at +$(( $(date +%s) - t0 ))s]"

# The table.
echo
echo "== CUDA check: ${GPU:-unknown GPU} =="
echo "-- regression cases (expected = CPU golden digest) --"
cat "$OUT/bitexact-cuda.txt"
echo "-- invariance (dev = $DEV; b = batch size, c = prefill chunk; reference cpu-b1-c512) --"
printf '%-8s %-14s %-16s %-16s %s\n' mode run ids-digest logits-digest result
for mode in greedy sampled; do
  ref=${RUNS[$mode-cpu-b1-c512]}
  for cfg in dev-b1-c512 dev-b5-c512 dev-b5-c7 dev-b2-c3 cpu-b1-c512 cpu-b5-c7; do
    got=${RUNS[$mode-$cfg]}
    if [ -n "$got" ] && [ "$got" = "$ref" ]; then r=MATCH; else r=DIFF; FAIL=1; fi
    printf '%-8s %-14s %-16s %-16s %s\n' "$mode" "$cfg" "$(echo "$got" | awk '{print substr($2,1,16)}')" "$(echo "$got" | awk '{print substr($4,1,16)}')" "$r"
  done
done
echo "-- speed on the GPU (prefill tok/s, decode tok/s) --"
sed -n 's/.*"decode_tok_s":\([0-9.]*\).*"prefill_tok_s":\([0-9.]*\).*/prefill \2  decode \1/p' "$OUT/speed.jsonl"
echo "-- contrast: stock Candle CUDA vs our engine --"
cat "$OUT/contrast.txt"

# The record: case, CPU digest, CUDA digest.
{
  echo "{\"gpu\": \"${GPU:-unknown}\", \"bitexact\": $(cat "$OUT/bitexact-cuda.json" 2>/dev/null || echo null),"
  echo " \"invariance\": {"
  first=1
  for k in "${!RUNS[@]}"; do
    [ $first = 1 ] || echo ","
    first=0
    printf '  "%s": "%s"' "$k" "${RUNS[$k]}"
  done
  echo
  echo " },"
  echo " \"speed\": [$(paste -sd, "$OUT/speed.jsonl")],"
  echo " \"contrast\": $(cat "$OUT/contrast.json" 2>/dev/null || echo null)}"
} >"$OUT/cuda-check.json"
echo
[ $FAIL = 0 ] && echo "RESULT: every digest matched" || echo "RESULT: DIFF or failure (see $OUT/)"
exit $FAIL
