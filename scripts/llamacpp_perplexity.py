#!/usr/bin/env python3
"""Reference perplexity from llama.cpp (llama-cpp-python), on the windows
`infer-eval perplexity` uses: lm-eval's get_rolling_token_windows +
make_disjoint_window (lm_eval/utils.py, ported below), the prefix token BOS
(else EOS), text tokenized by llama.cpp without BOS and without parsing
special tokens, with llama.cpp's default f16 KV cache (--kv f32: as
infer-eval keeps it). Each window is evaluated from an empty cache with
logits_all=True and the continuation's log-probabilities summed in float64.

    python scripts/llamacpp_perplexity.py --model M.gguf --context 128 \
        --stride 96 FILE [FILE...] > golden.json

A .jsonl file holds one document per line (its "text" field), as the CLI
reads it. Writes JSON to stdout: the settings, llama-cpp-python's version,
each document's token ids and log-likelihood, and the totals.
"""

import argparse
import json
import math
import re
import sys

import numpy as np
import llama_cpp


def rolling_windows(tokens, prefix, max_seq_len, context_len):
    """lm_eval.utils.get_rolling_token_windows, then make_disjoint_window."""
    assert 1 <= context_len <= max_seq_len
    if not tokens:
        return []
    out = []
    pred_len = max_seq_len - context_len + 1
    first = min(max_seq_len, len(tokens))
    pairs = [([prefix] + tokens[: first - 1], tokens[:first])]
    predicted = first
    while predicted < len(tokens):
        n = min(len(tokens) - predicted, pred_len)
        end = predicted + n
        pairs.append((tokens[end - max_seq_len - 1 : end - 1], tokens[end - n : end]))
        predicted += n
    for a, b in pairs:
        out.append((a[: len(a) - (len(b) - 1)], b))
    return out


def documents(files):
    for f in files:
        text = open(f, encoding="utf-8", newline="").read()
        if f.endswith(".jsonl"):
            for n, line in enumerate(text.splitlines()):
                if line.strip():
                    yield f"{f}:{n + 1}", json.loads(line)["text"]
        else:
            yield f, text


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--context", type=int, required=True)
    ap.add_argument("--stride", type=int)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--kv",
        choices=["f32", "f16"],
        default="f16",
        help="KV cache type (f16: llama.cpp's default, as its perplexity tool runs; f32: as infer-eval keeps it)",
    )
    ap.add_argument("files", nargs="+")
    a = ap.parse_args()
    stride = a.stride or a.context
    kv_type = {"f32": llama_cpp.GGML_TYPE_F32, "f16": llama_cpp.GGML_TYPE_F16}[a.kv]
    llm = llama_cpp.Llama(
        model_path=a.model,
        n_ctx=a.context,
        n_batch=a.context,
        n_ubatch=a.context,
        logits_all=True,
        type_k=kv_type,
        type_v=kv_type,
        n_threads=a.threads,
        verbose=False,
    )
    bos, eos = llm.token_bos(), llm.token_eos()
    prefix = bos if bos >= 0 else eos
    docs = []
    for name, text in documents(a.files):
        ids = llm.tokenize(text.encode("utf-8"), add_bos=False, special=False) if text else []
        ll = 0.0
        windows = rolling_windows(ids, prefix, a.context, a.context - stride + 1)
        for ctx, cont in windows:
            feed = ctx + cont[:-1]
            llm.reset()
            llm.eval(feed)
            logits = np.asarray(llm.scores[: len(feed)], dtype=np.float64)
            for k, tok in enumerate(cont):
                row = logits[len(ctx) - 1 + k]
                m = row.max()
                ll += float(row[tok] - m - math.log(np.exp(row - m).sum()))
        docs.append(
            {
                "name": name,
                "token_ids": ids,
                "windows": len(windows),
                "loglik": ll,
                "words": len(re.split(r"\s+", text)),
                "bytes": len(text.encode("utf-8")),
            }
        )
    total = sum(d["loglik"] for d in docs)
    tokens = sum(len(d["token_ids"]) for d in docs)
    nbytes = sum(d["bytes"] for d in docs)
    json.dump(
        {
            "engine": f"llama-cpp-python {llama_cpp.__version__}",
            "model": a.model.rsplit("/", 1)[-1],
            "context": a.context,
            "stride": stride,
            "prefix_token": prefix,
            "kv_cache": a.kv,
            "documents": docs,
            "token_perplexity": math.exp(-total / tokens),
            "word_perplexity": math.exp(-total / sum(d["words"] for d in docs)),
            "byte_perplexity": math.exp(-total / nbytes),
            "bits_per_byte": -total / nbytes / math.log(2),
        },
        sys.stdout,
        indent=1,
    )
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
