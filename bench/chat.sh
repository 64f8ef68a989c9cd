#!/usr/bin/env bash
# `make bench-chat`: local chat speed (prompt processing of 300 tokens, decoding of 128, time to first token,
# 4 concurrent clients) at 2 threads for each local model, and llama.cpp (llama-cpp-python, venv from
# `make bench-deps-chat-engine`) on the same GGUF files and workload in the same run, with the ratios.
# JSON: target/bench/chat.json (docpipe, peer and ratios).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${CARGO_TARGET_DIR:-target}/release/docpipe
OUT=target/bench
BENCH_CACHE=${BENCH_CACHE:-$HOME/.cache/docpipe/bench}
MODELS=${DOCPIPE_MODELS_DIR:-models}
THREADS=${CHAT_BENCH_THREADS:-2}
mkdir -p "$OUT/chat-workload"
declare -A GGUF=(
  [smollm2]="$MODELS/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf"
  [qwen2.5-coder]="$MODELS/qwen2.5-coder-0.5b-instruct/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
)
have_peer=0
[ -x "$BENCH_CACHE/venv-llama/bin/python" ] && have_peer=1
[ $have_peer = 1 ] || echo "llama-cpp-python venv missing (make bench-deps-chat-engine): no peer figures" >&2
# Each model on both sides back to back, so a shared machine's load hits both alike.
for key in smollm2 qwen2.5-coder; do
  "$BIN" bench chat --models "$key" --threads "$THREADS" \
    --out "$OUT/chat-docpipe-$key.json" --workload-dir "$OUT/chat-workload" > /dev/null
  if [ $have_peer = 1 ]; then
    "$BENCH_CACHE/venv-llama/bin/python" bench/llama_peer.py "$MODELS" "$OUT/chat-workload" \
      "$OUT/chat-llama-$key.json" "$key=${GGUF[$key]}" 2>/dev/null
  fi
done
python3 - "$OUT" <<'PY'
import glob, json, os, sys
out = sys.argv[1]
def merge(prefix):
    parts = [json.load(open(f"{out}/{prefix}-{k}.json")) for k in ("smollm2", "qwen2.5-coder")
             if os.path.exists(f"{out}/{prefix}-{k}.json")]
    if not parts:
        return None
    merged = dict(parts[0])
    merged["models"] = [m for p in parts for m in p["models"]]
    return merged
json.dump(merge("chat-docpipe"), open(f"{out}/chat-docpipe.json", "w"), indent=2)
peer = merge("chat-llama")
if peer:
    json.dump(peer, open(f"{out}/chat-llama.json", "w"), indent=2)
elif os.path.exists(f"{out}/chat-llama.json"):
    os.remove(f"{out}/chat-llama.json")
PY
python3 - "$OUT/chat-docpipe.json" "$OUT/chat-llama.json" "$OUT/chat.json" <<'PY'
import json, os, sys
ours = json.load(open(sys.argv[1]))
peer = json.load(open(sys.argv[2])) if os.path.exists(sys.argv[2]) else None
report = {"threads": ours["threads"], "prompt_tokens": ours["prompt_tokens"],
          "decode_tokens": ours["decode_tokens"], "docpipe": ours, "peer": peer, "ratios": {}}
for i, m in enumerate(ours["models"]):
    p = peer["models"][i] if peer else None
    r = {}
    if p:
        r = {"pp": m["pp_tokens_per_s"] / p["pp_tokens_per_s"],
             "decode": m["decode_tokens_per_s"] / p["decode_tokens_per_s"],
             "ttft": m["ttft_ms"] / p["ttft_ms"],
             "concurrent": m["concurrent"]["tokens_per_s"] / p["concurrent"]["tokens_per_s"]}
        report["ratios"][m["id"]] = r
    vs = lambda key, unit, get: (f"{get(m):.1f}{unit}" + (f" vs llama.cpp {get(p):.1f}{unit} ({r[key]:.2f}x)" if p else ""))
    print(f"chat {m['id']} ({ours['threads']} threads): pp {vs('pp', ' tok/s', lambda x: x['pp_tokens_per_s'])}; "
          f"decode {vs('decode', ' tok/s', lambda x: x['decode_tokens_per_s'])}; "
          f"TTFT {vs('ttft', ' ms', lambda x: x['ttft_ms'])}; "
          f"{m['concurrent']['clients']} clients {vs('concurrent', ' tok/s', lambda x: x['concurrent']['tokens_per_s'])}")
json.dump(report, open(sys.argv[3], "w"), indent=2)
PY
