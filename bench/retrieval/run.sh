#!/usr/bin/env bash
# Retrieval quality (bench/retrieval/README.md): a fresh server (own data folder, free port, no rate limit, no
# chat models) gets the 10 manuals of questions.jsonl; run.py scores bm25, vector, hybrid, the fusion sweep and
# exact dense search (every chunk embedded through /v1/embeddings, exact cosine) per query class and writes
# target/bench/retrieval.json. Prints a short summary; run.py's full table and progress go to
# target/bench/retrieval.log.
# BIN overrides the server binary (default $CARGO_TARGET_DIR/release/docpipe or target/release/docpipe).
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release/docpipe}
OUT=target/bench
MODELS=${DOCPIPE_MODELS_DIR:-models}
mkdir -p "$OUT"
corpus=$(bash bench/corpus.sh)
source bench/server.sh
trap 'stop_server' EXIT
start_server RATE_LIMIT_REQUESTS=0 DOCPIPE_CHAT_MODELS=none DOCPIPE_MODELS_DIR="$MODELS"
python3 bench/retrieval/run.py --server "$base" --corpus "$corpus" --out "$OUT/retrieval.json" \
  > "$OUT/retrieval.log" 2>&1 || { tail -n 30 "$OUT/retrieval.log" >&2; exit 1; }
stop_server
python3 - "$OUT/retrieval.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
c, pc, t = r["configs"], r["per_class"], r["targets"]
classes = list(pc)
print(f"retrieval: {r['questions']} questions, {r['chunks']} chunks of 10 manuals; nDCG@10 "
      + "(" + ", ".join(f"{k} {pc[k]['questions']}" for k in classes) + " questions)")
print(f"  {'':<15}{'all':>8}" + "".join(f"{k:>12}" for k in classes))
for name in ("bm25", "vector", "exact_dense", "hybrid_default"):
    print(f"  {name:<15}{c[name]['ndcg@10']:>8.4f}" + "".join(f"{pc[k]['configs'][name]['ndcg@10']:>12.4f}" for k in classes))
yn = lambda b: "yes" if b else "NO"
for scope in ["all"] + classes:
    s = t[scope]
    print(f"  {scope}: hybrid > bm25 {yn(s['hybrid_above_bm25'])}, hybrid > exact_dense "
          f"{yn(s['hybrid_above_exact_dense'])}, |vector - exact_dense| = {abs(s['vector_minus_exact_dense']):.4f} "
          f"<= 0.01 {yn(s['vector_within_0.01_of_exact_dense'])}")
print(f"  best config: {r['best']}; all targets hold: {yn(t['all_hold'])}")
PY
