#!/usr/bin/env bash
# Builds the llama.cpp peer (llama-cpp-python, compiled from source by pip) in a venv outside the repo for
# `make bench-chat`. Idempotent; several minutes on 2 cores the first time. Built with the same CPU baseline
# as docpipe (x86-64-v3: AVX2/FMA/F16C) and without OpenMP/BLAS, so both sides run the same kind of kernels.
set -euo pipefail
BENCH_CACHE=${BENCH_CACHE:-$HOME/.cache/docpipe/bench}
VENV=$BENCH_CACHE/venv-llama
LLAMA_CPP_PYTHON=${LLAMA_CPP_PYTHON:-llama-cpp-python==0.3.36}
if "$VENV/bin/python" -c 'import llama_cpp' 2>/dev/null; then
  exit 0
fi
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --disable-pip-version-check --upgrade pip
CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_AVX512=OFF -DGGML_OPENMP=OFF -DGGML_BLAS=OFF -DLLAMA_CURL=OFF" \
  CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-2} \
  "$VENV/bin/pip" install -q --disable-pip-version-check --no-cache-dir "$LLAMA_CPP_PYTHON"
"$VENV/bin/python" -c 'import llama_cpp; print("llama-cpp-python", llama_cpp.__version__)'
