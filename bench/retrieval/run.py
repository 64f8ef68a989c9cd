#!/usr/bin/env python3
"""Retrieval quality benchmark for docpipe's /api/v1/search (bm25, vector, hybrid and fusion variants).

Uploads the documents named in questions.jsonl from a corpus directory to a running docpipe, finds the
relevant chunks of every question (chunks of the question's file whose text contains one of its
`relevant` phrases), runs every question through every search configuration and reports nDCG@10,
recall@10, hit@10 and MRR@10 per configuration. Beside the server's modes it runs `exact_dense`: every chunk
and question embedded through `POST /v1/embeddings` with the same model and ranked here by exact cosine over the
same 10 files, the reference the `vector` mode is checked against. Questions are tagged `keyword` or
`paraphrase` by word overlap with their relevant chunk and every metric is also reported per class.
Python 3 standard library only.

    python3 bench/retrieval/run.py --server http://localhost:8090 \
        --corpus "$(bash bench/corpus.sh)" --out target/bench/retrieval.json
"""

import argparse
import array
import base64
import hashlib
import json
import math
import os
import random
import re
import sys
import time
import unicodedata
import urllib.error
import urllib.request
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
K = 10

# Configurations: name -> (mode, fusion object or None). `hybrid_default` sends no fusion object.
CONFIGS = [("bm25", "bm25", None), ("vector", "vector", None), ("hybrid_default", "hybrid", None)]
for a in (0.3, 0.5, 0.6, 0.7, 0.8, 0.9):
    CONFIGS.append((f"normalized_a{a}", "hybrid", {"method": "normalized", "alpha": a}))
for k in (10, 60):
    for wb, wv in ((0.5, 0.5), (0.3, 0.7), (0.2, 0.8)):
        CONFIGS.append((f"rrf_k{k}_w{wb}-{wv}", "hybrid",
                        {"method": "rrf", "rrf_k": k, "rrf_bm25_weight": wb, "rrf_vector_weight": wv}))

EXACT = "exact_dense"  # computed here, not a server mode
MODEL = "all-MiniLM-L6-v2"
DIMENSIONS = 384
# Chunks are embedded in batches of this many, in ordinal order per file: the size ingestion uses
# (`EMBED_BATCH` in src/index/service.rs), far below the server's 2048-input limit.
EMBED_BATCH = 32
EMBED_MAX_BODY = 900_000  # bytes; the server takes at most 1 MiB per request
VECTOR_TOLERANCE = 0.01  # target: |nDCG@10(vector) - nDCG@10(exact_dense)| <= this
SINGLE = ("bm25", "vector", EXACT)  # single-retriever baselines
BOOTSTRAP_BASES = ("bm25", "vector", EXACT)

# Query classes. A question's content words are its lowercase alphanumeric tokens minus STOPWORDS (function
# words and the scaffolding of a question: "how do I", "is there a way to"); both they and the relevant chunk's
# tokens go through `stem`. overlap = share of the question's distinct content stems found in its relevant chunk
# (the best one when it has several); overlap >= KEYWORD_MIN_OVERLAP -> `keyword`, else `paraphrase`.
KEYWORD_MIN_OVERLAP = 0.5
STOPWORDS = set("""
a about above after again against all also am an and any are as at be because been before being below between
both but by can could did do does doing down during each few for from further get gets had has have having he
her here hers him his how i if in into is it its itself just let like make may me might more most must my no nor
not now of off on once only or other our out over own same shall she should so some such than that the their
them then there these they this those through to too under until up us use using very want was way we were what
when where whether which while who whom why will with without would you your
""".split())


def stem(w):
    """Crude suffix stripping so that table/tables, line/lines, number/numbered, space/spacing compare equal."""
    for suf in ("ing", "ed", "es", "s", "e", "ly"):
        if w.endswith(suf) and len(w) - len(suf) >= 3:
            return w[:-len(suf)]
    return w


