"""sentence-transformers (PyTorch, CPU) on the same MiniLM files and sentences as `docpipe bench embed`.

Usage: embed_st.py MODEL_DIR SENTENCES_TXT OUT_JSON
Prints and writes [{"threads", "max_batch", "sentences", "seconds", "sentences_per_sec"}], the median of
3 rounds after a warm-up, for batch 32/256 and 1/2 threads (the same grid as docpipe's report).
"""
import json
import statistics
import sys
import time

import torch
from sentence_transformers import SentenceTransformer, models

ROUNDS = 3


def main() -> None:
    model_dir, sentences_path, out = sys.argv[1:4]
    sentences = [l.rstrip("\n") for l in open(sentences_path, encoding="utf-8") if l.strip()]
    # The files hold a plain BERT checkpoint; build the sentence-transformers stack explicitly:
    # 256-token window, mean pooling, L2 normalisation (what docpipe computes).
    word = models.Transformer(model_dir, max_seq_length=256)
    pooling = models.Pooling(word.get_word_embedding_dimension(), pooling_mode="mean")
    model = SentenceTransformer(modules=[word, pooling, models.Normalize()], device="cpu")
    results = []
    for batch in (32, 256):
        for threads in (1, 2):
            torch.set_num_threads(threads)
            model.encode(sentences[:batch], batch_size=batch)
            times = []
            for _ in range(ROUNDS):
                t = time.perf_counter()
                model.encode(sentences, batch_size=batch)
                times.append(time.perf_counter() - t)
            secs = statistics.median(times)
            results.append({"threads": threads, "max_batch": batch, "sentences": len(sentences),
                            "seconds": secs, "sentences_per_sec": len(sentences) / secs})
            print(f"sentence-transformers batch {batch:>3} threads {threads}: "
                  f"{len(sentences) / secs:.0f} sentences/s", file=sys.stderr)
    json.dump({"peer": "sentence-transformers", "version": __import__("sentence_transformers").__version__,
               "torch": torch.__version__, "results": results}, open(out, "w"), indent=2)


if __name__ == "__main__":
    main()
