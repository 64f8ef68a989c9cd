#!/usr/bin/env python3
"""Peer of bench/qa/run.py: llama.cpp (llama-cpp-python) answers every question given its gold passage as the
single source, with the same GGUF files as docpipe, greedy, max_tokens 80, and docpipe's grounded prompt
(src/app/chat/grounded.rs: the INSTRUCTIONS as the system message, then "Sources:\n\n[1] (file, location)\n
text\n\nQuestion: ...\n\n" and the family's reminder). Scored exactly like run.py. This is an upper bound on what the model can do when
retrieval is perfect: docpipe's answers come from the sources its own retrieval chose.

  $HOME/.cache/docpipe/bench/venv-llama/bin/python bench/qa/peer_llama.py --qa target/bench/qa.json \
      --models models --out target/bench/qa-peer.json
"""
import argparse
import glob
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import answer_ok, summarise, print_table  # noqa: E402

from llama_cpp import Llama  # noqa: E402

# Copied from src/app/chat/grounded.rs (`instructions` and `reminder`, style Cited): both local models are
# of the Qwen or SmolLM family, which get their own wording.
INSTRUCTIONS = ("You answer questions about the user's documents. Use only the numbered sources. "
                "Write the answer as a short sentence that states the fact in words, then the number of its "
                "source in square brackets. For example, if source [2] says how long a bridge is and the "
                "question asks it, answer like this: The bridge is 120 metres long [2]. "
                "If the sources do not contain the answer, say that you do not know.")
REMINDER = {"qwen": "Answer in a full sentence with the fact in words, then cite it like [1].",
            "smollm": "Answer in one sentence and cite the source like [1]."}

# Model id in docpipe -> GGUF under the models folder.
GGUF = {"qwen2.5-coder-0.5b-instruct": "qwen2.5-coder-0.5b-instruct/*.gguf",
        "smollm2-135m-instruct": "smollm2-135m-instruct/*.gguf"}


def clock(secs):
    s = int(round(max(0.0, secs)))
    return f"{s // 60}:{s % 60:02d}"


def location_label(loc):
    """Python copy of grounded.rs location_label."""
    if not isinstance(loc, dict):
        return ""
    t = loc.get("type")

    def span(what, a, b):
        return f"{what} {a}" if a == b else f"{what}s {a}-{b}"
    if t == "pages":
        return span("page", loc["from"], loc["to"])
    if t == "slides":
        return span("slide", loc["from"], loc["to"])
    if t == "cells":
        return f"{loc['sheet']}!{loc['range']}"
    if t == "section":
        return " > ".join(loc.get("heading_path") or [])
    if t == "lines":
        return span("line", loc["start"], loc["end"])
    if t == "time":
        return f"{clock(loc['start'])}-{clock(loc['end'])}"
    if t == "image":
        return "image"
    return ""


def prompt(model, question, filename, gold):
    label = location_label(gold.get("location"))
    place = f"{filename}, {label}" if label else filename
    block = f"[1] ({place})\n{gold['text'].strip()}\n"
    return [{"role": "system", "content": INSTRUCTIONS},
            {"role": "user", "content": f"Sources:\n\n{block}\nQuestion: {question.strip()}\n\n"
                                        f"{REMINDER['qwen' if 'qwen' in model else 'smollm']}"}]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--qa", default="target/bench/qa.json", help="run.py's output (questions and gold passages)")
    ap.add_argument("--models", default=os.environ.get("DOCPIPE_MODELS_DIR", "models"))
    ap.add_argument("--out", default="target/bench/qa-peer.json")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=80)
    ap.add_argument("--n-batch", type=int, default=512,
                    help="prompt tokens per llama.cpp batch; 1 feeds the prompt token by token, the path that "
                         "works where its native build crashes in batched prompt evaluation (AVX-512 + AMX)")
    a = ap.parse_args()
    qa = json.load(open(a.qa))
    rows, used = [], {}
    for model, pattern in GGUF.items():
        paths = sorted(glob.glob(os.path.join(a.models, pattern)))
        if not paths:
            print(f"no GGUF for {model} under {a.models}", file=sys.stderr)
            continue
        used[model] = os.path.basename(paths[0])
        llm = Llama(model_path=paths[0], n_ctx=4096, n_threads=a.threads, n_threads_batch=a.threads,
                    n_batch=a.n_batch, verbose=False)
        for q in qa["questions"]:
            gold = qa["gold"].get(q["id"])
            if not gold:
                rows.append({"id": q["id"], "category": q["category"], "model": model, "answer": "",
                             "answer_ok": False, "evidence_ok": False, "ttft_s": None, "error": "no gold passage"})
                continue
            llm.reset()
            t0 = time.perf_counter()
            ttft, parts = None, []
            for chunk in llm.create_chat_completion(messages=prompt(model, q["question"], os.path.basename(q["file"]), gold),
                                                    max_tokens=a.max_tokens, temperature=0.0, stream=True):
                piece = chunk["choices"][0]["delta"].get("content")
                if piece:
                    if ttft is None:
                        ttft = time.perf_counter() - t0
                    parts.append(piece)
            answer = "".join(parts)
            ok = answer_ok(answer, q["answers"])
            rows.append({"id": q["id"], "category": q["category"], "model": model, "answer": answer,
                         "answer_ok": ok, "evidence_ok": True, "ttft_s": ttft, "error": None,
                         "gold_kind": gold["kind"]})
            print(f"{q['id']:<14} {model[:12]:<12} {'OK ' if ok else 'no '} {ttft or 0:5.2f}s {answer[:90]!r}",
                  file=sys.stderr)
        del llm
    summary = summarise(rows)
    json.dump({"peer": "llama-cpp-python given the gold passage", "threads": a.threads, "n_batch": a.n_batch, "gguf": used,
               "max_tokens": a.max_tokens, "summary": summary, "results": rows},
              open(a.out, "w"), indent=1, ensure_ascii=False)
    print_table(summary, "llama.cpp given the gold passage (evidence column is 1.00 by construction)")
    print(f"\nwritten to {a.out}")


if __name__ == "__main__":
    main()
