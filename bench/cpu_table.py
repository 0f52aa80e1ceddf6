#!/usr/bin/python3
"""Turns the JSON lines of bench/run_cpu_bench.sh into the markdown tables of bench/RESULTS.md:
latency per shape for every engine and dtype, our speed-up over each peer, and where our
resident memory goes (after load and at the end of the run)."""
import json
import sys

SHAPES = ["b1 s16", "b1 s32", "b1 s64", "b1 s128", "b1 s256", "b1 s512", "b32"]
MODELS = {"bert-base": ("bert-base-random", "bert-base"), "bge-small": ("bge-small-zh-v1.5", "bge-small")}


def main(path):
    rows = [json.loads(line) for line in open(path) if line.startswith("{")]
    machine = next((r["machine"] for r in rows if "machine" in r), "?")
    times, extra, memory = {}, {}, {}
    for r in rows:
        model = next((m for m, names in MODELS.items() if r.get("model") in names), None)
        if model is None:
            continue
        if r.get("engine") == "tinybert":
            who = f"tinybert {r['dtype']}"
        elif "peer" in r:
            who = "ONNX Runtime int8"
        else:
            who = f"PyTorch {r['dtype']}"
        if "rss_after_load" in r:
            memory[(model, r["dtype"])] = (r["weight_file_mib"], r["rss_after_load"], r["rss_at_end"])
        for key in ("peak_rss_mib", "rss_after_load_mib", "load_and_first_ms"):  # the best of the rounds
            if key in r:
                slot = extra.setdefault((model, who), {})
                slot[key] = min(slot.get(key, r[key]), r[key])
        if "ms" in r and "shape" in r:
            shape = "b32" if r["shape"].startswith("b32") else r["shape"]
            times[(model, who, shape)] = min(times.get((model, who, shape), r["ms"]), r["ms"])
    print(f"Machine: {machine}; 2 threads; best of each side over the run's alternating rounds.\n")
    for model in MODELS:
        engines = sorted({w for (m, w, _) in times if m == model}, key=lambda w: (not w.startswith("tinybert"), w))
        print(f"### {model} (ms; b32 = 32 sequences of 16..128 tokens: packed for tinybert, padded to 128 for the peers)\n")
        print("| engine | " + " | ".join(SHAPES) + " | RSS after load MiB | peak RSS MiB | load+first ms |")
        print("|---|" + "---:|" * (len(SHAPES) + 3))
        for w in engines:
            cells = [f"{times[(model, w, s)]:.2f}" if (model, w, s) in times else "–" for s in SHAPES]
            e = extra.get((model, w), {})
            print(f"| {w} | " + " | ".join(cells) +
                  f" | {e.get('rss_after_load_mib', '–')} | {e.get('peak_rss_mib', '–')} | {e.get('load_and_first_ms', '–')} |")
        print()
        pairs = [("tinybert f32", "PyTorch fp32+openblas"), ("tinybert bf16", "PyTorch bf16"),
                 ("tinybert int8", "PyTorch int8"), ("tinybert int8", "ONNX Runtime int8")]
        print("| speed-up (peer ms / ours ms) | " + " | ".join(SHAPES) + " |")
        print("|---|" + "---:|" * len(SHAPES))
        for ours, peer in pairs:
            if not any((model, peer, s) in times for s in SHAPES):
                continue
            cells = []
            for s in SHAPES:
                a, b = times.get((model, ours, s)), times.get((model, peer, s))
                cells.append(f"{b / a:.2f}×" if a and b else "–")
            print(f"| {ours} vs {peer} | " + " | ".join(cells) + " |")
        if any(m == model for (m, _) in memory):
            print("\n| tinybert RSS MiB (/proc/self/smaps) | weight file | after load: total = file pages + shared libraries + anonymous"
                  " | end of run (largest batch done): total = file + libraries + anonymous |")
            print("|---|---:|---|---|")
            split = lambda d: f"{d['total']:.0f} = {d['weight_file']:.0f} + {d['libraries']:.0f} + {d['anonymous'] + d['other']:.0f}"
            for (m, dtype), (file_mib, load, end) in sorted(memory.items()):
                if m == model:
                    print(f"| {dtype} | {file_mib:.0f} | {split(load)} | {split(end)} |")
        best_peer_b32 = min((t for (m, w, s), t in times.items() if m == model and s == "b32" and not w.startswith("tinybert")), default=None)
        ours_b32 = times.get((model, "tinybert int8", "b32"))
        if best_peer_b32 and ours_b32:
            print(f"\nPacked b32, tinybert int8 vs the best peer: {best_peer_b32 / ours_b32:.2f}×\n")


if __name__ == "__main__":
    main(sys.argv[1])
