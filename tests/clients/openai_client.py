"""The real openai Python client against `infer-eval serve` (base URL in argv[1]).

Completions with echo + logprobs, chat with logprobs, streaming (both), the
models list, and 400s that name the field. Prints one JSON line of what it
saw; any failed check raises (non-zero exit).
"""
import json
import sys

import openai
from openai import OpenAI

base = sys.argv[1]
client = OpenAI(base_url=base, api_key="none", max_retries=0)
seen = {}

models = client.models.list()
model = models.data[0].id
seen["model"] = model

prompt = "The capital of France is"
r = client.completions.create(model=model, prompt=prompt, max_tokens=6, temperature=0, echo=True, logprobs=2)
c = r.choices[0]
assert r.system_fingerprint.startswith("fp_ie"), r.system_fingerprint
assert c.text.startswith(prompt), c.text
lp = c.logprobs
n = r.usage.prompt_tokens + r.usage.completion_tokens
assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) == n, lp
assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
# Greedy: every generated token is the top of its dict, as the very same float.
for x, top in zip(lp.token_logprobs[-6:], lp.top_logprobs[-6:]):
    assert x == max(top.values()), (x, top)
assert lp.text_offset == sorted(lp.text_offset)
seen["echo_tokens"] = n

plain = client.completions.create(model=model, prompt=prompt, max_tokens=6, temperature=0)
assert c.text == prompt + plain.choices[0].text
chunks = list(client.completions.create(model=model, prompt=prompt, max_tokens=6, temperature=0,
                                        stream=True, stream_options={"include_usage": True}))
assert "".join(ch.choices[0].text for ch in chunks if ch.choices) == plain.choices[0].text
assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 6
seen["stream_chunks"] = len(chunks)

msgs = [{"role": "user", "content": "Name a colour."}]
chat = client.chat.completions.create(model=model, messages=msgs, max_tokens=8, temperature=0.7, seed=3,
                                      logprobs=True, top_logprobs=2)
m = chat.choices[0]
assert m.message.role == "assistant" and isinstance(m.message.content, str)
assert len(m.logprobs.content) == chat.usage.completion_tokens
assert all(len(t.top_logprobs) == 2 for t in m.logprobs.content)
streamed = client.chat.completions.create(model=model, messages=msgs, max_tokens=8, temperature=0.7, seed=3,
                                          stream=True)
text = "".join(ch.choices[0].delta.content or "" for ch in streamed if ch.choices)
assert text == m.message.content, (text, m.message.content)
seen["chat"] = m.message.content

for kwargs, param in [({"temperature": "hot"}, "temperature"), ({"n": 0}, "n"), ({"logprobs": 99}, "logprobs")]:
    try:
        client.completions.create(model=model, prompt="x", max_tokens=2, **kwargs)
    except openai.BadRequestError as e:
        assert e.status_code == 400
        assert e.body["param"] == param, e.body
    else:
        raise AssertionError(f"{kwargs} was accepted")
seen["errors"] = 3
print(json.dumps(seen))
