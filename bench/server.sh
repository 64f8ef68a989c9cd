# Sourced by the bench scripts that run a server: expects $BIN (and $corpus for corpus_slice).

# start_server [VAR=value ...]: `docpipe serve` with a fresh data folder on a free local port and the extra
# environment given; returns once /health answers (models loaded). Sets $data, $port, $pid and $base; the server's
# log is "$data.log".
start_server() {
  data=$(mktemp -d)
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  base="http://127.0.0.1:$port"
  env "$@" DOCPIPE_DATA_DIR="$data" DOCPIPE_PORT="$port" DOCPIPE_HOST=127.0.0.1 LOG_LEVEL=warn \
    "$BIN" serve 2>"$data.log" &
  pid=$!
  for _ in $(seq 600); do
    curl -fs "$base/health" >/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "docpipe serve did not come up; the end of its log:" >&2
  tail -n 20 "$data.log" >&2
  return 1
}

# stop_server: ends the server start_server started and removes its data folder and log.
stop_server() {
  if [ -n "${pid:-}" ]; then
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  pid=
  rm -rf "${data:-}" "${data:-}.log"
}

# corpus_slice DIR N: copies the first N corpus PDFs by name into DIR (the ingestion benchmarks' workload).
corpus_slice() {
  ls "$corpus"/*.pdf | sed -n "1,${2}p" | xargs -I{} cp {} "$1/"
}
