#!/usr/bin/env python3
"""Faults under load (issue 16, item 4): one tinybert-server, 64 well-formed wrk clients on
/v1/classify (bench/load/classify.lua), in four phases:
  before  the well-formed load alone;
  during  plus a second client that abuses the server at the same time: --slow connections
          sending a request body one byte a second (reconnecting when refused), malformed
          bodies (bad JSON, wrong fields), requests that are not HTTP, and oversized bodies;
  after   the well-formed load alone again;
  sigterm the load, and SIGTERM --term-at seconds in: every accepted request must be answered
          and the server must exit 0.
Prints per phase the well-formed clients' requests, QPS, errors and p50/p99, and what the
abusive client got back (status counts). --check (CTest) exits 1 unless the well-formed clients
saw 0 errors in before/during/after, the slow clients were refused by the read deadline (408)
rather than served or left hanging, the malformed and oversized ones got 400/413, and the
SIGTERM phase ended with exit 0, no non-2xx response, and as many requests answered as the server
read (its last log line; wrk counts connections refused after the listener closed as socket
errors, and cannot tell them from dropped requests).

Exits 4 (CTest: skipped) when wrk is missing. Standard library only.

  python3 tests/scaleout/faults.py --server build/apps/server/tinybert-server \\
      --convert build/tools/convert/tinybert-convert --model-dir tests/data/tiny/tiny-bert --check
"""
import argparse
import collections
import json
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cluster  # noqa: E402

SKIP = 4


log = cluster.log


def parse_args():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    cluster.add_model_arguments(p)
    p.add_argument("--server-threads", type=int, default=64)
    p.add_argument("--read-timeout-ms", type=int, default=3000)
    p.add_argument("--max-body-bytes", type=int, default=65536)
    p.add_argument("--env", action="append", default=[], help="KEY=VALUE for the server")
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--wrk-threads", type=int, default=2)
    p.add_argument("--slow", type=int, default=70, help="slow connections in the during phase")
    p.add_argument("--before", type=float, default=3)
    p.add_argument("--during", type=float, default=8)
    p.add_argument("--after", type=float, default=3)
    p.add_argument("--sigterm-phase", type=float, default=5)
    p.add_argument("--term-at", type=float, default=2)
    p.add_argument("--check", action="store_true", help="exit 1 unless every property held")
    p.add_argument("--json", help="write all results here")
    p.add_argument("--workdir", help="default: a new temporary directory, removed at the end")
    return p.parse_args()


class Abuser:
    """The second client of the during phase: slow, malformed, not-HTTP and oversized requests,
    each kind in its own thread, until stop(). Counts what came back per kind."""

    def __init__(self, port, slow, max_body_bytes):
        self.port, self.slow, self.max_body = port, slow, max_body_bytes
        self.results = collections.defaultdict(collections.Counter)  # kind -> status -> count
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=f, daemon=True)
                        for f in (self.slow_clients, self.malformed, self.oversized)]

    def start(self):
        for t in self.threads:
            t.start()

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join(timeout=30)

    def count(self, kind, status):
        with self.lock:
            self.results[kind][status] += 1

    def connect(self):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s

    @staticmethod
    def status_of(sock):
        """The status of the response on sock ("closed" when none comes, "timeout")."""
        data = b""
        try:
            while b"\r\n" not in data:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
        except socket.timeout:
            return "timeout"
        except OSError:
            return "reset"
        parts = data.split(b" ", 2)
        return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else "closed"

    def request(self, kind, raw):
        try:
            with self.connect() as s:
                s.sendall(raw)
                self.count(kind, self.status_of(s))
        except OSError as e:
            self.count(kind, type(e).__name__)

    def slow_clients(self):
        """--slow connections, each sending its body one byte a second; when the server answers
        (the read deadline: 408) or closes, the answer is counted and the client reconnects."""
        head = (b"POST /v1/classify HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                b"Content-Length: 10000\r\n\r\n")
        conns = []
        for _ in range(self.slow):
            s = self.connect()
            s.sendall(head)
            conns.append(s)
        while not self.stopping.is_set():
            for i, s in enumerate(conns):
                try:
                    s.setblocking(False)
                    answered = s.recv(4096)
                    s.setblocking(True)
                    # An answer (or the end) arrived: count it and start a new slow client.
                    status = answered.split(b" ", 2)[1] if answered else b"closed"
                    self.count("slow", int(status) if status.isdigit() else "closed")
                    s.close()
                    conns[i] = self.connect()
                    conns[i].sendall(head)
                    continue
                except BlockingIOError:
                    s.setblocking(True)
                except OSError as e:
                    self.count("slow", type(e).__name__)
                    s.close()
                    conns[i] = self.connect()
                    conns[i].sendall(head)
                    continue
                try:
                    s.sendall(b" ")
                except OSError:
                    pass  # refused meanwhile: counted at the next recv
            self.stopping.wait(1.0)
        for s in conns:
            s.close()

    def malformed(self):
        bodies = [b"{not json", b'{"input": 1}', b'{"input": "a", "labels": []}', b"[]",
                  b'{"input": "\xff\xfe", "labels": ["a"]}']
        i = 0
        while not self.stopping.is_set():
            body = bodies[i % len(bodies)]
            self.request("malformed", b"POST /v1/classify HTTP/1.1\r\nHost: t\r\nContent-Length: "
                         + str(len(body)).encode() + b"\r\n\r\n" + body)
            if i % 5 == 0:
                self.request("not_http", b"\x16\x03\x01\x02\x00 hello\r\n\r\n")
            i += 1
            self.stopping.wait(0.01)

    def oversized(self):
        body = b'{"input": "' + b"x" * (2 * self.max_body) + b'", "labels": ["a"]}'
        while not self.stopping.is_set():
            # sent whole (not waiting for a 100 Continue): the server must refuse it cleanly
            self.request("oversized", b"POST /v1/classify HTTP/1.1\r\nHost: t\r\nContent-Length: "
                         + str(len(body)).encode() + b"\r\n\r\n" + body)
            self.stopping.wait(0.05)


def server_counts(log_tail):
    """(requests read, answered) from the server's last line: "stopped; N requests read, M
    answered"."""
    m = re.search(r"stopped; (\d+) requests read, (\d+) answered", log_tail)
    return (int(m.group(1)), int(m.group(2))) if m else (None, None)


def summary(name, wrk):
    e = wrk["errors"]
    lat = wrk["latency_ms"]
    return (f"| {name} | {wrk['requests']} | {wrk['qps']:.0f} | {e['total']} "
            f"(non-2xx {e['non2xx']}, connect {e['connect']}, read {e['read']}, "
            f"write {e['write']}, timeout {e['timeout']}) | {lat['p50']:.1f} | {lat['p99']:.1f} |")


def main():
    args = parse_args()
    if not shutil.which("wrk"):
        print("SKIPPED: wrk not found (apt-get install -y wrk)", file=sys.stderr)
        return SKIP
    workdir = args.workdir or tempfile.mkdtemp(prefix="tinybert-faults.")
    os.makedirs(workdir, exist_ok=True)
    try:
        return run(args, workdir)
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)


