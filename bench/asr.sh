#!/usr/bin/env bash
# Transcription benchmark (called by bench/run.sh): real-time factor on 2 threads and word error rate on the
# speech fixtures for docpipe (whisper.cpp, f16) at beam 5 and greedy, and faster-whisper (int8, same
# tiny.en CTranslate2 model, venv from `make bench-deps-audio`) in the same run; then peak RSS and RTF for a
# 10-minute file (the fixtures concatenated with sox). JSON: target/bench/asr.json.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${CARGO_TARGET_DIR:-target}/release/docpipe
OUT=target/bench
MODELS=${DOCPIPE_MODELS_DIR:-models}
BENCH_CACHE=${BENCH_CACHE:-$HOME/.cache/docpipe/bench}
THREADS=${ASR_THREADS:-2}
mkdir -p "$OUT"
files=(fixtures/audio/jfk.wav fixtures/audio/lighthouse.wav fixtures/audio/harbor.flac)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$BIN" bench asr --out "$OUT/asr_docpipe.json" --threads "$THREADS" --beams 5,1 "${files[@]}" > /dev/null
peer=""
if [ -x "$BENCH_CACHE/venv-fw/bin/python" ]; then
  "$BENCH_CACHE/venv-fw/bin/python" bench/peers/asr_fw.py "$MODELS/whisper-tiny-en-ct2" \
    "$OUT/asr_faster_whisper.json" "$THREADS" 5,1 "${files[@]}" 2>/dev/null
  peer="$OUT/asr_faster_whisper.json"
fi

# A 10-minute file: the fixtures over and over, as one 16 kHz WAV.
list=()
total=0
while [ "$total" -lt 600 ]; do
  for f in "${files[@]}"; do list+=("$f"); done
  total=$((total + 52))
done
sox "${list[@]}" -r 16000 -c 1 "$tmp/long.wav" trim 0 600
"$BIN" bench asr --out "$OUT/asr_docpipe_long.json" --threads "$THREADS" --beams 5 "$tmp/long.wav" > /dev/null
long_peer=""
if [ -n "$peer" ]; then
  "$BENCH_CACHE/venv-fw/bin/python" bench/peers/asr_fw.py "$MODELS/whisper-tiny-en-ct2" \
    "$OUT/asr_faster_whisper_long.json" "$THREADS" 5 "$tmp/long.wav" 2>/dev/null
  long_peer="$OUT/asr_faster_whisper_long.json"
fi

python3 - "$OUT" "$peer" "$long_peer" <<'PY'
import json, os, re, sys
out, peer, long_peer = sys.argv[1:]
refs = {"jfk.wav": "And so my fellow Americans, ask not what your country can do for you, "
                   "ask what you can do for your country."}
for name in ("lighthouse", "harbor"):
    refs[name + (".wav" if name == "lighthouse" else ".flac")] = open(f"fixtures/audio/{name}.transcript.txt").read()
natural = {"jfk.wav"}

def words(t):
    return [w for w in re.split(r"[^\w']+", t.lower()) if w]

def edits(r, h):
    prev = list(range(len(h) + 1))
    for i, rw in enumerate(r):
        cur = [i + 1] * (len(h) + 1)
        for j, hw in enumerate(h):
            cur[j + 1] = min(prev[j] + (rw != hw), prev[j + 1] + 1, cur[j] + 1)
        prev = cur
    return prev[len(h)]

def summary(report):
    s = {}
    for beam, rtf in report["rtf_by_beam"]:
        rows = [r for r in report["results"] if r["beam_size"] == beam]
        def wer(pick):
            e = n = 0
            for r in rows:
                if pick(r["file"]):
                    ref = words(refs[r["file"]])
                    e += edits(ref, words(r["text"]))
                    n += len(ref)
            return e / n if n else None
        s[f"beam{beam}"] = {"rtf": rtf, "wer_natural": wer(lambda f: f in natural),
                            "wer_synthetic": wer(lambda f: f not in natural)}
    return s

ours = json.load(open(f"{out}/asr_docpipe.json"))
result = {"threads": ours["threads"], "docpipe": summary(ours)}
if peer:
    result["faster_whisper"] = summary(json.load(open(peer)))
    result["rtf_ratio_beam5"] = result["docpipe"]["beam5"]["rtf"] / result["faster_whisper"]["beam5"]["rtf"]
long = json.load(open(f"{out}/asr_docpipe_long.json"))
result["ten_minutes"] = {"docpipe_rtf": long["rtf_by_beam"][0][1], "docpipe_peak_rss_mib": long["peak_rss_mib"]}
if long_peer:
    lp = json.load(open(long_peer))
    result["ten_minutes"].update(faster_whisper_rtf=lp["rtf_by_beam"][0][1], faster_whisper_peak_rss_mib=lp["peak_rss_mib"])
json.dump(result, open(f"{out}/asr.json", "w"), indent=2)

def fmt(x):
    return "n/a" if x is None else f"{100 * x:.1f} %"
for who in ("docpipe", "faster_whisper"):
    for beam, s in result.get(who, {}).items():
        print(f"asr {who:>14} {beam}: RTF {s['rtf']:.3f}, WER natural {fmt(s['wer_natural'])}, "
              f"synthetic {fmt(s['wer_synthetic'])}")
if "rtf_ratio_beam5" in result:
    print(f"asr beam 5 RTF ratio docpipe/faster-whisper: {result['rtf_ratio_beam5']:.2f}")
t = result["ten_minutes"]
print(f"asr 10-minute file: docpipe RTF {t['docpipe_rtf']:.3f}, peak RSS {t['docpipe_peak_rss_mib']:.0f} MiB"
      + (f"; faster-whisper RTF {t['faster_whisper_rtf']:.3f}, peak RSS {t['faster_whisper_peak_rss_mib']:.0f} MiB"
         if "faster_whisper_rtf" in t else ""))
PY
