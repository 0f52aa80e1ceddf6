"""Real processes on loopback for the scale-out tests: tinybert-server replicas, nginx, wrk.

Used by tests/scaleout/failover.py (CTest and bench/load/failover.sh). Standard library only.
Every process is started by this module, on 127.0.0.1, and stopped by it (Cluster.close).
"""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import nginx_conf

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
NGINX_TEMPLATE = os.path.join(REPO, "deploy", "nginx", "tinybert.conf")
CLASSIFY_LUA = os.path.join(REPO, "bench", "load", "classify.lua")


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def add_model_arguments(parser):
    """The server and model options of the scale-out scripts (failover.py, faults.py)."""
    parser.add_argument("--server", required=True, help="tinybert-server binary")
    parser.add_argument("--convert", help="tinybert-convert binary (with --model-dir)")
    parser.add_argument("--model-dir", help="HuggingFace-style folder, converted into the work dir")
    parser.add_argument("--model-tbw", help="an already converted .tbw")
    parser.add_argument("--texts", default=os.path.join(HERE, "texts.txt"))
    parser.add_argument("--server-arg", action="append", default=[],
                        help="one more tinybert-server argument (repeat: --server-arg=--backend "
                             "--server-arg=int8)")


def model_path(args, workdir):
    """--model-tbw, or --model-dir converted with --convert into workdir."""
    if args.model_tbw:
        return args.model_tbw
    if not (args.model_dir and args.convert):
        sys.exit("give --model-tbw, or --model-dir and --convert")
    out = os.path.join(workdir, "model.tbw")
    subprocess.run([args.convert, args.model_dir, out], check=True, stdout=subprocess.DEVNULL)
    return out


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url, timeout=2.0):
    """(status, body) or (None, reason) when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError) as e:
        return None, str(e)


def http_post(url, body, timeout=10.0):
    req = urllib.request.Request(url, data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")


REQUESTS_TOTAL = re.compile(r'^tinybert_requests_total\{([^}]*)\}\s+(\S+)$')


def requests_total(metrics_text, endpoint=None):
    """Sum of tinybert_requests_total (of one endpoint, if given) in a /metrics text."""
    total = 0.0
    for line in metrics_text.splitlines():
        m = REQUESTS_TOTAL.match(line.strip())
        if m and (endpoint is None or f'endpoint="{endpoint}"' in m.group(1)):
            total += float(m.group(2))
    return int(total)


class Replica:
    """One tinybert-server on a fixed loopback port, restartable on the same port."""

    def __init__(self, name, server, models, port, workdir, args=(), env=None):
        self.name, self.server, self.models, self.port = name, server, models, port
        self.workdir, self.args, self.env = workdir, list(args), env
        self.proc = None
        self.generation = 0  # counts starts: a restarted process counts from 0 again
        self.log_path = os.path.join(workdir, f"{name}.log")
        self.exit_codes = []

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        cmd = [self.server, "--host", "127.0.0.1", "--port", str(self.port)]
        for spec in self.models:
            cmd += ["--model", spec]
        cmd += self.args
        log = open(self.log_path, "a", encoding="utf-8")
        log.write(f"== start {time.strftime('%H:%M:%S')}: {' '.join(cmd)}\n")
        log.flush()
        env = dict(os.environ, **(self.env or {}))
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()
        self.generation += 1

    def wait_ready(self, timeout=60.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: "
                                   + self.log_tail())
            status, _ = http_get(self.url + "/health", timeout=1.0)
            if status == 200:
                return
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} not ready after {timeout} s: " + self.log_tail())

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait_exit(self, timeout):
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        self.exit_codes.append(code)
        return code

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def scrape(self):
        """(generation, requests_total, rss_kib, hwm_kib) or None when it does not answer."""
        if not self.alive():
            return None
        status, text = http_get(self.url + "/metrics", timeout=5.0)
        if status != 200:
            return None
        rss = hwm = None
        try:
            with open(f"/proc/{self.proc.pid}/status", encoding="utf-8") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        rss = int(line.split()[1])
                    elif line.startswith("VmHWM:"):
                        hwm = int(line.split()[1])
        except OSError:
            pass
        return self.generation, requests_total(text), rss, hwm

    def listen_backlog(self):
        """The backlog of its listening socket (ss: Send-Q of a LISTEN line), None without ss."""
        try:
            out = subprocess.run(["ss", "-Hltn", f"sport = :{self.port}"], capture_output=True,
                                 text=True, timeout=10).stdout.split()
            return int(out[2]) if len(out) > 2 else None
        except (OSError, ValueError, subprocess.SubprocessError):
            return None

    def log_tail(self, n=20):
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return "(no log)"

    def stop(self):
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            if self.wait_exit(40) is None:
                self.proc.kill()
                self.proc.wait()


class Nginx:
    """nginx from deploy/nginx/tinybert.conf, rendered into a temporary directory."""

    def __init__(self, workdir, replica_addrs, port=None, template=NGINX_TEMPLATE):
        self.dir = workdir
        os.makedirs(self.dir, exist_ok=True)
        self.port = port or free_port()
        self.conf = nginx_conf.render(template, self.dir, self.port, replica_addrs)
        self.proc = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout=15.0):
        self.proc = subprocess.Popen(
            ["nginx", "-e", os.path.join(self.dir, "error.log"), "-p", self.dir, "-c", self.conf],
            stdout=open(os.path.join(self.dir, "stdout.log"), "w"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited with {self.proc.returncode}: " + self.errors())
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("nginx did not listen: " + self.errors())

    def errors(self):
        text = ""
        for name in ("stdout.log", "error.log"):
            try:
                with open(os.path.join(self.dir, name), encoding="utf-8", errors="replace") as f:
                    text += f.read()[-4000:]
            except OSError:
                pass
        return text

    def stop(self):
        """Graceful stop (SIGQUIT: finish requests, flush the buffered access log)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def access_log(self):
        path = os.path.join(self.dir, "tinybert.access.log")
        if not os.path.exists(path):
            return []
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read().splitlines()


