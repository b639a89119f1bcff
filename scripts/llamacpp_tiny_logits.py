#!/usr/bin/env python3
"""llama.cpp's logits at every position for the tiny random model of each
family (written by `infer-eval bench tiny --family F --out F.gguf`, F32
weights), for tests/families.rs: tests/golden/tiny_llamacpp.json.

  python3 scripts/llamacpp_tiny_logits.py --bin target/release/infer-eval

The KV cache is F32 (type_k = type_v = 0) so that what remains of the
difference is llama.cpp's own summation orders. Requires:
pip install llama-cpp-python==0.3.36 numpy
"""

import argparse
import json
import os
import subprocess
import tempfile

import numpy as np
import llama_cpp
from llama_cpp import Llama

FAMILIES = ["llama", "qwen2", "qwen3", "gemma2", "gemma3", "phi3"]
SEED = 1
# 12 positions: past Gemma 2's window of 4 and Gemma 3's of 5.
TOKENS = [5, 17, 33, 8, 61, 22, 40, 9, 14, 50, 27, 3]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True, help="the infer-eval binary")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "golden", "tiny_llamacpp.json"))
    a = ap.parse_args()
    out = {"generator": f"llama-cpp-python {llama_cpp.__version__}, F32 KV cache, logits_all",
           "script": "scripts/llamacpp_tiny_logits.py", "seed": SEED, "tokens": TOKENS, "families": {}}
    with tempfile.TemporaryDirectory() as d:
        for f in FAMILIES:
            p = os.path.join(d, f + ".gguf")
            subprocess.run([a.bin, "bench", "tiny", "--family", f, "--seed", str(SEED), "--out", p], check=True,
                           stdout=subprocess.DEVNULL)
            llm = Llama(model_path=p, n_ctx=64, n_batch=64, n_threads=2, logits_all=True, verbose=False,
                        type_k=0, type_v=0)
            llm.reset()
            llm.eval(TOKENS)
            n_vocab = llm.n_vocab()
            logits = np.array(llm.scores[: len(TOKENS)], dtype=np.float32).reshape(len(TOKENS), n_vocab)
            out["families"][f] = [[float(x) for x in row] for row in logits]
            del llm
    with open(a.out, "w") as fh:
        json.dump(out, fh)
        fh.write("\n")


if __name__ == "__main__":
    main()
