"""A webhook receiver for the tests: verifies every delivery with the `standardwebhooks` package (the
Standard Webhooks reference library) and appends one JSON line per request to OUT:
{"verified", "id", "type", "data", "signatures"}. Answers 204 when verified, 400 otherwise.
Usage: webhook_receiver.py PORT SECRET OUT [CERT KEY] (with CERT and KEY it serves https)."""
import json
import ssl
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook

PORT, SECRET, OUT = int(sys.argv[1]), sys.argv[2], sys.argv[3]
hook = Webhook(SECRET)


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        headers = {k.lower(): v for k, v in self.headers.items()}
        record = {"id": headers.get("webhook-id"), "signatures": len(headers.get("webhook-signature", "").split())}
        try:
            event = hook.verify(body, headers)
            record.update(verified=True, type=event["type"], data=event["data"], timestamp=event["timestamp"])
        except Exception as e:  # noqa: BLE001 - any failure to verify is recorded
            record.update(verified=False, error=str(e))
        with open(OUT, "a") as f:
            f.write(json.dumps(record) + "\n")
        self.send_response(204 if record["verified"] else 400)
        self.end_headers()

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
if len(sys.argv) > 5:
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(sys.argv[4], sys.argv[5])
    server.socket = tls.wrap_socket(server.socket, server_side=True)
server.serve_forever()
