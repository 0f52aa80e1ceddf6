#!/usr/bin/env python3
"""PyTorch side of the GPU benchmark (bench/gpu/run_gpu_bench.sh): HF transformers BertModel in
fp16 with eager attention and with SDPA, random weights in the bert-base-chinese and bge-small-zh
shapes, the same requests as bench_gpu (batch 1 at seq 16..512, batch 128 at seq 128, no padding),
each timed as upload + forward + CLS vector back on the host. Median of --runs, best of --passes.
Prints JSON lines in bench_gpu's format.

PyTorch has no int8 GPU inference path for BERT (its dynamic quantisation is CPU-only), so int8
is ours alone; the table compares it with PyTorch fp16.
"""
import argparse
import json
import statistics
import time

import torch
import transformers
from transformers import BertConfig, BertModel

SHAPES = {
    "bert-base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
    "bge-small": dict(hidden_size=512, num_hidden_layers=4, num_attention_heads=8, intermediate_size=2048),
}


def build(name, attention):
    config = BertConfig(vocab_size=21128, max_position_embeddings=512, type_vocab_size=2, **SHAPES[name])
    try:
        model = BertModel._from_config(config, attn_implementation=attention, add_pooling_layer=False)
    except TypeError:  # older transformers: no keyword pass-through
        config._attn_implementation = attention
        model = BertModel(config, add_pooling_layer=False)
    used = getattr(model.config, "_attn_implementation", attention)
    return model.half().cuda().eval(), used


def flops(config, batch, length):
    h, f = config.hidden_size, config.intermediate_size
    tokens = batch * length
    return config.num_hidden_layers * (2.0 * tokens * (4 * h * h + 2 * h * f) + batch * 4.0 * length * length * h)


def time_requests(model, ids, types, passes, runs):
    def request():
        out = model(input_ids=ids.cuda(non_blocking=False), token_type_ids=types.cuda()).last_hidden_state[:, 0]
        return out.float().cpu()

    for _ in range(3):
        request()
    best = float("inf")
    for _ in range(passes):
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            request()
            times.append((time.perf_counter() - t0) * 1000.0)
        best = min(best, statistics.median(times))
    return best


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="bert-base,bge-small")
    parser.add_argument("--attention", default="eager,sdpa")
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    torch.manual_seed(0)
    print(json.dumps({"engine": "torch", "torch": torch.__version__, "transformers": transformers.__version__,
                      "device": torch.cuda.get_device_name(0)}), flush=True)
    for name in args.models.split(","):
        for attention in args.attention.split(","):
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            model, used = build(name, attention)
            engine = "torch-" + attention
            if used != attention:
                print(json.dumps({"engine": engine, "model": name, "note": "ran with attention " + str(used)}), flush=True)
            weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
            shapes = [(1, n) for n in (16, 32, 64, 128, 256, 512)] + [(128, 128)]
            with torch.inference_mode():
                for batch, length in shapes:
                    ids = torch.randint(1000, 20000, (batch, length))
                    types = torch.zeros_like(ids)
                    runs = args.runs if batch == 1 and length < 256 else max(10 if batch == 1 else 5, args.runs // (2 if batch == 1 else 5))
                    ms = time_requests(model, ids, types, args.passes, runs)
                    print(json.dumps({"engine": engine, "model": name, "dtype": "f16", "shape": f"b{batch} s{length}",
                                      "mode": "eager", "ms": round(ms, 4), "seq_per_s": round(1000.0 * batch / ms, 1),
                                      "tflops": round(flops(model.config, batch, length) / ms / 1e9, 2)}), flush=True)
            print(json.dumps({"engine": engine, "model": name, "dtype": "f16",
                              "weight_mib": round(weight_bytes / 2**20, 1),
                              "peak_allocated_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1),
                              "peak_reserved_mib": round(torch.cuda.max_memory_reserved() / 2**20, 1)}), flush=True)
            del model
    print(json.dumps({"engine": "torch", "dtype": "int8",
                      "note": "no int8 GPU inference path in PyTorch for BERT; int8 is compared with torch fp16"}), flush=True)


if __name__ == "__main__":
    main()
