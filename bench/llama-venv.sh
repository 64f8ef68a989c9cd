#!/usr/bin/env bash
# Builds the llama.cpp peer (llama-cpp-python, compiled from source by pip) in a venv outside the repo for
# `make bench` (chat and upload-then-ask). Idempotent; several minutes on 2 cores the first time. Built as a user
# who runs `pip install llama-cpp-python` gets it: llama.cpp's default native build (GGML_NATIVE=ON, so AVX-512,
# VNNI and AMX wherever this CPU has them, OpenMP threads), the peer's best build for the machine it runs on.
# The venv records the flags it was built with in $VENV/build-flags.
set -euo pipefail
BENCH_CACHE=${BENCH_CACHE:-$HOME/.cache/docpipe/bench}
VENV=$BENCH_CACHE/venv-llama
LLAMA_CPP_PYTHON=${LLAMA_CPP_PYTHON:-llama-cpp-python==0.3.36}
FLAGS="-DGGML_NATIVE=ON -DLLAMA_CURL=OFF"
if "$VENV/bin/python" -c 'import llama_cpp' 2>/dev/null && [ "$(cat "$VENV/build-flags" 2>/dev/null)" = "$FLAGS" ]; then
  exit 0
fi
rm -rf "$VENV"
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --disable-pip-version-check --upgrade pip
CMAKE_ARGS="$FLAGS" \
  CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-2} \
  "$VENV/bin/pip" install -q --disable-pip-version-check --no-cache-dir "$LLAMA_CPP_PYTHON"
echo "$FLAGS" > "$VENV/build-flags"
"$VENV/bin/python" -c 'import llama_cpp; print("llama-cpp-python", llama_cpp.__version__)'
