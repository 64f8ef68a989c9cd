#!/usr/bin/env bash
# `make bench`: extraction throughput (every format) and PDF speed/F1 against pdftotext in the same run,
# then the server's peak RSS while ingesting the PDF corpus. JSON results go to $CARGO_TARGET_DIR/../bench
# or ./target/bench.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${CARGO_TARGET_DIR:-target}/release/docpipe
OUT=target/bench
mkdir -p "$OUT"
corpus=$(bash bench/corpus.sh)
echo "PDF corpus: $corpus ($(ls "$corpus"/*.pdf | wc -l) files)"

"$BIN" bench extract --out "$OUT/extract.json" "$corpus" fixtures > /dev/null
python3 - "$OUT/extract.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
c = r["pdf_vs_pdftotext"]
print(f"PDF: {c['files']} files, {c['pages']} pages: docpipe {c['docpipe_pages_per_s']:.0f} pages/s, "
      f"pdftotext {c['pdftotext_pages_per_s']:.0f} pages/s, ratio {c['speed_ratio']:.2f}; "
      f"word F1 micro {c['word_f1_micro']:.4f}, mean {c['word_f1_mean']:.4f}, min {c['word_f1_min']:.4f}")
for name, s in sorted(r["formats"].items()):
    pps = f", {s['pages_per_s']:.0f} pages/s" if s.get("pages_per_s") else ""
    print(f"  {name:>10}: {s['files']} files, {s['mb_per_s']:.1f} MB/s{pps}")
PY

# What extraction in a worker process costs per file (reused worker, and a fresh one's startup).
"$BIN" bench isolation --out "$OUT/isolation.json" fixtures > /dev/null
python3 - "$OUT/isolation.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"isolation: {r['files']} files, {r['overhead_ms_per_file']:.2f} ms per file over in-process with a reused "
      f"worker; a fresh worker starts in {r['startup_ms_median']:.1f} ms (median), {r['startup_ms_max']:.1f} ms max")
PY

# Embedding throughput (~20-word sentences, batch 32/256, 1/2 threads), and sentence-transformers on the
# same model files and sentences in the same run (venv from `make bench-deps`), with the ratio.
BENCH_CACHE=${BENCH_CACHE:-$HOME/.cache/docpipe/bench}
MODELS=${DOCPIPE_MODELS_DIR:-models}
"$BIN" bench embed --out "$OUT/embed.json" --dump-sentences "$OUT/embed-sentences.txt" > /dev/null
if [ -x "$BENCH_CACHE/venv-st/bin/python" ]; then
  "$BENCH_CACHE/venv-st/bin/python" bench/peers/embed_st.py "$MODELS/all-minilm-l6-v2" \
    "$OUT/embed-sentences.txt" "$OUT/embed_sentence_transformers.json" 2>/dev/null
fi
python3 - "$OUT/embed.json" "$OUT/embed_sentence_transformers.json" <<'PY'
import json, os, sys
ours = json.load(open(sys.argv[1]))
peer = {}
if os.path.exists(sys.argv[2]):
    peer = {(r["max_batch"], r["threads"]): r["sentences_per_sec"] for r in json.load(open(sys.argv[2]))["results"]}
for r in ours:
    p = peer.get((r["max_batch"], r["threads"]))
    vs = f"; sentence-transformers {p:.0f}/s, ratio {r['sentences_per_sec'] / p:.2f}" if p else ""
    print(f"embed batch {r['max_batch']:>3} threads {r['threads']}: {r['sentences_per_sec']:.0f} sentences/s{vs}")
PY

bash bench/asr.sh

# Search at 100,000 real chunks (corpus text cut into 36-token chunks, embedded once and cached): HNSW recall
# and latency against exact search by collection size, BM25 and hybrid p50/p99.
"$BIN" bench search --out "$OUT/search.json" --cache-dir "$BENCH_CACHE/search" \
  --questions bench/retrieval/questions.jsonl "$corpus" > /dev/null
