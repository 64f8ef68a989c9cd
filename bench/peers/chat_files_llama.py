#!/usr/bin/env python3
"""Peer of bench/chat_files.py: pdftotext extracts the same 10-page PDF, then llama.cpp (llama-cpp-python,
2 threads) answers the same grounded prompt with the same GGUF; times extraction + model load aside,
extraction + prefill to the first token."""
import argparse, glob, json, os, statistics, subprocess, time

from llama_cpp import Llama

# The GGUF of the model that answered in docpipe's run, by a word of its id.
GGUF = {"smollm": "smollm2-135m-instruct/*.gguf", "qwen": "qwen2.5-coder-0.5b-instruct/*.gguf"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pdf", required=True)
    ap.add_argument("--prompts", required=True)
    ap.add_argument("--models", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2)
    a = ap.parse_args()
    start = time.perf_counter()
    subprocess.run(["pdftotext", "-layout", a.pdf, "-"], check=True, capture_output=True)
    extract = time.perf_counter() - start
    prompts = json.load(open(a.prompts))["prompts"]
    runs = {}
    for name, p in prompts.items():
        pattern = next((g for key, g in GGUF.items() if key in p["model"].lower()), None)
        paths = glob.glob(os.path.join(a.models, pattern)) if pattern else []
        if not paths:
            continue
        llm = Llama(model_path=paths[0], n_ctx=4096, n_threads=a.threads, n_threads_batch=a.threads, verbose=False)
        firsts = []
        for _ in range(a.repeat):
            llm.reset()
            t = time.perf_counter()
            for chunk in llm.create_chat_completion(messages=p["messages"], max_tokens=p["max_tokens"],
                                                    temperature=0.0, stream=True):
                if chunk["choices"][0]["delta"].get("content"):
                    firsts.append(time.perf_counter() - t)
                    break
        first = statistics.median(firsts)
        runs[name] = {"gguf": os.path.basename(paths[0]), "extract_s": extract, "first_token_s": first,
                      "upload_to_first_token_s": extract + first}
    json.dump({"peer": "pdftotext + llama-cpp-python", "threads": a.threads, "runs": runs}, open(a.out, "w"), indent=2)


if __name__ == "__main__":
    main()
