"""Document batch figures against a running docpipe (BASE): the time to hand N real documents to the server
and the time until every one is ready, as one-by-one uploads (MODE=single, 4 at a time, as `docpipe ingest`
sent them before) or as document batches of 100 (MODE=batch). The documents are the first N distinct
`/usr/share/doc/*/copyright` files of this machine's Debian packages (real license and provenance texts).
Appends a JSON record to the path given as the first argument."""
import concurrent.futures
import glob
import hashlib
import json
import os
import sys
import time

import requests  # in .venv-test (schemathesis uses it)

BASE, MODE, N = os.environ["BASE"], os.environ["MODE"], int(os.environ.get("N", "300"))
BATCH = 100


def corpus(n):
    seen, out = set(), []
    for path in sorted(glob.glob("/usr/share/doc/*/copyright")):
        data = open(path, "rb").read()
        digest = hashlib.sha256(data).hexdigest()
        if data.strip() and digest not in seen:
            seen.add(digest)
            out.append((path.split("/")[4] + "-copyright.txt", data))
        if len(out) == n:
            break
    return out


def wait_ready(client, ids):
    pending = set(ids)
    while pending:
        for i in list(pending):
            status = client.get(f"{BASE}/api/v1/files/{i}").json()["status"]
            if status in ("ready", "failed"):
                pending.discard(i)
        time.sleep(0.05)


def main():
    docs = corpus(N)
    client = requests.Session()
    start = time.perf_counter()
    if MODE == "single":
        def one(doc):
            r = requests.post(f"{BASE}/api/v1/upload", files={"file": doc}, timeout=600)
            r.raise_for_status()
            return r.json()["id"]
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            ids = list(pool.map(one, docs))
        n_requests = len(docs)
    else:
        ids = []
        for k in range(0, len(docs), BATCH):
            r = client.post(f"{BASE}/api/v1/batches", files=[("file", d) for d in docs[k:k + BATCH]], timeout=600)
            r.raise_for_status()
            ids += [f["file_id"] for f in r.json()["files"] if f["file_id"]]
        n_requests = -(-len(docs) // BATCH)
    accepted = time.perf_counter() - start
    wait_ready(client, ids)
    ready = time.perf_counter() - start
    record = {"mode": MODE, "documents": len(docs), "bytes": sum(len(d) for _, d in docs),
              "requests": n_requests, "accepted_s": round(accepted, 3), "all_ready_s": round(ready, 2),
              "accepted_per_s": round(len(docs) / accepted, 1)}
    print(json.dumps(record))
    with open(sys.argv[1], "a") as f:
        f.write(json.dumps(record) + "\n")


main()