def content_stems(text):
    return {stem(w) for w in re.findall(r"[a-z0-9]+", norm(text)) if w not in STOPWORDS}


def query_class(question, relevant_texts):
    """(class, overlap) of a question against the texts of its relevant chunks."""
    q = content_stems(question)
    if not q:
        return "paraphrase", 0.0
    overlap = max(len(q & content_stems(t)) / len(q) for t in relevant_texts)
    return ("keyword" if overlap >= KEYWORD_MIN_OVERLAP else "paraphrase"), round(overlap, 3)


def norm(s):
    """Compatibility-normalised (ligatures), de-hyphenated at line breaks, whitespace-collapsed, lowercased."""
    s = unicodedata.normalize("NFKC", s)
    s = re.sub(r"(\w)-[ \t]*\n\s*(\w)", r"\1\2", s)
    return " ".join(s.split()).lower()


def contains(text, phrases):
    t = norm(text)
    # Also tolerate hyphenation that was already joined into one line as "hyphen- ation".
    t2 = re.sub(r"(\w)- (\w)", r"\1\2", t)
    return any(p in t or p in t2 for p in phrases)


def send(server, method, path, body=None, headers=None, timeout=600, attempts=120):
    """(parsed JSON body, response headers); retries 429 (rate limit) and 503 (busy) after Retry-After (at most
    5 s, default 1 s) so that a server with the default rate limit only slows the run down."""
    for attempt in range(attempts):
        req = urllib.request.Request(server.rstrip("/") + path, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return json.load(r), r.headers
        except urllib.error.HTTPError as e:
            if e.code not in (429, 503) or attempt == attempts - 1:
                raise
            try:
                wait = min(float(e.headers.get("Retry-After") or 1), 5.0)
            except ValueError:
                wait = 1.0
            e.read()
            time.sleep(max(wait, 0.1))


def request(server, method, path, body=None, headers=None, timeout=600):
    return send(server, method, path, body, headers, timeout)[0]


def post_json(server, path, obj):
    return request(server, "POST", path, json.dumps(obj).encode(), {"content-type": "application/json"})


def embed(server, texts):
    """Unit vectors for `texts` from POST /v1/embeddings (base64 float32), split to respect the body limit.
    Returns (vectors, indices of inputs the server reported as truncated)."""
    vectors, truncated, start = [], [], 0
    while start < len(texts):
        end = start + 1
        while (end < len(texts) and end - start < EMBED_BATCH
               and len(json.dumps(texts[start:end + 1]).encode()) < EMBED_MAX_BODY):
            end += 1
        body = json.dumps({"model": MODEL, "input": texts[start:end], "encoding_format": "base64"}).encode()
        try:
            resp, headers = send(server, "POST", "/v1/embeddings", body, {"content-type": "application/json"})
        except urllib.error.HTTPError as e:
            sys.exit(f"embeddings failed: HTTP {e.code} {e.read()[:500]!r}")
        header = headers.get("X-Truncated-Inputs") or ""
        for item in sorted(resp["data"], key=lambda d: d["index"]):
            v = array.array("f")
            v.frombytes(base64.b64decode(item["embedding"]))
            if sys.byteorder != "little":
                v.byteswap()
            vectors.append(list(v))
        truncated.extend(start + int(i) for i in header.split(",") if i.strip())
        start = end
    if len(vectors) != len(texts) or any(len(v) != DIMENSIONS for v in vectors):
        sys.exit(f"embeddings: expected {len(texts)} vectors of {DIMENSIONS} floats, got "
                 f"{len(vectors)} of {sorted({len(v) for v in vectors})}")
    return vectors, truncated


def dot(a, b):
    return sum(x * y for x, y in zip(a, b))


def paired_delta(rows, a, b, metric="ndcg@10", resamples=2000):
    """Mean per-question difference a - b of `metric`, with a paired bootstrap 95% CI (resampling the
    questions, seed 0) and the number of questions where a is better / worse."""
    n = len(rows)
    d = [r["configs"][a][metric] - r["configs"][b][metric] for r in rows]
    if not n:
        return {"mean": 0.0, "ci95": [0.0, 0.0], "wins": 0, "losses": 0}
    rng = random.Random(0)
    means = sorted(sum(d[rng.randrange(n)] for _ in range(n)) / n for _ in range(resamples))
    lo, hi = means[int(0.025 * resamples) - 1], means[int(0.975 * resamples) - 1]
    return {"mean": round(sum(d) / n, 4), "ci95": [round(lo, 4), round(hi, 4)],
            "wins": sum(x > 1e-9 for x in d), "losses": sum(x < -1e-9 for x in d)}


def mean_of(rows, name, metric="ndcg@10"):
    """Unrounded mean of one metric (target decisions use this, not the rounded figures)."""
    return sum(r["configs"][name][metric] for r in rows) / max(len(rows), 1)


def means(rows, name):
    return {k: round(mean_of(rows, name, k), 4) for k in ("ndcg@10", "recall@10", "hit@10", "mrr@10")}


def target_checks(rows):
    """The benchmark's targets on a set of questions: the default hybrid's nDCG@10 strictly above both BM25 and
    exact dense, and the server's vector mode within VECTOR_TOLERANCE of exact dense."""
    h, bm, ex, ve = (mean_of(rows, c) for c in ("hybrid_default", "bm25", EXACT, "vector"))
    return {"hybrid_above_bm25": h > bm, "hybrid_above_exact_dense": h > ex,
            "vector_within_0.01_of_exact_dense": abs(ve - ex) <= VECTOR_TOLERANCE + 1e-12,
            "vector_minus_exact_dense": round(ve - ex, 4)}


def score(ranked, rel, fid, phrases):
    """Metrics of a ranked list of {chunk_id, file_id, text} against the question's relevant chunks."""
    # A hit is relevant if it is one of the question's relevant chunks (same file, phrase inside).
    flags = [r["chunk_id"] in rel or (r["file_id"] == fid and contains(r["text"], phrases)) for r in ranked[:K]]
    found = len({r["chunk_id"] for r, f in zip(ranked[:K], flags) if f})
    first = next((i + 1 for i, f in enumerate(flags) if f), None)
    return {"ndcg@10": ndcg(flags, len(rel)), "recall@10": found / len(rel),
            "hit@10": 1.0 if first else 0.0, "mrr@10": 1.0 / first if first else 0.0, "rank": first,
            "top": [r["chunk_id"] for r in ranked[:K]]}


def searchable(server, file_id, file_chunks):
    """True when a BM25 search restricted to the file finds it (words of its longest chunk as the query)."""
    if not file_chunks:
        return False
    words = max(file_chunks, key=lambda c: len(c["text"]))["text"].split()[:20]
    body = {"query": " ".join(words), "top_k": 1, "mode": "bm25", "filters": {"file_ids": [file_id]}}
    return bool(post_json(server, "/api/v1/search", body)["results"])


def upload(server, path):
    boundary = uuid.uuid4().hex
    name = os.path.basename(path)
    with open(path, "rb") as f:
        data = f.read()
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    meta = request(server, "POST", "/api/v1/upload?wait=true", body,
                   {"content-type": f"multipart/form-data; boundary={boundary}"})
    # wait=true should return a finished file; poll in case the server capped the wait.
    deadline = time.time() + 600
    while meta.get("status") not in ("ready", "failed") and time.time() < deadline:
        time.sleep(1)
        meta = request(server, "GET", f"/api/v1/files/{meta['id']}")
    if meta.get("status") != "ready":
        sys.exit(f"{name}: ingestion did not finish: status={meta.get('status')} error={meta.get('error')}")
    return meta["id"]


def existing_files(server):
    """Ready files already on the server, by sha256 (a re-run reuses them instead of re-uploading)."""
    out, offset = {}, 0
    while True:
        page = request(server, "GET", f"/api/v1/files?limit=100&offset={offset}&status=ready")
        for f in page["data"]:
            out.setdefault(f["sha256"], []).append(f["id"])
        offset += len(page["data"])
        if not page.get("has_more") or not page["data"]:
            return out


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def chunks(server, file_id):
    out, offset = [], 0
    while True:
        page = request(server, "GET", f"/api/v1/files/{file_id}/chunks?limit=500&offset={offset}")
        out.extend(page["data"])
        offset += len(page["data"])
        if not page.get("has_more") or not page["data"]:
            return out


def ndcg(ranked_rel, n_rel):
    dcg = sum(1.0 / math.log2(i + 2) for i, r in enumerate(ranked_rel[:K]) if r)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(n_rel, K)))
    return dcg / ideal if ideal else 0.0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server", required=True, help="base URL of a running docpipe, e.g. http://localhost:8090")
    ap.add_argument("--corpus", required=True, help="directory holding the PDFs (bench/corpus.sh prints it)")
    ap.add_argument("--out", required=True, help="JSON report path")
    ap.add_argument("--questions", default=os.path.join(HERE, "questions.jsonl"))
    args = ap.parse_args()

    questions = [json.loads(l) for l in open(args.questions, encoding="utf-8") if l.strip()]
    files = sorted({q["file"] for q in questions})

    t0 = time.time()
    have = existing_files(args.server)
    ids, file_chunks, uploaded = {}, {}, 0
    for fn in files:
        path = os.path.join(args.corpus, fn)
        # Reuse a searchable copy already on the server: a deduplicated re-upload may not be searchable.
        for fid in have.get(sha256(path), []):
            c = chunks(args.server, fid)
            if searchable(args.server, fid, c):
                ids[fn], file_chunks[fn] = fid, c
                break
        else:
            ids[fn] = upload(args.server, path)
            file_chunks[fn] = chunks(args.server, ids[fn])
            uploaded += 1
    print(f"uploaded {uploaded} documents, reused {len(files) - uploaded} in {time.time() - t0:.1f}s",
          file=sys.stderr)
    all_ids = sorted(ids.values())
    for fn in files:
        print(f"  {fn}: {len(file_chunks[fn])} chunks", file=sys.stderr)
    # Seen on a docpipe build of 2026-11-23: a re-upload of identical bytes answers `deduplicated: true`
    # with a new file id whose chunks are listed but never indexed, so every search filtered to it is empty.
    unsearchable = [fn for fn in files if not searchable(args.server, ids[fn], file_chunks[fn])]
    if unsearchable:
        sys.exit(f"not searchable by their file id (deduplicated re-upload?): {unsearchable}; "
                 "run against a server with a fresh DOCPIPE_DATA_DIR")

    # Relevant chunks per question; questions whose phrases match nothing are data bugs.
    relevant, bad = {}, []
    for q in questions:
        phrases = [norm(p) for p in q["relevant"]]
        rel = {c["chunk_id"] for c in file_chunks[q["file"]] if contains(c["text"], phrases)}
        if rel:
            relevant[q["id"]] = (rel, phrases, ids[q["file"]])
        else:
            bad.append(q["id"])
            print(f"DATA BUG {q['id']}: no chunk of {q['file']} contains any of {q['relevant']}", file=sys.stderr)
    evaluated = [q for q in questions if q["id"] in relevant]

    # Exact dense reference: embed every chunk's stored text (what ingestion embedded, see README) through the
    # same server and model, per file in ordinal order in ingestion's batch size.
    t0 = time.time()
    pool = []  # (chunk dict with file_id, vector) over all 10 files: the candidate set of every search
    truncated_chunks = 0
    for fn in files:
        cs = sorted(file_chunks[fn], key=lambda c: c["ordinal"])
        vecs, trunc = embed(args.server, [c["text"] for c in cs])
        truncated_chunks += len(trunc)
        for c, v in zip(cs, vecs):
            pool.append(({"chunk_id": c["chunk_id"], "file_id": ids[fn], "text": c["text"]}, v))
    print(f"embedded {len(pool)} chunks in {time.time() - t0:.1f}s ({truncated_chunks} truncated)",
          file=sys.stderr)
    text_of = {c["chunk_id"]: c["text"] for c, _ in pool}
    vector_of = {c["chunk_id"]: v for c, v in pool}
    cosine_diffs = []  # |server's cosine in vector mode - cosine of our vectors|, per returned chunk

    per_question = []
    latency = {name: 0.0 for name in [n for n, _, _ in CONFIGS] + [EXACT]}
    for q in evaluated:
        rel, phrases, fid = relevant[q["id"]]
        cls, overlap = query_class(q["question"], [text_of[c] for c in rel])
        row = {"id": q["id"], "question": q["question"], "file": q["file"], "class": cls,
               "overlap": overlap, "relevant_chunks": len(rel), "configs": {}}
        vector_hits = []
        for name, mode, fusion in CONFIGS:
            body = {"query": q["question"], "top_k": K, "mode": mode, "filters": {"file_ids": all_ids}}
            if fusion is not None:
                body["fusion"] = fusion
            t = time.time()
            try:
                res = post_json(args.server, "/api/v1/search", body)["results"]
            except urllib.error.HTTPError as e:
                sys.exit(f"search failed ({name}, {q['id']}): HTTP {e.code} {e.read()[:500]!r}")
            latency[name] += time.time() - t
            row["configs"][name] = score(res, rel, fid, phrases)
            if name == "vector":
                vector_hits = res
        # Exact dense: the question embedded alone (as search embeds it), cosine = dot of unit vectors over every
        # chunk of the 10 files, ties broken by chunk id. Latency = the embeddings request + the scan here.
        t = time.time()
        (qv,), _ = embed(args.server, [q["question"].strip()])  # search trims the query
        ranked = sorted(((-dot(qv, v), c["chunk_id"], c) for c, v in pool), key=lambda x: (x[0], x[1]))
        latency[EXACT] += time.time() - t
        row["configs"][EXACT] = score([c for _, _, c in ranked], rel, fid, phrases)
        row["configs"][EXACT]["similarity@1"] = round(-ranked[0][0], 4)
        for hit in vector_hits:
            if (hit.get("scores") or {}).get("vector") is not None and hit["chunk_id"] in vector_of:
                cosine_diffs.append(abs(hit["scores"]["vector"] - dot(qv, vector_of[hit["chunk_id"]])))
        per_question.append(row)

    n = len(evaluated)
    names = [name for name, _, _ in CONFIGS] + [EXACT]
    configs = {name: means(per_question, name) for name in names}
    for name in configs:
        configs[name]["mean_latency_ms"] = round(1000 * latency[name] / max(n, 1), 1)
        # Paired bootstrap (2000 resamples of the questions) of the nDCG@10 difference to each baseline.
        for base in BOOTSTRAP_BASES:
            configs[name][f"ndcg_delta_vs_{base}"] = paired_delta(per_question, name, base)

    # How closely the server's vector mode reproduces exact search (same top 10, same order).
    overlaps = [len(set(r["configs"]["vector"]["top"]) & set(r["configs"][EXACT]["top"])) / K for r in per_question]
    vector_vs_exact = {
        "mean_top10_overlap": round(sum(overlaps) / max(n, 1), 4),
        "identical_top10_order": sum(r["configs"]["vector"]["top"] == r["configs"][EXACT]["top"] for r in per_question),
        "questions": n,
        # Same embeddings on both sides <=> these are at float rounding level (~1e-6).
        "max_abs_cosine_diff": round(max(cosine_diffs), 7) if cosine_diffs else None,
        "mean_abs_cosine_diff": round(sum(cosine_diffs) / len(cosine_diffs), 8) if cosine_diffs else None,
    }
    # Keep the ranked ids only for the baselines and the default (enough to diagnose), not for the sweep.
    for r in per_question:
        for name, m in r["configs"].items():
            if name not in SINGLE + ("hybrid_default",):
                m.pop("top", None)

    def best_single(rows):
        return max(("bm25", EXACT), key=lambda b: mean_of(rows, b))

    best_in = best_single(per_question)
    deltas = {
        "vector_minus_exact_dense": configs["vector"][f"ndcg_delta_vs_{EXACT}"],
        "hybrid_minus_max_bm25_exact_dense": dict(configs["hybrid_default"][f"ndcg_delta_vs_{best_in}"],
                                                  max_of=best_in),
    }

    # Per query class: every config's metrics, and the default hybrid against the better of BM25 / exact dense.
    per_class = {}
    for cls in sorted({r["class"] for r in per_question}):
        rows = [r for r in per_question if r["class"] == cls]
        b = best_single(rows)
        top_input = max(mean_of(rows, x) for x in SINGLE)
        per_class[cls] = {
            "questions": len(rows),
            "configs": {name: means(rows, name) for name in names},
            "targets": target_checks(rows),
            "hybrid_minus_bm25": paired_delta(rows, "hybrid_default", "bm25"),
            "hybrid_minus_exact_dense": paired_delta(rows, "hybrid_default", EXACT),
            "hybrid_minus_max_bm25_exact_dense": dict(paired_delta(rows, "hybrid_default", b), max_of=b),
            "vector_minus_exact_dense": paired_delta(rows, "vector", EXACT),
            "hybrid_at_least_max_input": mean_of(rows, "hybrid_default") >= top_input,
        }

    # Targets, on all questions and per class (decided on unrounded means).
    targets = {"all": target_checks(per_question)}
    targets.update({cls: pc["targets"] for cls, pc in per_class.items()})
    targets["all_hold"] = all(v for t in targets.values() for k, v in t.items() if isinstance(v, bool))
    # Questions where the default hybrid ranks worse than the better of its inputs on that question.
    hybrid_losses = []
    for r in per_question:
        c = r["configs"]
        b = max(SINGLE, key=lambda x: c[x]["ndcg@10"])
        if c["hybrid_default"]["ndcg@10"] < c[b]["ndcg@10"] - 1e-9:
            hybrid_losses.append({"id": r["id"], "class": r["class"], "overlap": r["overlap"],
                                  "question": r["question"], "best_input": b,
                                  "rank": {x: c[x]["rank"] for x in SINGLE + ("hybrid_default",)}})

    fused = [c for c in configs if c not in SINGLE]
    best = max(configs, key=lambda c: (configs[c]["ndcg@10"], configs[c]["recall@10"]))
    best_fused = max(fused, key=lambda c: (configs[c]["ndcg@10"], configs[c]["recall@10"]))
    better_input = max(mean_of(per_question, "bm25"), mean_of(per_question, "vector"))
    report = {
        "questions": n,
        "excluded_questions": bad,
        "documents": {fn: {"file_id": ids[fn], "chunks": len(file_chunks[fn])} for fn in files},
        "chunks": len(pool),
        "truncated_chunk_embeddings": truncated_chunks,
        "k": K,
        "recall_definition": "recall@10 = relevant chunks of the question's file in the top 10 / all relevant "
                             "chunks of that file; hit@10 = at least one relevant chunk in the top 10",
        "class_definition": f"keyword if >= {KEYWORD_MIN_OVERLAP} of the question's distinct content-word stems "
                            "occur in its relevant chunk (best one), else paraphrase",
        "configs": configs,
        "exact_dense": configs[EXACT],
        "vector_vs_exact_dense": vector_vs_exact,
        "deltas": deltas,
        "targets": targets,
        "per_class": per_class,
        "best": best,
        "best_fusion": best_fused,
        "hybrid_default_at_least_best_input": mean_of(per_question, "hybrid_default") >= better_input,
        "hybrid_losses": hybrid_losses,
        "per_question": per_question,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1, ensure_ascii=False)

    def ci(d):
        return f"{d['mean']:>+8.4f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]"

    def yn(b):
        return "yes" if b else "NO"

    print(f"\n{n} questions over {len(files)} documents, {len(pool)} chunks "
          f"({len(bad)} excluded as data bugs: {bad})")
    print(f"{'config':<24}{'nDCG@10':>9}{'recall@10':>11}{'hit@10':>8}{'MRR@10':>8}{'ms/query':>10}"
          f"{'dNDCG vs vector [95% CI]':>28}{'dNDCG vs exact_dense':>28}")
    for name in names:
        c = configs[name]
        mark = " *" if name == best else ""
        print(f"{name:<24}{c['ndcg@10']:>9.4f}{c['recall@10']:>11.4f}{c['hit@10']:>8.4f}{c['mrr@10']:>8.4f}"
              f"{c['mean_latency_ms']:>10.1f}{ci(c['ndcg_delta_vs_vector']):>28}"
              f"{ci(c[f'ndcg_delta_vs_{EXACT}']):>28}{mark}")
    print(f"vector vs exact_dense: mean top-10 overlap {vector_vs_exact['mean_top10_overlap']:.4f}, "
          f"identical top 10 on {vector_vs_exact['identical_top10_order']}/{n} questions; "
          f"max |cosine difference| of returned chunks {vector_vs_exact['max_abs_cosine_diff']}")
    d = deltas["vector_minus_exact_dense"]
    print(f"vector - exact_dense: {ci(d)} (wins {d['wins']}, losses {d['losses']})")
    d = deltas["hybrid_minus_max_bm25_exact_dense"]
    print(f"hybrid_default - max(bm25, exact_dense) [= {d['max_of']}]: {ci(d)} "
          f"(wins {d['wins']}, losses {d['losses']})")

    classes = list(per_class)
    print("\nnDCG@10 per query class (" + ", ".join(f"{c}: {per_class[c]['questions']} questions"
                                                    for c in classes) + ")")
    print(f"{'config':<24}" + "".join(f"{c:>12}" for c in classes) + f"{'all':>12}")
    for name in names:
        print(f"{name:<24}" + "".join(f"{per_class[c]['configs'][name]['ndcg@10']:>12.4f}" for c in classes)
              + f"{configs[name]['ndcg@10']:>12.4f}")
    for c in classes:
        d = per_class[c]["hybrid_minus_max_bm25_exact_dense"]
        print(f"{c}: hybrid_default - max(bm25, exact_dense) [= {d['max_of']}] {ci(d)}; "
              f"hybrid >= max(bm25, vector, exact_dense): "
              f"{per_class[c]['hybrid_at_least_max_input']}")

    print("\ntargets (nDCG@10): hybrid_default > bm25, hybrid_default > exact_dense, "
          f"|vector - exact_dense| <= {VECTOR_TOLERANCE}")
    for scope in ["all"] + classes:
        t, rows = targets[scope], per_class[scope]["configs"] if scope in per_class else configs
        print(f"  {scope:<11} hybrid {rows['hybrid_default']['ndcg@10']:.4f} > bm25 {rows['bm25']['ndcg@10']:.4f}: "
              f"{yn(t['hybrid_above_bm25'])}; > exact_dense {rows[EXACT]['ndcg@10']:.4f}: "
              f"{yn(t['hybrid_above_exact_dense'])}; vector {rows['vector']['ndcg@10']:.4f} - exact_dense = "
              f"{t['vector_minus_exact_dense']:+.4f}: {yn(t['vector_within_0.01_of_exact_dense'])}")
    print(f"  all targets hold: {yn(targets['all_hold'])}")
    print(f"hybrid_default below the better single retriever on {len(hybrid_losses)} questions: "
          + ", ".join(f"{x['id']}({x['class'][0]}, {x['best_input']})" for x in hybrid_losses))
    print(f"best: {best}; best fusion: {best_fused}; hybrid_default >= max(bm25, vector): "
          f"{report['hybrid_default_at_least_best_input']}")


if __name__ == "__main__":
    main()
