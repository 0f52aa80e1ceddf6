#!/usr/bin/env python3
"""Writes the request texts of the load test, one per line (whitespace collapsed).

usage: make_texts.py SHARED_DATA_DIR OUT_DIR [N]
  OUT_DIR/classify.txt: N news titles from FewCLUE TNEWS test_public.json (every 4th, so all 15
                        categories appear), for /v1/classify with the 15 TNEWS labels.
  OUT_DIR/extract.txt:  the first N sentences of CLUENER2020 dev.json, for /v1/extract.
"""
import json
import os
import sys


def clean(text):
    return " ".join(text.split())


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    data, out = sys.argv[1], sys.argv[2]
    n = int(sys.argv[3]) if len(sys.argv) == 4 else 500
    with open(os.path.join(data, "fewclue_tnews", "test_public.json"), encoding="utf-8") as f:
        titles = [clean(json.loads(line)["sentence"]) for line in f if line.strip()]
    with open(os.path.join(data, "cluener2020", "dev.json"), encoding="utf-8") as f:
        sentences = [clean(json.loads(line)["text"]) for line in f if line.strip()]
    for name, texts in (("classify", titles[::4][:n]), ("extract", sentences[:n])):
        texts = [t for t in texts if t]
        with open(os.path.join(out, name + ".txt"), "w", encoding="utf-8") as f:
            f.write("\n".join(texts) + "\n")
        chars = sum(len(t) for t in texts) / len(texts)
        print(f"{name}: {len(texts)} texts, {chars:.1f} characters on average", file=sys.stderr)


if __name__ == "__main__":
    main()
