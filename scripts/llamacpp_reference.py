#!/usr/bin/env python3
"""Produce reference data from llama.cpp (via llama-cpp-python) for a GGUF model.

Writes two JSON files into --out-dir:

* llamacpp_tokens.json  -- tokenizer reference: ids for a varied list of strings
                           (special=False), plus "special_cases" tokenized with
                           special=True.
* llamacpp_greedy.json  -- greedy (argmax) decoding of 32 new tokens for a few
                           prompts, with the top-5 (id, logit) of the first step.

Usage:
    python3 scripts/llamacpp_reference.py --model /tmp/smollm2.gguf --out-dir tests/golden

Requires: pip install llama-cpp-python numpy
"""

import argparse
import hashlib
import json
import os
import sys

import numpy as np
import llama_cpp
from llama_cpp import Llama

EOS_ID = 2  # <|im_end|> for SmolLM2-Instruct
N_NEW_TOKENS = 32

TOKEN_CASES = [
    # plain English
    "The capital of France is",
    "Hello world",
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "I am a large language model trained to be helpful.",
    "hello",
    "HELLO WORLD",
    "a",
    # empty / whitespace
    "",
    " ",
    "  ",
    "   leading spaces",
    "trailing spaces   ",
    " both sides ",
    "a  b   c    d     e      f       g        h         i          j",
    "x          y",
    "tab\tseparated\tvalues",
    "\t\tindented with tabs",
    "line one\nline two",
    "\n",
    "\n\n\n",
    "paragraph one\n\n\nparagraph two",
    "windows\r\nline\r\nendings\r\n",
    " \n \t \r\n  mixed whitespace\t\n",
    # digits and numbers
    "12345678",
    "3.14159",
    "1,000,000",
    "In 2024, 42 people paid $1,234.56 each (about 99.9%).",
    "0 1 2 3 4 5 6 7 8 9 10 100 1000 10000",
    "9876543210123456789",
    # contractions
    "don't",
    "I'LL",
    "we've",
    "She's sure they'd've done it, but I'm not, and you're wrong; it's OK.",
    "DON'T WE'VE THEY'RE",
    # punctuation runs
    "Wait... what?!?! No way!!!",
    "----- ===== ***** ##### !!!!!",
    "(a), [b], {c}; <d> 'e' \"f\" `g` ~h~ ^i^ |j| \\k\\ /l/",
    "@user #hashtag $money %percent &and *star _under_",
    # code
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n",
    "fn main() {\n    let v: Vec<u32> = (0..10).map(|x| x * 2).collect();\n    println!(\"{:?}\", v);\n}\n",
    '{"name": "SmolLM2", "params": 135000000, "tags": ["small", "llm"], "ok": true, "x": null}',
    '<!DOCTYPE html>\n<html><head><title>Test</title></head>\n<body><p class="intro">Hi &amp; bye</p></body></html>',
    "for (int i = 0; i < n; ++i) { sum += a[i] * b[i]; }",
    "SELECT id, name FROM users WHERE age >= 18 ORDER BY name DESC;",
    # accented Latin, German
    "café résumé naïve élève",
    "El niño pidió una piña en España.",
    "Über Müller schön grün",
    "Die Straße ist groß und heiß.",
    "Ça va? Très bien, merci. Où est la gare?",
    "Ångström Øresund Æther Łódź Čeština",
    # other scripts
    "Γειά σου Κόσμε, αυτό είναι ελληνικά.",
    "Привет, мир! Как дела?",
    "مرحبا بالعالم، كيف حالك؟",
    "שלום עולם, מה שלומך?",
    "नमस्ते दुनिया, आप कैसे हैं?",
    "你好，世界！今天天气很好。",
    "こんにちは世界。カタカナとひらがなと漢字。",
    "안녕하세요 세계, 반갑습니다.",
    "สวัสดีชาวโลก",
    # emoji
    "😀",
    "I love pizza 🍕🍕🍕!",
    "👨‍👩‍👧‍👦 family",
    "🏳️‍🌈 flag",
    "🇫🇷🇺🇸🇯🇵 flags",
    "👍🏻👍🏼👍🏽👍🏾👍🏿 skin tones",
    "❤️ heart with variation selector",
    # math symbols
    "∀x ∈ ℝ: x² ≥ 0, ∑ᵢ aᵢ ≤ ∞, √2 ≈ 1.414, π ≠ 3",
    "E = mc², a ⊕ b, A ∩ B ∪ C, ∂f/∂x, ∫₀¹ f(x) dx",
    "½ ¾ ‰ ° ± × ÷ → ← ⇒ ≡",
    # special-token text treated as plain text
    "<|im_start|>",
    "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
    "text with <|im_start|> inside and <|endoftext|> too",
    "<s> </s> <unk> <pad>",
    # mixed scripts
    "English русский 中文 日本語 한국어 العربية mixed",
    "Tokyo (東京) and Moscow (Москва) 🌍",
    "naïve café 😀 日本 Ωmega 123",
    # URLs / paths / emails
    "https://www.example.com/path/to/page?query=value&other=123#section",
    "Visit http://localhost:8080/api/v1/users?id=42 now.",
    "/usr/local/bin/python3 C:\\Users\\name\\file.txt",
    "someone.name+tag@example.co.uk",
    # long paragraphs
    (
        "Language models are trained on large corpora of text. During training, "
        "the model learns to predict the next token given the previous tokens. "
        "After training, the model can be used to generate text by repeatedly "
        "sampling a token from its predicted distribution and appending it to "
        "the context. Greedy decoding always picks the most likely token, which "
        "is deterministic but can lead to repetitive outputs."
    ),
    (
        "Once upon a time, in a small village nestled between rolling hills and a "
        "sparkling river, there lived an old clockmaker named Elias. Every morning "
        "he would open the wooden shutters of his shop, brew a pot of strong coffee, "
        "and sit at his workbench, carefully repairing the tiny gears and springs "
        "that the villagers brought to him.\n\nOne day, a girl arrived with a "
        "strange silver watch that ticked backwards..."
    ),
    (
        "Rust is a multi-paradigm, general-purpose programming language that "
        "emphasizes performance, type safety, and concurrency. It enforces memory "
        "safety—meaning that all references point to valid memory—without a "
        "garbage collector. To simultaneously enforce memory safety and prevent "
        "data races, its \"borrow checker\" tracks the object lifetime of all "
        "references in a program during compilation."
    ),
]

