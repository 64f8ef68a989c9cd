#!/usr/bin/env bash
# Upload-then-first-token: a 10-page PDF (the first 10 pages of the first corpus manual that has them) is
# uploaded to a fresh server, processed, and asked about with streaming chat; times to ready and to the first
# answer token go to target/bench/chat_files.json. The peer, when its venv exists (`make bench-deps`), is
# pdftotext + llama.cpp (llama-cpp-python) answering the same grounded prompt with the same GGUF.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${CARGO_TARGET_DIR:-target}/release/docpipe
OUT=target/bench
BENCH_CACHE=${BENCH_CACHE:-$HOME/.cache/docpipe/bench}
MODELS=${DOCPIPE_MODELS_DIR:-models}
mkdir -p "$OUT"
corpus=$(bash bench/corpus.sh)
source bench/server.sh
work=$(mktemp -d)
trap 'stop_server; rm -rf "$work"' EXIT
for f in $(ls "$corpus"/*.pdf | sort); do
  n=$(pdfinfo "$f" 2>/dev/null | awk '/^Pages:/ {print $2}')
  if [ "${n:-0}" -ge 10 ]; then src=$f; break; fi
done
pdfseparate -f 1 -l 10 "$src" "$work/p%02d.pdf"
pdfunite "$work"/p*.pdf "$work/ten-pages.pdf"
start_server
python3 bench/chat_files.py --server "$base" --pdf "$work/ten-pages.pdf" \
  --source-name "$(basename "$src")" --out "$OUT/chat_files.json" --prompts "$work/prompts.json"
stop_server
if [ -x "$BENCH_CACHE/venv-llama/bin/python" ] && "$BENCH_CACHE/venv-llama/bin/python" -c 'import llama_cpp' 2>/dev/null; then
  "$BENCH_CACHE/venv-llama/bin/python" bench/peers/chat_files_llama.py --pdf "$work/ten-pages.pdf" \
    --prompts "$work/prompts.json" --models "$MODELS" --out "$OUT/chat_files_llama_cpp.json"
fi
python3 - "$OUT/chat_files.json" "$OUT/chat_files_llama_cpp.json" <<'PY'
import json, os, sys
r = json.load(open(sys.argv[1]))
peer = json.load(open(sys.argv[2]))["runs"] if os.path.exists(sys.argv[2]) else {}
print(f"upload-then-first-token, {r['pages']}-page PDF ({r['source']}): ready after {r['upload_to_ready_s']:.1f} s")
for name, run in r["runs"].items():
    p = peer.get(name)
    vs = (f"; peer pdftotext + llama.cpp {p['upload_to_first_token_s']:.1f} s "
          f"(prefill {p['first_token_s']:.1f} s), ratio {run['upload_to_first_token_s'] / p['upload_to_first_token_s']:.2f}") if p else ""
    print(f"  {name}: model {run['model']}, {run['prompt_tokens']} prompt tokens, first token {run['ready_to_first_token_s']:.1f} s "
          f"after ready, {run['upload_to_first_token_s']:.1f} s after upload{vs}")
PY
