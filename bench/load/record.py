#!/usr/bin/env python3
"""Builds one JSON line of the load test from wrk's LOADTEST_JSON line and two /metrics scrapes.

usage: record.py WRK_OUTPUT METRICS_BEFORE METRICS_AFTER MODEL CONFIG_JSON
Prints {"type": "run", ...config, ...wrk results, "batches": {...}} where "batches" holds the
differences of the model's batch histograms over the measured run (warm-up excluded): batches,
mean passes / sequences / tokens per batch, mean queue wait of a batch's oldest pass.
"""
import json
import re
import sys

SAMPLE = re.compile(r'^(\w+)\{([^}]*)\}\s+(\S+)$')


def scrape(path, model):
    values = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            m = SAMPLE.match(line.strip())
            if not m:
                continue
            name, labels, value = m.groups()
            if f'model="{model}"' in labels and (name.endswith("_sum") or name.endswith("_count")):
                values[name] = float(value)
    return values


def main():
    if len(sys.argv) != 6:
        sys.exit(__doc__)
    wrk_out, before_path, after_path, model, config = sys.argv[1:]
    result = None
    with open(wrk_out, encoding="utf-8") as f:
        for line in f:
            if line.startswith("LOADTEST_JSON "):
                result = json.loads(line[len("LOADTEST_JSON "):])
    if result is None:
        sys.exit(f"record.py: no LOADTEST_JSON line in {wrk_out}")
    before, after = scrape(before_path, model), scrape(after_path, model)
    d = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    batches = d.get("tinybert_batch_passes_count", 0.0)
    per = lambda name: round(d.get(name, 0.0) / batches, 3) if batches else None
    record = {"type": "run", **json.loads(config), **result, "model": model,
              "batches": {"count": int(batches),
                          "passes_per_batch": per("tinybert_batch_passes_sum"),
                          "sequences_per_batch": per("tinybert_batch_sequences_sum"),
                          "tokens_per_batch": per("tinybert_batch_tokens_sum"),
                          "queue_wait_ms": (round(1000 * d.get("tinybert_batch_queue_wait_seconds_sum", 0.0) / batches, 3)
                                            if batches else None),
                          # mean forward time of a batch, and the share of the measured time
                          # the model's forward passes ran (1.0: compute-bound)
                          "run_ms": (round(1000 * d.get("tinybert_batch_run_seconds_sum", 0.0) / batches, 3)
                                     if batches else None),
                          "busy": round(d.get("tinybert_batch_run_seconds_sum", 0.0) / result["duration_s"], 3),
                          "passes": int(d.get("tinybert_batch_passes_sum", 0)),
                          "tokens": int(d.get("tinybert_batch_tokens_sum", 0))}}
    print(json.dumps(record, ensure_ascii=False))


if __name__ == "__main__":
    main()
