#!/usr/bin/env python3
"""What a Python call adds to the engine: tinybert.Model.embed against the same tb_embed call timed
in C++ (tinybert._native's time_embed: same process, model, runner path and texts, so the
difference is the binding: argument conversion, GIL release, numpy wrapping, Python frames).

    PYTHONPATH=build/python /usr/bin/python3 bench/bench_python.py [--model M.tbw]
        [--backend int8] [--seconds 5]

Cases: batch 1 at 16 tokens, and 32 texts of 16..128 tokens (bench_cpu's b32 lengths), on
bge-small-zh and again on tests/data/tiny's tiny-bert (whose forward pass is short, so the
overhead stands out of less noise). The target: overhead below 30 us or 5 % of the C++ call,
whichever is larger. C++ and Python calls alternate one by one; the table (markdown, on stdout)
has the medians of each and of the paired differences, with their interquartile range. Without
--model, bge-small-zh-v1.5 is converted from ../shared/models into a temporary file.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import sys
import tempfile
import time
from typing import Dict, List

import tinybert

REPO = pathlib.Path(__file__).resolve().parents[1]
# Common characters, each one token of the bert-base-chinese vocabulary.
CHARS = ("的一是不了人我在有他这中大来上国个到说们为子和你地出道也"
         "时年得就那要下以生会自着去之过家学对可她里后小么心多天而"
         "能好都然没日于起还发成事只作当想看文无开手十用主行方又如"
         "前所本见经头面公同三已老从动两长知民样现分将外但身些与高"
         "意进把法此实回二理美点月明其种声全工己")


def texts_of(model: tinybert.Model, lengths: List[int]) -> List[str]:
    """Texts of exactly these token counts ([CLS] and [SEP] included)."""
    texts = []
    for i, n in enumerate(lengths):
        text = "".join(CHARS[(i * 7 + k) % len(CHARS)] for k in range(n - 2))
        assert len(model.tokenize(text)["input_ids"]) == n, (text, n)
        texts.append(text)
    return texts


def measure(model: tinybert.Model, texts: List[str], seconds: float) -> Dict[str, float]:
    """Alternating single calls, C++ then Python, for about `seconds`: medians of each and of the
    paired differences (neighbouring calls see the same machine, so other load mostly cancels)."""
    embed, time_embed = model.embed, model._native.time_embed
    for _ in range(3):  # warm-up (first-touch, oneDNN kernels)
        embed(texts)
    cpp: List[float] = []
    python: List[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(cpp) < 10:
        cpp.append(time_embed(texts, -1, 1))
        started = time.perf_counter()
        embed(texts)
        python.append(time.perf_counter() - started)
    diffs = sorted((p - c) * 1e6 for p, c in zip(python, cpp))
    return {"cpp": statistics.median(cpp) * 1e6, "python": statistics.median(python) * 1e6,
            "overhead": statistics.median(diffs), "low": diffs[len(diffs) // 4],
            "high": diffs[(3 * len(diffs)) // 4], "pairs": len(diffs)}


def conversion_cost(model: tinybert.Model, texts: List[str]) -> float:
    """us per call of the binding's input side alone: time_embed(texts, -1, 0) converts the texts
    and releases the GIL as embed() does, then runs no forward pass."""
    n = 20000
    started = time.perf_counter()
    for _ in range(n):
        model._native.time_embed(texts, -1, 0)
    return (time.perf_counter() - started) / n * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="a .tbw file (default: bge-small-zh-v1.5 from ../shared)")
    parser.add_argument("--backend", default="int8")
    parser.add_argument("--seconds", type=float, default=5.0, help="per case (default 5)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = args.model
        if path is None:
            shared = pathlib.Path(os.environ.get("TINYBERT_SHARED_DIR", REPO.parent / "shared"))
            path = os.path.join(tmp, "bge-small-zh-v1.5.tbw")
            tinybert.convert(shared / "models" / "bge-small-zh-v1.5", path)
        # The same calls on tests/data/tiny's 2-layer, 32-wide model: the engine's part is small
        # there, so the overhead is measured with far less noise around it.
        tiny = os.path.join(tmp, "tiny-bert.tbw")
        tinybert.convert(REPO / "tests" / "data" / "tiny" / "tiny-bert", tiny)
        model = tinybert.Model(path, backend=args.backend)
        print(f"tinybert {tinybert.__version__}, {model.name}, backend {model.backend}, "
              f"Python {sys.version.split()[0]}, OMP_NUM_THREADS="
              f"{os.environ.get('OMP_NUM_THREADS', 'unset')}, {os.cpu_count()} CPUs\n")
        print("| model | case | tokens | calls | C++ tb_embed | Python Model.embed | "
              "overhead (IQR) | texts to C alone | budget | within |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
        for name, top in ((model.name, 128), ("tiny-bert", 64)):
            m = model if name == model.name else tinybert.Model(tiny, backend=args.backend)
            cases = [("batch 1, 16 tokens", [16]),
                     (f"32 texts, 16..{top} tokens",
                      [round(16 + i * (top - 16) / 31) for i in range(32)])]
            for case, lengths in cases:
                texts = texts_of(m, lengths)
                r = measure(m, texts, args.seconds)
                budget = max(30.0, 0.05 * r["cpp"])
                alone = conversion_cost(m, texts)
                spread = f"({r['low']:.1f}..{r['high']:.1f})"
                print(f"| {name} | {case} | {sum(lengths)} | {r['pairs']} | {r['cpp']:.1f} us | "
                      f"{r['python']:.1f} us | {r['overhead']:.1f} us {spread}, "
                      f"{100 * r['overhead'] / r['cpp']:.2f} % | {alone:.2f} us | "
                      f"{budget:.0f} us | {'yes' if r['overhead'] < budget else 'NO'} |")
            m.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
