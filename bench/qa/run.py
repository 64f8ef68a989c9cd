#!/usr/bin/env python3
"""Upload-then-ask benchmark against a running docpipe (Python 3 standard library only).

Uploads every document named in questions.jsonl, waits until each is ready (polling GET /api/v1/files/{id}),
then asks every question with every model through POST /api/v1/chat/multimodal (stream: true, max_tokens 80)
and scores:
  answer accuracy    the answer contains an accepted answer (normalised, see norm())
  evidence accuracy  a source the response carries (its chunk's full text) contains the evidence phrase
  TTFT               seconds from sending the request to the first content token (file already ready)
The gold passage of each question (the first chunk of the file whose text contains the evidence, else a
1,500-character window of the extracted text around it) is saved in the output for bench/qa/peer_llama.py.

  python3 bench/qa/run.py --server http://127.0.0.1:8001 [--out target/bench/qa.json]
  python3 bench/qa/run.py --server ... --check     # only verify answers/evidence against the extraction
"""
import argparse
import json
import os
import re
import statistics
import sys
import time
import unicodedata
import urllib.error
import urllib.request
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
MODELS = ["auto", "qwen2.5-coder-0.5b-instruct", "smollm2-135m-instruct"]
WINDOW = 1500


# ---------------------------------------------------------------- scoring

def norm(s):
    """Lowercase, NFKC, whitespace collapsed, punctuation stripped at both ends; numbers stay as written."""
    s = unicodedata.normalize("NFKC", s).lower()
    s = re.sub(r"\s+", " ", s).strip()
    return s.strip(".,;:!?\"'()[]{}<>«»“”‘’*_`- ").strip()


def contains(haystack, needle):
    """needle (normalised) occurs in haystack (normalised) and is not glued to letters or digits on either
    side, so "4" does not match inside "64001" nor "page" inside "pages"-like words."""
    h, n = norm(haystack), norm(needle)
    if not n:
        return False
    start = 0
    while True:
        i = h.find(n, start)
        if i < 0:
            return False
        before = h[i - 1] if i > 0 else " "
        after = h[i + len(n)] if i + len(n) < len(h) else " "
        if not (n[0].isalnum() and before.isalnum()) and not (n[-1].isalnum() and after.isalnum()):
            return True
        start = i + 1


def answer_ok(answer, accepted):
    return any(contains(answer, a) for a in accepted)


def evidence_ok(texts, evidence):
    return any(contains(t, e) for t in texts for e in evidence)


# ---------------------------------------------------------------- HTTP

def request(method, url, body=None, headers=None, timeout=600):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.read()


def get_json(url):
    return json.loads(request("GET", url)[1])


def post_json(url, obj, timeout=600):
    return request("POST", url, json.dumps(obj).encode(), {"content-type": "application/json"}, timeout)


def upload(server, path):
    boundary = uuid.uuid4().hex
    name = os.path.basename(path)
    data = open(path, "rb").read()
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    _, out = request("POST", server + "/api/v1/upload", body,
                     {"content-type": f"multipart/form-data; boundary={boundary}"})
    return json.loads(out)


def wait_all(server, files, timeout):
    """Polls every pending file in turn until each is ready or failed; records when each was first seen so."""
    t0 = time.monotonic()
    pending = dict(files)
    while pending:
        for rel, info in list(pending.items()):
            f = get_json(f"{server}/api/v1/files/{info['id']}")
            if f.get("status") in ("ready", "failed") or time.monotonic() - t0 > timeout:
                info.update(status=f.get("status"), format=f.get("format"), error=f.get("error"),
                            upload_to_ready_s=time.monotonic() - info["t0"])
                del pending[rel]
        time.sleep(0.05)


def all_chunks(server, file_id):
    out, offset = [], 0
    while True:
        page = get_json(f"{server}/api/v1/files/{file_id}/chunks?limit=500&offset={offset}")
        out += page["data"]
        if not page.get("has_more"):
            return out
        offset += len(page["data"])