def upstream_summary(lines):
    """What nginx's access log says about retries: requests, retried ones, final statuses,
    and the statuses of the attempts that were given up (e.g. 502 from a dead replica)."""
    summary = {"requests": 0, "retried": 0, "status": {}, "failed_attempts": {}}
    for line in lines:
        m = re.search(r'" (\d{3}) .* upstream=(.*) upstream_status=(.*) upstream_time=', line)
        if not m:
            continue
        summary["requests"] += 1
        summary["status"][m.group(1)] = summary["status"].get(m.group(1), 0) + 1
        # "a, b : c" lists the attempts of one request (":" separates upstream groups).
        statuses = [s.strip() for s in re.split(r"[,:]", m.group(3)) if s.strip()]
        if len(statuses) > 1:
            summary["retried"] += 1
            for s in statuses[:-1]:
                summary["failed_attempts"][s] = summary["failed_attempts"].get(s, 0) + 1
    return summary


WRK_SOCKET = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")


def run_wrk(url, seconds, texts, connections=64, threads=2, timeout_s=10, script=CLASSIFY_LUA):
    """Runs wrk with bench/load's classify script; returns its LOADTEST_JSON result plus what
    wrk's own summary printed: "non2xx_line" (the "Non-2xx or 3xx responses" line) and
    "socket_errors_line"."""
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout",
           f"{timeout_s}s", "-s", script, url, "--", texts]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    result = None
    for line in out.stdout.splitlines():
        if line.startswith("LOADTEST_JSON "):
            result = json.loads(line[len("LOADTEST_JSON "):])
    if result is None:
        raise RuntimeError(f"wrk printed no result (rc {out.returncode}):\n{out.stdout}\n"
                           f"{out.stderr}")
    non2xx = [line.strip() for line in out.stdout.splitlines() if "Non-2xx" in line]
    socket_errors = [line.strip() for line in out.stdout.splitlines() if WRK_SOCKET.search(line)]
    result["non2xx_line"] = non2xx[0] if non2xx else None
    result["socket_errors_line"] = socket_errors[0] if socket_errors else None
    result["wrk_stdout"] = out.stdout
    return result
