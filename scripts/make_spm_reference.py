#!/usr/bin/env python3
"""SentencePiece reference ids from llama.cpp, for tests/spm_tokenizer.rs.

Two inputs, one output each:

  python3 scripts/make_spm_reference.py vocab
      Builds a small Llama 2-flavoured SentencePiece vocabulary (<unk> <s>
      </s>, 256 byte tokens <0x00>..<0xFF>, single characters and merged
      pieces with scores, one user-defined and one control token; metadata
      add_space_prefix = true, add_bos = true), writes it to
      tests/golden/spm_vocab.json, builds the same vocab-only GGUF with
      gguf-py and tokenizes every string of STRINGS with llama.cpp
      (llama-cpp-python), for add_special in {false, true} and parse_special
      in {false, true}: tests/golden/spm_llamacpp.json.

  python3 scripts/make_spm_reference.py gemma PATH
      The same strings (and more) with the real Gemma 3 270M GGUF at PATH:
      tests/golden/gemma3_tokens.json.

  python3 scripts/make_spm_reference.py vocabs DIR
      llama.cpp's own vocab-only test GGUFs in DIR (ggml-vocab-llama-spm,
      -phi-3, -qwen2 and -llama-bpe .gguf, the infer-eval manifests
      vocab-*): every string of STRINGS, GEMMA_EXTRA and VOCAB_EXTRA:
      tests/golden/vocab_llamacpp.json (tests/vocab_llamacpp.rs).

The Rust test writes its own vocab-only GGUF from spm_vocab.json and must
give the same ids. Requires: pip install gguf==0.19.0 llama-cpp-python==0.3.36
"""

import json
import os
import sys
import tempfile

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
GOLDEN = os.path.join(ROOT, "tests", "golden")

STRINGS = [
    "", " ", "  ", "   ", "a", "A", "hello", "Hello", " Hello", "  Hello", "Hello world",
    "Hello, world!", "hello   world", "the cat sat on the mat", "The quick brown fox jumps over the lazy dog.",
    "trailing space ", " leading space", "line one\nline two", "\n", "\n\n", "tab\there", "\t", "\r\n",
    "12345", "3.14159", "2024-01-01", "x = [1, 2, 3]", "def f(x):\n    return x * 2\n",
    "naïve café", "ÀÉÎÕÜ", "東京", "日本語のテキスト", "한국어", "Ελληνικά", "русский текст", "🙂", "🚀🚀 launch",
    "é", "€100", "\u00a0nbsp", "a\u200bb", "mixed 東京 and Paris",
    "<s>", "</s>", "<s>Hello</s>", "Hello <s> world", "[USER]", "[USER] hi", "hi [USER]", "x[USER]y",
    "<ctrl>", "a <ctrl> b", "<ctrl><ctrl>", "<unk>", "[USER]<ctrl>[USER]", "<s><s>",
    "theatre there other", "inner winter", "aaaaaaa", "abababab", "                ",
]

GEMMA_EXTRA = [
    "<start_of_turn>user\nWhat is the capital of France?<end_of_turn>\n<start_of_turn>model\n",
    "<bos><start_of_turn>user\nhi<end_of_turn>", "<end_of_turn>", "<start_of_turn>", "<pad>", "<mask>",
    "<h1>Title</h1>", "<div class=\"x\">text</div>", "<b>bold</b> and <i>italic</i>",
    "    four spaces", "        eight spaces", "a\n\n\nb", "\t\t\ttabs", "  \n  \n", "x  y   z    w",
    "C'est la vie", "¿Qué tal?", "Straße", "שלום", "مرحبا", "हिन्दी", "ภาษาไทย", "Tiếng Việt",
    "👩‍👩‍👧‍👦", "🇫🇷🇩🇪", "✓ ✗ ★", "∑∫√∞", "1,234,567.89", "0x1F 0b1010", "e^{i\\pi} + 1 = 0",
    "fn main() { println!(\"hi\"); }", "SELECT * FROM t WHERE id = 1;", "https://example.com/a?b=c&d=e",
    "user@example.com", "#hashtag @mention", "CamelCaseIdentifier snake_case_identifier",
    "The year 1969.", "ALL CAPS SENTENCE", "repeated repeated repeated repeated",
]

# Chat markup of the four llama.cpp vocabularies, whitespace after special
# tokens (Phi-3 strips it), digit runs (Llama 3 groups three, Qwen2 one),
# contractions and case (the BPE pre-tokenizer regexes).
VOCAB_EXTRA = [
    "<|user|>\nWhat is 2+2?<|end|>\n<|assistant|>\n", "<|end|>   after", "<|user|> \t\n hi", "<|end|>",
    "</s> x", "<s> x", "<|endoftext|> x", "<|assistant|>", "<|system|>\nBe brief.<|end|>",
    "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n", "<|im_end|>", "<|endoftext|>",
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>", "<|eot_id|>",
    "<|begin_of_text|>", "1234567890 12345678901", "3,141,592", "I'm sure they'll say we've done it", "DON'T YOU'RE",
    "it's 'quoted'", "a\r\nb\r\n\r\nc", "   leading and trailing   ", "x\n\n\n\ny", "!!! ??? ...",
    "<think>\nreasoning\n</think>", "<|fim_prefix|>def f():<|fim_suffix|>\n<|fim_middle|>",
]