python3 - "$OUT/search.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"search over {r['chunks']} real chunks ({r['mean_chunk_tokens']:.0f} tokens each, {r['source_files']} files):")
for v in r["vector_by_size"]:
    print(f"  vectors {v['vectors']:>6}: HNSW {v['hnsw']['qps']:>6.0f} q/s p50 {v['hnsw']['p50_ms']:.3f} ms "
          f"p99 {v['hnsw']['p99_ms']:.3f} ms | exact {v['exact']['qps']:>6.0f} q/s p50 {v['exact']['p50_ms']:.3f} ms "
          f"| recall@10 {v['recall_at_10']:.4f}")
for name in ("vector_service", "bm25", "hybrid", "query_embedding"):
    l = r[name]["latency"]
    print(f"  {name:>15}: p50 {l['p50_ms']:.2f} ms, p99 {l['p99_ms']:.2f} ms, {l['qps']:.0f} q/s")
PY

# Local chat models against llama.cpp on the same GGUF files (bench/chat.sh): pp, decode, TTFT, 4 clients.
bash bench/chat.sh

# Peak RSS of the server and chunks/s end to end (extract, chunk, embed, index) while it ingests a slice of
# the corpus: the first $INGEST_FILES PDFs by name (embedding all 6,000+ pages takes about half an hour here).
INGEST_FILES=${INGEST_FILES:-30}
source bench/server.sh
slice=$(mktemp -d)
corpus_slice "$slice" "$INGEST_FILES"
trap 'stop_server; rm -rf "$slice" "$slice.ingest"' EXIT
start_server RATE_LIMIT_REQUESTS=0
start=$(date +%s.%N)
"$BIN" ingest --server "$base" "$slice" > "$slice.ingest" || true
end=$(date +%s.%N)
hwm_kb=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
summary=$(grep -m1 'files:' "$slice.ingest" || true)
pages=$(for f in "$slice"/*.pdf; do pdfinfo "$f" 2>/dev/null | awk '/^Pages:/ {print $2}'; done | paste -sd+ | bc)
chunks=$(python3 - "$base" <<'PY'
import json, sys, urllib.request
base = sys.argv[1]
files = json.load(urllib.request.urlopen(base + "/api/v1/files?limit=500"))["data"]
print(sum(json.load(urllib.request.urlopen(base + "/api/v1/files/" + f["id"] + "/chunks?limit=1"))["total"] for f in files))
PY
)
python3 - "$OUT/ingest.json" "$hwm_kb" "$start" "$end" "$summary" "$pages" "$chunks" <<'PY'
import json, sys
out, hwm, start, end, summary, pages, chunks = sys.argv[1:]
secs = float(end) - float(start)
r = {"peak_rss_mib": int(hwm) / 1024, "wall_seconds": secs, "summary": summary, "pages": int(pages),
     "chunks": int(chunks), "chunks_per_s": int(chunks) / secs, "pages_per_s": int(pages) / secs}
json.dump(r, open(out, "w"), indent=2)
print(f"end-to-end ingestion of {summary} ({pages} pages, {chunks} chunks): {secs:.1f} s, "
      f"{r['chunks_per_s']:.1f} chunks/s, {r['pages_per_s']:.1f} pages/s; server peak RSS {r['peak_rss_mib']:.0f} MiB")
PY

stop_server

# Retrieval quality (nDCG@10 per mode and query class, against exact dense search with the same model) on
# questions over real manuals, on a fresh server (bench/retrieval/README.md).
bash bench/retrieval/run.sh

# Upload-then-ask: answer and evidence accuracy, time to first token, per model and for `auto`, against
# llama.cpp given the gold passage (bench/qa/README.md).
bash bench/qa/run.sh

# Chat while the server ingests: the thread defaults keep chat responsive on small machines.
bash bench/mixed_load.sh

# OpenAI batches: requests/s against the same requests one by one; interactive chat latency while a batch runs.
bash bench/batch.sh

# Chat with files: upload-then-first-token for a 10-page PDF, against pdftotext + llama.cpp on the same prompt.
bash bench/chat_files.sh
bash bench/soak/run.sh
