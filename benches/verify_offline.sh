#!/usr/bin/env bash
# How long `verify --offline` takes on a 1,000-sample run folder (issue 30).
# Makes a scratch project with 1,000 generation items (SmolLM2, 2 tokens
# each), runs the eval once, then times the offline check N times (default
# 20) and a full `diff` of the folder with itself (two checks).
#   benches/verify_offline.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-20}"
bin=./target/release/infer-eval
[ -x "$bin" ] || cargo build --release
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r configs data prompts "$work/"
python3 - "$work" <<'PY'
import hashlib, json, sys
root = sys.argv[1]
rows = "".join(json.dumps({"id": f"q{i:04d}", "question": f"What is {i} plus {i}?", "answer": str(2 * i)}) + "\n" for i in range(1000)).encode()
open(f"{root}/data/bench1000.jsonl", "wb").write(rows)
sha = hashlib.sha256(rows).hexdigest()
open(f"{root}/configs/task/bench1000.yaml", "w").write(
    f"name: bench1000\ndatasets:\n  - name: bench1000\n    path: data/bench1000.jsonl\n    sha256: {sha}\n"
    "    kind: generate\n    scorer: contains\n    max_tokens: 2\n")
PY
root=$PWD
cd "$work"
"$root/$bin" eval task=bench1000 run.batch_size=32 --run-dir run >/dev/null
echo "run folder: $(wc -l < run/samples.jsonl) samples, $(du -sh run | cut -f1)"
python3 - "$root/$bin" "$n" <<'PY'
import statistics, subprocess, sys, time
bin, n = sys.argv[1], int(sys.argv[2])
def timed(args):
    t = time.perf_counter()
    subprocess.run([bin] + args, check=True, stdout=subprocess.DEVNULL)
    return (time.perf_counter() - t) * 1e3
ts = [timed(["verify", "--offline", "run"]) for _ in range(n)]
print(f"verify --offline (process wall time, {n} runs): median {statistics.median(ts):.1f} ms, min {min(ts):.1f}, max {max(ts):.1f}")
out = subprocess.run([bin, "verify", "--offline", "run"], check=True, capture_output=True, text=True).stdout.strip()
print(out)
ds = [timed(["diff", "run", "run"]) for _ in range(5)]
print(f"diff run run (checks both): median {statistics.median(ds):.1f} ms")
PY
