"""faster-whisper (CTranslate2, int8) on the same tiny.en model files and audio as `docpipe bench asr`.

Usage: asr_fw.py MODEL_DIR OUT.json THREADS BEAMS FILE...   (BEAMS like "5,1")
Times the whole transcribe call (decode + resample + model), as docpipe's benchmark does.
"""
import json
import os
import resource
import sys
import time

from faster_whisper import WhisperModel

model_dir, out, threads, beams, *files = sys.argv[1:]
model = WhisperModel(model_dir, device="cpu", compute_type="int8", cpu_threads=int(threads), num_workers=1)
# Warm-up, as docpipe warms its engine at start.
list(model.transcribe(files[0], beam_size=1, language="en")[0])
results, rtf_by_beam = [], []
for beam in [int(b) for b in beams.split(",")]:
    secs_all = audio_all = 0.0
    for f in files:
        start = time.perf_counter()
        segments, info = model.transcribe(f, beam_size=beam, language="en", vad_filter=False)
        text = " ".join(s.text.strip() for s in segments)
        secs = time.perf_counter() - start
        secs_all += secs
        audio_all += info.duration
        results.append({"file": os.path.basename(f), "beam_size": beam, "audio_seconds": info.duration,
                        "seconds": secs, "rtf": secs / info.duration, "text": text})
    rtf_by_beam.append([beam, secs_all / audio_all])
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
json.dump({"model": "faster-whisper int8 tiny.en", "threads": int(threads), "results": results,
           "rtf_by_beam": rtf_by_beam, "peak_rss_mib": peak}, open(out, "w"), indent=2)
