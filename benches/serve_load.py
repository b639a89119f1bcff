#!/usr/bin/env python3
"""Load benchmark: `infer-eval serve` beside llama.cpp's server on the same GGUF
and threads (a benchmark, not a test; not run by CI).

For each server and each concurrency (default 1, 4, 16): that many clients
send streamed greedy completions (different prompts, fixed max_tokens,
ignore_eos) back to back for --requests requests in all; reports generated
tokens/s over the wall time, TTFT and inter-token latency p50/p99. Then N
identical greedy requests sent at once (--identical, default 8): how many
distinct answers came back.

  python3 benches/serve_load.py --llamacpp-python /tmp/llamacpp-venv/bin/python \
      --model ~/.cache/infer-eval/models/SmolLM2-135M-Instruct.Q4_1.gguf --threads 2

The llama.cpp side is llama-cpp-python's `llama_cpp.server` (pip install
'llama-cpp-python[server]'), started with --n_threads; it is skipped with a
message if that Python cannot import it. Standard library only.
"""
import argparse
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

PROMPTS = [
    "The history of the printing press begins",
    "Write a short story about a lighthouse keeper:",
    "def quicksort(xs):",
    "Ten facts about the ocean:",
    "The recipe for a good bread is",
    "Once upon a time in a small village,",
    "The theory of relativity says that",
    "A letter to my future self:",
]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_ready(port, proc, what, timeout=300):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            sys.exit(f"{what} exited with {proc.returncode}")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/v1/models")
            if c.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.3)
    sys.exit(f"{what} did not start in {timeout} s")


def stream_one(port, body):
    """One streamed completion: (ttft_s, inter-token gaps, tokens, text)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    t0 = time.perf_counter()
    c.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
    r = c.getresponse()
    if r.status != 200:
        raise RuntimeError(f"HTTP {r.status}: {r.read()[:300]}")
    ttft, last, gaps, n, text = None, None, [], 0, []
    while True:
        line = r.readline()
        if not line:
            break
        line = line.strip()
        if not line.startswith(b"data: "):
            continue
        data = line[6:]
        if data == b"[DONE]":
            break
        ev = json.loads(data)
        for ch in ev.get("choices") or []:
            if ch.get("text"):
                now = time.perf_counter()
                if ttft is None:
                    ttft = now - t0
                else:
                    gaps.append(now - last)
                last = now
                n += 1
                text.append(ch["text"])
        usage = ev.get("usage")
        if usage and usage.get("completion_tokens"):
            n = usage["completion_tokens"]
    c.close()
    return ttft or 0.0, gaps, n, "".join(text)


def pct(xs, q):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def load(port, conc, requests, max_tokens):
    lock = threading.Lock()
    todo = list(range(requests))
    ttfts, gaps, tokens = [], [], [0]

    def client():
        while True:
            with lock:
                if not todo:
                    return
                i = todo.pop()
            body = {"prompt": PROMPTS[i % len(PROMPTS)] + f" ({i})", "max_tokens": max_tokens,
                    "temperature": 0, "stream": True, "ignore_eos": True,
                    "stream_options": {"include_usage": True}}
            t, g, n, _ = stream_one(port, body)
            with lock:
                ttfts.append(t)
                gaps.extend(g)
                tokens[0] += n

    t0 = time.perf_counter()
    ts = [threading.Thread(target=client) for _ in range(conc)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    wall = time.perf_counter() - t0
    return {"concurrency": conc, "tok_s": tokens[0] / wall, "ttft_p50_ms": pct(ttfts, 0.5) * 1e3,
            "ttft_p99_ms": pct(ttfts, 0.99) * 1e3, "itl_p50_ms": pct(gaps, 0.5) * 1e3,
            "itl_p99_ms": pct(gaps, 0.99) * 1e3, "requests": requests}


def identical(port, n, max_tokens):
    out = [None] * n
    body = {"prompt": "Explain why the sky is blue.", "max_tokens": max_tokens, "temperature": 0,
            "stream": False}

    def one(k):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        c.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
        out[k] = json.loads(c.getresponse().read())["choices"][0]["text"]

    ts = [threading.Thread(target=one, args=(k,)) for k in range(n)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    return len(set(out))


def run_server(name, cmd, port, args):
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_ready(port, proc, name)
        stream_one(port, {"prompt": "warm up", "max_tokens": 4, "stream": True, "temperature": 0})
        rows = [load(port, c, max(args.requests, c), args.max_tokens) for c in args.concurrency]
        distinct = identical(port, args.identical, args.max_tokens)
        return rows, distinct
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="a GGUF file both servers load")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--binary", default="target/release/infer-eval")
    ap.add_argument("--llamacpp-python", default=None, help="a Python with llama_cpp.server")
    ap.add_argument("--llama-server", default=None, help="a llama-server binary (built from llama.cpp)")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--requests", type=int, default=32, help="requests per concurrency level")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--identical", type=int, default=8)
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    results = {}
    p = free_port()
    results["infer-eval"] = run_server(
        "infer-eval serve",
        [args.binary, "serve", "--model", args.model, "--port", str(p), "--threads", str(args.threads),
         "--max-batch", "16"], p, args)
    if args.llamacpp_python:
        ok = subprocess.run([args.llamacpp_python, "-c", "import llama_cpp.server"], capture_output=True)
        if ok.returncode != 0:
            print("llama.cpp skipped: this Python has no llama_cpp.server", file=sys.stderr)
        else:
            p = free_port()
            results["llama.cpp"] = run_server(
                "llama_cpp.server",
                [args.llamacpp_python, "-m", "llama_cpp.server", "--model", args.model, "--port", str(p),
                 "--n_threads", str(args.threads), "--n_threads_batch", str(args.threads), "--n_ctx", "2048"],
                p, args)
    if args.llama_server:
        p = free_port()
        results["llama-server"] = run_server(
            "llama-server",
            [args.llama_server, "--model", args.model, "--port", str(p), "--threads", str(args.threads),
             "--threads-batch", str(args.threads), "--parallel", "16", "--ctx-size", str(16 * 2048)],
            p, args)
    print(f"| server | concurrency | tokens/s | TTFT p50 / p99 ms | inter-token p50 / p99 ms |")
    print("| --- | --- | --- | --- | --- |")
    for name, (rows, _) in results.items():
        for r in rows:
            print(f"| {name} | {r['concurrency']} | {r['tok_s']:.1f} | {r['ttft_p50_ms']:.0f} / {r['ttft_p99_ms']:.0f}"
                  f" | {r['itl_p50_ms']:.1f} / {r['itl_p99_ms']:.1f} |")
    for name, (_, d) in results.items():
        print(f"{name}: {d} distinct answer(s) of {args.identical} identical concurrent greedy requests")
    for other in ("llama.cpp", "llama-server"):
        if other in results:
            for a, b in zip(results["infer-eval"][0], results[other][0]):
                print(f"vs {other}, concurrency {a['concurrency']}: throughput ratio {a['tok_s'] / b['tok_s']:.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
