"""Webhook delivery latency against a running docpipe (BASE, started with DOCPIPE_WEBHOOK_ALLOW_PRIVATE allowing
127.0.0.0/8): a loopback receiver verifies every delivery with the `standardwebhooks` package and notes when it
arrived; the latency of a `file.ready` event is its arrival minus the event's `timestamp` (written by the outbox
trigger in the transaction that made the file ready). N uploads of small real texts (lines of this machine's
`/usr/share/common-licenses/GPL-3`), one every 100 ms. Appends a JSON record to the path given as the first
argument."""
import json
import os
import statistics
import sys
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests  # in .venv-test (schemathesis uses it)
from standardwebhooks.webhooks import Webhook

BASE, N = os.environ["BASE"], int(os.environ.get("N", "100"))
arrivals = {}


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), None)
    port = server.server_address[1]
    hook = requests.post(f"{BASE}/api/v1/webhooks", json={
        "url": f"http://127.0.0.1:{port}/hook", "events": ["file.ready"]}, timeout=30).json()
    verifier = Webhook(hook["secret"])

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            event = verifier.verify(body, {k.lower(): v for k, v in self.headers.items()})
            arrivals[event["data"]["id"]] = (time.time(), event["timestamp"])
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server.RequestHandlerClass = Handler
    threading.Thread(target=server.serve_forever, daemon=True).start()
    lines = [l for l in open("/usr/share/common-licenses/GPL-3").read().splitlines() if len(l) > 40]
    ids = []
    for i in range(N):
        text = f"{lines[i % len(lines)]} ({i})".encode()
        r = requests.post(f"{BASE}/api/v1/upload", files={"file": (f"line{i}.txt", text)}, timeout=60)
        ids.append(r.json()["id"])
        time.sleep(0.1)
    deadline = time.time() + 120
    while len([i for i in ids if i in arrivals]) < N and time.time() < deadline:
        time.sleep(0.05)
    latencies = []
    for i in ids:
        arrived, stamp = arrivals[i]
        sent = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
        latencies.append((arrived - sent) * 1000)
    latencies.sort()
    record = {"events": N, "p50_ms": round(statistics.median(latencies), 1),
              "p99_ms": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 1),
              "max_ms": round(latencies[-1], 1)}
    print(json.dumps(record))
    with open(sys.argv[1], "w") as f:
        json.dump(record, f)
    server.shutdown()


main()
