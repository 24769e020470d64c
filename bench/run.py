#!/usr/bin/env python3
"""The causalkv benchmark (issue #6): one command, run on one machine.

    python3 bench/run.py            # the full run (~20-25 min), writes BENCHMARKS.md
    python3 bench/run.py --quick    # a few minutes, 100k keys (1M for the big join), BENCHMARKS.md too
    python3 bench/run.py --smoke    # seconds; CI; writes to a temp dir

What it measures, with the same load generator settings for every HTTP system
(wrk, 2 threads, 32 connections, 10 s per figure, 10,000 keys of 100-byte
values, the median of --repeat runs):

1. causalkv, three replicas on loopback: GET, PUT and a 90/10 GET/PUT mix
   against one replica and spread over all three, passing a real causal
   context (from real PUTs: the X-Causal-Metadata header for GETs, the body for
   PUTs); p50/p99 latency; server CPU; replication lag measured by probes
   while a background PUT load runs at about half the maximum PUT rate.
2. The HTTP ceiling: examples/http_ceiling.rs, a minimal actix-web server
   answering the same routes with a fixed body, same worker count. Its runs
   alternate with causalkv's one-replica runs (ceiling, causalkv, ceiling,
   ...), so that drift in the machine's speed does not skew their ratio.
3. etcd (Debian etcd-server), three members on loopback, through its JSON
   gateway, with fsync and with --unsafe-no-fsync.
4. Redis (Debian redis-server), a master and two replicas, redis-benchmark
   SET/GET with the same key count and value size (a different protocol: a
   reference, not a peer). Its runs alternate with causalkv's one-replica
   runs, like the ceiling's.
5. Scale: RSS per key after loading up to 1,000,000 keys (causalkv and
   Redis); GET/PUT throughput and RSS at 10k, 100k and 1M keys; the time for a
   fresh fourth replica to join and hold every key while the cluster keeps
   serving; 3 versus 5 replicas.
6. The join of a large store (bench/scale_join.py): three replicas loaded
   with 10,000,000 keys (--join-keys; quick 1M, smoke 5,000), then a fresh
   fourth replica joins while a client keeps sending requests: the time until
   it holds every key and is ready, the peak RSS of the member it copies from
   and of the joiner, and what the cluster served meanwhile.

It installs what it lacks with apt-get (a part whose tool cannot be installed
is skipped with a note), builds causalkv and the ceiling with cargo, starts
every server on free loopback ports (logs in a temp dir) and stops exactly the
processes it started. It prints the table of ratios against the targets and
writes BENCHMARKS.md, BENCHMARKS.svg (the chart) and BENCHMARKS.json (every
figure, to compare runs or write the report again with --report-from) at the
repository root, or into --out DIR. --rev REV benchmarks a commit instead of
the working tree.

Python 3 standard library only.
"""

import argparse
import datetime
import http.client
import json
import os
import platform
import random
import re
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse
from pathlib import Path

import scale_join  # bench/scale_join.py (this script's directory is on sys.path)

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
CLK_TCK = os.sysconf("SC_CLK_TCK")
T0 = time.monotonic()

# Tools the full run uses: binary -> Debian package.
TOOLS = {
    "wrk": "wrk",
    "etcd": "etcd-server",
    "etcdctl": "etcd-client",
    "redis-server": "redis-server",
    "redis-benchmark": "redis-tools",
}


class ToolError(Exception):
    """Something in the benchmark itself broke (not a missed target)."""


