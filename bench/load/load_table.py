#!/usr/bin/env python3
"""Markdown tables of a load-test JSON-lines file written by bench/load/run_load_test.sh.

usage: python3 bench/load/load_table.py bench/results/load_DATE.jsonl
1. One row per (round, endpoint, server configuration): requests, errors, QPS, p50/p90/p99
   latency, QPS / QPS(batching off) of the same endpoint and round, what the scheduler merged
   (mean passes, sequences and tokens per forward pass, mean queue wait of a batch's oldest pass,
   mean forward time of a batch and "busy", the share of the run the forward passes took, all
   from /metrics over the measured run), the 1-minute load average before the run and the
   server's RSS after it.
2. A summary per (endpoint, configuration) over the rounds: total errors, mean QPS, worst p99,
   mean QPS / mean QPS(off).
"""
import json
import sys
from collections import defaultdict


def fmt(x, digits=1):
    return "–" if x is None else f"{x:.{digits}f}"


def config_name(r):
    flags = r["server_flags"].strip()
    if not r["batching"]:
        return "off (`--no-batching`)"
    return f"on (`{flags}`)" if flags else "on (defaults)"


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    meta, runs = {}, []
    with open(sys.argv[1], encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            rec = json.loads(line)
            if rec.get("type") == "meta":
                meta = rec
            elif rec.get("type") == "run":
                runs.append(rec)
    off_qps = {(r.get("round", 1), r["endpoint"]): r["qps"] for r in runs if not r["batching"]}

    out = []
    if meta:
        out.append(f"Machine: {meta['cpu']}, {meta['cores']} cores; load average at start "
                   f"{meta['loadavg_start']} (1/5/15 min). Date: {meta['date']}.")
        out.append("")
        out.append(f"Command: `{meta['command']}`  ")
        out.append(f"Server: `{meta['server']}` (a fresh one per configuration and round)  ")
        out.append(f"Client: `{meta['wrk']}`, after a {meta['warmup_s']} s warm-up with the same script")
        out.append("")
    out.append("| round | endpoint | batching | conns | s | requests | errors | QPS | p50 ms | p90 ms | p99 ms "
               "| QPS / QPS(off) | passes/batch | seqs/batch | tokens/batch | queue wait ms | run ms/batch | busy "
               "| load 1m | RSS MiB |")
    out.append("|---:|---|---|" + "---:|" * 17)
    for r in runs:
        base = off_qps.get((r.get("round", 1), r["endpoint"]))
        ratio = "–" if not r["batching"] or not base else f"{r['qps'] / base:.2f}×"
        b, lat, err = r["batches"], r["latency_ms"], r["errors"]
        err_text = str(err["total"])
        if err["total"]:
            kinds = [f"{k} {err[k]}" for k in ("connect", "read", "write", "timeout", "non2xx", "bad_body") if err[k]]
            err_text += " (" + ", ".join(kinds) + ")"
        out.append(f"| {r.get('round', 1)} | {r['endpoint']} | {config_name(r)} | {r['connections']} | {r['duration_s']:.1f} "
                   f"| {r['requests']} | {err_text} | {r['qps']:.1f} | {lat['p50']:.1f} | {lat['p90']:.1f} | {lat['p99']:.1f} "
                   f"| {ratio} | {fmt(b['passes_per_batch'], 2)} | {fmt(b['sequences_per_batch'])} "
                   f"| {fmt(b['tokens_per_batch'], 0)} | {fmt(b['queue_wait_ms'], 2)} | {fmt(b.get('run_ms'), 2)} "
                   f"| {fmt(b.get('busy'), 2)} | {r.get('loadavg_1m_before', '–')} "
                   f"| {r.get('server_rss_mib', '–')} |")

    groups = defaultdict(list)
    for r in runs:
        groups[(r["endpoint"], config_name(r))].append(r)
    mean = lambda xs: sum(xs) / len(xs)
    off_mean = {ep: mean([r["qps"] for r in rs]) for (ep, name), rs in groups.items() if not rs[0]["batching"]}
    out.append("")
    out.append("| endpoint | batching | rounds | requests | errors | mean QPS | mean p50 ms | worst p99 ms "
               "| mean QPS / mean QPS(off) | mean passes/batch |")
    out.append("|---|---|" + "---:|" * 8)
    for (ep, name), rs in groups.items():
        base = off_mean.get(ep)
        ratio = "–" if not rs[0]["batching"] or not base else f"{mean([r['qps'] for r in rs]) / base:.2f}×"
        passes = [r["batches"]["passes_per_batch"] for r in rs if r["batches"]["passes_per_batch"] is not None]
        out.append(f"| {ep} | {name} | {len(rs)} | {sum(r['requests'] for r in rs)} "
                   f"| {sum(r['errors']['total'] for r in rs)} | {mean([r['qps'] for r in rs]):.1f} "
                   f"| {mean([r['latency_ms']['p50'] for r in rs]):.1f} | {max(r['latency_ms']['p99'] for r in rs):.1f} "
                   f"| {ratio} | {fmt(mean(passes) if passes else None, 2)} |")
    print("\n".join(out))


if __name__ == "__main__":
    main()
