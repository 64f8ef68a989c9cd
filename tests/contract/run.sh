#!/usr/bin/env bash
# The contract test: schemathesis (`--checks all`) against the real server, started here on a free port with
# a temporary data directory and an admin key (so the auth checks have something to check), and a rate limit
# high enough never to refuse (so the X-RateLimit-* headers are there to check). Fails on any failure.
#   tests/contract/run.sh [extra schemathesis args]      (needs the release binary and .venv-test)
# Bounds, so it stays within a few minutes on 2 cores: CONTRACT_EXAMPLES examples per operation (default 30),
# chat operations fewer (tests/contract/schemathesis.toml), generated `max_tokens` clamped by hooks.py.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${BIN:-${CARGO_TARGET_DIR:-$root/target}/release/docpipe}
st=${SCHEMATHESIS:-$root/.venv-test/bin/schemathesis}
examples=${CONTRACT_EXAMPLES:-30}
data=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
key="dpk_contract_$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
log="$data/server.log"
DOCPIPE_DATA_DIR="$data" DOCPIPE_HOST=127.0.0.1 DOCPIPE_PORT="$port" DOCPIPE_ADMIN_KEY="$key" \
  RATE_LIMIT_REQUESTS=1000000 RATE_LIMIT_WINDOW=60 LOG_LEVEL=warn "$bin" serve >"$log" 2>&1 &
server=$!
cleanup() { kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$data"; }
trap cleanup EXIT
for _ in $(seq 1 240); do
  curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
  kill -0 "$server" 2>/dev/null || { echo "the server did not start:"; tail -20 "$log"; exit 1; }
  sleep 0.5
done
# Run from the temporary directory, so schemathesis' caches and reports never land in the tree.
cd "$data"
started=$(date +%s)
status=0
PYTHONPATH="$root/tests/contract" SCHEMATHESIS_HOOKS=hooks \
  "$st" --config-file "$root/tests/contract/schemathesis.toml" run "http://127.0.0.1:$port/openapi.json" \
  --checks all --max-examples "$examples" --seed "${CONTRACT_SEED:-1}" \
  --header "X-API-Key: $key" --request-timeout 120 --generation-database none --no-color "$@" || status=$?
echo "contract: schemathesis finished in $(( $(date +%s) - started )) s"
exit $status