def ask(server, model, question, file_id, max_tokens):
    """Streams one answer; returns answer text, TTFT, total time, sources, routing, answering model."""
    body = {"model": model, "messages": [{"role": "user", "content": question}], "file_ids": [file_id],
            "max_tokens": max_tokens, "stream": True}
    req = urllib.request.Request(server + "/api/v1/chat/multimodal", data=json.dumps(body).encode(),
                                 method="POST", headers={"content-type": "application/json",
                                                         "accept": "text/event-stream"})
    t0 = time.perf_counter()
    ttft, parts, sources, routing, answered_by, error, finish = None, [], [], None, None, None, None
    with urllib.request.urlopen(req, timeout=900) as r:
        for raw in r:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                break
            ev = json.loads(data)
            if "error" in ev:
                error = ev["error"]
                continue
            answered_by = ev.get("model", answered_by)
            for ch in ev.get("choices") or []:
                piece = (ch.get("delta") or {}).get("content")
                if piece:
                    if ttft is None:
                        ttft = time.perf_counter() - t0
                    parts.append(piece)
                finish = ch.get("finish_reason") or finish
            if ev.get("sources"):
                sources = ev["sources"]
            if ev.get("routing"):
                routing = ev["routing"]
    return {"answer": "".join(parts), "ttft_s": ttft, "total_s": time.perf_counter() - t0, "sources": sources,
            "routing": routing, "answered_by": answered_by, "error": error, "finish_reason": finish}


# ---------------------------------------------------------------- gold passage

