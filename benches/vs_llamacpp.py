#!/usr/bin/env python3
"""infer-eval vs llama.cpp on the same GGUF, prompt length and threads.

Runs each engine in its own process, alternating, N times per thread count,
and prints the median prefill and decode tokens/s of both, the ratios, and
each engine's peak RSS. llama.cpp comes from llama-cpp-python (PyPI; it
builds llama.cpp): pass --python for an interpreter that has it.

  python3 benches/vs_llamacpp.py --python /tmp/llamacpp-venv/bin/python
"""
import argparse, json, os, resource, statistics, subprocess, sys

LLAMACPP = r'''
import json, resource, sys, time
import numpy as np, llama_cpp
from llama_cpp import Llama
model, n_prompt, n_gen, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
llm = Llama(model_path=model, n_ctx=n_prompt + n_gen + 8, n_threads=threads, n_threads_batch=threads,
            n_batch=512, n_ubatch=512, verbose=False)
unit = llm.tokenize(b"The quick brown fox jumps over the lazy dog while the sun sets slowly in the west. ", add_bos=False)
prompt = (unit * (n_prompt // len(unit) + 1))[:n_prompt]
nv = llm.n_vocab()
def last_argmax():
    return int(np.argmax(np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1), shape=(nv,))))
t0 = time.perf_counter()
llm.eval(prompt)
tok = last_argmax()
t1 = time.perf_counter()
for _ in range(n_gen - 1):
    llm.eval([tok])
    tok = last_argmax()
t2 = time.perf_counter()
print(json.dumps({"engine": "llama.cpp " + llama_cpp.__version__, "threads": threads,
                  "prefill_tok_s": n_prompt / (t1 - t0), "decode_tok_s": (n_gen - 1) / (t2 - t1),
                  "max_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
'''

def run(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    r = json.loads(out.strip().splitlines()[-1])
    return r, r["max_rss_kb"]

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--python", default=sys.executable, help="interpreter with llama_cpp installed")
    ap.add_argument("--binary", default="target/release/infer-eval")
    ap.add_argument("--model", default=None, help="GGUF (default: infer-eval fetch llama)")
    ap.add_argument("--prompt", type=int, default=256)
    ap.add_argument("--gen", type=int, default=128)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    model = a.model or subprocess.run([a.binary, "fetch", "llama"], check=True, capture_output=True, text=True).stdout.strip()
    rows = []
    rss_all = {}
    for t in [int(x) for x in a.threads.split(",")]:
        res = {"infer-eval": [], "llama.cpp": []}
        rss = {"infer-eval": 0, "llama.cpp": 0}
        for _ in range(a.runs):  # alternate the engines
            r, kb = run([a.binary, "bench", "speed", "--model", model, "--prompt-tokens", str(a.prompt),
                         "--gen-tokens", str(a.gen), "--threads", str(t)])
            res["infer-eval"].append(r); rss["infer-eval"] = max(rss["infer-eval"], kb)
            r, kb = run([a.python, "-c", LLAMACPP, model, str(a.prompt), str(a.gen), str(t)])
            res["llama.cpp"].append(r); rss["llama.cpp"] = max(rss["llama.cpp"], kb)
        med = {e: {k: statistics.median(x[k] for x in v) for k in ("prefill_tok_s", "decode_tok_s")} for e, v in res.items()}
        rows.append((t, med))
        rss_all[t] = rss
    print(f"model {os.path.basename(model)}, prompt {a.prompt} tokens, {a.gen} generated, median of {a.runs} alternating runs")
    print(f"{'threads':>7} {'engine':<12} {'prefill t/s':>12} {'decode t/s':>11}")
    for t, med in rows:
        for e in ("llama.cpp", "infer-eval"):
            print(f"{t:>7} {e:<12} {med[e]['prefill_tok_s']:>12.1f} {med[e]['decode_tok_s']:>11.1f}   peak RSS {rss_all[t][e] / 1024:.0f} MiB")
        print(f"{t:>7} {'ratio':<12} {med['infer-eval']['prefill_tok_s'] / med['llama.cpp']['prefill_tok_s']:>11.2f}x "
              f"{med['infer-eval']['decode_tok_s'] / med['llama.cpp']['decode_tok_s']:>10.2f}x")

if __name__ == "__main__":
    main()
