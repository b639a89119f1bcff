"""The real openai Python client against `infer-eval serve` started with API
keys (base URL in argv[1], the good key in argv[2]): with the key a completion
and a streamed chat answer; with a wrong one the client raises
AuthenticationError (HTTP 401, code invalid_api_key) and the error shows
neither key. Prints one JSON line of what it saw; any failed
check raises (non-zero exit).
"""
import json
import sys

import openai
from openai import OpenAI

base, key = sys.argv[1], sys.argv[2]
seen = {}

client = OpenAI(base_url=base, api_key=key, max_retries=0)
model = client.models.list().data[0].id
r = client.completions.create(model=model, prompt="The capital of France is", max_tokens=4, temperature=0)
assert r.choices[0].text, r
seen["completion"] = r.choices[0].text
chunks = list(client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}],
                                             max_tokens=3, temperature=0, stream=True))
seen["chat_chunks"] = len(chunks)

refused = 0
wrong = "sk-not-the-key"
c = OpenAI(base_url=base, api_key=wrong, max_retries=0)
try:
    c.completions.create(model=model, prompt="x", max_tokens=1)
    raise SystemExit("a request with a wrong key was answered")
except openai.AuthenticationError as e:
    assert e.status_code == 401, e
    assert e.code == "invalid_api_key", e.body
    assert wrong not in str(e.body) and key not in str(e.body), e.body
    refused += 1
seen["refused"] = refused
print(json.dumps(seen))
