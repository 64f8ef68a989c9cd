#!/usr/bin/env bash
# `make soak` (also run by `make bench`): a bounded mixed load (uploads, search, embeddings, reads) from
# several clients with API keys of two tenants against a local server with keys and rate limits on (limit
# raised so the load is not refused), then `wrk` (Debian) on /health. JSON under target/bench/.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${CARGO_TARGET_DIR:-target}/release/docpipe
OUT=target/bench
mkdir -p "$OUT"
SOAK_SECONDS=${SOAK_SECONDS:-60}
SOAK_CLIENTS=${SOAK_CLIENTS:-6}
WRK_SECONDS=${WRK_SECONDS:-10}
source bench/server.sh
admin="soak-admin-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
trap stop_server EXIT
start_server DOCPIPE_ADMIN_KEY="$admin" RATE_LIMIT_REQUESTS=1000000

python3 bench/soak/soak.py --server "$base" --pid "$pid" --admin-key "$admin" \
  --clients "$SOAK_CLIENTS" --seconds "$SOAK_SECONDS" --out "$OUT/soak.json" > /dev/null
python3 - "$OUT/soak.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"soak: {r['clients']} clients, {r['seconds']} s: {r['requests']} requests, {r['requests_per_s']} req/s, "
      f"5xx/connection errors {r['server_errors']}, non-2xx {r['errors_by_status']}")
for route, s in r["routes"].items():
    print(f"  {route:>28}: {s['count']:>5} requests, p50 {s['p50_ms']:.1f} ms, p99 {s['p99_ms']:.1f} ms")
m = r["rss_mib"]
print(f"  RSS MiB: before {m['before']}, after {m['after']}, peak {m['peak']}, "
      f"second-half slope {m['second_half_slope_mib_per_min']} MiB/min")
PY

if command -v wrk >/dev/null; then
  wrk -t2 -c64 -d"${WRK_SECONDS}s" --latency "$base/health" > "$OUT/wrk.txt"
  python3 - "$OUT/wrk.txt" "$OUT/wrk.json" <<'PY'
import json, re, sys
text = open(sys.argv[1]).read()
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", text, re.M))
errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
r = {"url": "/health", "threads": 2, "connections": 64, "requests_per_s": rps,
     "p50": lat.get("50"), "p99": lat.get("99"), "non_2xx": int(errors.group(1)) if errors else 0}
json.dump(r, open(sys.argv[2], "w"), indent=2)
print(f"wrk /health: {rps:,.0f} requests/s (p50 {r['p50']}, p99 {r['p99']}, non-2xx {r['non_2xx']})")
PY
else
  echo "wrk not installed (make bench-deps-auth); skipping"
fi
