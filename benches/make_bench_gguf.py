#!/usr/bin/env python3
"""Write a Llama-shaped benchmark GGUF of a real model's size, with random
weights, for benches/vs_llamacpp.py: both engines read the same bytes, so
the speed comparison is on a model of the size people evaluate, not on the
135M SmolLM2. The weights are meaningless (the text is noise).

Shapes (vocabulary and tokenizer copied from --tokenizer-from, SmolLM2's
49152 tokens by default):

  0.5b  hidden 2048,  8 layers, ffn 5632, 32 heads / 4 KV heads  (~555M)
  1.1b  hidden 2048, 22 layers, ffn 5632, 32 heads / 4 KV heads  (~1.17B,
        TinyLlama-1.1B's shape)

--type picks the matrices' format: q4_0 (embedding and head Q8_0), q4_k
(embedding Q4_K, head Q6_K, as llama-quantize's Q4_K_M), q8_0 (all Q8_0).

  python3 benches/make_bench_gguf.py --shape 0.5b --type q4_0 \
      --tokenizer-from ~/.cache/infer-eval/models/.../SmolLM2-135M-Instruct-Q4_1.gguf \
      --out target/bench-models/llama-0.5b-q4_0.gguf

Needs numpy and gguf (llama.cpp's gguf-py, from PyPI).
"""
import argparse, os, sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q

SHAPES = {
    "0.5b": dict(hidden=2048, layers=8, ffn=5632, heads=32, kv_heads=4),
    "1.1b": dict(hidden=2048, layers=22, ffn=5632, heads=32, kv_heads=4),
}
TYPES = {
    "q4_0": dict(mat=Q.Q4_0, embd=Q.Q8_0, head=Q.Q8_0),
    "q4_k": dict(mat=Q.Q4_K, embd=Q.Q4_K, head=Q.Q6_K),
    "q8_0": dict(mat=Q.Q8_0, embd=Q.Q8_0, head=Q.Q8_0),
}


def f16_scales(rng, n, mean):
    """n f16 scales around `mean` (0.5x to 1.5x), as little-endian bytes."""
    return (rng.uniform(0.5, 1.5, n) * mean).astype(np.float16).view(np.uint8).reshape(n, 2)


def random_blocks(rng, qtype, rows, cols):
    """rows x cols weights of `qtype` as raw block bytes: random integers and
    scales set so each weight has a standard deviation near 1/sqrt(cols)."""
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    nb = rows * cols // block
    raw = rng.integers(0, 256, size=(nb, size), dtype=np.uint8)
    std = 1.0 / np.sqrt(cols)
    if qtype == Q.Q4_0:      # d, 16 bytes of nibbles (q - 8: std 4.6)
        raw[:, 0:2] = f16_scales(rng, nb, std / 4.6)
    elif qtype == Q.Q8_0:    # d, 32 signed bytes (std 74)
        raw[:, 0:2] = f16_scales(rng, nb, std / 74.0)
    elif qtype == Q.Q4_K:    # d, dmin, 12 bytes of 6-bit scales and mins, 128 bytes of nibbles
        raw[:, 0:2] = f16_scales(rng, nb, std / (32.0 * 4.6))
        raw[:, 2:4] = f16_scales(rng, nb, std / (32.0 * 8.0))
    elif qtype == Q.Q6_K:    # ql 128, qh 64, 16 signed 8-bit scales, d (last)
        raw[:, 208:210] = f16_scales(rng, nb, std / (74.0 * 18.0))
    else:
        raise ValueError(qtype)
    return raw.reshape(rows, cols // block * size)


def copy_tokenizer(reader, writer):
    n = 0
    for field in reader.fields.values():
        if not field.name.startswith("tokenizer."):
            continue
        vtype = field.types[0]
        sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), vtype, sub_type=sub)
        n += 1
    vocab = len(reader.fields["tokenizer.ggml.tokens"].data)
    return vocab, n


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", choices=SHAPES, required=True)
    ap.add_argument("--type", choices=TYPES, required=True)
    ap.add_argument("--tokenizer-from", required=True, help="a GGUF whose tokenizer.* keys are copied")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    if not os.path.isfile(a.tokenizer_from):
        sys.exit(f"--tokenizer-from: no such file: {a.tokenizer_from}")
    sh, ty = SHAPES[a.shape], TYPES[a.type]
    rng = np.random.default_rng(a.seed)
    reader = gguf.GGUFReader(a.tokenizer_from)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    tmp = a.out + ".tmp"
    w = gguf.GGUFWriter(tmp, "llama")
    vocab, n_keys = copy_tokenizer(reader, w)
    h, hd = sh["hidden"], sh["hidden"] // sh["heads"]
    w.add_name(f"infer-eval bench llama {a.shape} {a.type} (random weights)")
    w.add_context_length(2048)
    w.add_embedding_length(h)
    w.add_block_count(sh["layers"])
    w.add_feed_forward_length(sh["ffn"])
    w.add_head_count(sh["heads"])
    w.add_head_count_kv(sh["kv_heads"])
    w.add_rope_dimension_count(hd)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(vocab)
    w.add_file_type({"q4_0": 2, "q4_k": 15, "q8_0": 7}[a.type])

    def mat(name, qtype, rows, cols):
        data = random_blocks(rng, qtype, rows, cols)
        w.add_tensor(name, data, raw_shape=(rows, data.shape[1]), raw_dtype=qtype)
        return rows * cols

    ones = np.ones(h, dtype=np.float32)
    params = mat("token_embd.weight", ty["embd"], vocab, h)
    w.add_tensor("output_norm.weight", ones)
    params += mat("output.weight", ty["head"], vocab, h)
    kv = sh["kv_heads"] * hd
    for i in range(sh["layers"]):
        p = f"blk.{i}."
        w.add_tensor(p + "attn_norm.weight", ones)
        w.add_tensor(p + "ffn_norm.weight", ones)
        params += mat(p + "attn_q.weight", ty["mat"], h, h)
        params += mat(p + "attn_k.weight", ty["mat"], kv, h)
        params += mat(p + "attn_v.weight", ty["mat"], kv, h)
        params += mat(p + "attn_output.weight", ty["mat"], h, h)
        params += mat(p + "ffn_gate.weight", ty["mat"], sh["ffn"], h)
        params += mat(p + "ffn_up.weight", ty["mat"], sh["ffn"], h)
        params += mat(p + "ffn_down.weight", ty["mat"], h, sh["ffn"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file(progress=False)
    w.close()
    os.replace(tmp, a.out)  # never a half-written model under the final name
    print(f"{a.out}: {params / 1e6:.0f}M parameters ({a.shape}, {a.type}), vocabulary {vocab} "
          f"({n_keys} tokenizer keys from {os.path.basename(a.tokenizer_from)}), "
          f"{os.path.getsize(a.out) / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