SPECIAL_CASES = [
    "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
    "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>user\nWrite a haiku about Rust.<|im_end|>\n<|im_start|>assistant\nMemory safe and fast<|im_end|>\n",
    "<|endoftext|>",
    "plain text without specials",
]

GREEDY_PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):",
    "Once upon a time",
    "1, 2, 3, 4,",
    "The meaning of life is",
    "Water boils at",
]


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, ensure_ascii=False)
        f.write("\n")


def tokenize(llm, text, special):
    return [int(t) for t in llm.tokenize(text.encode("utf-8"), add_bos=False, special=special)]


def last_logits(llm):
    """Logits of the last evaluated token.

    Since llama-cpp-python 0.3.x, Llama.eval() no longer copies logits into
    llm.scores when logits_all=False, so read them straight from the context.
    """
    ptr = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
    return np.ctypeslib.as_array(ptr, shape=(llm.n_vocab(),)).astype(np.float32, copy=True)


def greedy(llm, prompt_ids, n_new):
    """Greedy decoding with explicit eval + argmax over the last logits row."""
    llm.reset()
    llm.eval(prompt_ids)
    out = []
    top5 = None
    for step in range(n_new):
        logits = last_logits(llm)
        if step == 0:
            order = np.argsort(-logits, kind="stable")[:5]
            top5 = [[int(i), float(logits[i])] for i in order]
        tok = int(np.argmax(logits))
        out.append(tok)
        if tok == EOS_ID:
            break
        llm.eval([tok])
    return out, top5


def detok(llm, ids):
    return llm.detokenize(ids).decode("utf-8", errors="replace")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="path to the GGUF file")
    ap.add_argument("--out-dir", required=True, help="directory for the JSON outputs")
    args = ap.parse_args()

    os.makedirs(args.out_dir, exist_ok=True)
    generator = f"llama-cpp-python {llama_cpp.__version__}"
    model_sha = sha256_file(args.model)

    llm = Llama(
        model_path=args.model,
        n_ctx=2048,
        n_threads=2,
        n_batch=512,
        logits_all=False,
        verbose=False,
        seed=0,
    )

    # --- tokenizer reference ---
    cases = [{"text": t, "ids": tokenize(llm, t, special=False)} for t in TOKEN_CASES]
    special_cases = [{"text": t, "ids": tokenize(llm, t, special=True)} for t in SPECIAL_CASES]
    write_json(
        os.path.join(args.out_dir, "llamacpp_tokens.json"),
        {
            "generator": generator,
            "model_sha256": model_sha,
            "add_bos": False,
            "cases": cases,
            "special_cases": special_cases,
        },
    )

    france = next(c for c in cases if c["text"] == "The capital of France is")
    if france["ids"] != [504, 3575, 282, 4649, 314]:
        print(f"WARNING: unexpected ids for France case: {france['ids']}", file=sys.stderr)

    # --- greedy reference ---
    greedy_cases = []
    for p in GREEDY_PROMPTS:
        pids = tokenize(llm, p, special=False)
        out, top5 = greedy(llm, pids, N_NEW_TOKENS)
        greedy_cases.append(
            {
                "prompt": p,
                "prompt_ids": pids,
                "output_ids": out,
                "text": detok(llm, out),
                "top5_first_step": top5,
            }
        )
        print(f"{p!r} -> {greedy_cases[-1]['text']!r}", file=sys.stderr)
    write_json(
        os.path.join(args.out_dir, "llamacpp_greedy.json"),
        {
            "generator": generator,
            "model_sha256": model_sha,
            "n_threads": 2,
            "max_new_tokens": N_NEW_TOKENS,
            "eos_id": EOS_ID,
            "cases": greedy_cases,
        },
    )
    print(f"wrote {len(cases)} token cases, {len(special_cases)} special cases, "
          f"{len(greedy_cases)} greedy cases to {args.out_dir}", file=sys.stderr)


if __name__ == "__main__":
    main()
