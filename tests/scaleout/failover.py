#!/usr/bin/env python3
"""Failover of tinybert-server replicas behind nginx, with real processes on loopback.

nginx (deploy/nginx/tinybert.conf, rendered by nginx_conf.py) in front of --replicas
tinybert-server processes, under wrk load (bench/load/classify.lua: /v1/classify, one text per
request from --texts, the 15 TNEWS labels) in three phases:
  before  all replicas up;
  during  replica 1 SIGKILLed at --kill-at s, replica 2 SIGTERMed (drain) at --term-at s, both
          started again on their ports from --restart-at s (replica 2 once it has exited);
  after   all replicas up again; nginx takes a replica back fail_timeout after its last failure.
Prints per phase: requests, QPS, errors, p50/p90/p99/max latency; per replica the requests it
served in each phase (tinybert_requests_total from its /metrics); what nginx's access log says
about retries. --check (CTest) exits 1 unless the clients saw no error at all (no non-2xx
response, no socket error, no bad body, no "Non-2xx" line from wrk) and every replica served
requests in the before and after phases. --overhead S then measures the nginx hop: the same load
straight to one replica and through nginx to that one replica, --overhead-rounds times each.

Exits 4 (CTest: skipped) when nginx or wrk is missing. Starts and stops every process itself.

  python3 tests/scaleout/failover.py --server build/apps/server/tinybert-server \\
      --convert build/tools/convert/tinybert-convert --model-dir tests/data/tiny/tiny-bert --check
"""
import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cluster  # noqa: E402

SKIP = 4


log = cluster.log


def parse_args():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    cluster.add_model_arguments(p)
    p.add_argument("--replicas", type=int, default=3)
    p.add_argument("--server-threads", type=int, default=128)
    p.add_argument("--replica-env", action="append", default=[], help="KEY=VALUE for replicas")
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--wrk-threads", type=int, default=2)
    p.add_argument("--wrk-timeout", type=int, default=10, help="seconds")
    p.add_argument("--before", type=float, default=3)
    p.add_argument("--during", type=float, default=8)
    p.add_argument("--after", type=float, default=10)
    p.add_argument("--kill-at", type=float, default=1.5)
    p.add_argument("--term-at", type=float, default=3)
    p.add_argument("--restart-at", type=float, default=5)
    p.add_argument("--overhead", type=float, default=0, help="seconds per overhead run (0: off)")
    p.add_argument("--overhead-rounds", type=int, default=2)
    p.add_argument("--overhead-connections", default="",
                   help="client counts of the overhead runs, e.g. 64,8 (default: --connections)")
    p.add_argument("--check", action="store_true", help="exit 1 unless failover was clean")
    p.add_argument("--json", help="write all results here")
    p.add_argument("--workdir", help="default: a new temporary directory, removed at the end")
    p.add_argument("--keep", action="store_true", help="keep the work dir (logs, configs)")
    return p.parse_args()


def whole_seconds(x):
    # wrk takes whole seconds
    return max(1, int(round(x)))