def vocab():
    pieces, scores, types = [], [], []

    def add(p, s, t=1):
        pieces.append(p)
        scores.append(float(s))
        types.append(t)

    add("<unk>", 0, 2)
    add("<s>", 0, 3)
    add("</s>", 0, 3)
    for b in range(256):
        add("<0x%02X>" % b, 0, 6)
    # Llama 2's quirk: the lone word boundary scores -1e9.
    add("\u2581", -1e9)
    chars = list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,!?:;'\"()[]{}=*-_/éïçÀ東京日本")
    for i, c in enumerate(chars):
        add(c, -1000 - i)
    merges = [
        "\u2581t", "he", "\u2581the", "in", "er", "\u2581a", "on", "at", "\u2581H", "ll", "llo", "\u2581Hello",
        "el", "ello", "Hello", "\u2581w", "or", "orld", "\u2581world", "\u2581c", "\u2581cat", "\u2581s", "\u2581sat",
        "\u2581on", "\u2581m", "\u2581mat", "re", "\u2581there", "the", "\u2581other", "ther", "\u2581in", "ner",
        "\u2581inner", "\u2581win", "ter", "\u2581winter", "aa", "aaaa", "ab", "abab", "\u2581\u2581", "\u2581\u2581\u2581\u2581",
        "\u2581x", "\u2581=", "\u2581f", "\u2581re", "turn", "\u2581return", "\u2581q", "ck", "\u2581qu", "ick", "\u2581quick",
        "\u2581caf", "\u2581na", "\u2581東京", "東京",
    ]
    for i, m in enumerate(merges):
        add(m, -10 - i * 0.5)
    add("[USER]", 0, 4)
    add("<ctrl>", 0, 3)
    meta = {
        "tokenizer.ggml.model": "llama",
        "tokenizer.ggml.bos_token_id": 1,
        "tokenizer.ggml.eos_token_id": 2,
        "tokenizer.ggml.unknown_token_id": 0,
        "tokenizer.ggml.add_bos_token": True,
        "tokenizer.ggml.add_eos_token": False,
        "tokenizer.ggml.add_space_prefix": True,
    }
    return {"tokens": pieces, "scores": scores, "token_type": types, "metadata": meta}


def write_vocab_gguf(v, path):
    import gguf
    w = gguf.GGUFWriter(path, "llama")
    w.add_tokenizer_model("llama")
    w.add_token_list(v["tokens"])
    w.add_token_scores(v["scores"])
    w.add_token_types(v["token_type"])
    m = v["metadata"]
    w.add_bos_token_id(m["tokenizer.ggml.bos_token_id"])
    w.add_eos_token_id(m["tokenizer.ggml.eos_token_id"])
    w.add_unk_token_id(m["tokenizer.ggml.unknown_token_id"])
    w.add_add_bos_token(m["tokenizer.ggml.add_bos_token"])
    w.add_add_eos_token(m["tokenizer.ggml.add_eos_token"])
    w.add_add_space_prefix(m["tokenizer.ggml.add_space_prefix"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def reference(model_path, strings):
    import llama_cpp
    from llama_cpp import Llama
    llm = Llama(model_path=model_path, vocab_only=True, verbose=False)
    cases = []
    for s in strings:
        row = {"text": s}
        for add in (False, True):
            for special in (False, True):
                ids = llm.tokenize(s.encode("utf-8"), add_bos=add, special=special)
                row[f"add_special={str(add).lower()},parse_special={str(special).lower()}"] = ids
        cases.append(row)
    return {
        "generator": f"llama-cpp-python {llama_cpp.__version__} (Llama.tokenize; add_bos is llama.cpp's add_special)",
        "script": "scripts/make_spm_reference.py",
        "cases": cases,
    }


def main():
    if len(sys.argv) >= 2 and sys.argv[1] == "vocab":
        v = vocab()
        with open(os.path.join(GOLDEN, "spm_vocab.json"), "w") as f:
            json.dump(v, f, ensure_ascii=False, indent=0)
            f.write("\n")
        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "spm.gguf")
            write_vocab_gguf(v, p)
            ref = reference(p, STRINGS)
        with open(os.path.join(GOLDEN, "spm_llamacpp.json"), "w") as f:
            json.dump(ref, f, ensure_ascii=False, indent=1)
            f.write("\n")
    elif len(sys.argv) >= 3 and sys.argv[1] == "gemma":
        import hashlib
        ref = reference(sys.argv[2], STRINGS + GEMMA_EXTRA)
        h = hashlib.sha256()
        with open(sys.argv[2], "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        ref["model_sha256"] = h.hexdigest()
        with open(os.path.join(GOLDEN, "gemma3_tokens.json"), "w") as f:
            json.dump(ref, f, ensure_ascii=False, indent=1)
            f.write("\n")
    elif len(sys.argv) >= 3 and sys.argv[1] == "vocabs":
        import hashlib
        out = {"vocabularies": []}
        for name in ("llama-spm", "phi-3", "qwen2", "llama-bpe"):
            path = os.path.join(sys.argv[2], f"ggml-vocab-{name}.gguf")
            ref = reference(path, STRINGS + GEMMA_EXTRA + VOCAB_EXTRA)
            with open(path, "rb") as f:
                ref["model_sha256"] = hashlib.sha256(f.read()).hexdigest()
            ref["manifest"] = f"vocab-{name}"
            out["generator"] = ref.pop("generator")
            out["script"] = ref.pop("script")
            out["vocabularies"].append(ref)
        with open(os.path.join(GOLDEN, "vocab_llamacpp.json"), "w") as f:
            json.dump(out, f, ensure_ascii=False, indent=1)
            f.write("\n")
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
