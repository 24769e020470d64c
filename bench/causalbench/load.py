"""The load generators and their results: wrk with the Lua scripts of
bench/ (kv.lua, etcd.lua, load.lua), a built-in Python generator when wrk
is missing (smoke runs), and redis-benchmark. Each load gives a dict: rps,
p50/p99/max latency (ms), errors."""

import base64
import http.client
import json
import os
import random
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.parse

from .base import BENCH, LOADGENS, ToolError, key_name, note_command, percentile, run
from .client import Client


def parse_wrk(out):
    """The BENCH_RESULT line the Lua scripts print at the end (a JSON
    object), or None."""
    m = re.search(r"^BENCH_RESULT (\{.*\})$", out or "", re.M)
    return json.loads(m.group(1)) if m else None


def key_numbers(env):
    """The key numbers a load picks from: those of the file BENCH_KEYFILE
    names (one a line; e.g. the keys of one shard), else 0..BENCH_KEYS-1."""
    path = env.get("BENCH_KEYFILE")
    if not path:
        return range(int(env.get("BENCH_KEYS", 1000)))
    with open(path) as f:
        keys = [int(line) for line in f if line.strip()]
    if not keys:
        raise ToolError(f"BENCH_KEYFILE {path} names no key")
    return keys


def write_key_numbers(path, numbers):
    """Writes a BENCH_KEYFILE (see kv.lua and key_numbers)."""
    with open(path, "w") as f:
        f.writelines(f"{n}\n" for n in numbers)
    return path


def parse_redis_benchmark(csv_text, n):
    """The result of one redis-benchmark --csv test of n requests."""
    rows = [line for line in csv_text.splitlines() if line.startswith('"')]
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


def redis_benchmark(base, test, n, timeout, label="redis-benchmark"):
    """Runs one redis-benchmark test (`base`: the command with host, port
    and settings) of n requests."""
    argv = base + ["-t", test, "-n", str(n)]
    note_command(label, argv)
    return parse_redis_benchmark(run(argv, timeout=timeout).stdout, n)


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
        raw = parse_wrk(out)
        if raw is None:
            raise ToolError(f"wrk printed no result (exit {p.returncode}):\n{(out or '')[-2000:]}")
        return raw, out

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
        numbers = key_numbers(env)
        value = env.get("BENCH_VALUE", "v")
        ctx = env.get("BENCH_CTX", '""')
        put_headers = {"If-Match": env["BENCH_IF_MATCH"]} if env.get("BENCH_IF_MATCH") else None
        prefix = env.get("BENCH_PREFIX", "")
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
                k = key_name(rnd.choice(numbers))
                kind = op if op != "mix" else ("get" if rnd.random() < 0.9 else "put")
                if script == "etcd.lua":
                    kb = base64.b64encode(k.encode()).decode()
                    if kind == "put":
                        req = ("POST", "/v3/kv/put", json.dumps({"key": kb, "value": value}), None)
                    else:
                        req = ("POST", "/v3/kv/range", json.dumps({"key": kb}), None)
                elif kind == "put":
                    req = ("PUT", f"{prefix}/key-value-store/{k}",
                           f'{{"value":"{value}","causal-metadata":{ctx}}}', put_headers)
                else:
                    req = ("GET", f"{prefix}/key-value-store/{k}", None,
                           {"X-Causal-Metadata": ctx})
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

    def load(self, mode, addr, first, count, value, conns=None, deadline=600, prefix=""):
        """Writes keys [first, first+count) once each through addr; causalkv:
        at `prefix`/key-value-store/ (a table's: /tables/<name>)."""
        if count <= 0:
            return
        threads = self.s.threads
        conns = conns or max(self.s.connections, threads)
        if not self.have_wrk:
            return self.py_load(mode, addr, first, count, value, prefix)
        done_dir = tempfile.mkdtemp(prefix="bench-load-", dir=self.s.tmp)
        env = {
            "BENCH_MODE": mode, "BENCH_FIRST": first, "BENCH_COUNT": count,
            "BENCH_THREADS": threads, "BENCH_VALUE": value,
            "BENCH_CONNS": conns // threads, "BENCH_DONE_DIR": done_dir,
        }
        label = f"load keys ({mode})"
        if prefix:
            env["BENCH_PREFIX"] = prefix
            label = f"load keys ({mode}, {prefix})"
        p = self.start_wrk("load.lua", f"http://{addr}/", env, threads, conns, deadline,
                           label=label)
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

    def py_load(self, mode, addr, first, count, value, prefix=""):
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
                    st, _ = c.request("PUT", f"{prefix}/key-value-store/{key}",
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


def etcd_txn_load(addr, first, count, value64, threads=4, batch=128, deadline=1800):
    """Writes keys [first, first+count) once each into etcd at addr, `batch`
    puts per transaction (POST /v3/kv/txn; etcd takes 128 operations per
    transaction by default) from `threads` connections: far faster than one
    PUT per request, which commits (fsyncs) once per key. Returns the
    seconds it took."""
    starts = list(range(first, first + count, batch))
    errors = []
    end = time.monotonic() + deadline
    t0 = time.monotonic()

    def worker(i):
        c = Client(addr, timeout=60)
        try:
            for b in starts[i::threads]:
                if errors or time.monotonic() > end:
                    return
                ops = [{"requestPut": {"key": base64.b64encode(key_name(k).encode()).decode(),
                                       "value": value64}}
                       for k in range(b, min(first + count, b + batch))]
                try:
                    st, body = c.request("POST", "/v3/kv/txn", json.dumps({"success": ops}))
                except (OSError, http.client.HTTPException) as e:
                    errors.append(f"{type(e).__name__}: {e}")
                    return
                if st != 200:
                    errors.append(f"{st} {body[:200]!r}")
                    return
        finally:
            c.close()

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        raise ToolError(f"loading etcd in transactions: {errors[0]}")
    if time.monotonic() > end:
        raise ToolError(f"loading etcd in transactions: not done in {deadline} s")
    return time.monotonic() - t0


# ---------------------------------------------------------------- systems
