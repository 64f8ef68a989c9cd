"""The official openai client runs batches against a running docpipe (BASE=http://host:port, DOC_IDS=two
ready file ids): an embeddings batch and a chat batch (plain lines and lines asking the same question of each
document) end to end, results read from the output and error files; a file with bad lines fails validation
with each line named; list pages with `after`."""
import io
import json
import os
import time

from openai import OpenAI

client = OpenAI(base_url=os.environ["BASE"] + "/v1", api_key="unused")
DOCS = os.environ["DOC_IDS"].split(",")
EMBED, CHAT = "all-MiniLM-L6-v2", "smollm2-135m-instruct"


def upload(lines):
    data = "\n".join(json.dumps(line) for line in lines).encode()
    f = client.files.create(file=("requests.jsonl", io.BytesIO(data)), purpose="batch")
    assert f.purpose == "batch" and f.status == "processed", f
    return f


def wait(batch, timeout=600):
    deadline = time.time() + timeout
    while batch.status not in ("completed", "failed", "cancelled", "expired"):
        assert time.time() < deadline, batch
        time.sleep(0.5)
        batch = client.batches.retrieve(batch.id)
    return batch


def lines_of(file_id):
    return [json.loads(line) for line in client.files.content(file_id).text.splitlines()]


# Embeddings: every line answered once, the same vectors as the endpoint gives directly; a bad line goes to
# the error file with its status and error body.
texts = [f"sentence number {i} about batches" for i in range(20)]
requests = [{"custom_id": f"emb-{i}", "method": "POST", "url": "/v1/embeddings",
             "body": {"model": EMBED, "input": t}} for i, t in enumerate(texts)]
requests.append({"custom_id": "emb-bad", "method": "POST", "url": "/v1/embeddings",
                 "body": {"model": "no-such-model", "input": "x"}})
inp = upload(requests)
batch = client.batches.create(input_file_id=inp.id, endpoint="/v1/embeddings", completion_window="24h",
                              metadata={"job": "nightly"})
assert batch.status == "validating" and batch.metadata == {"job": "nightly"}, batch
batch = wait(batch)
assert batch.status == "completed", batch
assert (batch.request_counts.total, batch.request_counts.completed, batch.request_counts.failed) == (21, 20, 1), batch
assert batch.in_progress_at and batch.finalizing_at and batch.completed_at >= batch.created_at, batch
out = {line["custom_id"]: line for line in lines_of(batch.output_file_id)}
assert sorted(out) == sorted(f"emb-{i}" for i in range(20)), sorted(out)
direct = client.embeddings.create(model=EMBED, input=texts[3]).data[0].embedding
batched = out["emb-3"]["response"]["body"]["data"][0]["embedding"]
assert out["emb-3"]["response"]["status_code"] == 200 and out["emb-3"]["error"] is None
assert max(abs(a - b) for a, b in zip(direct, batched)) < 1e-5
errors = lines_of(batch.error_file_id)
assert len(errors) == 1 and errors[0]["custom_id"] == "emb-bad", errors
assert errors[0]["response"]["status_code"] == 404, errors
assert errors[0]["response"]["body"]["error"]["code"] == "model_not_found", errors
meta = client.files.retrieve(batch.output_file_id)
assert meta.purpose == "batch_output" and meta.filename.endswith(".jsonl"), meta

# Chat: plain lines and the same question asked of each document (file_ids), answered with its sources.
requests = [{"custom_id": f"chat-{i}", "method": "POST", "url": "/v1/chat/completions",
             "body": {"model": CHAT, "messages": [{"role": "user", "content": q}], "max_tokens": 8,
                      "temperature": 0}}
            for i, q in enumerate(["Say hi.", "Name a colour."])]
requests += [{"custom_id": f"doc-{doc}", "method": "POST", "url": "/v1/chat/completions",
              "body": {"messages": [{"role": "user", "content": "How many pears are stored?"}],
                       "file_ids": [doc], "max_tokens": 16}} for doc in DOCS]
batch = wait(client.batches.create(input_file_id=upload(requests).id, endpoint="/v1/chat/completions",
                                   completion_window="24h"))
assert batch.status == "completed" and batch.request_counts.completed == 4, batch
assert batch.error_file_id is None, batch
out = {line["custom_id"]: line for line in lines_of(batch.output_file_id)}
for i in range(2):
    body = out[f"chat-{i}"]["response"]["body"]
    assert body["object"] == "chat.completion" and body["choices"][0]["message"]["content"], body
    assert body["usage"]["completion_tokens"] <= 8, body
for doc in DOCS:
    body = out[f"doc-{doc}"]["response"]["body"]
    assert body["sources"] and all(s["file_id"] == doc for s in body["sources"]), body

# Validation: a bad file fails the batch as a whole, naming each bad line.
bad = [requests[0], {"custom_id": "chat-0", "method": "POST", "url": "/v1/chat/completions", "body": {}},
       {"custom_id": "x", "method": "POST", "url": "/v1/embeddings", "body": {}}]
batch = wait(client.batches.create(input_file_id=upload(bad).id, endpoint="/v1/chat/completions",
                                   completion_window="24h"))
assert batch.status == "failed" and batch.failed_at, batch
assert [(e.line, e.code) for e in batch.errors.data] == [(2, "duplicate_custom_id"), (3, "mismatched_endpoint")], batch.errors

# Listing: newest first, paged with `after`.
page = client.batches.list(limit=2)
assert [b.id for b in page.data][0] == batch.id and page.has_more, page
rest = client.batches.list(limit=2, after=page.data[-1].id)
assert len(rest.data) == 1 and not rest.has_more, rest
ids = [b.id for b in client.batches.list()]
assert len(ids) == 3 and len(set(ids)) == 3, ids
print("ok")
