#!/usr/bin/env python3
"""Peer of bench_tokenizer: the `tokenizers` package encoding the same text
file, split into the same lines, on one core (RAYON_NUM_THREADS=1), with
encode_batch (no per-line Python call overhead) and no special tokens added.
Prints one JSON line like bench_tokenizer.

usage:
  tokenize_hf.py <tokenizer.json[.gz]> <text file> [--min-seconds S]
  tokenize_hf.py --make-text <out file>
      writes the benchmark text from the repository: README and docs
      (English), the C sources (code), the tokenizer test corpus (many
      scripts, emoji) and the example data set (JSON lines)
"""
import glob
import gzip
import json
import os
import sys
import time

os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def make_text(out):
    import base64
    parts = []
    files = sorted(glob.glob(os.path.join(ROOT, "*.md")) + glob.glob(os.path.join(ROOT, "docs", "*.md")))
    files += sorted(f for f in glob.glob(os.path.join(ROOT, "src", "**", "*.[ch]"), recursive=True)
                    if not f.endswith("unicode_tables.c"))
    files += sorted(glob.glob(os.path.join(ROOT, "examples", "data", "*.jsonl")))
    for f in files:
        with open(f, "rb") as fh:
            parts.append(fh.read())
    corpus = json.load(open(os.path.join(ROOT, "tests", "ref", "tok", "corpus.json")))["texts_b64"]
    parts.append(b"\n".join(base64.b64decode(c) for c in corpus).decode("utf-8", "replace").encode())
    with open(out, "wb") as fh:
        fh.write(b"\n".join(parts))


def main(argv):
    if len(argv) == 3 and argv[1] == "--make-text":
        make_text(argv[2])
        return 0
    if len(argv) < 3:
        print(__doc__)
        return 2
    from tokenizers import Tokenizer
    min_s = float(argv[argv.index("--min-seconds") + 1]) if "--min-seconds" in argv else 3.0
    path = argv[1]
    text = gzip.open(path).read().decode() if path.endswith(".gz") else open(path, encoding="utf-8").read()
    tk = Tokenizer.from_str(text)
    raw = open(argv[2], "rb").read()
    # lines as bench_tokenizer cuts them: at '\n' only, keeping it
    lines = [ln + "\n" for ln in raw.decode("utf-8", "replace").split("\n")]
    lines[-1] = lines[-1][:-1]
    if not lines[-1]:
        lines.pop()
    times, tokens, t0 = [], 0, time.perf_counter()
    while len(times) < 3 or time.perf_counter() - t0 < min_s:
        t = time.perf_counter()
        enc = tk.encode_batch(lines, add_special_tokens=False)
        times.append(time.perf_counter() - t)
        tokens = sum(len(e.ids) for e in enc)
    times.sort()
    med = times[len(times) // 2]
    print(json.dumps({"bench": "tokenizer_encode", "impl": "tokenizers", "version": __import__("tokenizers").__version__,
                      "tokenizer": path, "bytes": len(raw), "lines": len(lines), "tokens": tokens,
                      "passes": len(times), "best_s": round(times[0], 4), "median_s": round(med, 4),
                      "mb_per_s": round(len(raw) / med / 1e6, 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
