#!/usr/bin/env python3
"""Log-likelihood requests through `infer-eval serve`, as lm-evaluation-harness
sends them (a benchmark, not a test; not run by CI).

lm-eval's `local-completions` model scores a (context, continuation) pair
with one completion request: prompt = context + continuation, echo=True,
max_tokens=0, logprobs=1; with `batch_size` N it puts N such prompts in one
request. Multiple-choice items give N prompts that share one context. This
sends ITEMS items of CHOICES choices (a few-shot-sized context each) as
requests of --per-request prompts, --concurrency clients at a time, and
reports prompts scored per second over the wall time. Run it against two
binaries (A/B, alternating, median of --runs) to compare:

  python3 benches/serve_loglik.py --binary A=/tmp/base/target/release/infer-eval \
      --binary B=target/release/infer-eval --model llama --threads 2

Standard library only.
"""
import argparse
import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_load import free_port, wait_ready  # noqa: E402

WORDS = ("the river city north light stone garden winter market bridge "
         "ocean window paper music table forest letter silver engine").split()


def items(n, choices, context_words):
    """n multiple-choice items: (context, [continuations])."""
    out = []
    for i in range(n):
        ctx = " ".join(WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(context_words))
        ctx = f"Question {i}: {ctx}?\nAnswer:"
        conts = [f" {WORDS[(i + 5 * c) % len(WORDS)]} {WORDS[(i * 3 + c) % len(WORDS)]}"
                 for c in range(choices)]
        out.append((ctx, conts))
    return out


def score(port, prompts):
    """One request: each prompt's token log-probabilities (echo)."""
    body = {"prompt": prompts, "max_tokens": 0, "echo": True, "logprobs": 1, "temperature": 0}
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    c.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read()
    c.close()
    if r.status != 200:
        raise RuntimeError(f"HTTP {r.status}: {data[:300]}")
    return [ch["logprobs"]["token_logprobs"] for ch in json.loads(data)["choices"]]


def run(binary, args, work):
    port = free_port()
    cmd = [binary, "serve", "--model", args.model, "--port", str(port),
           "--threads", str(args.threads)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(port, proc, binary)
        prompts = [ctx + cont for ctx, conts in work for cont in conts]
        reqs = [prompts[i:i + args.per_request] for i in range(0, len(prompts), args.per_request)]
        lock = threading.Lock()
        todo = list(range(len(reqs)))[::-1]
        answers = [None] * len(reqs)

        def client():
            while True:
                with lock:
                    if not todo:
                        return
                    k = todo.pop()
                answers[k] = score(port, reqs[k])

        t0 = time.perf_counter()
        ts = [threading.Thread(target=client) for _ in range(args.concurrency)]
        [t.start() for t in ts]
        [t.join() for t in ts]
        wall = time.perf_counter() - t0
        digest = hash(json.dumps(answers))
        return len(prompts) / wall, digest
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", action="append", required=True,
                    help="NAME=PATH of an infer-eval binary (repeat for A/B)")
    ap.add_argument("--model", default="llama")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--items", type=int, default=40)
    ap.add_argument("--choices", type=int, default=4)
    ap.add_argument("--context-words", type=int, default=120)
    ap.add_argument("--per-request", type=int, default=4,
                    help="prompts per request (lm-eval's batch_size)")
    ap.add_argument("--concurrency", type=int, default=1)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    bins = [b.split("=", 1) for b in args.binary]
    work = items(args.items, args.choices, args.context_words)
    rates = {name: [] for name, _ in bins}
    digests = {}
    for r in range(args.runs):
        for name, path in bins:
            rate, d = run(path, args, work)
            rates[name].append(rate)
            digests.setdefault(name, set()).add(d)
            print(f"run {r + 1} {name}: {rate:.2f} prompts/s", file=sys.stderr)
    same = len({d for ds in digests.values() for d in ds}) == 1
    out = {name: {"median_prompts_s": statistics.median(v), "runs": v} for name, v in rates.items()}
    out["answers_identical_across_binaries_and_runs"] = same
    out["setup"] = {k: getattr(args, k) for k in
                    ("model", "threads", "items", "choices", "context_words", "per_request",
                     "concurrency", "runs")}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
