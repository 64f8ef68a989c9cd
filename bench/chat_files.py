#!/usr/bin/env python3
"""Upload-then-first-token against a running docpipe: upload a PDF, wait until it is ready, then ask a
question about it with streaming chat (model auto, then each tier's model explicitly) and time the first
answer token. Writes the figures as JSON, and the exact grounded prompts (rebuilt from the returned sources)
for the peer script. Standard library only."""
import argparse, json, statistics, time, urllib.request, uuid

QUESTION = "What is this package for, and how is it loaded in a document?"
MAX_TOKENS = 64
# Must match src/router/grounded.rs (the peer answers the same prompt).
INSTRUCTIONS = ("Answer the question using only the numbered sources below. "
                "Cite the source of each fact with its number in square brackets, like [1]. "
                "If the sources do not contain the answer, say that you do not know.")


def call(base, path, body=None, headers=None, data=None):
    if body is not None:
        data = json.dumps(body).encode()
        headers = {"content-type": "application/json"}
    req = urllib.request.Request(base + path, data=data, headers=headers or {})
    return urllib.request.urlopen(req, timeout=600)


def upload(base, path):
    boundary = uuid.uuid4().hex
    content = open(path, "rb").read()
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"ten-pages.pdf\"\r\n"
            f"Content-Type: application/pdf\r\n\r\n").encode() + content + f"\r\n--{boundary}--\r\n".encode()
    return json.load(call(base, "/api/v1/upload", headers={"content-type": f"multipart/form-data; boundary={boundary}"}, data=body))


def ask(base, file_id, model):
    body = {"model": model, "messages": [{"role": "user", "content": QUESTION}], "file_ids": [file_id],
            "max_tokens": MAX_TOKENS, "stream": True, "stream_options": {"include_usage": True}}
    start = time.perf_counter()
    first = None
    text, last, usage = "", None, None
    with call(base, "/api/v1/chat/multimodal", body) as resp:
        for raw in resp:
            line = raw.decode().strip()
            if not line.startswith("data: "):
                continue
            data = line[6:]
            if data == "[DONE]":
                break
            chunk = json.loads(data)
            if "error" in chunk:
                raise SystemExit(f"chat failed: {chunk}")
            for c in chunk.get("choices", []):
                piece = c.get("delta", {}).get("content")
                if piece:
                    if first is None:
                        first = time.perf_counter() - start
                    text += piece
            if chunk.get("sources") is not None:
                last = chunk
            if chunk.get("usage"):
                usage = chunk["usage"]
    total = time.perf_counter() - start
    return {"first_token_s": first if first is not None else total, "total_s": total, "answer": text,
            "model": last["model"], "tier": last["routing"]["tier"], "sources": last["sources"],
            "prompt_tokens": usage["prompt_tokens"], "completion_tokens": usage["completion_tokens"]}


def label(src):
    return f"{src['filename']}, {src['location_label']}" if src["location_label"] else src["filename"]


def grounded_messages(base, file_id, sources):
    chunks = json.load(call(base, f"/api/v1/files/{file_id}/chunks?limit=500"))["data"]
    by_id = {f"{file_id}#{c['ordinal']}": c["text"] for c in chunks}
    blocks = "\n".join(f"[{s['number']}] ({label(s)})\n{by_id[s['chunk_id']].strip()}\n" for s in sources)
    return [{"role": "system", "content": INSTRUCTIONS},
            {"role": "user", "content": f"Sources:\n\n{blocks}\nQuestion: {QUESTION}"}]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    ap.add_argument("--pdf", required=True)
    ap.add_argument("--source-name", default="")
    ap.add_argument("--out", required=True)
    ap.add_argument("--prompts", required=True)
    ap.add_argument("--repeat", type=int, default=2)
    a = ap.parse_args()
    base = a.server
    tiers = json.load(call(base, "/api/v1/analyze-complexity", {"messages": [{"role": "user", "content": "hi"}]}))
    models = {t["name"]: t["model"] for t in tiers["complexity_analysis"]["tiers"] if t["context_window"]}
    t0 = time.perf_counter()
    f = upload(base, a.pdf)
    while f["status"] not in ("ready", "failed"):
        time.sleep(0.05)
        f = json.load(call(base, f"/api/v1/files/{f['id']}"))
    ready = time.perf_counter() - t0
    if f["status"] != "ready":
        raise SystemExit(f"processing failed: {f}")
    pages = f.get("progress", {}).get("total")
    runs, prompts = {}, {}
    for name, model in [("auto", "auto")] + sorted(models.items()):
        tries = [ask(base, f["id"], model) for _ in range(a.repeat)]
        first = statistics.median(t["first_token_s"] for t in tries)
        t = tries[0]
        runs[name] = {"model": t["model"], "tier": t["tier"], "prompt_tokens": t["prompt_tokens"],
                      "sources": len(t["sources"]), "ready_to_first_token_s": first,
                      "first_run_ready_to_first_token_s": t["first_token_s"],
                      "upload_to_first_token_s": ready + first, "answer_s": statistics.median(x["total_s"] for x in tries),
                      "completion_tokens": t["completion_tokens"], "answer": t["answer"]}
        prompts[name] = {"tier": t["tier"], "model": t["model"], "messages": grounded_messages(base, f["id"], t["sources"]),
                         "max_tokens": MAX_TOKENS}
    report = {"source": a.source_name, "pages": 10, "chunks": json.load(call(base, f"/api/v1/files/{f['id']}/chunks?limit=1"))["total"],
              "upload_to_ready_s": ready, "question": QUESTION, "runs": runs,
              "note": "upload_to_first_token_s = upload_to_ready_s + median ready_to_first_token_s over the repeats"}
    json.dump(report, open(a.out, "w"), indent=2)
    json.dump({"upload_to_ready_s": ready, "prompts": prompts}, open(a.prompts, "w"), indent=2)


if __name__ == "__main__":
    main()
