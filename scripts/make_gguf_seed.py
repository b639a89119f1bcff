#!/usr/bin/env python3
"""Write a small valid GGUF (llama metadata, a 6-token BPE vocabulary, a few
tiny tensors) as a seed for the gguf fuzz target: fuzz/seeds/gguf/tiny.gguf."""
import struct, sys, pathlib

def s(x):
    b = x.encode()
    return struct.pack('<Q', len(b)) + b

def kv(key, ty, payload):
    return s(key) + struct.pack('<I', ty) + payload

meta = [
    kv('general.architecture', 8, s('llama')),
    kv('llama.context_length', 4, struct.pack('<I', 64)),
    kv('llama.embedding_length', 4, struct.pack('<I', 32)),
    kv('llama.block_count', 4, struct.pack('<I', 1)),
    kv('llama.feed_forward_length', 4, struct.pack('<I', 64)),
    kv('llama.attention.head_count', 4, struct.pack('<I', 2)),
    kv('llama.attention.head_count_kv', 4, struct.pack('<I', 1)),
    kv('llama.attention.layer_norm_rms_epsilon', 6, struct.pack('<f', 1e-5)),
    kv('llama.rope.freq_base', 6, struct.pack('<f', 10000.0)),
    kv('tokenizer.ggml.model', 8, s('gpt2')),
    kv('tokenizer.ggml.pre', 8, s('smollm')),
    kv('tokenizer.ggml.tokens', 9, struct.pack('<IQ', 8, 6) + b''.join(s(t) for t in ['<s>', 'a', 'b', 'ab', 'Ġ', 'Ġa'])),
    kv('tokenizer.ggml.token_type', 9, struct.pack('<IQ', 5, 6) + struct.pack('<6i', 3, 1, 1, 1, 1, 1)),
    kv('tokenizer.ggml.merges', 9, struct.pack('<IQ', 8, 2) + s('a b') + s('Ġ a')),
    kv('tokenizer.ggml.bos_token_id', 4, struct.pack('<I', 0)),
]
tensors = [('token_embd.weight', [32, 6], 0), ('output_norm.weight', [32], 0), ('blk.0.attn_q.weight', [32, 32], 8)]
sizes = {0: 4, 8: 34 / 32}
infos, off = b'', 0
for name, dims, ty in tensors:
    infos += s(name) + struct.pack('<I', len(dims)) + b''.join(struct.pack('<Q', d) for d in dims) + struct.pack('<IQ', ty, off)
    n = 1
    for d in dims:
        n *= d
    off += int(n * sizes[ty] + 31) // 32 * 32
head = b'GGUF' + struct.pack('<IQQ', 3, len(tensors), len(meta)) + b''.join(meta) + infos
head += b'\0' * (-len(head) % 32)
out = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else 'fuzz/seeds/gguf/tiny.gguf')
out.write_bytes(head + b'\x01' * off)
print(out, len(head) + off, 'bytes')
