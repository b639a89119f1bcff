#!/usr/bin/env python3
"""Greedy continuations from llama.cpp (llama-cpp-python) for a GGUF model,
with every step's top-5 logits, so a test can say where our continuation
parts from llama.cpp's and what llama.cpp's own margin was there.

  python3 scripts/llamacpp_greedy.py --model gemma-3-270m-q4_k_m.gguf \\
      --out tests/golden/gemma3_greedy.json [--tokens 32] [--threads 2]

Prompts are tokenized by llama.cpp with its own add_bos rule (the model's
metadata). Requires: pip install llama-cpp-python==0.3.36 numpy
"""

import argparse
import hashlib
import json

import numpy as np
import llama_cpp
from llama_cpp import Llama

PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):",
    "Once upon a time",
    "1, 2, 3, 4,",
    "The meaning of life is",
    "Water boils at",
    "Translate to French: Good morning, my friend.",
    "The three primary colors are",
]


def last_logits(llm):
    ptr = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
    return np.ctypeslib.as_array(ptr, shape=(llm.n_vocab(),)).astype(np.float32, copy=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    h = hashlib.sha256()
    with open(a.model, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    llm = Llama(model_path=a.model, n_ctx=1024, n_threads=a.threads, n_batch=512,
                logits_all=False, verbose=False, seed=0)
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    cases = []
    for p in PROMPTS:
        ids = [int(t) for t in llm.tokenize(p.encode("utf-8"), add_bos=True, special=False)]
        llm.reset()
        llm.eval(ids)
        out, steps = [], []
        for _ in range(a.tokens):
            logits = last_logits(llm)
            order = np.argsort(-logits, kind="stable")[:5]
            steps.append([[int(i), float(logits[i])] for i in order])
            tok = int(order[0])
            out.append(tok)
            if llama_cpp.llama_vocab_is_eog(vocab, tok):
                break
            llm.eval([tok])
        cases.append({
            "prompt": p,
            "prompt_ids": ids,
            "output_ids": out,
            "text": llm.detokenize(out).decode("utf-8", errors="replace"),
            "top5": steps,
        })
    with open(a.out, "w", encoding="utf-8") as f:
        json.dump({
            "generator": f"llama-cpp-python {llama_cpp.__version__}, greedy (argmax of each step's logits)",
            "script": "scripts/llamacpp_greedy.py",
            "model_sha256": h.hexdigest(),
            "cases": cases,
        }, f, indent=1, ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    main()