def gold_passage(q, chunks, text):
    for c in chunks:
        if evidence_ok([c["text"]], q["evidence"]):
            return {"kind": "chunk", "chunk_id": c["chunk_id"], "location": c.get("location"), "text": c["text"]}
    # The evidence straddles a chunk boundary (or only the joined text has it): a window of the text.
    flat = re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text))
    low = flat.lower()
    for e in q["evidence"]:
        i = low.find(norm(e))
        if i >= 0:
            a = max(0, i - WINDOW // 2)
            return {"kind": "window", "chunk_id": None, "location": None, "text": flat[a:a + WINDOW]}
    return None


# ---------------------------------------------------------------- main

def load_questions(path):
    qs = [json.loads(l) for l in open(path, encoding="utf-8") if l.strip()]
    ids = [q["id"] for q in qs]
    assert len(ids) == len(set(ids)), "duplicate question ids"
    return qs


def summarise(rows):
    out = {}
    for model in sorted({r["model"] for r in rows}, key=lambda m: MODELS.index(m) if m in MODELS else 99):
        rs = [r for r in rows if r["model"] == model]
        ttfts = [r["ttft_s"] for r in rs if r["ttft_s"] is not None]
        cats = {}
        for c in sorted({r["category"] for r in rs}):
            cr = [r for r in rs if r["category"] == c]
            cats[c] = {"n": len(cr), "answer_acc": sum(r["answer_ok"] for r in cr) / len(cr),
                       "evidence_acc": sum(r["evidence_ok"] for r in cr) / len(cr)}
        out[model] = {"n": len(rs), "answer_acc": sum(r["answer_ok"] for r in rs) / len(rs),
                      "evidence_acc": sum(r["evidence_ok"] for r in rs) / len(rs),
                      "ttft_median_s": statistics.median(ttfts) if ttfts else None,
                      "errors": sum(1 for r in rs if r["error"]), "by_category": cats}
    return out


def print_table(summary, title="docpipe"):
    models = list(summary)
    cats = sorted({c for m in models for c in summary[m]["by_category"]})
    w = 14
    print(f"\n{title}: answer accuracy / evidence-in-sources accuracy")
    print("category".ljust(w) + "".join(m[:22].rjust(24) for m in models))
    for c in cats:
        line = c.ljust(w)
        for m in models:
            s = summary[m]["by_category"].get(c)
            line += (f"{s['answer_acc']:.2f} / {s['evidence_acc']:.2f} (n={s['n']})" if s else "-").rjust(24)
        print(line)
    print("ALL".ljust(w) + "".join(
        f"{summary[m]['answer_acc']:.2f} / {summary[m]['evidence_acc']:.2f} (n={summary[m]['n']})".rjust(24)
        for m in models))
    print("TTFT median s".ljust(w) + "".join(
        (f"{summary[m]['ttft_median_s']:.2f}" if summary[m]["ttft_median_s"] is not None else "-").rjust(24)
        for m in models))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server", required=True)
    ap.add_argument("--questions", default=os.path.join(HERE, "questions.jsonl"))
    ap.add_argument("--out", default=os.path.join(REPO, "target", "bench", "qa.json"))
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--max-tokens", type=int, default=80)
    ap.add_argument("--ready-timeout", type=float, default=900)
    ap.add_argument("--only", help="comma-separated question ids or categories")
    ap.add_argument("--check", action="store_true",
                    help="only check that every answer and evidence occurs in the extracted text and chunks")
    a = ap.parse_args()
    server = a.server.rstrip("/")
    qs = load_questions(a.questions)
    if a.only:
        keep = set(a.only.split(","))
        qs = [q for q in qs if q["id"] in keep or q["category"] in keep]

    # Upload all documents, then wait for each (uploads go first so processing overlaps).
    files = {}
    for rel in dict.fromkeys(q["file"] for q in qs):
        t0 = time.monotonic()
        f = upload(server, os.path.join(REPO, rel))
        files[rel] = {"id": f["id"], "t0": t0}
    wait_all(server, files, a.ready_timeout)
    for rel, info in files.items():
        if info["status"] == "ready":
            info["chunks"] = all_chunks(server, info["id"])
            info["text"] = get_json(f"{server}/api/v1/files/{info['id']}/text")["text"]
        else:
            info["chunks"], info["text"] = [], ""
        print(f"{rel}: {info['status']} in {info['upload_to_ready_s']:.1f}s, {len(info['chunks'])} chunks",
              file=sys.stderr)

    # Verification of the data against what docpipe extracted.
    problems = 0
    for q in qs:
        info = files[q["file"]]
        texts = [c["text"] for c in info["chunks"]] + [info["text"]]
        a_in = any(contains(t, x) for t in texts for x in q["answers"])
        e_in_chunk = evidence_ok([c["text"] for c in info["chunks"]], q["evidence"])
        e_in_text = evidence_ok([info["text"]], q["evidence"])
        ans_in_ev = any(contains(e, x) for e in q["evidence"] for x in q["answers"])
        q["_gold"] = gold_passage(q, info["chunks"], info["text"])
        if not (a_in and e_in_text and ans_in_ev) or not e_in_chunk:
            problems += 1
            print(f"CHECK {q['id']}: answer in text {a_in}, evidence in text {e_in_text}, evidence in a chunk "
                  f"{e_in_chunk}, answer inside evidence {ans_in_ev}", file=sys.stderr)
    if a.check:
        print(f"{len(qs)} questions, {problems} with problems")
        for rel, info in files.items():
            print(f"  {rel}: {info['status']} {info['format']} {len(info['chunks'])} chunks "
                  f"{info['upload_to_ready_s']:.1f}s")
        return 1 if problems else 0

    available = {m["id"] for m in get_json(server + "/v1/models")["data"]}
    models = [m for m in a.models.split(",") if m == "auto" or m in available]
    skipped = [m for m in a.models.split(",") if m not in models]
    if skipped:
        print(f"models not served, skipped: {skipped}", file=sys.stderr)

    rows = []
    for q in qs:
        info = files[q["file"]]
        by_id = {c["chunk_id"]: c["text"] for c in info["chunks"]}
        for model in models:
            try:
                r = ask(server, model, q["question"], info["id"], a.max_tokens)
            except urllib.error.HTTPError as e:
                r = {"answer": "", "ttft_s": None, "total_s": None, "sources": [], "routing": None,
                     "answered_by": None, "finish_reason": None,
                     "error": f"HTTP {e.code}: {e.read()[:300].decode('utf-8', 'replace')}"}
            src_texts = [by_id.get(s.get("chunk_id"), s.get("snippet", "")) for s in r["sources"]]
            row = {"id": q["id"], "category": q["category"], "file": q["file"], "model": model,
                   "question": q["question"], "answers": q["answers"], "answer": r["answer"],
                   "answer_ok": answer_ok(r["answer"], q["answers"]),
                   "evidence_ok": evidence_ok(src_texts, q["evidence"]),
                   "ttft_s": r["ttft_s"], "total_s": r["total_s"], "answered_by": r["answered_by"],
                   "routing": r["routing"], "finish_reason": r["finish_reason"], "error": r["error"],
                   "sources": [{k: s.get(k) for k in ("number", "chunk_id", "location_label", "cited")}
                               for s in r["sources"]]}
            rows.append(row)
            print(f"{q['id']:<14} {model[:12]:<12} {'OK ' if row['answer_ok'] else 'no '}"
                  f"{'ev' if row['evidence_ok'] else '--'} {r['ttft_s'] or 0:5.2f}s "
                  f"{r['answer'][:90]!r}", file=sys.stderr)

    summary = summarise(rows)
    out = {"server": server, "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "max_tokens": a.max_tokens, "models": models, "summary": summary,
           "files": {rel: {k: v for k, v in info.items() if k not in ("chunks", "text", "t0")}
                     for rel, info in files.items()},
           "gold": {q["id"]: q["_gold"] for q in qs},
           "questions": [{k: v for k, v in q.items() if not k.startswith("_")} for q in qs],
           "results": rows}
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    json.dump(out, open(a.out, "w"), indent=1, ensure_ascii=False)
    print_table(summary)
    print(f"\nwritten to {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
