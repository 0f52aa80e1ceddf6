#!/usr/bin/env python3
"""Markdown tables from a bench/gpu/run_gpu_bench.sh JSON-lines file: per model, latency (median
ms) and throughput of tinybert-cuda (f16/bf16/int8, graph and eager) beside PyTorch fp16 (eager
attention and SDPA), the speed-up over the faster PyTorch, and GPU memory."""
import json
import sys


def main(path):
    rows = [json.loads(line) for line in open(path) if line.startswith("{")]
    machine = next((r["machine"] for r in rows if "machine" in r), "?")
    timings = [r for r in rows if "ms" in r]
    columns = []
    for r in timings:
        key = (r["engine"], r["dtype"], r.get("mode", "eager"))
        if key not in columns:
            columns.append(key)
    models = []
    for r in timings:
        if r["model"] not in models:
            models.append(r["model"])
    print(f"GPU: {machine}. Command: `bash bench/gpu/run_gpu_bench.sh`. Median ms per request "
          "(upload, forward, CLS vector back), best of 3 passes; b128 rows also give sequences/s and TFLOP/s.\n")
    for model in models:
        shapes = []
        for r in timings:
            if r["model"] == model and r["shape"] not in shapes:
                shapes.append(r["shape"])
        cols = [c for c in columns if any(r["model"] == model and (r["engine"], r["dtype"], r.get("mode", "eager")) == c
                                          for r in timings)]
        print(f"### {model}\n")
        print("| shape | " + " | ".join(f"{e} {d} {m}" for e, d, m in cols) + " | speed-up vs best torch |")
        print("|---" * (len(cols) + 2) + "|")
        for shape in shapes:
            cells, ours, torch_best = [], None, None
            for c in cols:
                hit = [r for r in timings if r["model"] == model and r["shape"] == shape
                       and (r["engine"], r["dtype"], r.get("mode", "eager")) == c]
                if not hit:
                    cells.append("–")
                    continue
                r = hit[0]
                cell = f"{r['ms']:.3f}"
                if shape.startswith("b128"):
                    cell += f" ({r['seq_per_s']:.0f}/s, {r['tflops']:.0f} TF)"
                cells.append(cell)
                if r["engine"].startswith("torch"):
                    torch_best = min(torch_best or 1e30, r["ms"])
                elif r["dtype"] == "f16":
                    ours = min(ours or 1e30, r["ms"])
            speedup = f"{torch_best / ours:.2f}x (f16)" if ours and torch_best else "–"
            print(f"| {shape} | " + " | ".join(cells) + f" | {speedup} |")
        print()
    memory = [r for r in rows if "weight_mib" in r]
    if memory:
        print("### GPU memory (MiB)\n")
        print("| engine | model | dtype | weights | activations + scratch (ours) / peak allocated (torch) | device used |")
        print("|---|---|---|---|---|---|")
        for r in memory:
            if r["engine"].startswith("tinybert"):
                extra = r["activation_mib"] + r["scratch_mib"]
                print(f"| {r['engine']} | {r['model']} | {r['dtype']} | {r['weight_mib']:.1f} | {extra:.1f} "
                      f"(target ≤ 300) | {r['device_used_mib'] - r['context_mib']:.1f} above context |")
            else:
                print(f"| {r['engine']} | {r['model']} | {r['dtype']} | {r['weight_mib']:.1f} | "
                      f"{r['peak_allocated_mib']:.1f} | {r['peak_reserved_mib']:.1f} reserved |")
    for r in rows:
        if "note" in r:
            print(f"\nNote ({r['engine']}{' ' + r['model'] if 'model' in r else ''}): {r['note']}")


if __name__ == "__main__":
    main(sys.argv[1])