class Failover:
    def __init__(self, args, workdir):
        self.args, self.workdir = args, workdir
        self.replicas, self.nginx = [], None
        self.events = []  # (seconds since the during phase began, what)
        self.t0 = None

    def event(self, what):
        t = time.monotonic() - self.t0 if self.t0 else 0.0
        self.events.append((round(t, 2), what))
        log(f"+{t:.2f} s: {what}")

    def model_path(self):
        return cluster.model_path(self.args, self.workdir)

    def start(self):
        a = self.args
        model = self.model_path()
        env = dict(kv.split("=", 1) for kv in a.replica_env)
        server_args = ["--threads", str(a.server_threads)] + a.server_arg
        for i in range(a.replicas):
            r = cluster.Replica(f"replica{i + 1}", a.server, [f"m={model}"], cluster.free_port(),
                                self.workdir, server_args, env)
            r.start()
            self.replicas.append(r)
        for r in self.replicas:
            r.wait_ready()
        log("replicas ready: " + ", ".join(f"{r.name} :{r.port}" for r in self.replicas))
        # cpp-httplib listens with a backlog of 5 (CPPHTTPLIB_LISTEN_BACKLOG in Debian's
        # libcpp-httplib): a burst of new connections then loses SYNs, the client's retry comes
        # 1 s later, and nginx may count connect timeouts and take the replica out.
        self.backlog = self.replicas[0].listen_backlog()
        if self.backlog is not None and self.backlog < 128:
            log(f"WARNING: tinybert-server listens with a backlog of {self.backlog}: connection "
                "bursts lose SYNs (1 s stalls; nginx connect timeouts can take replicas out)")
        self.nginx = cluster.Nginx(os.path.join(self.workdir, "nginx"),
                                   [f"127.0.0.1:{r.port}" for r in self.replicas])
        self.nginx.start()
        log(f"nginx on :{self.nginx.port} (config {self.nginx.conf})")

    def smoke(self):
        """nginx's own answers: /health passes through; a body over 1 MiB is the API's JSON 413."""
        status, body = cluster.http_get(self.nginx.url + "/health")
        ok_health = status == 200 and '"ready":true' in body.replace(" ", "")
        big = json.dumps({"input": "x" * (2 << 20), "labels": ["a"]}).encode()
        try:
            status413, body413 = cluster.http_post(self.nginx.url + "/v1/classify", big)
        except OSError as e:  # nginx may answer before the whole body is sent
            status413, body413 = None, str(e)
        ok_413 = status413 == 413 and '"too_large"' in body413
        log(f"smoke: /health via nginx {status}; 2 MiB body via nginx {status413} {body413[:80]}")
        return {"health_via_nginx": status, "too_large_via_nginx": status413,
                "ok": ok_health and ok_413}

    def scrape_all(self):
        return [r.scrape() for r in self.replicas]

    @staticmethod
    def served(start, end):
        """Requests a replica served between two scrapes (a restart starts from 0 again)."""
        if end is None:
            return None
        if start is None or start[0] != end[0]:
            return end[1]
        return end[1] - start[1]

    def phase(self, name, seconds, actions=()):
        """One wrk run; actions: (at seconds, callable) run while it goes."""
        a = self.args
        before = self.scrape_all()
        result = {}

        def load():
            result.update(cluster.run_wrk(self.nginx.url, whole_seconds(seconds), a.texts,
                                          a.connections, a.wrk_threads, a.wrk_timeout))

        log(f"phase {name}: {whole_seconds(seconds)} s of wrk -c{a.connections} via nginx")
        t = threading.Thread(target=load)
        self.t0 = time.monotonic()
        t.start()
        for at, action in actions:
            delay = self.t0 + at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            action()
        t.join()
        after = self.scrape_all()
        result["phase"] = name
        result["start_scrape"] = before
        result["per_replica"] = {r.name: self.served(b, e)
                                 for r, b, e in zip(self.replicas, before, after)}
        result["rss_kib"] = {r.name: (e[2] if e else None)
                             for r, e in zip(self.replicas, after)}
        result["hwm_kib"] = {r.name: (e[3] if e else None)
                             for r, e in zip(self.replicas, after)}
        result.pop("wrk_stdout", None)
        return result

    def failover_actions(self):
        a = self.args
        victim_kill, victim_term = self.replicas[0], self.replicas[1 % len(self.replicas)]
        self.pre_signal = {}

        def kill():
            self.pre_signal[victim_kill.name] = victim_kill.scrape()
            victim_kill.signal(signal.SIGKILL)
            self.event(f"SIGKILL {victim_kill.name}")

        def term():
            self.pre_signal[victim_term.name] = victim_term.scrape()
            victim_term.signal(signal.SIGTERM)
            self.event(f"SIGTERM {victim_term.name} (drain)")

        def restart_one(r, drain_timeout):
            code = r.wait_exit(drain_timeout)
            if code is None:
                self.event(f"{r.name} still running {drain_timeout} s after the signal: SIGKILL")
                r.signal(signal.SIGKILL)
                code = r.wait_exit(10)
            self.event(f"{r.name} exited with {code}")
            r.start()
            r.wait_ready()
            self.event(f"{r.name} restarted and ready")

        self.restarters = []

        def restart():
            for r in (victim_kill, victim_term):
                th = threading.Thread(target=restart_one, args=(r, 40))
                th.start()
                self.restarters.append(th)

        return [(a.kill_at, kill), (a.term_at, term), (a.restart_at, restart)]

    def overhead(self, seconds, rounds):
        """Same load to one replica straight and through nginx with only that replica."""
        a = self.args
        target = self.replicas[-1]
        for r in self.replicas[:-1]:
            r.stop()
        single = cluster.Nginx(os.path.join(self.workdir, "nginx-single"),
                               [f"127.0.0.1:{target.port}"])
        single.start()
        runs = []
        clients = [int(c) for c in a.overhead_connections.split(",") if c.strip()] or \
            [a.connections]
        try:
            for conns in clients:
                for i in range(rounds):
                    for mode, url in (("direct", target.url), ("nginx", single.url)):
                        log(f"overhead, {conns} clients, round {i + 1}: {mode}, "
                            f"{whole_seconds(seconds)} s")
                        res = cluster.run_wrk(url, whole_seconds(seconds), a.texts, conns,
                                              min(a.wrk_threads, conns), a.wrk_timeout)
                        res.pop("wrk_stdout", None)
                        res["mode"], res["round"], res["clients"] = mode, i + 1, conns
                        runs.append(res)
        finally:
            single.stop()
        return runs

    def close(self):
        for th in getattr(self, "restarters", []):
            th.join(timeout=60)
        if self.nginx:
            self.nginx.stop()
        for r in self.replicas:
            r.stop()


