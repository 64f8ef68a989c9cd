#!/usr/bin/env bash
# Chat while the server ingests: SmolLM2 answers (128 tokens, temperature 0) on an idle server, then twice while
# it ingests the first 30 corpus PDFs, with the server's default thread settings (override them through
# DOCPIPE_CHAT_THREADS / DOCPIPE_EMBED_THREADS). Called by bench/run.sh. JSON: target/bench/mixed_load.json.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${CARGO_TARGET_DIR:-target}/release/docpipe
OUT=target/bench
mkdir -p "$OUT"
corpus=$(bash bench/corpus.sh)
source bench/server.sh
slice=$(mktemp -d)
corpus_slice "$slice" 30
trap 'stop_server; rm -rf "$slice"' EXIT
start_server RATE_LIMIT_REQUESTS=0
chat() {
  python3 - "$port" <<'PY'
import json, sys, time, urllib.request
body = json.dumps({"model": "smollm2", "max_tokens": 128, "temperature": 0,
                   "messages": [{"role": "user", "content": "Write a short story about a lighthouse keeper."}]}).encode()
t = time.time()
req = urllib.request.Request(f"http://127.0.0.1:{sys.argv[1]}/v1/chat/completions", body,
                             {"Content-Type": "application/json"})
r = json.load(urllib.request.urlopen(req))
print(r["usage"]["completion_tokens"] / (time.time() - t))
PY
}
idle=$(chat)
start=$(date +%s.%N)
"$BIN" ingest --server "$base" "$slice" > /dev/null 2>&1 &
ingest=$!
sleep 5
busy1=$(chat)
sleep 5
busy2=$(chat)
wait $ingest
end=$(date +%s.%N)
python3 - "$OUT/mixed_load.json" "$idle" "$busy1" "$busy2" "$start" "$end" <<'PY'
import json, sys
out, idle, b1, b2, start, end = sys.argv[1:]
r = {"chat_idle_tokens_per_s": float(idle), "chat_during_ingestion_tokens_per_s": [float(b1), float(b2)],
     "ingestion_seconds": float(end) - float(start), "files": 30}
json.dump(r, open(out, "w"), indent=2)
print(f"mixed load: chat {r['chat_idle_tokens_per_s']:.1f} tok/s idle, "
      f"{float(b1):.1f} / {float(b2):.1f} tok/s while 30 PDFs are ingested (in {r['ingestion_seconds']:.1f} s)")
PY
