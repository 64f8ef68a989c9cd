#!/usr/bin/env bash
# Upload-then-ask benchmark (bench/qa): a fresh server, every document of bench/qa/questions.jsonl uploaded,
# every question asked with each model (run.py), then llama.cpp given the gold passage (peer_llama.py) when
# its venv exists (`bash bench/llama-venv.sh`), then both side by side. JSON in target/bench/qa*.json.
#   BIN=/path/to/docpipe bash bench/qa/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release/docpipe}
OUT=target/bench
BENCH_CACHE=${BENCH_CACHE:-$HOME/.cache/docpipe/bench}
MODELS=${DOCPIPE_MODELS_DIR:-models}
mkdir -p "$OUT"
source bench/server.sh
trap 'stop_server' EXIT
start_server DOCPIPE_MODELS_DIR="$MODELS" RATE_LIMIT_REQUESTS=0
python3 bench/qa/run.py --server "$base" --out "$OUT/qa.json" 2> "$OUT/qa.log"
stop_server
if [ -x "$BENCH_CACHE/venv-llama/bin/python" ] && "$BENCH_CACHE/venv-llama/bin/python" -c 'import llama_cpp' 2>/dev/null; then
  rm -f "$OUT/qa-peer.json"
  rc=0
  "$BENCH_CACHE/venv-llama/bin/python" bench/qa/peer_llama.py --qa "$OUT/qa.json" --models "$MODELS" \
    --out "$OUT/qa-peer.json" 2> "$OUT/qa-peer.log" || rc=$?
  # llama.cpp's native build can crash in batched prompt evaluation on some CPUs (seen with AVX-512 + AMX):
  # say so and compare what ran.
  # Then the peer feeds prompts token by token (n_batch 1): the answers are the model's all the same, only
  # its time to first token is no longer its best, and the JSON says which path ran.
  if [ "$rc" != 0 ]; then
    echo "llama.cpp peer exited with status $rc ($( [ "$rc" -gt 128 ] && kill -l $((rc - 128)) )) in batched" \
      "prompt evaluation, see $OUT/qa-peer.log; running it again with prompts fed token by token (n_batch 1)" \
      | tee "$OUT/qa-peer.crashed"
    rc=0
    "$BENCH_CACHE/venv-llama/bin/python" bench/qa/peer_llama.py --qa "$OUT/qa.json" --models "$MODELS" \
      --out "$OUT/qa-peer.json" --n-batch 1 2> "$OUT/qa-peer.log" || rc=$?
    [ "$rc" = 0 ] || echo "llama.cpp peer failed again (status $rc); no peer figures in this run"
  fi
fi
python3 - "$OUT/qa.json" "$OUT/qa-peer.json" <<'PY'
import json, os, sys
ours = json.load(open(sys.argv[1]))["summary"]
peer = json.load(open(sys.argv[2]))["summary"] if os.path.exists(sys.argv[2]) else {}
cats = sorted({c for s in ours.values() for c in s["by_category"]})
print("\nanswer accuracy: docpipe (own retrieval) | llama.cpp given the gold passage, same GGUF and prompt")
cols = [(m, "docpipe") for m in ours] + [(m, "peer") for m in peer]
print("category".ljust(12) + "".join(f"{(w + ' ' + m.split('-')[0])[:20]:>21}" for m, w in cols))
def cell(s, c):
    x = s["by_category"].get(c) if c else s
    return f"{x['answer_acc']:.2f}" if x else "-"
for c in cats + [None]:
    print((c or "ALL").ljust(12) + "".join(f"{cell((ours if w == 'docpipe' else peer)[m], c):>21}" for m, w in cols))
print("evidence".ljust(12) + "".join(f"{ours[m]['evidence_acc']:>21.2f}" for m in ours))
print("TTFT med s".ljust(12) + "".join(
    f"{(ours if w == 'docpipe' else peer)[m]['ttft_median_s'] or 0:>21.2f}" for m, w in cols))
PY