def errors_of(r):
    e = r["errors"]
    return e["connect"] + e["read"] + e["write"] + e["timeout"] + e["non2xx"] + e["bad_body"]


def phase_table(phases, replicas):
    out = ["| phase | s | requests | QPS | errors | non-2xx | socket errors | p50 ms | p90 ms "
           "| p99 ms | max ms | " + " | ".join(r.name for r in replicas) + " |",
           "|---|" + "---:|" * (10 + len(replicas))]
    for p in phases:
        lat, e = p["latency_ms"], p["errors"]
        sock = e["connect"] + e["read"] + e["write"] + e["timeout"]
        per = " | ".join(str(p["per_replica"].get(r.name, "–")) for r in replicas)
        out.append(f"| {p['phase']} | {p['duration_s']:.1f} | {p['requests']} | {p['qps']:.1f} "
                   f"| {errors_of(p)} | {e['non2xx']} | {sock} | {lat['p50']:.1f} "
                   f"| {lat['p90']:.1f} | {lat['p99']:.1f} | {lat['max']:.1f} | {per} |")
    return "\n".join(out)


def overhead_table(runs):
    out = ["| clients | path | round | requests | QPS | errors | p50 ms | p90 ms | p99 ms |",
           "|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in runs:
        lat = r["latency_ms"]
        out.append(f"| {r['clients']} | {r['mode']} | {r['round']} | {r['requests']} "
                   f"| {r['qps']:.1f} | {errors_of(r)} | {lat['p50']:.2f} | {lat['p90']:.2f} "
                   f"| {lat['p99']:.2f} |")
    for conns in sorted({r["clients"] for r in runs}, reverse=True):
        for mode in ("direct", "nginx"):
            rs = [r for r in runs if r["mode"] == mode and r["clients"] == conns]
            if rs:
                mean = lambda k: sum(r["latency_ms"][k] for r in rs) / len(rs)  # noqa: E731
                qps = sum(r["qps"] for r in rs) / len(rs)
                out.append(f"| {conns} | **{mode}, mean** | | | {qps:.1f} | | {mean('p50'):.2f} "
                           f"| {mean('p90'):.2f} | {mean('p99'):.2f} |")
    return "\n".join(out)


def main():
    args = parse_args()
    missing = [tool for tool in ("nginx", "wrk") if shutil.which(tool) is None]
    if missing:
        bar = "!" * 78
        print(f"{bar}\nSKIPPED: {' and '.join(missing)} not found on PATH; this failover test "
              f"needs both\n(Debian: apt-get install -y nginx wrk).\n{bar}", flush=True)
        return SKIP
    workdir = args.workdir or tempfile.mkdtemp(prefix="tinybert-scaleout.")
    os.makedirs(workdir, exist_ok=True)
    run = Failover(args, workdir)
    results = {"args": vars(args)}
    failures = []
    try:
        run.start()
        results["smoke"] = run.smoke()
        if not results["smoke"]["ok"]:
            failures.append(f"nginx smoke checks failed: {results['smoke']}")
        phases = [run.phase("before", args.before)]
        phases.append(run.phase("during", args.during, run.failover_actions()))
        for th in run.restarters:  # both back before the last phase
            th.join(timeout=60)
        phases.append(run.phase("after", args.after))
        # The killed and the drained replica: "served before its signal + after its restart".
        during = phases[1]
        for i, r in enumerate(run.replicas):
            pre = run.pre_signal.get(r.name)
            if pre is None:
                continue
            start = during["start_scrape"][i]
            before_signal = Failover.served(start, pre)
            during["per_replica"][r.name] = f"{before_signal} + {during['per_replica'][r.name]}"
        for p in phases:
            p.pop("start_scrape", None)
        results["phases"], results["events"] = phases, run.events
        results["exit_codes"] = {r.name: r.exit_codes for r in run.replicas}
        results["listen_backlog"] = run.backlog
        if args.overhead > 0:
            results["overhead"] = run.overhead(args.overhead, args.overhead_rounds)
    except Exception as e:  # noqa: BLE001 - report with the logs, then fail
        failures.append(f"{type(e).__name__}: {e}")
        for r in run.replicas:
            print(f"--- {r.name} log:\n{r.log_tail()}", file=sys.stderr)
        if run.nginx:
            print(f"--- nginx:\n{run.nginx.errors()}", file=sys.stderr)
    finally:
        run.close()
    if run.nginx:
        results["nginx_upstreams"] = cluster.upstream_summary(run.nginx.access_log())

    if "phases" in results:
        print(phase_table(results["phases"], run.replicas))
        print()
        print("events (seconds after the during phase began): "
              + "; ".join(f"+{t} {what}" for t, what in results["events"]))
        print(f"nginx access log: {json.dumps(results.get('nginx_upstreams'))}")
        last = results["phases"][-1]
        print("replica memory after the last phase (VmRSS / VmHWM, MiB): " + ", ".join(
            f"{name} {kib / 1024:.0f} / {last['hwm_kib'][name] / 1024:.0f}"
            for name, kib in last["rss_kib"].items() if kib))
        print(f"replica exit codes: {json.dumps(results['exit_codes'])}; listen backlog of a "
              f"replica: {results['listen_backlog']}")
        for p in results["phases"]:
            if p["non2xx_line"] or p["socket_errors_line"]:
                print(f"wrk, phase {p['phase']}: {p['non2xx_line'] or ''} "
                      f"{p['socket_errors_line'] or ''}")
            if errors_of(p):
                failures.append(f"phase {p['phase']}: {errors_of(p)} errors seen by the clients: "
                                f"{json.dumps(p['errors'])}")
            if p["non2xx_line"] or p["socket_errors_line"]:
                failures.append(f"phase {p['phase']}: wrk printed "
                                f"{p['non2xx_line'] or p['socket_errors_line']!r}")
            if p["requests"] == 0:
                failures.append(f"phase {p['phase']}: no requests at all")
        for name in ("before", "after"):
            p = next(x for x in results["phases"] if x["phase"] == name)
            idle = [r for r, n in p["per_replica"].items() if not n]
            if idle:
                failures.append(f"phase {name}: no traffic reached {', '.join(idle)}")
    if "overhead" in results:
        print()
        print(overhead_table(results["overhead"]))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=1, ensure_ascii=False)
    if args.keep:
        log(f"kept {workdir}")
    elif not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    if failures:
        print("FAILED:\n  " + "\n  ".join(failures))
        return 1 if args.check else 0
    print("failover: clean (0 errors seen by the clients; traffic back on every replica)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