def run(args, workdir):
    tbw = cluster.model_path(args, workdir)
    env = dict(kv.split("=", 1) for kv in args.env)
    server = cluster.Replica(
        "server", args.server, [f"m={tbw}"], cluster.free_port(), workdir,
        args=["--threads", str(args.server_threads), "--read-timeout-ms",
              str(args.read_timeout_ms), "--max-body-bytes", str(args.max_body_bytes)]
        + args.server_arg, env=env)
    server.start()
    server.wait_ready()
    url = server.url
    wrk = lambda seconds: cluster.run_wrk(url, max(1, int(round(seconds))), args.texts,
                                          args.connections, args.wrk_threads)
    results = {}
    log(f"before: {args.before} s of {args.connections} clients")
    results["before"] = wrk(args.before)
    abuser = Abuser(server.port, args.slow, args.max_body_bytes)
    log(f"during: plus {args.slow} slow connections, malformed, not-HTTP and oversized bodies")
    abuser.start()
    results["during"] = wrk(args.during)
    abuser.stop()
    log("after")
    results["after"] = wrk(args.after)

    log(f"sigterm: SIGTERM {args.term_at} s into {args.sigterm_phase} s of load")
    timer = threading.Timer(args.term_at, lambda: server.signal(signal.SIGTERM))
    timer.start()
    results["sigterm"] = wrk(args.sigterm_phase)
    timer.join()
    exit_code = server.wait_exit(60)
    results["exit_code"] = exit_code
    results["server_counts"] = server_counts(server.log_tail(5))
    results["abuse"] = {k: dict((str(s), n) for s, n in v.items())
                        for k, v in abuser.results.items()}
    server.stop()

    print("| phase | requests | QPS | errors | p50 ms | p99 ms |")
    print("|---|---|---|---|---|---|")
    for phase in ("before", "during", "after", "sigterm"):
        print(summary(phase, results[phase]))
    print(f"\nabusive client during the 'during' phase: {json.dumps(results['abuse'])}")
    print(f"exit code after SIGTERM: {exit_code}; the server read {results['server_counts'][0]}"
          f" requests and answered {results['server_counts'][1]}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({k: ({kk: vv for kk, vv in v.items() if kk != "wrk_stdout"}
                           if isinstance(v, dict) else v) for k, v in results.items()}, f, indent=1)

    failures = []
    for phase in ("before", "during", "after"):
        if results[phase]["errors"]["total"] != 0:
            failures.append(f"{phase}: {results[phase]['errors']}")
    slow = results["abuse"].get("slow", {})
    if slow.get("408", 0) == 0 or set(slow) - {"408"}:
        failures.append(f"slow clients: expected only 408s, got {slow}")
    for kind, expected in (("malformed", "400"), ("not_http", "400"), ("oversized", "413")):
        got = results["abuse"].get(kind, {})
        if got.get(expected, 0) == 0 or set(got) - {expected}:
            failures.append(f"{kind}: expected only {expected}s, got {got}")
    e = results["sigterm"]["errors"]
    if exit_code != 0:
        failures.append(f"exit code after SIGTERM: {exit_code}")
    if e["non2xx"] or e["timeout"] or e["bad_body"]:
        failures.append(f"sigterm: failed responses: {e}")
    # wrk cannot tell a request the server never read (its connection refused after the listener
    # closed, or closed idle) from one it dropped: the server's own count says.
    read, answered = results["server_counts"]
    if read is None or read != answered:
        failures.append(f"sigterm: the server read {read} requests and answered {answered}")
    for f in failures:
        log("FAILED " + f)
    if args.check and failures:
        log("server log:\n" + server.log_tail(40))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
