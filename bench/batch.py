"""Batch figures against a running docpipe (BASE): requests/s of an embeddings batch and a chat batch against
the same requests sent one by one, and the latency of an interactive chat request while a chat batch runs
against idle. Writes JSON to the path given as the first argument."""
import io
import json
import os
import statistics
import sys
import time

from openai import OpenAI

client = OpenAI(base_url=os.environ["BASE"] + "/v1", api_key="unused", timeout=600)
EMBED, CHAT = "all-MiniLM-L6-v2", "smollm2-135m-instruct"


def run_batch(endpoint, requests):
    data = "\n".join(json.dumps(r) for r in requests).encode()
    f = client.files.create(file=("b.jsonl", io.BytesIO(data)), purpose="batch")
    start = time.perf_counter()
    b = client.batches.create(input_file_id=f.id, endpoint=endpoint, completion_window="24h")
    while b.status not in ("completed", "failed", "cancelled", "expired"):
        time.sleep(0.05)
        b = client.batches.retrieve(b.id)
    assert b.status == "completed" and b.request_counts.completed == len(requests), b
    return time.perf_counter() - start, b


def embed_requests(n):
    return [{"custom_id": f"e{i}", "method": "POST", "url": "/v1/embeddings",
             "body": {"model": EMBED, "input": f"sentence {i}: the quarterly report lists revenue by region"}}
            for i in range(n)]


def chat_body(i, max_tokens):
    return {"model": CHAT, "max_tokens": max_tokens, "temperature": 0,
            "messages": [{"role": "user", "content": f"Tell me a short story about the number {i}."}]}


def chat_requests(n, max_tokens, offset=0):
    return [{"custom_id": f"c{i}", "method": "POST", "url": "/v1/chat/completions",
             "body": chat_body(i + offset, max_tokens)} for i in range(n)]


def one_by_one(requests):
    start = time.perf_counter()
    for r in requests:
        if r["url"] == "/v1/embeddings":
            client.embeddings.create(**r["body"])
        else:
            client.chat.completions.create(**r["body"])
    return time.perf_counter() - start


result = {}
for name, endpoint, requests in [
    ("embeddings", "/v1/embeddings", embed_requests(200)),
    ("chat", "/v1/chat/completions", chat_requests(8, 32)),
]:
    seq = one_by_one(requests)
    bat, _ = run_batch(endpoint, requests)
    result[name] = {"requests": len(requests), "one_by_one_requests_per_s": len(requests) / seq,
                    "batch_requests_per_s": len(requests) / bat, "ratio": seq / bat}
    print(f"{name}: {len(requests)} requests, one by one {len(requests) / seq:.1f}/s, "
          f"batch {len(requests) / bat:.1f}/s (ratio {seq / bat:.2f})")


def interactive(n=5):
    times = []
    for i in range(n):
        start = time.perf_counter()
        client.chat.completions.create(**chat_body(100 + i, 16))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


idle = interactive()
data = "\n".join(json.dumps(r) for r in chat_requests(40, 64, offset=200)).encode()
f = client.files.create(file=("load.jsonl", io.BytesIO(data)), purpose="batch")
b = client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
while client.batches.retrieve(b.id).status != "in_progress":
    time.sleep(0.05)
time.sleep(1)
busy = interactive()
running = client.batches.retrieve(b.id)
assert running.status == "in_progress", running
client.batches.cancel(b.id)
result["interactive_chat_latency_s"] = {"idle_median": idle, "during_batch_median": busy, "ratio": busy / idle,
                                        "max_tokens": 16}
print(f"interactive chat (16 tokens): idle {idle * 1000:.0f} ms, while a chat batch runs {busy * 1000:.0f} ms "
      f"(x{busy / idle:.2f})")
json.dump(result, open(sys.argv[1], "w"), indent=2)
