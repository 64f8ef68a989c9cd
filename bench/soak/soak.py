#!/usr/bin/env python3
"""Bounded mixed load against a running docpipe: several concurrent clients, each with its tenant's API key,
upload small text files, search, embed, list and read files for a fixed time. Reports requests/s, p50/p99
per route, answers by status, and the server's RSS sampled every second (start, end, peak, and the slope of
a least-squares line over the second half, to see a growth trend).

usage: soak.py --server URL --pid PID --admin-key KEY --out FILE [--clients N] [--seconds S]
"""

import argparse
import json
import random
import threading
import time
import urllib.error
import urllib.request
import uuid

WORDS = ("invoice approval budget tomato garden river mountain compiler kernel network packet latency "
         "contract payment shipping warehouse battery solar turbine protein enzyme galaxy orbit").split()


def request(server, method, path, key, body=None, headers=None, timeout=120):
    h = {"x-api-key": key}
    h.update(headers or {})
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
        h["content-type"] = "application/json"
    req = urllib.request.Request(server + path, data=body, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except Exception:  # connection errors count as status 0
        return 0, b""


def multipart(name, text):
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            f"Content-Type: text/plain\r\n\r\n{text}\r\n--{boundary}--\r\n").encode()
    return body, {"content-type": f"multipart/form-data; boundary={boundary}"}


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def pct(values, p):
    if not values:
        return 0.0
    s = sorted(values)
    return s[min(len(s) - 1, round(p * (len(s) - 1)))] * 1000


def slope(points):
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    den = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / den if den else 0.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--admin-key", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--clients", type=int, default=6)
    ap.add_argument("--seconds", type=float, default=60)
    a = ap.parse_args()
    server = a.server.rstrip("/")

    keys = []
    for i in range(a.clients):
        tenant = f"soak{i % 2}"
        st, body = request(server, "POST", "/api/v1/keys", a.admin_key,
                           {"name": f"soak client {i}", "scopes": ["write"], "tenant": tenant})
        assert st == 201, (st, body)
        keys.append(json.loads(body)["key"])

    lat = {}
    statuses = {}
    lock = threading.Lock()
    stop = time.monotonic() + a.seconds

    def record(route, status, seconds):
        with lock:
            lat.setdefault(route, []).append(seconds)
            statuses.setdefault(route, {}).setdefault(str(status), 0)
            statuses[route][str(status)] += 1

    def client(i):
        rng = random.Random(i)
        key = keys[i]
        own = []
        while time.monotonic() < stop:
            op = rng.choices(["upload", "search", "embed", "list", "get"], weights=[1, 4, 2, 2, 2])[0]
            t0 = time.monotonic()
            if op == "upload":
                text = " ".join(rng.choice(WORDS) for _ in range(80)) + f" {uuid.uuid4()}"
                body, headers = multipart(f"soak-{uuid.uuid4().hex[:8]}.txt", text)
                st, resp = request(server, "POST", "/api/v1/upload", key, body, headers)
                route = "POST /api/v1/upload"
                if st == 201:
                    own.append(json.loads(resp)["id"])
            elif op == "search":
                q = " ".join(rng.sample(WORDS, 3))
                st, _ = request(server, "POST", "/api/v1/search", key, {"query": q, "top_k": 5})
                route = "POST /api/v1/search"
            elif op == "embed":
                st, _ = request(server, "POST", "/v1/embeddings", key,
                                {"model": "all-MiniLM-L6-v2", "input": [" ".join(rng.sample(WORDS, 12))]})
                route = "POST /v1/embeddings"
            elif op == "list":
                st, _ = request(server, "GET", "/api/v1/files?limit=20", key)
                route = "GET /api/v1/files"
            else:
                if not own:
                    continue
                st, _ = request(server, "GET", f"/api/v1/files/{rng.choice(own)}", key)
                route = "GET /api/v1/files/:file_id"
            record(route, st, time.monotonic() - t0)

    rss = []
    t_start = time.monotonic()
    rss_before = rss_kib(a.pid)
    threads = [threading.Thread(target=client, args=(i,)) for i in range(a.clients)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        rss.append((time.monotonic() - t_start, rss_kib(a.pid)))
        time.sleep(1)
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t_start
    rss_after = rss_kib(a.pid)
    second_half = [p for p in rss if p[0] >= elapsed / 2]

    total = sum(len(v) for v in lat.values())
    by_status = {}
    for route in statuses.values():
        for st, n in route.items():
            by_status[st] = by_status.get(st, 0) + n
    report = {
        "clients": a.clients,
        "seconds": round(elapsed, 1),
        "requests": total,
        "requests_per_s": round(total / elapsed, 1),
        "errors_by_status": {k: v for k, v in sorted(by_status.items()) if not k.startswith("2")},
        "server_errors": sum(v for k, v in by_status.items() if k.startswith("5") or k == "0"),
        "routes": {
            route: {
                "count": len(v),
                "p50_ms": round(pct(v, 0.5), 1),
                "p99_ms": round(pct(v, 0.99), 1),
                "statuses": statuses[route],
            }
            for route, v in sorted(lat.items())
        },
        "rss_mib": {
            "before": round(rss_before / 1024, 1),
            "after": round(rss_after / 1024, 1),
            "peak": round(max(r for _, r in rss) / 1024, 1) if rss else None,
            "second_half_slope_mib_per_min": round(slope(second_half) * 60 / 1024, 2),
        },
    }
    with open(a.out, "w") as f:
        json.dump(report, f, indent=2)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
