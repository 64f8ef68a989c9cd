#!/usr/bin/env bash
# Batch throughput against the same requests one by one, and interactive chat latency while a batch runs
# (bench/batch.py with the official openai client from .venv-test); JSON to target/bench/batch.json. Then
# document batches against one-by-one uploads of the same real documents (bench/document_batch.py), and
# webhook delivery latency (bench/webhook_latency.py).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release/docpipe}
OUT=target/bench
mkdir -p "$OUT"
source bench/server.sh
trap stop_server EXIT
start_server RATE_LIMIT_REQUESTS=0
BASE=$base .venv-test/bin/python bench/batch.py "$OUT/batch.json"
# Document batches: N real documents handed over one by one (4 at a time) against batches of 100.
stop_server
rm -f "$OUT/document_batch.jsonl"
for mode in single batch; do
  start_server RATE_LIMIT_REQUESTS=0
  BASE=$base MODE=$mode .venv-test/bin/python bench/document_batch.py "$OUT/document_batch.jsonl"
  stop_server
done
# Webhook delivery latency of file.ready events (p50/p99) to a loopback receiver.
start_server RATE_LIMIT_REQUESTS=0 DOCPIPE_WEBHOOK_ALLOW_PRIVATE=127.0.0.0/8
BASE=$base .venv-test/bin/python bench/webhook_latency.py "$OUT/webhook_latency.json"
