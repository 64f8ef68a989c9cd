"""llama.cpp (llama-cpp-python) on the same GGUF files and the same workload as `docpipe bench chat`:
prompt processing of the same 300 token ids, 128 greedy decoding steps (EOS ignored), time to first token of
the same chat request, and the same concurrent clients served one after the other by one Llama object (as
llama-cpp-python serves them). Usage: llama_peer.py MODELS_DIR WORKLOAD_DIR OUT.json KEY=GGUF_PATH..."""
import json
import statistics
import sys
import threading
import time

import numpy as np
from llama_cpp import Llama

models_dir, workload_dir, out = sys.argv[1:4]
pairs = [a.split("=", 1) for a in sys.argv[4:]]
req = json.load(open(f"{workload_dir}/chat-requests.json"))
threads, rounds = req["threads"], req["rounds"]
decode_tokens = req["decode_tokens"]
results = []
for key, path in pairs:
    prompt = json.load(open(f"{workload_dir}/{key}-prompt.json"))
    t0 = time.perf_counter()
    llm = Llama(model_path=path, n_ctx=2048, n_batch=512, n_ubatch=512, n_threads=threads,
                n_threads_batch=threads, verbose=False)
    llm.eval(prompt[:8])
    load = time.perf_counter() - t0
    pp, dec = [], []
    for _ in range(rounds):
        llm.reset()
        t = time.perf_counter()
        llm.eval(prompt)
        pp.append(len(prompt) / (time.perf_counter() - t))
        t = time.perf_counter()
        for _ in range(decode_tokens):
            token = int(np.argmax(llm.scores[llm.n_tokens - 1]))
            llm.eval([token])
        dec.append(decode_tokens / (time.perf_counter() - t))
    ttft = []
    for _ in range(rounds):
        llm.reset()
        t = time.perf_counter()
        for chunk in llm.create_chat_completion(messages=req["ttft"], max_tokens=8, temperature=0,
                                                stream=True):
            if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                break
        ttft.append((time.perf_counter() - t) * 1000)
    lock = threading.Lock()
    counts = []

    def client(messages):
        with lock:  # one Llama object serves one request at a time
            r = llm.create_chat_completion(messages=messages, max_tokens=decode_tokens, temperature=0)
        counts.append(r["usage"]["completion_tokens"])

    t = time.perf_counter()
    workers = [threading.Thread(target=client, args=(m,)) for m in req["clients"]]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    secs = time.perf_counter() - t
    results.append({
        "key": key, "file": path.rsplit("/", 1)[-1], "load_seconds": load,
        "pp_tokens_per_s": statistics.median(pp), "decode_tokens_per_s": statistics.median(dec),
        "ttft_ms": statistics.median(ttft),
        "concurrent": {"clients": len(counts), "completion_tokens": sum(counts), "seconds": secs,
                       "tokens_per_s": sum(counts) / secs},
    })
    del llm
import llama_cpp
json.dump({"peer": f"llama-cpp-python {llama_cpp.__version__}", "threads": threads, "models": results},
          open(out, "w"), indent=2)
