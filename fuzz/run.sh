#!/usr/bin/env bash
# `make fuzz`: runs every cargo-fuzz target (or those named as arguments) for FUZZ_SECONDS each, one after
# another (one core), each seeded with the fixtures of its formats. Corpora and crashes live outside the
# repo, under $FUZZ_HOME (default ~/.cache/docpipe/fuzz): corpus/TARGET grows across runs, and crashes,
# timeouts and out-of-memory inputs land in artifacts/TARGET. Each target's libFuzzer log is
# artifacts/TARGET/log.txt; a summary line per target is printed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

FUZZ_SECONDS=${FUZZ_SECONDS:-300}
FUZZ_HOME=${FUZZ_HOME:-$HOME/.cache/docpipe/fuzz}
# none: docpipe's own code forbids `unsafe`, and what the targets look for (panics, hangs, runaway memory)
# needs no sanitizer; FUZZ_SANITIZER=address builds with ASan for the dependencies' unsafe code.
FUZZ_SANITIZER=${FUZZ_SANITIZER:-none}
FUZZ_TARGET_DIR=${FUZZ_TARGET_DIR:-$HOME/.cache/docpipe/fuzz/target}
# libFuzzer's own limits: a hang is an input still running well past the targets' 5 s deadline; memory
# as the extraction worker's default cap (1 GiB) plus headroom for the fuzzer.
FUZZ_TIMEOUT=${FUZZ_TIMEOUT:-20}
FUZZ_RSS_MB=${FUZZ_RSS_MB:-2048}

# Fixture extensions per target; keep in step with `TARGETS` in src/fuzzing.rs.
declare -A SEEDS=(
  [pdf]="pdf" [docx]="docx" [pptx]="pptx" [odt]="odt" [xlsx]="xlsx xlsb" [xls]="xls" [ods]="ods"
  [csv]="csv tsv" [html]="html htm"
  [text]="txt md json xml fodt py rs js ts go java c cpp css sh sql yaml toml"
  [image]="png jpg gif bmp webp tiff" [audio]="wav mp3 flac ogg m4a aac" [chunk]="txt md csv py"
  [multipart]="multipart"
)
ORDER=(pdf docx pptx odt xlsx xls ods csv html text image audio chunk multipart)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${ORDER[@]}")

cargo fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz --locked
FUZZ=(cargo +nightly fuzz)
BUILD=(-O -s "$FUZZ_SANITIZER" --target-dir "$FUZZ_TARGET_DIR")
CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-1} "${FUZZ[@]}" build "${BUILD[@]}"

summary=()
for t in "${targets[@]}"; do
  [ -n "${SEEDS[$t]:-}" ] || { echo "unknown fuzz target: $t" >&2; exit 2; }
  corpus=$FUZZ_HOME/corpus/$t
  artifacts=$FUZZ_HOME/artifacts/$t
  mkdir -p "$corpus" "$artifacts"
  for ext in ${SEEDS[$t]}; do
    find fixtures -type f -iname "*.$ext" ! -name '*.expected.*' ! -path 'fixtures/fuzz/*' \
      -exec cp -n {} "$corpus/" \;
  done
  [ -d "fixtures/fuzz/$t" ] && cp -n fixtures/fuzz/"$t"/* "$corpus/" 2>/dev/null || true
  echo "== fuzz $t for ${FUZZ_SECONDS}s (corpus $corpus: $(ls "$corpus" | wc -l) files)"
  # -fork=1 with -ignore_*: one finding does not end the run; every crash, hang and OOM is kept.
  set +e
  "${FUZZ[@]}" run "${BUILD[@]}" "$t" "$corpus" -- \
    -max_total_time="$FUZZ_SECONDS" -timeout="$FUZZ_TIMEOUT" -rss_limit_mb="$FUZZ_RSS_MB" \
    -fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 \
    -artifact_prefix="$artifacts/" >"$artifacts/log.txt" 2>&1
  rc=$?
  set -e
  # Fork mode's status lines start with "#EXECS:".
  execs=$(grep -oE '^#[0-9]+' "$artifacts/log.txt" | tail -1 | tr -d '#' || true)
  found=$(find "$artifacts" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' -o -name 'slow-unit-*' \) | wc -l)
  summary+=("$t: ${FUZZ_SECONDS}s, ${execs:-?} execs, ${found} artifacts in $artifacts (exit $rc)")
done
printf '%s\n' "${summary[@]}"