def log(msg):
    print(f"[{time.monotonic() - T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def percentile(values, p):
    """The p-th percentile (0-100) of values, nearest rank."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(p / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


# ---------------------------------------------------------------- commands

COMMANDS = {}  # label -> a representative command line, for BENCHMARKS.md
LOADGENS = set()  # wrk processes running (stopped, by PID, if the run is cut short)


def note_command(label, argv, env=None):
    if label in COMMANDS:
        return
    argv = [str(a).replace(str(ROOT) + "/", "") for a in argv]
    prefix = ""
    if env:
        prefix = " ".join(f"{k}={shlex.quote(str(v))}" for k, v in env.items()) + " "
    COMMANDS[label] = prefix + " ".join(shlex.quote(str(a)) for a in argv)


# --------------------------------------------------------------- processes


class Procs:
    """The processes this run started; it stops exactly these, by PID."""

    def __init__(self, logdir):
        self.logdir = Path(logdir)
        self.running = []
        self.lock = threading.Lock()

    def start(self, name, argv, env=None, label=None):
        full_env = dict(os.environ)
        if env:
            full_env.update({k: str(v) for k, v in env.items()})
        logf = open(self.logdir / f"{name}.log", "ab")
        try:
            p = subprocess.Popen(
                [str(a) for a in argv],
                stdout=logf,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=full_env,
            )
        finally:
            logf.close()
        p.bench_name = name
        with self.lock:
            self.running.append(p)
        if label:
            note_command(label, argv, env)
        return p

    def stop(self, p, timeout=15):
        if p.poll() is None:
            try:
                p.terminate()
                p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)
            except ProcessLookupError:
                pass
        with self.lock:
            if p in self.running:
                self.running.remove(p)

    def stop_all(self):
        with self.lock:
            procs = list(self.running)
        for p in reversed(procs):
            try:
                self.stop(p, timeout=10)
            except Exception as e:  # keep stopping the others
                log(f"could not stop {getattr(p, 'bench_name', p.pid)}: {e}")


def free_ports(n):
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


# ----------------------------------------------------------- measurements


def proc_ticks(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
        fields = text[text.rindex(")") + 2:].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, ValueError, IndexError):
        return None


def rss_bytes(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def machine_busy_ticks():
    with open("/proc/stat") as f:
        parts = f.readline().split()[1:]
    values = [int(x) for x in parts[:8]]
    idle = values[3] + values[4]
    return sum(values) - idle


class CpuMeter:
    """CPU used by the servers, by the load generators (children of this
    process that exited meanwhile: wrk, redis-benchmark), by this process,
    and by everything else on the machine, over one measurement."""

    def __init__(self, pids):
        self.pids = list(pids)

    def __enter__(self):
        self.t = time.monotonic()
        self.ticks = {pid: proc_ticks(pid) for pid in self.pids}
        self.machine = machine_busy_ticks()
        self.children = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.me = resource.getrusage(resource.RUSAGE_SELF)
        return self

    def __exit__(self, *exc):
        wall = max(time.monotonic() - self.t, 1e-6)
        server = 0
        self.each = []
        for pid, before in self.ticks.items():
            after = proc_ticks(pid)
            if before is not None and after is not None:
                server += after - before
                self.each.append((after - before) / CLK_TCK / wall)
            else:
                self.each.append(None)
        machine = machine_busy_ticks() - self.machine
        ch = resource.getrusage(resource.RUSAGE_CHILDREN)
        me = resource.getrusage(resource.RUSAGE_SELF)
        loadgen = (ch.ru_utime + ch.ru_stime) - (self.children.ru_utime + self.children.ru_stime)
        mine = (me.ru_utime + me.ru_stime) - (self.me.ru_utime + self.me.ru_stime)
        self.server_cores = server / CLK_TCK / wall
        self.loadgen_cores = (loadgen + mine) / wall
        self.machine_cores = machine / CLK_TCK / wall
        self.other_cores = max(0.0, self.machine_cores - self.server_cores - self.loadgen_cores)
        return False

    def add_loadgen_seconds(self, seconds, wall):
        """Load generators still running (measured by the caller)."""
        self.loadgen_cores += seconds / wall
        self.other_cores = max(0.0, self.other_cores - seconds / wall)


# ------------------------------------------------------------------- http


def http_request(addr, method, path, body=None, headers=None, timeout=10):
    host, port = addr.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        h = {"Content-Type": "application/json"}
        if headers:
            h.update(headers)
        conn.request(method, path, body=body, headers=h)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


class Client:
    """A persistent HTTP/1.1 connection (for probes)."""

    def __init__(self, addr, timeout=5):
        self.addr = addr
        self.timeout = timeout
        self.conn = None

    def request(self, method, path, body=None, headers=None):
        for attempt in range(2):
            if self.conn is None:
                host, port = self.addr.rsplit(":", 1)
                self.conn = http.client.HTTPConnection(host, int(port), timeout=self.timeout)
            try:
                h = {"Content-Type": "application/json"}
                if headers:
                    h.update(headers)
                self.conn.request(method, path, body=body, headers=h)
                resp = self.conn.getresponse()
                data = resp.read()
                if resp.getheader("connection", "").lower() == "close":
                    self.close()
                return resp.status, data
            except (OSError, http.client.HTTPException):
                self.close()
                if attempt == 1:
                    raise
        raise ToolError("unreachable")

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def key_name(i):
    return f"key:{i:012d}"


# ------------------------------------------------------------------ setup


def run(argv, check=True, capture=True, timeout=None, env=None):
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    return subprocess.run(
        argv,
        check=check,
        stdout=subprocess.PIPE if capture else None,
        stderr=subprocess.STDOUT if capture else None,
        text=True,
        timeout=timeout,
        env=full_env,
    )


def install_tools(binaries, notes):
    """apt-get install the Debian packages of the missing binaries; returns
    the set of binaries available afterwards."""
    missing = [b for b in binaries if not shutil.which(b)]
    if missing:
        packages = sorted({TOOLS[b] for b in missing})
        if os.geteuid() != 0 or not shutil.which("apt-get"):
            notes.append(f"cannot install {', '.join(packages)}: not root or no apt-get")
        else:
            log(f"installing {' '.join(packages)} with apt-get")
            env = {"DEBIAN_FRONTEND": "noninteractive"}
            # Debian's packages start their services on install (a redis on
            # 6379, an etcd on 2379) unless policy-rc.d forbids it: forbid it
            # for the duration, so that the only servers are our own.
            policy = Path("/usr/sbin/policy-rc.d")
            made_policy = False
            if not policy.exists():
                try:
                    policy.write_text("#!/bin/sh\nexit 101\n")
                    policy.chmod(0o755)
                    made_policy = True
                except OSError:
                    pass
            try:
                run(["apt-get", "update", "-qq"], check=False, timeout=600, env=env)
                base = ["apt-get", "install", "-y", "-qq", "--no-install-recommends"]
                r = run(base + packages, check=False, timeout=900, env=env)
                if r.returncode != 0:
                    for pkg in packages:  # one by one: install what can be
                        r1 = run(base + [pkg], check=False, timeout=900, env=env)
                        if r1.returncode != 0:
                            tail = (r1.stdout or "").strip().splitlines()[-1:]
                            notes.append(f"apt-get install {pkg} failed: {' '.join(tail)}")
            finally:
                if made_policy:
                    policy.unlink()
    return {b for b in binaries if shutil.which(b)}


def checkout(rev, tmp):
    """The sources of git revision `rev` in a temp dir (git archive: the
    repository is not touched), with the current examples/http_ceiling.rs."""
    src = Path(tmp) / "src-tree"
    src.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", rev],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if archive.returncode != 0:
        raise ToolError(f"git archive {rev}: {archive.stderr.decode().strip()}")
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive.stdout, check=True)
    (src / "examples").mkdir(exist_ok=True)
    shutil.copy2(ROOT / "examples" / "http_ceiling.rs", src / "examples" / "http_ceiling.rs")
    return src


def build(notes, dest, src=None):
    argv = ["cargo", "build", "--release", "--bin", "causalkv", "--example", "http_ceiling"]
    env = dict(os.environ)
    if src is None:
        src = ROOT
        target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
        if not target.is_absolute():
            target = ROOT / target
    else:
        # its own target dir (kept, so that the next --rev build is
        # incremental), never the tree's: target/release/causalkv stays the
        # tree's own build
        target = ROOT / "target" / "bench-rev"
        env["CARGO_TARGET_DIR"] = str(target)
    note_command("build", argv)
    log(f"building in {src}: " + " ".join(argv))
    r = subprocess.run(argv, cwd=src, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       env=env)
    if r.returncode != 0:
        sys.stderr.write(r.stdout[-5000:])
        raise ToolError("cargo build failed")
    binary = target / "release" / "causalkv"
    ceiling = target / "release" / "examples" / "http_ceiling"
    for b in (binary, ceiling):
        if not b.exists():
            raise ToolError(f"{b} missing after the build")
    # Run copies: a later cargo build in the same tree (someone working on
    # the node meanwhile) must not change the binary in the middle of a run.
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    copies = []
    for b in (binary, ceiling):
        shutil.copy2(b, dest / b.name)
        copies.append(dest / b.name)
    return copies[0], copies[1]


# ---------------------------------------------------------- load generation


class Load:
    """Runs one load (wrk, or the built-in Python generator when wrk is
    missing) and returns a result dict: rps, p50/p99 (ms), errors."""

    def __init__(self, settings, have_wrk):
        self.s = settings
        self.have_wrk = have_wrk

    # -- wrk

    def wrk_argv(self, script, url, threads, conns, duration):
        return [
            "wrk", f"-t{threads}", f"-c{conns}", f"-d{duration}s", "--timeout", "5s",
            "-s", str(BENCH / script), url,
        ]

    def start_wrk(self, script, url, env, threads, conns, duration, label=None):
        argv = self.wrk_argv(script, url, threads, conns, duration)
        if label:
            note_command(label, argv, env)
        full_env = dict(os.environ)
        full_env.update({k: str(v) for k, v in env.items()})
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, text=True, env=full_env)
        LOADGENS.add(p)
        return p

    @staticmethod
    def finish_wrk(p, timeout):
        LOADGENS.discard(p)
        try:
            out, _ = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGINT)
            try:
                out, _ = p.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                out, _ = p.communicate()
        m = re.search(r"^BENCH_RESULT (\{.*\})$", out or "", re.M)
        if not m:
            raise ToolError(f"wrk printed no result (exit {p.returncode}):\n{(out or '')[-2000:]}")
        return json.loads(m.group(1)), out

    @staticmethod
    def wrk_result(raw):
        secs = raw["duration_us"] / 1e6
        lat = raw.get("latency_us", {})
        errors = raw.get("errors", {})
        return {
            "requests": raw["requests"],
            "rps": raw["requests"] / secs if secs > 0 else 0.0,
            "p50": lat.get("50", 0) / 1000.0,
            "p99": lat.get("99", 0) / 1000.0,
            "max": lat.get("max", 0) / 1000.0,
            "errors": sum(errors.values()),
            "status_errors": errors.get("status", 0),
        }

    def http(self, script, url, env, duration, threads=None, conns=None, label=None):
        threads = threads or self.s.threads
        conns = conns or self.s.connections
        if not self.have_wrk:
            return self.py_http(script, url, env, duration, conns)
        p = self.start_wrk(script, url, env, threads, conns, duration, label)
        raw, _ = self.finish_wrk(p, duration + 60)
        return self.wrk_result(raw)

    # -- the built-in generator (smoke runs without wrk)

    def py_http(self, script, url, env, duration, conns):
        conns = max(1, min(conns, 8))
        op = env.get("BENCH_OP", "get")
        nkeys = int(env.get("BENCH_KEYS", 1000))
        value = env.get("BENCH_VALUE", "v")
        ctx = env.get("BENCH_CTX", '""')
        hosts = [h for h in env.get("BENCH_HOSTS", "").split(",") if h]
        if not hosts:
            hosts = [urllib.parse.urlsplit(url).netloc]
        lat, errs = [], [0]
        lock = threading.Lock()
        deadline = time.monotonic() + duration

        def worker(i):
            c = Client(hosts[i % len(hosts)])
            mine, bad = [], 0
            rnd = random.Random(i)
            while time.monotonic() < deadline:
                k = key_name(rnd.randrange(nkeys))
                kind = op if op != "mix" else ("get" if rnd.random() < 0.9 else "put")
                if script == "etcd.lua":
                    import base64
                    kb = base64.b64encode(k.encode()).decode()
                    if kind == "put":
                        req = ("POST", "/v3/kv/put", json.dumps({"key": kb, "value": value}), None)
                    else:
                        req = ("POST", "/v3/kv/range", json.dumps({"key": kb}), None)
                elif kind == "put":
                    req = ("PUT", f"/key-value-store/{k}",
                           f'{{"value":"{value}","causal-metadata":{ctx}}}', None)
                else:
                    req = ("GET", f"/key-value-store/{k}", None, {"X-Causal-Metadata": ctx})
                t = time.perf_counter()
                try:
                    st, _ = c.request(req[0], req[1], req[2], req[3])
                    if st >= 400:
                        bad += 1
                except (OSError, http.client.HTTPException):
                    bad += 1
                mine.append(time.perf_counter() - t)
            c.close()
            with lock:
                lat.extend(mine)
                errs[0] += bad

        started = time.monotonic()
        ts = [threading.Thread(target=worker, args=(i,)) for i in range(conns)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        secs = time.monotonic() - started
        return {
            "requests": len(lat),
            "rps": len(lat) / secs,
            "p50": (percentile(lat, 50) or 0) * 1000,
            "p99": (percentile(lat, 99) or 0) * 1000,
            "max": (max(lat) if lat else 0) * 1000,
            "errors": errs[0],
            "status_errors": errs[0],
        }

    # -- loading keys

    def load(self, mode, addr, first, count, value, conns=None, deadline=600):
        """Writes keys [first, first+count) once each through addr."""
        if count <= 0:
            return
        threads = self.s.threads
        conns = conns or max(self.s.connections, threads)
        if not self.have_wrk:
            return self.py_load(mode, addr, first, count, value)
        done_dir = tempfile.mkdtemp(prefix="bench-load-", dir=self.s.tmp)
        env = {
            "BENCH_MODE": mode, "BENCH_FIRST": first, "BENCH_COUNT": count,
            "BENCH_THREADS": threads, "BENCH_VALUE": value,
            "BENCH_CONNS": conns // threads, "BENCH_DONE_DIR": done_dir,
        }
        p = self.start_wrk("load.lua", f"http://{addr}/", env, threads, conns, deadline,
                           label=f"load keys ({mode})")
        end = time.monotonic() + deadline
        while time.monotonic() < end and p.poll() is None:
            if len(os.listdir(done_dir)) >= threads:
                break
            time.sleep(0.1)
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
        raw, out = self.finish_wrk(p, 30)
        shutil.rmtree(done_dir, ignore_errors=True)
        if raw.get("status_errors"):
            raise ToolError(f"loading keys: {raw['status_errors']} error answers")
        return raw

    def py_load(self, mode, addr, first, count, value):
        import base64
        nthreads = 8
        errors = []

        def worker(t):
            c = Client(addr)
            for k in range(first + t, first + count, nthreads):
                key = key_name(k)
                if mode == "etcd":
                    kb = base64.b64encode(key.encode()).decode()
                    st, _ = c.request("POST", "/v3/kv/put", json.dumps({"key": kb, "value": value}))
                else:
                    st, _ = c.request("PUT", f"/key-value-store/{key}",
                                      f'{{"value":"{value}","causal-metadata":""}}')
                if st >= 400:
                    errors.append(st)
            c.close()

        ts = [threading.Thread(target=worker, args=(t,)) for t in range(nthreads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        if errors:
            raise ToolError(f"loading keys: {len(errors)} error answers")


# ---------------------------------------------------------------- systems


class CausalKV:
    def __init__(self, procs, binary, n, workers, tag):
        self.procs = procs
        self.binary = binary
        self.workers = workers
        self.tag = tag
        self.addrs = [f"127.0.0.1:{p}" for p in free_ports(n)]
        self.proc = {}
        self.extra_keys = set()  # keys other than key:N written

    def start_replica(self, addr, view):
        env = {
            "SOCKET_ADDRESS": addr,
            "LISTEN_ADDRESS": addr,
            "VIEW": ",".join(view),
            "WORKERS": self.workers,
            "RUST_LOG": "info",
        }
        p = self.procs.start(f"{self.tag}-{addr.rsplit(':', 1)[1]}", [self.binary], env,
                             label="causalkv replica")
        self.proc[addr] = p
        return p

    def start(self):
        for addr in self.addrs:
            self.start_replica(addr, self.addrs)
        self.wait_ready(self.addrs)

    def health(self, addr, timeout=2):
        st, body = http_request(addr, "GET", "/health", timeout=timeout)
        if st != 200:
            raise ToolError(f"{addr}/health answered {st}")
        return json.loads(body)

    def wait_ready(self, addrs, timeout=60):
        end = time.monotonic() + timeout
        want = set(self.addrs)
        while True:
            ok = True
            for a in addrs:
                p = self.proc.get(a)
                if p is not None and p.poll() is not None:
                    raise ToolError(f"causalkv {a} exited with {p.returncode} (see its log)")
                try:
                    h = self.health(a)
                    if not h.get("synced") or set(h.get("view", "").split(",")) != want:
                        ok = False
                except (OSError, ToolError, ValueError, http.client.HTTPException):
                    ok = False
            if ok:
                return
            if time.monotonic() > end:
                raise ToolError(f"causalkv replicas {addrs} not ready in {timeout}s")
            time.sleep(0.1)

    def keys(self, addr):
        return self.health(addr)["keys"]

    def log_path(self, addr):
        """The log file of the replica at addr (see start_replica)."""
        return self.procs.logdir / f"{self.tag}-{addr.rsplit(':', 1)[1]}.log"

    def wait_keys(self, expected, timeout):
        """Waits until every replica holds exactly `expected` keys and has
        nothing buffered; returns whether it did in time."""
        end = time.monotonic() + timeout
        while True:
            try:
                hs = [self.health(a, timeout=5) for a in self.addrs]
                if all(h["keys"] == expected and h.get("buffered", 0) == 0 for h in hs):
                    return True
            except (OSError, ToolError, ValueError, http.client.HTTPException):
                pass
            if time.monotonic() > end:
                return False
            time.sleep(0.2)

    def pids(self):
        return [self.proc[a].pid for a in self.addrs]

    def rss(self):
        return [rss_bytes(self.proc[a].pid) for a in self.addrs]

    def make_context(self, value):
        """A real causal context: one PUT at every replica, each passing
        back the context of the previous answer, as a client does."""
        ctx = ""
        key = "bench:context"
        self.extra_keys.add(key)
        for addr in self.addrs:
            st, body = http_request(addr, "PUT", f"/key-value-store/{key}",
                                    json.dumps({"value": value, "causal-metadata": ctx}))
            if st not in (200, 201):
                raise ToolError(f"PUT at {addr} answered {st}: {body[:200]!r}")
            ctx = json.loads(body)["causal-metadata"]
        text = json.dumps(ctx, separators=(",", ":"))
        for addr in self.addrs:  # every replica has applied it (GET waits)
            st, body = http_request(addr, "GET", f"/key-value-store/{key}",
                                    headers={"X-Causal-Metadata": text})
            if st != 200:
                raise ToolError(f"GET at {addr} with context answered {st}: {body[:200]!r}")
        return text

    def stop(self):
        for a in list(self.proc):
            self.procs.stop(self.proc.pop(a))


class Ceiling:
    def __init__(self, procs, binary, workers):
        self.procs = procs
        self.addr = f"127.0.0.1:{free_ports(1)[0]}"
        argv = [binary, "--workers", workers, "--port", self.addr.rsplit(":", 1)[1]]
        self.p = procs.start("ceiling", argv, label="HTTP ceiling")
        end = time.monotonic() + 20
        while True:
            try:
                st, _ = http_request(self.addr, "GET", "/key-value-store/x", timeout=1)
                if st == 200:
                    break
            except OSError:
                pass
            if self.p.poll() is not None or time.monotonic() > end:
                raise ToolError("the HTTP ceiling did not start (see ceiling.log)")
            time.sleep(0.05)

    def stop(self):
        self.procs.stop(self.p)


class Etcd:
    def __init__(self, procs, tmp, no_fsync, tag):
        self.procs = procs
        ports = free_ports(6)
        self.names = ["m1", "m2", "m3"]
        self.client = [f"127.0.0.1:{p}" for p in ports[:3]]
        self.peer = [f"127.0.0.1:{p}" for p in ports[3:]]
        self.dirs = [tempfile.mkdtemp(prefix=f"{tag}-{n}-", dir=tmp) for n in self.names]
        cluster = ",".join(f"{n}=http://{p}" for n, p in zip(self.names, self.peer))
        self.p = []
        for n, c, pe, d in zip(self.names, self.client, self.peer, self.dirs):
            argv = [
                "etcd", "--name", n, "--data-dir", d,
                "--listen-client-urls", f"http://{c}", "--advertise-client-urls", f"http://{c}",
                "--listen-peer-urls", f"http://{pe}", "--initial-advertise-peer-urls", f"http://{pe}",
                "--initial-cluster", cluster, "--initial-cluster-state", "new",
                "--initial-cluster-token", tag, "--logger", "zap", "--log-level", "warn",
            ]
            if no_fsync:
                argv.append("--unsafe-no-fsync")
            self.p.append(procs.start(f"{tag}-{n}", argv,
                                      label="etcd member" + (" (no fsync)" if no_fsync else "")))
        end = time.monotonic() + 60
        while True:
            healthy = 0
            for c in self.client:
                try:
                    st, body = http_request(c, "GET", "/health", timeout=2)
                    if st == 200 and json.loads(body).get("health") == "true":
                        healthy += 1
                except (OSError, ValueError, http.client.HTTPException):
                    pass
            if healthy == 3:
                break
            for p in self.p:
                if p.poll() is not None:
                    raise ToolError(f"etcd exited with {p.returncode} (see {tag}-*.log)")
            if time.monotonic() > end:
                raise ToolError("etcd cluster not healthy in 60 s")
            time.sleep(0.2)

    def pids(self):
        return [p.pid for p in self.p]

    def count_keys(self):
        import base64
        body = json.dumps({
            "key": base64.b64encode(b"key:").decode(),
            "range_end": base64.b64encode(b"key;").decode(),
            "count_only": True,
        })
        st, data = http_request(self.client[0], "POST", "/v3/kv/range", body)
        return int(json.loads(data).get("count", 0))

    def stop(self):
        for p in self.p:
            self.procs.stop(p)
        for d in self.dirs:
            shutil.rmtree(d, ignore_errors=True)


class Resp:
    """A minimal Redis client (RESP2), enough for INFO, DBSIZE, pipelines."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.buf = b""

    @staticmethod
    def encode(*args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        return b"".join(out)

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ToolError("redis closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise ToolError(f"redis error: {rest.decode()}")
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                self.buf += self.sock.recv(1 << 20)
            data, self.buf = self.buf[:n], self.buf[n + 2:]
            return data.decode()
        if kind == b"*":
            return [self.reply() for _ in range(int(rest))]
        raise ToolError(f"unexpected redis reply {line[:50]!r}")

    def call(self, *args):
        self.sock.sendall(self.encode(*args))
        return self.reply()

    def info(self, section):
        out = {}
        for line in self.call("INFO", section).splitlines():
            if ":" in line:
                k, v = line.split(":", 1)
                out[k] = v
        return out

    def close(self):
        self.sock.close()


class Redis:
    def __init__(self, procs, tmp, tag):
        self.procs = procs
        self.ports = free_ports(3)
        self.dir = tempfile.mkdtemp(prefix=f"{tag}-", dir=tmp)
        self.p = []
        for i, port in enumerate(self.ports):
            argv = [
                "redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", self.dir, "--dbfilename", f"dump-{port}.rdb",
                "--daemonize", "no",
            ]
            if i > 0:
                argv += ["--replicaof", "127.0.0.1", self.ports[0]]
            self.p.append(procs.start(f"{tag}-{port}", argv,
                                      label="redis master" if i == 0 else "redis replica"))
        end = time.monotonic() + 30
        while True:
            try:
                ups = 0
                for port in self.ports[1:]:
                    c = Resp(port)
                    if c.info("replication").get("master_link_status") == "up":
                        ups += 1
                    c.close()
                if ups == 2:
                    break
            except (OSError, ToolError):
                pass
            for p in self.p:
                if p.poll() is not None:
                    raise ToolError(f"redis-server exited with {p.returncode}")
            if time.monotonic() > end:
                raise ToolError("redis replicas not linked in 30 s")
            time.sleep(0.1)

    def pids(self):
        return [p.pid for p in self.p]

    def dbsize(self, port):
        c = Resp(port)
        try:
            return c.call("DBSIZE")
        finally:
            c.close()

    def load(self, count, value):
        """SETs key:0..count-1 through a pipeline (what redis-cli --pipe does)."""
        c = Resp(self.ports[0])
        v = value.encode()
        batch = 10000
        try:
            for start in range(0, count, batch):
                n = min(batch, count - start)
                c.sock.sendall(b"".join(Resp.encode(b"SET", key_name(i).encode(), v)
                                        for i in range(start, start + n)))
                for _ in range(n):
                    c.reply()
        finally:
            c.close()

    def stop(self):
        for p in self.p:
            self.procs.stop(p)
        shutil.rmtree(self.dir, ignore_errors=True)


# -------------------------------------------------------------- the bench


class Bench:
    def __init__(self, s):
        self.s = s
        self.notes = []
        self.noisy = []  # (figure, cores used by other processes)
        self.quiet_budget = 20 if s.smoke else (120 if s.quick else 300)
        self.quiet_waited = 0.0
        self.results = {}
        rng = random.Random(6)
        self.value = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789")
                             for _ in range(s.value_size))
        self.procs = Procs(s.tmp)

    # -- figures

    def figure(self, label, load_fn, pids, repeat=None):
        """Runs load_fn() `repeat` times under a CPU meter; the median of each
        measure."""
        return self.figures([(label, load_fn, pids)], repeat)[0]

    def figures(self, specs, repeat=None):
        """Like figure() for several (label, load_fn, pids) at once, their runs
        interleaved (a1 b1 a2 b2 ...): a machine whose speed drifts (other
        tenants) then skews each figure alike, not their ratio."""
        runs = [[] for _ in specs]
        for i in range(repeat or self.s.repeat):
            for (label, load_fn, pids), done in zip(specs, runs):
                done.append(self.run_once(label, load_fn, pids, i))
        return [self.reduce_runs(r) for r in runs]

    def run_once(self, label, load_fn, pids, i):
        self.wait_quiet(pids)
        with CpuMeter(pids) as cpu:
            r = load_fn()
        r["cpu"] = cpu.server_cores
        r["cpu_each"] = cpu.each
        r["cpu_loadgen"] = cpu.loadgen_cores
        r["cpu_other"] = cpu.other_cores
        r["cpu_us_per_req"] = (cpu.server_cores * 1e6 / r["rps"]) if r["rps"] else None
        log(f"  {label} run {i + 1}: {r['rps']:,.0f} req/s, p50 {r['p50']:.2f} ms, "
            f"p99 {r['p99']:.2f} ms, server CPU {r['cpu']:.2f} cores "
            f"({' + '.join('?' if x is None else f'{x:.2f}' for x in r['cpu_each'])}), "
            f"errors {r['errors']}, other CPU {r['cpu_other']:.2f}")
        if r["requests"] == 0:
            raise ToolError(f"{label}: no request answered")
        if r["cpu_other"] > 0.15:
            self.noisy.append((label, r["cpu_other"]))
        return r

    @staticmethod
    def reduce_runs(runs):
        out = {k: median([r[k] for r in runs]) for k in
               ("rps", "p50", "p99", "cpu", "cpu_loadgen", "cpu_other", "cpu_us_per_req")}
        out["cpu_each"] = [median([r["cpu_each"][i] for r in runs])
                           for i in range(len(runs[0]["cpu_each"]))]
        out["errors"] = sum(r["errors"] for r in runs)
        out["runs"] = [round(r["rps"]) for r in runs]
        return out

    def wait_quiet(self, pids):
        """Waits (30 s at most, within a budget for the whole run) until other
        processes on the machine use under a quarter of a core: a shared
        machine (someone building or testing) skews every figure."""
        start = time.monotonic()
        while self.quiet_budget > 0:
            m0, p0, t0 = machine_busy_ticks(), [proc_ticks(p) for p in pids], time.monotonic()
            time.sleep(0.5)
            ours = sum(b - a for a, b in zip(p0, (proc_ticks(p) for p in pids))
                       if a is not None and b is not None)
            other = (machine_busy_ticks() - m0 - ours) / CLK_TCK / (time.monotonic() - t0)
            waited = time.monotonic() - start
            if other < 0.25 or waited > 30:
                break
        waited = time.monotonic() - start
        self.quiet_budget -= waited
        if waited > 1.5:
            log(f"  waited {waited:.0f} s for other processes to quieten")
            self.quiet_waited += waited

    def kv_load(self, url, op, nkeys, ctx, hosts=None, threads=None, conns=None, label=None):
        env = {"BENCH_OP": op, "BENCH_KEYS": nkeys, "BENCH_VALUE": self.value, "BENCH_CTX": ctx}
        if hosts:
            env["BENCH_HOSTS"] = ",".join(hosts)
        load = Load(self.s, self.have_wrk)
        return lambda: load.http("kv.lua", url, env, self.s.duration, threads=threads,
                                 conns=conns, label=label)

    def spread_shape(self, n):
        """wrk sends each thread's connections to one host: n threads, the
        connections split evenly."""
        per = max(1, round(self.s.connections / n))
        return n, per * n

    # -- parts

    CEILING_CTX = '{"127.0.0.1:1#00000000":1}'

    def part_ceiling(self):
        """Starts the HTTP ceiling; its figures are measured with causalkv's
        one-replica figures, run for run (see part_causalkv), or alone when
        causalkv is skipped."""
        log("== HTTP ceiling")
        self.ceiling = Ceiling(self.procs, self.ceiling_bin, self.s.workers)
        if "causalkv" in self.s.skip:
            try:
                url = f"http://{self.ceiling.addr}/"
                self.results["ceiling"] = {op: self.figure(f"ceiling {op}", self.kv_load(
                    url, op, self.s.keys, self.CEILING_CTX, label=f"wrk {op} (one server)"),
                    [self.ceiling.p.pid]) for op in ("get", "put", "mix")}
            finally:
                self.stop_ceiling()

    def stop_ceiling(self):
        if getattr(self, "ceiling", None) is not None:
            self.ceiling.stop()
            self.ceiling = None

    def part_causalkv(self):
        log("== causalkv, 3 replicas")
        cl = CausalKV(self.procs, self.binary, 3, self.s.workers, "ckv3")
        try:
            cl.start()
            rss0 = cl.rss()
            load = Load(self.s, self.have_wrk)
            load.load("causalkv", cl.addrs[0], 0, self.s.keys, self.value)
            if not cl.wait_keys(self.s.keys, 60):
                raise ToolError("the preloaded keys did not reach every replica in 60 s")
            ctx = cl.make_context(self.value)
            log(f"  causal context: {ctx}")
            time.sleep(0.5)
            rss_loaded = cl.rss()
            res = {"context": ctx}
            one = f"http://{cl.addrs[0]}/"
            ceiling = {}
            redis_figures = getattr(self, "redis_figures", None) or {}
            for op in ("get", "put", "mix"):
                # The runs of the systems causalkv is compared with alternate
                # with causalkv's: each ratio compares runs made side by side.
                specs = {"causalkv": (f"causalkv {op} one replica", self.kv_load(
                    one, op, self.s.keys, ctx, label=f"wrk {op} (one server)"), cl.pids())}
                if getattr(self, "ceiling", None) is not None:
                    specs["ceiling"] = (f"ceiling {op}", self.kv_load(
                        f"http://{self.ceiling.addr}/", op, self.s.keys, self.CEILING_CTX,
                        label=f"wrk {op} (one server)"), [self.ceiling.p.pid])
                redis_test = {"get": "get", "put": "set"}.get(op)
                if redis_test in redis_figures:
                    specs["redis"] = redis_figures[redis_test]
                got = dict(zip(specs, self.figures(list(specs.values()))))
                res[f"{op}_one"] = got["causalkv"]
                if "ceiling" in got:
                    ceiling[op] = got["ceiling"]
                if "redis" in got:
                    self.results["redis"][redis_test] = got["redis"]
            if ceiling:
                self.results["ceiling"] = ceiling
            self.stop_ceiling()
            self.stop_redis()
            t, c = self.spread_shape(len(cl.addrs))
            for op in ("get", "put", "mix"):
                res[f"{op}_spread"] = self.figure(f"causalkv {op} spread", self.kv_load(
                    one, op, self.s.keys, ctx, hosts=cl.addrs, threads=t, conns=c,
                    label=f"wrk {op} (spread over 3 replicas)"), cl.pids())
            res["spread_shape"] = {"threads": t, "connections": c}
            cl.wait_keys(self.s.keys + len(cl.extra_keys), 30)
            res["rss_empty"] = rss0
            res["rss_loaded"] = rss_loaded
            res["rss_after"] = cl.rss()
            res["puts_done"] = None
            self.results["causalkv"] = res
            if "lag" not in self.s.skip:
                self.results["lag"] = self.lag(cl, ctx, res["put_one"]["rps"])
        finally:
            self.stop_ceiling()
            self.stop_redis()
            cl.stop()

    def lag(self, cl, ctx, max_put):
        log("== replication lag")
        target = max_put / 2.0
        a = cl.addrs[0]
        others = cl.addrs[1:]
        # A short pause per connection: the half-maximum rate then comes
        # from a few dozen connections, like the maximum itself (measured
        # with --connections); hundreds of mostly idle connections would be
        # a different, heavier load on the machine's scheduler.
        delay_ms = 1
        load = Load(self.s, self.have_wrk)
        env = {"BENCH_OP": "put", "BENCH_KEYS": self.s.keys, "BENCH_VALUE": self.value,
               "BENCH_CTX": ctx, "BENCH_DELAY_MS": delay_ms}
        threads = self.s.threads
        conns = None
        bg_note = ""
        if self.have_wrk:
            # Calibrate the throttled load: each connection waits delay_ms
            # before each request, so the rate grows with the connections.
            conns = max(threads, int(target * (delay_ms + 1.0) / 1000.0))
            for _ in range(2):
                conns = max(threads, min(2000, conns - conns % threads))
                p = load.start_wrk("kv.lua", f"http://{a}/", env, threads, conns, 2)
                raw, _ = load.finish_wrk(p, 30)
                got = Load.wrk_result(raw)["rps"]
                log(f"  calibration: {conns} connections with {delay_ms} ms delay: {got:,.0f} PUT/s "
                    f"(target {target:,.0f})")
                if got <= 0:
                    break
                conns = int(conns * target / got)
                if abs(got - target) / target < 0.1:
                    break
            conns = max(threads, min(2000, conns - conns % threads))
        else:
            bg_note = "no wrk: no background load"
        runs = []
        for rep in range(self.s.repeat):
            bg = None
            if self.have_wrk and target > 0:
                bg = load.start_wrk("kv.lua", f"http://{a}/", env, threads, conns, 300,
                                    label="wrk throttled PUT load (lag)")
                time.sleep(1.0)
            bg_started = time.monotonic()
            try:
                probe = self.lag_probes(a, others, ctx, self.s.lag_samples, rep)
            finally:
                achieved = None
                if bg is not None:
                    bg.send_signal(signal.SIGINT)
                    raw, _ = load.finish_wrk(bg, 30)
                    achieved = Load.wrk_result(raw)["rps"]
            probe["bg_rps"] = achieved
            probe["bg_secs"] = time.monotonic() - bg_started
            log(f"  lag run {rep + 1}: background {achieved or 0:,.0f} PUT/s; "
                f"visible (polling) p50 {probe['poll_p50']:.2f} ms p99 {probe['poll_p99']:.2f} ms; "
                f"context GET p50 {probe['ctx_p50']:.2f} ms p99 {probe['ctx_p99']:.2f} ms; "
                f"baseline GET {probe['base_p50']:.2f} ms; timeouts {probe['timeouts']}")
            runs.append(probe)
        out = {k: median([r[k] for r in runs]) for k in runs[0] if isinstance(runs[0][k], (int, float))}
        out["target_rps"] = target
        out["connections"] = conns
        out["delay_ms"] = delay_ms
        out["samples"] = self.s.lag_samples
        out["note"] = bg_note
        cl.extra_keys.update({f"lag:{i}" for i in range(50)} | {f"lagc:{i}" for i in range(50)})
        return out

    def lag_probes(self, a, others, ctx, samples, rep):
        """Two probes, `samples` times each:
        - polling: PUT at A, then GET at B (no context, as a client that
          knows nothing) until the new value shows; lag = from the PUT's
          answer to the first answer showing it, less the median GET time.
        - context: PUT at A, then GET at B with the PUT's causal-metadata
          (B answers once it has the write, pulling it if it must); lag =
          the GET's time less the median GET time.
        The median GET time comes from GETs of an existing key at B
        interleaved with the probes."""
        ca = Client(a)
        cbs = {b: Client(b) for b in others}
        poll_raw, ctx_raw, base = [], [], []
        timeouts = 0
        client_ctx = ctx
        deadline = time.monotonic() + max(30.0, samples * 0.2)
        stable = key_name(0)
        try:
            for i in range(samples):
                if time.monotonic() > deadline:
                    break
                b = others[i % len(others)]
                cb = cbs[b]
                # baseline: GET of a key B has, context satisfied
                t = time.perf_counter()
                st, _ = cb.request("GET", f"/key-value-store/{stable}",
                                   headers={"X-Causal-Metadata": ctx})
                base.append(time.perf_counter() - t)
                # polling probe
                value = f"p{rep}-{i}-{random.random():.6f}"
                body = json.dumps({"value": value, "causal-metadata": json.loads(client_ctx)})
                st, data = ca.request("PUT", f"/key-value-store/lag:{i % 50}", body)
                t1 = time.perf_counter()
                if st not in (200, 201):
                    raise ToolError(f"lag probe PUT answered {st}: {data[:200]!r}")
                client_ctx = json.dumps(json.loads(data)["causal-metadata"], separators=(",", ":"))
                seen = False
                while time.perf_counter() - t1 < 5.0:
                    st, data = cb.request("GET", f"/key-value-store/lag:{i % 50}")
                    if st == 200 and json.loads(data).get("value") == value:
                        seen = True
                        break
                if seen:
                    poll_raw.append(time.perf_counter() - t1)
                else:
                    timeouts += 1
                # context probe
                value = f"c{rep}-{i}-{random.random():.6f}"
                body = json.dumps({"value": value, "causal-metadata": json.loads(client_ctx)})
                st, data = ca.request("PUT", f"/key-value-store/lagc:{i % 50}", body)
                t1 = time.perf_counter()
                if st not in (200, 201):
                    raise ToolError(f"lag probe PUT answered {st}: {data[:200]!r}")
                meta = json.dumps(json.loads(data)["causal-metadata"], separators=(",", ":"))
                st, data = cb.request("GET", f"/key-value-store/lagc:{i % 50}",
                                      headers={"X-Causal-Metadata": meta})
                t2 = time.perf_counter()
                if st == 200 and json.loads(data).get("value") == value:
                    ctx_raw.append(t2 - t1)
                    client_ctx = json.dumps(json.loads(data)["causal-metadata"],
                                            separators=(",", ":"))
                else:
                    timeouts += 1
        finally:
            ca.close()
            for c in cbs.values():
                c.close()
        if not poll_raw or not ctx_raw:
            raise ToolError("lag probe: no sample")
        b50 = statistics.median(base)
        poll = [max(0.0, x - b50) * 1000 for x in poll_raw]
        cx = [max(0.0, x - b50) * 1000 for x in ctx_raw]
        return {
            "poll_p50": percentile(poll, 50), "poll_p99": percentile(poll, 99),
            "poll_max": max(poll),
            "ctx_p50": percentile(cx, 50), "ctx_p99": percentile(cx, 99),
            "base_p50": b50 * 1000, "base_p99": percentile(base, 99) * 1000,
            "raw_poll_p99": percentile(poll_raw, 99) * 1000,
            "n": len(poll), "timeouts": timeouts,
        }

    def part_etcd(self):
        nofsync_ok = True
        r = run(["etcd", "--unsafe-no-fsync", "--version"], check=False)
        if r.returncode != 0 or "not defined" in (r.stdout or ""):
            nofsync_ok = False
            self.notes.append("etcd: this etcd has no --unsafe-no-fsync; measured with fsync only")
        configs = [("etcd_fsync", False)] + ([("etcd_nofsync", True)] if nofsync_ok else [])
        import base64
        value64 = base64.b64encode(self.value.encode()).decode()
        for name, no_fsync in configs:
            log(f"== etcd, 3 members{' --unsafe-no-fsync' if no_fsync else ''}")
            e = Etcd(self.procs, self.s.tmp, no_fsync, name.replace("_", "-"))
            try:
                load = Load(self.s, self.have_wrk)
                load.load("etcd", e.client[0], 0, self.s.keys, value64)
                n = e.count_keys()
                if n < self.s.keys:
                    raise ToolError(f"etcd holds {n} keys after loading {self.s.keys}")
                res = {}
                env_base = {"BENCH_KEYS": self.s.keys, "BENCH_VALUE": value64}
                for op in ("put", "get"):
                    env = dict(env_base, BENCH_OP=op)
                    url = f"http://{e.client[0]}/"

                    def fn(env=env, url=url, op=op):
                        return load.http("etcd.lua", url, env, self.s.duration,
                                         label=f"wrk etcd {op}")
                    res[op] = self.figure(f"{name} {op}", fn, e.pids())
                self.results[name] = res
            finally:
                e.stop()

    def part_redis(self):
        """Starts Redis and calibrates redis-benchmark; its figures are
        measured with causalkv's one-replica figures, run for run (see
        part_causalkv), or alone when causalkv is skipped."""
        log("== Redis, master + 2 replicas")
        rd = Redis(self.procs, self.s.tmp, "redis")
        self.redis = rd
        try:
            base = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(rd.ports[0]),
                    "-r", str(self.s.keys), "-d", str(self.s.value_size),
                    "-c", str(self.s.connections), "--csv"]
            threads_ok = "--threads" in (run(["redis-benchmark", "--help"], check=False).stdout or "")
            if threads_ok:
                base += ["--threads", str(self.s.threads)]
            else:
                self.notes.append("redis-benchmark has no --threads: one thread")

            def bench(test, n, label="redis-benchmark"):
                argv = base + ["-t", test, "-n", str(n)]
                note_command(label, argv)
                r = run(argv, timeout=self.s.duration * 10 + 60)
                rows = [line for line in r.stdout.splitlines() if line.startswith('"')]
                header = [h.strip('"') for h in rows[0].split(",")]
                vals = [v.strip('"') for v in rows[1].split(",")]
                row = dict(zip(header, vals))
                return {
                    "requests": n, "rps": float(row["rps"]),
                    "p50": float(row.get("p50_latency_ms", 0)),
                    "p99": float(row.get("p99_latency_ms", 0)),
                    "max": float(row.get("max_latency_ms", 0)),
                    "errors": 0, "status_errors": 0,
                }

            # Fill the key space and calibrate -n to the figure's duration.
            cal = bench("set", max(10000, self.s.keys * 2), "redis-benchmark (fill, calibrate -n)")
            n = max(1000, int(cal["rps"] * self.s.duration))
            self.redis_figures = {
                test: (f"redis {test}", lambda test=test: bench(test, n), rd.pids())
                for test in ("set", "get")}
            self.results["redis"] = {"n": n}
            if "causalkv" in self.s.skip:
                for test, spec in self.redis_figures.items():
                    self.results["redis"][test] = self.figure(*spec)
                self.stop_redis()
        except BaseException:
            self.stop_redis()
            raise

    def stop_redis(self):
        if getattr(self, "redis", None) is not None:
            self.redis.stop()
            self.redis = None
        self.redis_figures = None

    def part_scale(self):
        levels = [lv for lv in (10_000, 100_000, 1_000_000) if lv <= self.s.scale_keys]
        if self.s.scale_keys not in levels:
            levels.append(self.s.scale_keys)
        levels = sorted(set(levels))
        top = levels[-1]
        res = {"levels": {}}
        load = Load(self.s, self.have_wrk)
        log(f"== scale: causalkv, 3 replicas, {', '.join(f'{lv:,}' for lv in levels)} keys")
        cl = CausalKV(self.procs, self.binary, 3, self.s.workers, "scale3")
        try:
            cl.start()
            time.sleep(0.5)
            rss0 = cl.rss()
            loaded = 0
            ctx = None
            for lv in levels:
                t = time.monotonic()
                self.fill(cl, load, loaded, lv)
                load_secs = time.monotonic() - t
                log(f"  {lv:,} keys loaded and replicated ({(lv - loaded) / load_secs:,.0f} keys/s)")
                loaded = lv
                time.sleep(1.0)
                rss = cl.rss()
                per_key = statistics.mean((r - r0) / lv for r, r0 in zip(rss, rss0))
                if ctx is None:
                    ctx = cl.make_context(self.value)
                row = {"rss": rss, "rss_mean": statistics.mean(rss), "rss_per_key": per_key}
                url = f"http://{cl.addrs[0]}/"
                for op in ("get", "put"):
                    row[op] = self.figure(f"scale {lv:,} keys {op}", self.kv_load(
                        url, op, lv, ctx), cl.pids())
                row["load_secs"] = load_secs
                res["levels"][lv] = row
                log(f"  {lv:,} keys: RSS {row['rss_mean'] / 2**20:.1f} MiB per replica, "
                    f"{per_key:.0f} B/key")
            # A fresh fourth replica joins while the cluster serves.
            res["join"] = self.join(cl, top, ctx)
        finally:
            cl.stop()
        # 5 replicas at the smallest level.
        lv = levels[0]
        log(f"== scale: causalkv, 5 replicas, {lv:,} keys")
        c5 = CausalKV(self.procs, self.binary, 5, self.s.workers, "scale5")
        try:
            c5.start()
            time.sleep(0.5)
            r0 = c5.rss()
            load.load("causalkv", c5.addrs[0], 0, lv, self.value)
            if not c5.wait_keys(lv, 120):
                raise ToolError(f"5 replicas do not hold {lv} keys")
            time.sleep(1.0)
            rss = c5.rss()
            ctx5 = c5.make_context(self.value)
            row = {"rss_mean": statistics.mean(rss),
                   "rss_per_key": statistics.mean((r - b) / lv for r, b in zip(rss, r0))}
            url = f"http://{c5.addrs[0]}/"
            for op in ("get", "put"):
                row[op] = self.figure(f"5 replicas {op}", self.kv_load(url, op, lv, ctx5),
                                      c5.pids())
            res["five"] = row
        finally:
            c5.stop()
        # Redis RSS per key at the top level.
        if "redis" in self.s.skip:
            pass
        elif not self.have.issuperset({"redis-server"}):
            self.notes.append("scale: redis-server missing: no Redis RSS per key")
        else:
            log(f"== scale: Redis RSS with {top:,} keys")
            rd = Redis(self.procs, self.s.tmp, "redis-scale")
            try:
                time.sleep(0.5)
                r0 = rss_bytes(rd.p[0].pid)
                rd.load(top, self.value)
                end = time.monotonic() + 120
                while any(rd.dbsize(p) != top for p in rd.ports):
                    if time.monotonic() > end:
                        raise ToolError("redis replicas do not hold every key")
                    time.sleep(0.2)
                time.sleep(1.0)
                r1 = rss_bytes(rd.p[0].pid)
                reps = [rss_bytes(p.pid) for p in rd.p[1:]]
                c = Resp(rd.ports[0])
                used = int(c.info("memory").get("used_memory", 0))
                c.close()
                res["redis"] = {"rss": r1, "rss_per_key": (r1 - r0) / top,
                                "replica_rss": reps, "used_memory": used, "keys": top}
                log(f"  Redis: {(r1 - r0) / top:.0f} B/key (master RSS {r1 / 2**20:.1f} MiB)")
            finally:
                rd.stop()
        self.results["scale"] = res

    def fill(self, cl, load, loaded, count):
        """Loads keys [loaded, count) through the first replica (wrk and
        bench/load.lua, 64 connections) and waits until every replica holds
        them; loads the whole range once more if some went missing."""
        for attempt in range(2):
            load.load("causalkv", cl.addrs[0], loaded if attempt == 0 else 0,
                      count - loaded if attempt == 0 else count, self.value, conns=64,
                      deadline=max(1800, count // 2000))
            if cl.wait_keys(count + len(cl.extra_keys), 120 + count / 2000):
                return
            if attempt == 1:
                raise ToolError(f"replicas do not hold {count} keys after loading")
            log("  some keys missing after the load: loading the range again")

    def join(self, cl, keys, ctx, deadline=None, stall=60.0):
        """A fresh fourth replica joins cl, which holds key_name(0..keys-1):
        see bench/scale_join.py."""
        new = f"127.0.0.1:{free_ports(1)[0]}"
        log(f"  a fresh replica {new} joins and copies {keys + len(cl.extra_keys):,} keys")
        return scale_join.measure(
            cl, new, keys, ctx, self.value, client=Client, key_name=key_name, log=log,
            deadline_secs=deadline or max(60.0, keys / 5000), stall_secs=stall)

    def part_bigjoin(self):
        """The join of a large store: three replicas loaded with --join-keys
        keys, then a fresh fourth replica joins them while a client keeps
        sending requests (see bench/scale_join.py)."""
        n = self.s.join_keys
        log(f"== join of a large store: causalkv, 3 replicas, {n:,} keys, then a fourth")
        cl = CausalKV(self.procs, self.binary, 3, self.s.workers, "bigjoin")
        load = Load(self.s, self.have_wrk)
        try:
            cl.start()
            t = time.monotonic()
            self.fill(cl, load, 0, n)
            load_secs = time.monotonic() - t
            ctx = cl.make_context(self.value)
            time.sleep(1.0)
            rss = cl.rss()
            log(f"  {n:,} keys loaded and replicated in {load_secs:.1f} s "
                f"({n / load_secs:,.0f} keys/s); RSS per replica "
                f"{', '.join(f'{x / 2**20:,.0f}' for x in rss if x)} MiB")
            # Patient with a joiner that shows no progress: a copy may read
            # a large page, or stage the whole state before counting it.
            res = self.join(cl, n, ctx, deadline=max(300.0, n / 5000),
                            stall=max(60.0, n / 50_000))
            res["store_keys"] = n
            res["load_secs"] = load_secs
            res["members_rss_loaded"] = rss
            self.results["bigjoin"] = res
        finally:
            cl.stop()

    # -- the whole run

    def run(self):
        s = self.s
        needed = ["wrk"]
        if not s.smoke:
            needed += [b for b, skip in (("etcd", "etcd"), ("etcdctl", "etcd"),
                                         ("redis-server", "redis"), ("redis-benchmark", "redis"))
                       if skip not in s.skip]
        if s.no_install:
            self.have = {b for b in needed if shutil.which(b)}
        else:
            self.have = install_tools(needed, self.notes)
        self.have_wrk = "wrk" in self.have and not s.python_load
        if not self.have_wrk:
            if s.smoke or s.python_load:
                self.notes.append("the built-in Python load generator was used, not wrk: "
                                  "its figures measure Python more than the servers")
            else:
                raise ToolError("wrk is missing and could not be installed")
        self.versions = versions(s.rev)  # the sources as built
        src = checkout(s.rev, s.tmp) if s.rev else None
        self.binary, self.ceiling_bin = build(self.notes, Path(s.tmp) / "bin", src)
        self.started = datetime.datetime.now(datetime.timezone.utc)
        # The ceiling and Redis are started first: their figures are taken
        # with causalkv's, run for run.
        parts = [("ceiling", self.part_ceiling)]
        if not s.smoke:
            parts += [("redis", self.part_redis)]
        parts += [("causalkv", self.part_causalkv)]
        if not s.smoke:
            parts += [("etcd", self.part_etcd), ("scale", self.part_scale)]
        parts += [("bigjoin", self.part_bigjoin)]
        for name, fn in parts:
            if name in s.skip:
                self.notes.append(f"{name}: skipped (--skip)")
                continue
            if name == "etcd" and "etcd" not in self.have:
                self.notes.append("etcd: etcd-server could not be installed: skipped")
                continue
            if name == "redis" and not {"redis-server", "redis-benchmark"} <= self.have:
                self.notes.append("redis: redis-server/redis-tools could not be installed: skipped")
                continue
            t = time.monotonic()
            fn()
            log(f"   ({name} took {time.monotonic() - t:.0f} s)")
        self.finished = datetime.datetime.now(datetime.timezone.utc)
        self.machine = machine_info()
        self.commands = COMMANDS
        if self.quiet_waited:
            self.notes.append(f"waited {self.quiet_waited:.0f} s in all for other processes on "
                              "the machine to quieten before figures")
        if self.noisy:
            worst = max(self.noisy, key=lambda x: x[1])
            self.notes.append(
                f"the machine was not quiet: other processes used more than 0.15 cores during "
                f"{len(self.noisy)} figure run(s), up to {worst[1]:.2f} cores ({worst[0]}); "
                "see the 'other CPU' column")


# ----------------------------------------------------------------- report


def fmt_rps(x):
    return "—" if x is None else f"{x:,.0f}"


def fmt_ms(x):
    return "—" if x is None else f"{x:.2f}"


def fmt_ratio(x):
    return "—" if x is None else f"{x:.2f}"


def get(d, *path):
    for p in path:
        if d is None:
            return None
        d = d.get(p) if isinstance(d, dict) else None
    return d


def div(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def target_rows(r):
    """(what, causalkv, reference, ratio or value, target text, pass?)"""
    rows = []

    def ratio_row(what, num, den, minimum, unit="req/s"):
        ratio = div(num, den)
        ok = None if ratio is None else ratio >= minimum
        rows.append((what, fmt_rps(num), fmt_rps(den), fmt_ratio(ratio),
                     f"≥ {minimum:g}" if minimum else "—", ok if minimum else None))

    ck = r.get("causalkv", {})
    ce = r.get("ceiling", {})
    ratio_row("GET one replica / HTTP ceiling GET", get(ck, "get_one", "rps"), get(ce, "get", "rps"), 0.85)
    ratio_row("PUT one replica / HTTP ceiling PUT", get(ck, "put_one", "rps"), get(ce, "put", "rps"), 0.6)
    ratio_row("PUT / etcd PUT (no fsync)", get(ck, "put_one", "rps"), get(r, "etcd_nofsync", "put", "rps"), 5)
    ratio_row("PUT / Redis SET (2 replicas)", get(ck, "put_one", "rps"), get(r, "redis", "set", "rps"), 1)
    lag = r.get("lag")
    if lag:
        p99 = lag.get("poll_p99")
        rows.append((f"replication lag p99 at {fmt_rps(lag.get('bg_rps'))} PUT/s "
                     f"(½ max {fmt_rps(lag.get('target_rps') * 2)})",
                     f"{fmt_ms(p99)} ms", "—", f"{fmt_ms(p99)} ms", "≤ 5 ms",
                     None if p99 is None else p99 <= 5.0))
    sc = r.get("scale")
    if sc:
        levels = sorted(sc["levels"])
        top, bottom = levels[-1], levels[0]
        ck_pk = sc["levels"][top]["rss_per_key"]
        rd_pk = get(sc, "redis", "rss_per_key")
        ratio = div(ck_pk, rd_pk)
        rows.append((f"RSS per key at {top:,} keys / Redis", f"{ck_pk:.0f} B",
                     "—" if rd_pk is None else f"{rd_pk:.0f} B", fmt_ratio(ratio), "≤ 1",
                     None if ratio is None else ratio <= 1.0))
        mid = 100_000 if 100_000 in sc["levels"] and top > 100_000 else bottom
        if top != mid:
            flat = div(ck_pk, sc["levels"][mid]["rss_per_key"])
            rows.append((f"RSS per key, {top:,} / {mid:,} keys", f"{ck_pk:.0f} B",
                         f"{sc['levels'][mid]['rss_per_key']:.0f} B", fmt_ratio(flat), "≤ 1.25",
                         None if flat is None else flat <= 1.25))
        if top != bottom:
            for op in ("get", "put"):
                a = get(sc, "levels", top, op, "rps")
                b = get(sc, "levels", bottom, op, "rps")
                ratio = div(a, b)
                rows.append((f"{op.upper()} req/s, {top:,} / {bottom:,} keys", fmt_rps(a), fmt_rps(b),
                             fmt_ratio(ratio), "≥ 0.8", None if ratio is None else ratio >= 0.8))
        j = sc.get("join")
        if j:
            held = j.get("held_secs")
            rows.append((f"fresh replica holds {j['keys']:,} keys after",
                         "never" if held is None else f"{held:.2f} s", "—",
                         "—" if held is None else f"{held:.2f} s", "≤ 5 s",
                         False if held is None else held <= 5.0))
            slowest = j.get("probe_max")
            rows.append(("cluster serves during the join: failed, slowest request",
                         f"{j['probe_ok']} ok", f"p99 {fmt_ms(j['probe_p99'])} ms",
                         f"{j['probe_failed']} failed, {fmt_ms(slowest)} ms", "0, ≤ 1000 ms",
                         j["probe_failed"] == 0 and slowest is not None and slowest <= 1000))
    rows += bigjoin_rows(r.get("bigjoin"))
    # Information, no target.
    ratio_row("GET one replica / etcd GET (no fsync)", get(ck, "get_one", "rps"),
              get(r, "etcd_nofsync", "get", "rps"), 0)
    ratio_row("GET one replica / Redis GET", get(ck, "get_one", "rps"), get(r, "redis", "get", "rps"), 0)
    ratio_row("90/10 mix one replica / HTTP ceiling mix", get(ck, "mix_one", "rps"), get(ce, "mix", "rps"), 0)
    ratio_row("PUT / etcd PUT (fsync)", get(ck, "put_one", "rps"), get(r, "etcd_fsync", "put", "rps"), 0)
    return rows


def join_limit_secs(keys):
    """The target of the join of a large store: 6 s per million keys (the
    1M join's 5 s, and a fifth more for a copy in many pages), at least 5 s."""
    return max(5.0, 6.0 * keys / 1e6)


def bigjoin_rows(j):
    """The Targets rows of the join of a large store (none if not run)."""
    if not j:
        return []
    rows = []
    size = short(j["store_keys"])
    done = j.get("done_secs")
    limit = join_limit_secs(j["store_keys"])
    how = "ready" if j.get("ready_via") == "/ready" else "synced"
    rows.append((f"fresh replica holds {j['keys']:,} keys and is {how} after",
                 "never" if done is None else f"{done:.2f} s", "—",
                 "—" if done is None else f"{done:.2f} s", f"≤ {limit:.0f} s",
                 False if done is None else done <= limit))
    slowest = j.get("probe_max")
    rows.append((f"cluster serves during the {size}-key join: failed, slowest request",
                 f"{j['probe_ok']} ok", f"p99 {fmt_ms(j['probe_p99'])} ms",
                 f"{j['probe_failed']} failed, {fmt_ms(slowest)} ms", "0, ≤ 1000 ms",
                 j["probe_failed"] == 0 and slowest is not None and slowest <= 1000))
    giver, joiner = scale_join.peak_ratio(j)
    if giver is not None or joiner is not None:
        rows.append((f"peak RSS in the {size}-key join: giver, joiner / a member's RSS before",
                     f"{scale_join.mib(j.get('giver_rss_peak'))}, "
                     f"{scale_join.mib(j.get('joiner_rss_peak'))}",
                     scale_join.mib(j.get("giver_rss_before")),
                     f"{fmt_ratio(giver)}, {fmt_ratio(joiner)}", "≤ 1.5 each",
                     giver is not None and joiner is not None and max(giver, joiner) <= 1.5))
    return rows


def detail_rows(r):
    """(system, operation, target, figure)"""
    rows = []
    ck = r.get("causalkv", {})
    ce = r.get("ceiling", {})
    for op in ("get", "put", "mix"):
        if op in ce:
            rows.append(("HTTP ceiling", op.upper(), "1 server", ce[op]))
    for op in ("get", "put", "mix"):
        if f"{op}_one" in ck:
            rows.append(("causalkv", op.upper(), "1 of 3 replicas", ck[f"{op}_one"]))
    for op in ("get", "put", "mix"):
        if f"{op}_spread" in ck:
            rows.append(("causalkv", op.upper(), "spread over 3", ck[f"{op}_spread"]))
    for name, label in (("etcd_fsync", "etcd (fsync)"), ("etcd_nofsync", "etcd (--unsafe-no-fsync)")):
        for op in ("put", "get"):
            if op in r.get(name, {}):
                rows.append((label, "PUT" if op == "put" else "GET (range)", "1 of 3 members", r[name][op]))
    for op in ("set", "get"):
        if op in r.get("redis", {}):
            rows.append(("Redis (redis-benchmark)", op.upper(), "master of 3", r["redis"][op]))
    return rows


def fmt_cpu(f):
    if f.get("cpu") is None:
        return "—"
    each = [x for x in f.get("cpu_each") or [] if x is not None]
    if len(each) > 1:
        return f"{f['cpu']:.2f} ({' + '.join(f'{x:.2f}' for x in each)})"
    return f"{f['cpu']:.2f}"


def table_text(headers, rows):
    widths = [max(len(str(h)), *(len(str(row[i])) for row in rows)) if rows else len(str(h))
              for i, h in enumerate(headers)]
    line = "  ".join(str(h).ljust(w) for h, w in zip(headers, widths))
    out = [line, "  ".join("-" * w for w in widths)]
    for row in rows:
        out.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))
    return "\n".join(out)


def table_md(headers, rows):
    out = ["| " + " | ".join(str(h) for h in headers) + " |",
           "|" + "|".join(" --- " for _ in headers) + "|"]
    for row in rows:
        out.append("| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |")
    return "\n".join(out)


def mark(ok):
    return "—" if ok is None else ("PASS" if ok else "FAIL")


def report_tables(r):
    targets = [(w, a, b, c, t, mark(ok)) for w, a, b, c, t, ok in target_rows(r)]
    th = ("figure", "causalkv", "reference", "ratio / value", "target", "")
    details = []
    for system, op, where, f in detail_rows(r):
        details.append((system, op, where, fmt_rps(f["rps"]), fmt_ms(f["p50"]), fmt_ms(f["p99"]),
                        fmt_cpu(f), "—" if f.get("cpu_us_per_req") is None else f"{f['cpu_us_per_req']:.0f}",
                        f"{f.get('cpu_loadgen') or 0:.2f}",
                        f"{f.get('cpu_other') or 0:.2f}", str(f.get("errors", 0)),
                        " / ".join(f"{x:,}" for x in f.get("runs", []))))
    dh = ("system", "op", "against", "req/s", "p50 ms", "p99 ms", "server CPU (cores)",
          "CPU µs/req", "load gen CPU", "other CPU", "errors", "runs (req/s)")
    return (th, targets), (dh, details)


def scale_tables(r):
    sc = r.get("scale")
    if not sc:
        return None
    rows = []
    for lv in sorted(sc["levels"]):
        row = sc["levels"][lv]
        rows.append((f"{lv:,}", "3", f"{row['rss_mean'] / 2**20:.1f}", f"{row['rss_per_key']:.0f}",
                     fmt_rps(row["get"]["rps"]), fmt_ms(row["get"]["p99"]),
                     fmt_rps(row["put"]["rps"]), fmt_ms(row["put"]["p99"]),
                     f"{row['load_secs']:.1f}"))
    if sc.get("five"):
        lv = sorted(sc["levels"])[0]
        row = sc["five"]
        rows.append((f"{lv:,}", "5", f"{row['rss_mean'] / 2**20:.1f}", f"{row['rss_per_key']:.0f}",
                     fmt_rps(row["get"]["rps"]), fmt_ms(row["get"]["p99"]),
                     fmt_rps(row["put"]["rps"]), fmt_ms(row["put"]["p99"]), "—"))
    if sc.get("redis"):
        rd = sc["redis"]
        rows.append((f"{rd['keys']:,}", "Redis 1+2", f"{rd['rss'] / 2**20:.1f}", f"{rd['rss_per_key']:.0f}",
                     "—", "—", "—", "—", "—"))
    h = ("keys", "replicas", "RSS per replica (MiB)", "RSS B/key", "GET req/s", "GET p99 ms",
         "PUT req/s", "PUT p99 ms", "load (s)")
    return h, rows


def short(n):
    return f"{n // 1_000_000}M" if n >= 1_000_000 and n % 1_000_000 == 0 else (
        f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else f"{n:,}")


def svg_chart(r):
    """Grouped bars of throughput: the systems, then causalkv by scale."""
    ck, ce = r.get("causalkv", {}), r.get("ceiling", {})
    systems = []  # (group label, [(series, value)])
    for op, label in (("get", "GET"), ("put", "PUT"), ("mix", "90/10 mix")):
        g = [("HTTP ceiling", get(ce, op, "rps")),
             ("causalkv, 1 replica", get(ck, f"{op}_one", "rps")),
             ("causalkv, spread over 3", get(ck, f"{op}_spread", "rps"))]
        if op != "mix":
            g += [("etcd, fsync", get(r, "etcd_fsync", op, "rps")),
                  ("etcd, no fsync", get(r, "etcd_nofsync", op, "rps")),
                  ("Redis, 1+2 replicas", get(r, "redis", "set" if op == "put" else "get", "rps"))]
        systems.append((label, g))
    scale = []
    sc = r.get("scale")
    if sc:
        for lv in sorted(sc["levels"]):
            scale.append((f"{short(lv)} keys", [
                ("scale: GET", get(sc, "levels", lv, "get", "rps")),
                ("scale: PUT", get(sc, "levels", lv, "put", "rps"))]))
        if sc.get("five"):
            lv = sorted(sc["levels"])[0]
            scale.append((f"5 replicas, {short(lv)}", [
                ("scale: GET", get(sc, "five", "get", "rps")),
                ("scale: PUT", get(sc, "five", "put", "rps"))]))
    panels = [("Systems (10,000 keys)", systems)]
    if scale:
        panels.append(("causalkv: keys, replicas", scale))
    colors = {
        "HTTP ceiling": "#9e9e9e", "causalkv, 1 replica": "#1f77b4",
        "causalkv, spread over 3": "#6baed6", "etcd, fsync": "#d62728",
        "etcd, no fsync": "#ff9896", "Redis, 1+2 replicas": "#2ca02c",
        "scale: GET": "#9467bd", "scale: PUT": "#ff7f0e",
    }
    values = [v for _, groups in panels for _, g in groups for _, v in g if v]
    vmax = max(values + [1])
    step = 10 ** (len(str(int(vmax))) - 1)
    vtop = ((int(vmax) // step) + 1) * step
    bar_w, gap = 18, 22
    left, top, height = 60, 60, 300
    x = left + 10
    parts, labels = [], []
    for pi, (title, groups) in enumerate(panels):
        if pi:
            parts.append(f'<line x1="{x}" y1="{top - 20}" x2="{x}" y2="{top + height + 30}" '
                         f'stroke="#bbb" stroke-dasharray="4 3"/>')
            x += 20
        panel_start = x
        for label, g in groups:
            # a group is as wide as its bars or its label, bars centred
            bars_w = len(g) * (bar_w + 2)
            pad = max(0.0, (len(label) * 6.5 - bars_w) / 2)
            start = x
            x += pad
            for name, v in g:
                if v:
                    h = height * v / vtop
                    parts.append(
                        f'<rect x="{x:.1f}" y="{top + height - h:.1f}" width="{bar_w}" height="{h:.1f}" '
                        f'fill="{colors[name]}"><title>{name}: {v:,.0f} req/s</title></rect>')
                    parts.append(
                        f'<text x="{x + bar_w / 2:.1f}" y="{top + height - h - 3:.1f}" font-size="8" '
                        f'text-anchor="middle">{v / 1000:.0f}k</text>')
                else:
                    parts.append(f'<text x="{x + bar_w / 2}" y="{top + height - 4}" font-size="8" '
                                 f'text-anchor="middle" fill="#999">n/a</text>')
                x += bar_w + 2
            x += pad
            labels.append(f'<text x="{(start + x) / 2:.1f}" y="{top + height + 16}" font-size="11" '
                          f'text-anchor="middle">{label}</text>')
            x += gap
        labels.append(f'<text x="{(panel_start + x - gap) / 2:.1f}" y="{top - 12}" font-size="12" '
                      f'text-anchor="middle" font-weight="bold">{title}</text>')
    width = max(x + 10, 560)
    axis = []
    for i in range(6):
        v = vtop * i / 5
        y = top + height - height * i / 5
        axis.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - 10}" y2="{y:.1f}" stroke="#e6e6e6"/>')
        axis.append(f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="10" '
                    f'text-anchor="end">{v / 1000:,.0f}k</text>')
    legend = []
    lx, ly = left, top + height + 44
    used = {n for _, groups in panels for _, g in groups for n, v in g}
    for name, color in colors.items():
        if name not in used:
            continue
        w = 30 + 6.5 * len(name)
        if lx + w > width - 10:
            lx, ly = left, ly + 18
        legend.append(f'<rect x="{lx}" y="{ly - 10}" width="12" height="12" fill="{color}"/>'
                      f'<text x="{lx + 16}" y="{ly}" font-size="11">{name}</text>')
        lx += w
    total_h = ly + 16
    return "\n".join([
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{total_h}" '
        f'font-family="sans-serif" viewBox="0 0 {width} {total_h}">',
        f'<rect width="{width}" height="{total_h}" fill="white"/>',
        f'<text x="{left}" y="20" font-size="14" font-weight="bold">Throughput, requests/s '
        f'(median of runs)</text>',
        *axis, *parts, *labels,
        f'<line x1="{left}" y1="{top + height}" x2="{width - 10}" y2="{top + height}" stroke="#333"/>',
        *legend, "</svg>"])


def machine_info():
    info = {}
    try:
        out = run(["lscpu"], check=False).stdout
        for line in out.splitlines():
            k, _, v = line.partition(":")
            if k.strip() in ("Model name", "CPU(s)", "Thread(s) per core", "Architecture"):
                info[k.strip()] = v.strip()
    except OSError:
        pass
    info["cores (nproc)"] = str(os.cpu_count())
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
        info["memory"] = f"{kb / 2**20:.1f} GiB"
    except OSError:
        pass
    info["kernel"] = platform.release()
    try:
        info["Debian"] = Path("/etc/debian_version").read_text().strip()
    except OSError:
        pass
    try:
        fs = run(["df", "-T", tempfile.gettempdir()], check=False).stdout.splitlines()[-1].split()[1]
        info["temp dir filesystem (etcd data)"] = f"{tempfile.gettempdir()} ({fs})"
    except (OSError, IndexError):
        pass
    return info


def versions(rev=None):
    v = {}

    def first_line(argv):
        try:
            r = run(argv, check=False, timeout=20)
            return (r.stdout or "").strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return None

    if rev:
        v["causalkv"] = first_line(["git", "-C", str(ROOT), "rev-parse", "--short", rev]) + \
            f" (--rev {rev}: that commit's sources, built apart)"
        rev = None
    else:
        rev = first_line(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    try:
        dirty = run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no",
                     "--", "src", "Cargo.toml", "Cargo.lock"], check=False).stdout.split("\n")
        dirty = [line[3:] for line in dirty if line.strip()]
    except OSError:
        dirty = []
    if rev:
        v["causalkv"] = f"{rev}" + (f" + uncommitted changes to {', '.join(dirty)}" if dirty else "")
    v["rustc"] = first_line(["rustc", "--version"])
    try:
        lock = (ROOT / "Cargo.lock").read_text()
        m = re.search(r'name = "actix-web"\nversion = "([^"]+)"', lock)
        v["actix-web"] = m.group(1) if m else None
    except OSError:
        pass
    if shutil.which("wrk"):
        v["wrk"] = first_line(["wrk", "-v"])
    if shutil.which("etcd"):
        v["etcd"] = first_line(["etcd", "--version"])
    if shutil.which("redis-server"):
        v["redis"] = first_line(["redis-server", "--version"])
    v["python"] = platform.python_version()
    return {k: x for k, x in v.items() if x}


def write_report(bench, out_dir):
    s, r = bench.s, bench.results
    (th, targets), (dh, details) = report_tables(r)
    scale = scale_tables(r)
    lag = r.get("lag")
    md = ["# Benchmarks", ""]
    md.append(f"Produced by `{' '.join(['python3', 'bench/run.py'] + s.argv)}` on "
              f"{bench.started:%Y-%m-%d %H:%M} UTC ({(bench.finished - bench.started).total_seconds() / 60:.1f} min). "
              "Every HTTP figure: wrk, "
              f"{s.threads} threads, {s.connections} connections, {s.duration} s, {s.keys:,} keys of "
              f"{s.value_size}-byte values, the median of {s.repeat} run(s) (the runs of the ceiling and "
              "of Redis alternate with those of causalkv at one replica, so that their ratios "
              "compare runs made side by side); servers with "
              f"{s.workers} workers; everything on one machine, over loopback. "
              "Re-run with `python3 bench/run.py` (see the README's Benchmarks section).")
    md += ["", "## Targets", "", table_md(th, targets), ""]
    md += ["![throughput](BENCHMARKS.svg)", ""]
    md += ["## Throughput, latency and CPU", "", table_md(dh, details), ""]
    md += ["*server CPU*: cores used by the system's processes from /proc/<pid>/stat, in total "
           "and per replica or member (the one under load first; for Redis: master + replicas); *CPU µs/req*: server CPU time per request; *other CPU*: cores busy "
           "on the machine outside the servers, the load generator and this tool (0 means a quiet "
           "machine). Spread: wrk with one thread per replica "
           f"({get(r, 'causalkv', 'spread_shape', 'threads') or 3} threads, "
           f"{get(r, 'causalkv', 'spread_shape', 'connections') or s.connections} connections). "
           "etcd GET is a "
           "linearizable `/v3/kv/range` against member 1. Redis numbers come from redis-benchmark "
           "(RESP, its own client): a reference, not a peer.", ""]
    if lag:
        md += ["## Replication lag", "",
               table_md(("measure", "p50 ms", "p99 ms"), [
                   ("write at A visible at B (polling B without context)", fmt_ms(lag.get("poll_p50")),
                    fmt_ms(lag.get("poll_p99"))),
                   ("GET at B with the PUT's context (waits for / pulls the write)",
                    fmt_ms(lag.get("ctx_p50")), fmt_ms(lag.get("ctx_p99"))),
                   ("baseline GET round trip at B", fmt_ms(lag.get("base_p50")),
                    fmt_ms(lag.get("base_p99"))),
               ]), "",
               f"{lag.get('samples')} probes of each kind per run (median of runs), with a "
               f"background PUT load at replica A of {fmt_rps(lag.get('bg_rps'))} PUT/s "
               f"(target: half the maximum PUT rate, {fmt_rps(lag.get('target_rps'))}; "
               f"{lag.get('connections')} connections each waiting {lag.get('delay_ms')} ms between "
               "requests, as wrk has no fixed-rate mode). A probe PUTs a fresh value at A and "
               "then GETs the key at B (alternately each other replica) until the value shows; "
               "lag = from the PUT's answer to the answer showing it, less the median GET round "
               f"trip. Probes that never saw the value (5 s): {lag.get('timeouts', 0):.0f}. "
               f"{lag.get('note') or ''}", ""]
    if scale or r.get("bigjoin"):
        md += ["## Scale", ""]
    if scale:
        sc = r["scale"]
        md += [table_md(*scale), ""]
        md += ["RSS from /proc/<pid>/status (VmRSS), per replica, minus the RSS of the same "
               "process before loading, divided by the keys. GET/PUT against one replica over all "
               "the keys loaded. Redis: the master's RSS, same keys and values, loaded through a "
               "pipeline of SETs.", ""]
        j = sc.get("join")
        if j:
            held_text = "never" if j["held_secs"] is None else f"{j['held_secs']:.2f} s"
            md += [f"**Join.** A fresh fourth replica started with `VIEW` naming the three and "
                   f"itself answered `/health` after {fmt_ms(j['answer_secs'])} s and held all "
                   f"{j['keys']:,} keys after "
                   f"{held_text}"
                   f" (synced after {fmt_ms(j['synced_secs'])} s; last count {j['last_keys']:,}). "
                   f"Meanwhile one client sent GETs and PUTs (90/10, with context) round-robin to "
                   f"the three: {j['probe_ok']} answered, {j['probe_failed']} failed, latency p50 "
                   f"{fmt_ms(j['probe_p50'])} ms, p99 {fmt_ms(j['probe_p99'])} ms, max "
                   f"{fmt_ms(j['probe_max'])} ms. {scale_join.rss_sentence(j)}".rstrip(), ""]
    if r.get("bigjoin"):
        md += [bigjoin_paragraph(r["bigjoin"], s.value_size), ""]
    ck = r.get("causalkv", {})
    if ck.get("rss_after"):
        md += [f"RSS of the three-replica cluster of the throughput figures: "
               f"{', '.join(f'{x / 2**20:.1f}' for x in ck['rss_empty'])} MiB empty, "
               f"{', '.join(f'{x / 2**20:.1f}' for x in ck['rss_loaded'])} MiB with {s.keys:,} keys, "
               f"{', '.join(f'{x / 2**20:.1f}' for x in ck['rss_after'])} MiB after every figure "
               "(the same keys, overwritten many times).", ""]
    if bench.notes:
        md += ["## Skipped or changed", ""] + [f"- {n}" for n in bench.notes] + [""]
    md += ["## Machine", "", table_md(("", ""), list(bench.machine.items())), ""]
    md += ["## Versions", "", table_md(("", ""), list(bench.versions.items())), ""]
    md += ["## Commands", "", "One representative of each command the run used (ports and "
           "temp dirs change from run to run; wrk scripts are in `bench/`, settings passed in "
           "the environment):", "", "```sh"]
    for label, cmd in bench.commands.items():
        md += [f"# {label}", cmd]
    md += ["```", ""]
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "BENCHMARKS.md").write_text("\n".join(md))
    (out_dir / "BENCHMARKS.json").write_text(json.dumps({
        "settings": {k: (sorted(v) if isinstance(v, set) else v) for k, v in vars(s).items()
                     if k != "tmp"},
        "started": bench.started.isoformat(), "finished": bench.finished.isoformat(),
        "results": r, "notes": bench.notes, "versions": bench.versions,
        "machine": bench.machine, "commands": bench.commands,
    }, indent=1, default=str))
    (out_dir / "BENCHMARKS.svg").write_text(svg_chart(r))
    return out_dir / "BENCHMARKS.md"


def bigjoin_paragraph(j, value_size):
    """The join of a large store, as a paragraph of BENCHMARKS.md."""
    ready = ("was ready (`GET /ready` answered 200)" if j.get("ready_via") == "/ready" else
             "was synced (`/health`; this build has no `/ready`)")
    if j.get("done_secs") is not None:
        outcome = (f"held all {j['keys']:,} keys after {j['held_secs']:.2f} s and {ready} after "
                   f"{j['ready_secs']:.2f} s")
    else:
        why = {"exited": f"its process exited with {j.get('exited')}",
               "stalled": "its key count had stopped moving",
               "deadline": "the deadline passed"}.get(j.get("outcome"), "the wait ended")
        outcome = (f"never held every key and was ready: it held {j['last_keys']:,} of "
                   f"{j['keys']:,} keys when {why} (held all: {fmt_ms(j.get('held_secs'))} s; "
                   f"ready: {fmt_ms(j.get('ready_secs'))} s)")
    loaded = [x for x in j.get("members_rss_loaded") or [] if x]
    rss = (f"; each replica then at {', '.join(f'{x / 2**20:,.0f}' for x in loaded)} MiB RSS"
           if loaded else "")
    load_secs = j.get("load_secs")
    load = (f" in {load_secs:.1f} s ({j['store_keys'] / load_secs:,.0f} keys/s)"
            if load_secs else "")
    return (f"**Join of a large store.** Three replicas were loaded with {j['store_keys']:,} keys of "
            f"{value_size}-byte values through one of them (wrk, `bench/load.lua`){load}{rss}. "
            f"A fresh fourth replica started with `VIEW` naming the three and itself answered "
            f"`/health` after {fmt_ms(j['answer_secs'])} s, {outcome}. "
            f"{scale_join.rss_sentence(j)} Meanwhile one client sent GETs and PUTs (90/10, with "
            f"context) round-robin to the three: {j['probe_ok']} answered, {j['probe_failed']} "
            f"failed, latency p50 {fmt_ms(j['probe_p50'])} ms, p99 {fmt_ms(j['probe_p99'])} ms, "
            f"max {fmt_ms(j['probe_max'])} ms. The measure is `bench/scale_join.py`'s.")


def print_tables(bench):
    r = bench.results
    (th, targets), (dh, details) = report_tables(r)
    print()
    print(table_text(dh, details))
    lag = r.get("lag")
    if lag:
        print(f"\nreplication lag at {fmt_rps(lag.get('bg_rps'))} PUT/s background: visible at a peer "
              f"p50 {fmt_ms(lag.get('poll_p50'))} ms, p99 {fmt_ms(lag.get('poll_p99'))} ms; "
              f"GET with context p50 {fmt_ms(lag.get('ctx_p50'))} ms, p99 {fmt_ms(lag.get('ctx_p99'))} ms")
    scale = scale_tables(r)
    if scale:
        print()
        print(table_text(*scale))
    print()
    print(table_text(th, targets))
    for n in bench.notes:
        print(f"note: {n}")


# ------------------------------------------------------------------- main


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="bench/run.py",
        description="The causalkv benchmark: causalkv (3 replicas) against an HTTP ceiling, "
                    "etcd and Redis on this machine; writes BENCHMARKS.md.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Modes: default = the full run (~20-25 min); --quick = 3 s figures, 1 run, "
               "100k keys at most for the scale part and 1M for the join of a large store (a "
               "few minutes); --smoke = CI: 1 s figures, 1,000 keys, causalkv and the ceiling "
               "only, a join of 5,000 keys, report in a temp dir.")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--smoke", action="store_true", help="seconds-long run for CI (report in a temp dir)")
    mode.add_argument("--quick", action="store_true", help="shorter figures, 1 run, 100k keys at most")
    p.add_argument("--duration", type=int, help="seconds per figure (default 10; quick 3; smoke 1)")
    p.add_argument("--repeat", type=int, help="runs per figure, the median is kept (default 3)")
    p.add_argument("--keys", type=int, help="keys of the throughput figures (default 10000)")
    p.add_argument("--value-size", type=int, default=100, help="value size in bytes (default 100)")
    p.add_argument("--threads", type=int, default=2, help="load generator threads (default 2)")
    p.add_argument("--connections", type=int, default=32, help="load generator connections (default 32)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="HTTP workers of causalkv and the ceiling (default: the CPU count)")
    p.add_argument("--scale-keys", type=int, help="largest key count of the scale part (default 1000000)")
    p.add_argument("--join-keys", type=int, help="keys of the store a fresh replica joins in the "
                   "bigjoin part (default 10000000; quick 1000000; smoke 5000)")
    p.add_argument("--lag-samples", type=int, help="lag probes of each kind per run (default 500)")
    p.add_argument("--skip", default="", help="comma-separated parts to skip: "
                   "ceiling,causalkv,lag,etcd,redis,scale,bigjoin (the join of a large store)")
    p.add_argument("--out", help="directory for BENCHMARKS.md and BENCHMARKS.svg "
                   "(default: the repository root; smoke: a temp dir)")
    p.add_argument("--no-install", action="store_true", help="never run apt-get")
    p.add_argument("--report-from", metavar="JSON",
                   help="write BENCHMARKS.md and the chart again from a run's BENCHMARKS.json "
                        "(no measurement)")
    p.add_argument("--rev", help="benchmark this git revision (its sources from git archive, "
                   "built in target/bench-rev) instead of the working tree, e.g. HEAD or main~3")
    p.add_argument("--python-load", action="store_true",
                   help="use the built-in Python load generator instead of wrk (what --smoke "
                        "falls back to when wrk cannot be installed)")
    args = p.parse_args(argv)
    args.argv = list(argv)
    if args.smoke:
        dflt = dict(duration=1, repeat=1, keys=1000, scale_keys=2000, lag_samples=20,
                    join_keys=5000)
    elif args.quick:
        dflt = dict(duration=3, repeat=1, keys=10000, scale_keys=100_000, lag_samples=200,
                    join_keys=1_000_000)
    else:
        dflt = dict(duration=10, repeat=3, keys=10000, scale_keys=1_000_000, lag_samples=500,
                    join_keys=10_000_000)
    for k, v in dflt.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    args.skip = {x.strip() for x in args.skip.split(",") if x.strip()}
    unknown = args.skip - {"ceiling", "causalkv", "lag", "etcd", "redis", "scale", "bigjoin"}
    if unknown:
        p.error(f"unknown parts to skip: {', '.join(sorted(unknown))}")
    for name in ("duration", "repeat", "keys", "threads", "connections", "workers", "value_size",
                 "join_keys"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.connections < args.threads:
        p.error("--connections must be at least --threads")
    if args.scale_keys < args.keys:
        args.scale_keys = args.keys
    return args


def load_report(path):
    """The saved state of a run (BENCHMARKS.json), to write its report again."""
    data = json.loads(Path(path).read_text())
    r = data["results"]
    sc = r.get("scale")
    if sc:
        sc["levels"] = {int(k): v for k, v in sc["levels"].items()}
    s = argparse.Namespace(**data["settings"])
    return argparse.Namespace(
        s=s, results=r, notes=data["notes"], versions=data["versions"],
        machine=data["machine"], commands=data["commands"],
        started=datetime.datetime.fromisoformat(data["started"]),
        finished=datetime.datetime.fromisoformat(data["finished"]))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    s = parse_args(argv)
    if s.report_from:
        saved = load_report(s.report_from)
        print_tables(saved)
        path = write_report(saved, Path(s.out) if s.out else Path(s.report_from).resolve().parent)
        log(f"report: {path}")
        return 0
    s.tmp = tempfile.mkdtemp(prefix="causalkv-bench-")
    log(f"logs and data in {s.tmp}")

    def on_signal(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    bench = Bench(s)
    failed = False
    try:
        bench.run()
    except KeyboardInterrupt:
        log("interrupted: stopping every process started")
        failed = True
    except ToolError as e:
        log(f"error: {e}")
        failed = True
    except Exception:
        traceback.print_exc()
        failed = True
    finally:
        for p in list(LOADGENS):
            if p.poll() is None:
                p.kill()
                p.wait()
        bench.procs.stop_all()
    if failed:
        log(f"FAILED (logs in {s.tmp})")
        return 1
    if s.out:
        out_dir = Path(s.out)
    elif s.smoke:
        out_dir = Path(s.tmp) / "report"
    else:
        out_dir = ROOT
    try:
        print_tables(bench)
        path = write_report(bench, out_dir)
    except Exception:
        traceback.print_exc()
        log(f"FAILED writing the report (logs in {s.tmp})")
        return 1
    if s.smoke:
        broken = [f"{system} {op} {where}: {f['errors']} errors"
                  for system, op, where, f in detail_rows(bench.results) if f.get("errors")]
        if broken:
            log("smoke: error answers: " + "; ".join(broken))
            return 1
    log(f"report: {path}")
    if not s.smoke:
        shutil.rmtree(s.tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
