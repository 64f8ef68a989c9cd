#!/usr/bin/env bash
# whisper-rs-sys builds whisper.cpp with CMake once and never reruns when the GGML_* settings in
# .cargo/config.toml change, so a kept build folder (CI keeps one) would go on linking the old build.
# Called by `make build`: when the CMake cache of the kept build disagrees with a setting, drop that build.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}
caches=$(ls "$target"/release/build/whisper-rs-sys-*/out/build/CMakeCache.txt 2>/dev/null || true)
[ -n "$caches" ] || exit 0
stale=0
while read -r key value; do
  for cache in $caches; do
    grep -q "^$key:BOOL=$value\$" "$cache" || stale=1
  done
done < <(sed -n 's/^\(GGML_[A-Z0-9_]*\) *= *"\([A-Z]*\)".*/\1 \2/p' .cargo/config.toml)
if [ $stale = 1 ]; then
  echo "whisper.cpp was built with other GGML settings than .cargo/config.toml: rebuilding it"
  cargo clean --release -p whisper-rs-sys
fi
