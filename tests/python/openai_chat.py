"""The official openai client against a running docpipe (BASE=http://host:port): models, chat, streaming,
completions and embeddings, unchanged."""
import os

from openai import OpenAI

client = OpenAI(base_url=os.environ["BASE"] + "/v1", api_key="unused")
MODEL = "smollm2-135m-instruct"

models = {m.id: m for m in client.models.list()}
assert MODEL in models and "all-MiniLM-L6-v2" in models, list(models)
assert client.models.retrieve(MODEL).id == MODEL

messages = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is the capital of France?"},
]
r = client.chat.completions.create(model=MODEL, messages=messages, temperature=0, max_tokens=16)
answer = r.choices[0].message.content
assert r.object == "chat.completion" and answer, r
assert r.choices[0].finish_reason in ("stop", "length"), r
assert r.usage.prompt_tokens > 0 and r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens

stream = client.chat.completions.create(
    model=MODEL, messages=messages, temperature=0, max_tokens=16, stream=True,
    stream_options={"include_usage": True},
)
pieces, usage, finish = [], None, None
for chunk in stream:
    if chunk.usage:
        usage = chunk.usage
    for choice in chunk.choices:
        if choice.delta.content:
            pieces.append(choice.delta.content)
        if choice.finish_reason:
            finish = choice.finish_reason
assert "".join(pieces) == answer, (pieces, answer)
assert finish == r.choices[0].finish_reason and usage.completion_tokens == r.usage.completion_tokens

c = client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=4, temperature=0)
assert c.choices[0].text and c.usage.completion_tokens == 4, c

try:
    client.chat.completions.create(model="no-such-model", messages=messages)
    raise AssertionError("unknown model accepted")
except Exception as e:  # openai.NotFoundError
    assert getattr(e, "status_code", None) == 404, e

e = client.embeddings.create(model="all-MiniLM-L6-v2", input=["hello", "world"])
assert len(e.data) == 2 and len(e.data[0].embedding) == 384
print("ok")
