"""The shards part: causalkv split into shards (SHARD_COUNT), beside the
unsharded three-replica store. A mixin of Bench (runner.py).

1. Throughput and latency: six nodes in two shards of three, each holding
   its shard's half of --keys keys, and three unsharded replicas holding
   them all. GET and PUT (wrk, the settings of every figure) over the keys
   of one shard, sent to a node of that shard ("owner": every request
   served where it lands) and to a node of the other shard ("forwarded":
   every request relayed to a member of the key's shard), and the same
   keys at one unsharded replica; the runs of the three alternate.
2. Memory: --scale-keys keys (1,000,000; quick 100,000) loaded into three
   unsharded replicas, then into six nodes in two shards: keys and RSS per
   node.
3. A reshard of the two-shard store to three shards (six nodes: two per
   shard) while a client keeps sending GETs and PUTs to every node: how
   long the reshard takes, which requests failed meanwhile (any answer
   other than 2xx or 404, any connection error or timeout), and whether
   the three shards then hold every key.
"""

import http.client
import json
import random
import re
import threading
import time
from pathlib import Path

from .base import ToolError, key_name, log, percentile
from .client import Client, http_request
from .load import Load, write_key_numbers
from .servers import SHARD_API, CausalKV, NotSharded, ShardedKV

NODES = 6  # the sharded store's nodes
SHARDS = 2  # its shards: three nodes each
RESHARD_TO = 3  # the reshard: two nodes each

# The client load during the reshard: threads, share of PUTs, how long a
# request may take before it counts as failed, and how many requests at
# most (the load is bounded in time too: see reshard_limit_secs).
PROBE_THREADS = 4
PROBE_PUT_SHARE = 0.5
PROBE_TIMEOUT_SECS = 60.0
PROBE_MAX_REQUESTS = 2_000_000
# A persistent connection idle longer than this is opened anew before its
# next request (the server may have closed it: not a failure of the store).
PROBE_IDLE_SECS = 1.0


def reshard_limit_secs(keys):
    """The longest the reshard call is waited for: 2 minutes, or 1 s per
    5,000 keys."""
    return max(120.0, keys / 5000)


def shard_of_answer(body):
    """The "shard-id" of a key-value answer (bytes or str, JSON), or None."""
    try:
        sid = json.loads(body).get("shard-id")
    except (ValueError, AttributeError):
        return None
    return sid if isinstance(sid, int) else None


def failure_kind(status=None, error=None):
    """What made a request of the reshard's client load fail, or None if it
    did not: any answer but 2xx and 404 (a key read before it was written
    is not a failure), any error of the connection (its class name)."""
    if error is not None:
        return type(error).__name__ if isinstance(error, BaseException) else str(error)
    if status is None:
        return "no answer"
    if 200 <= status < 300 or status == 404:
        return None
    return f"HTTP {status}"


def metric_total(text, name):
    """The sum of the samples of metric `name` (every label set) in a
    Prometheus text exposition, or None if it has none."""
    total, found = 0.0, False
    for line in (text or "").splitlines():
        m = re.match(rf"^{re.escape(name)}(?:\{{[^}}]*\}})?\s+(\S+)", line)
        if m:
            try:
                total += float(m.group(1))
                found = True
            except ValueError:
                pass
    return total if found else None


def latency_summary(latencies_ms):
    """p50, p99 and max (ms) of latencies, None for each when there are none."""
    return {"p50": percentile(latencies_ms, 50), "p99": percentile(latencies_ms, 99),
            "max": max(latencies_ms) if latencies_ms else None}


class MixedLoad:
    """The client load of the reshard: `threads` threads, each sending GETs
    and PUTs (`put_share` of them PUTs) of random keys key:0..keys-1 to
    the nodes in turn, one at a time, each with the causal context ctx,
    until stop(), `max_requests` in all, or `deadline_secs` from start().
    Records every request's latency and every failure (see failure_kind)."""

    def __init__(self, addrs, keys, value, ctx, threads=PROBE_THREADS,
                 put_share=PROBE_PUT_SHARE, timeout=PROBE_TIMEOUT_SECS,
                 max_requests=PROBE_MAX_REQUESTS, deadline_secs=600.0):
        self.addrs = list(addrs)
        self.keys = keys
        self.put_body = json.dumps({"value": value, "causal-metadata": json.loads(ctx)})
        self.get_headers = {"X-Causal-Metadata": ctx}
        self.threads = threads
        self.put_share = put_share
        self.timeout = timeout
        self.max_requests = max_requests
        self.deadline_secs = deadline_secs
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.sent = 0
        self.ok = {"get": [], "put": []}  # latencies (ms) of the requests answered
        self.failures = {}  # kind -> count
        self.first_failures = []  # (seconds from start, op, node, kind, answer), the first few
        self.slowest = None  # (ms, op, node, status or kind)
        self.workers = []

    def start(self):
        self.t0 = time.monotonic()
        self.end = self.t0 + self.deadline_secs
        self.workers = [threading.Thread(target=self.worker, args=(i,), daemon=True)
                        for i in range(self.threads)]
        for w in self.workers:
            w.start()

    def stop(self):
        self.stopping.set()
        for w in self.workers:
            w.join(self.timeout + 10)
        self.secs = time.monotonic() - self.t0

    def take_turn(self):
        with self.lock:
            if self.sent >= self.max_requests:
                return False
            self.sent += 1
            return True

    def worker(self, i):
        rnd = random.Random(1000 + i)
        conns = {}  # node -> (HTTPConnection, last used)
        turn = i
        try:
            while not self.stopping.is_set() and time.monotonic() < self.end and self.take_turn():
                addr = self.addrs[turn % len(self.addrs)]
                turn += 1
                op = "put" if rnd.random() < self.put_share else "get"
                path = f"/key-value-store/{key_name(rnd.randrange(self.keys))}"
                conn, used = conns.get(addr, (None, 0.0))
                if conn is not None and time.monotonic() - used > PROBE_IDLE_SECS:
                    conn.close()
                    conn = None
                if conn is None:
                    host, port = addr.rsplit(":", 1)
                    conn = http.client.HTTPConnection(host, int(port), timeout=self.timeout)
                status, error, data = None, None, b""
                t = time.perf_counter()
                try:
                    if op == "put":
                        conn.request("PUT", path, body=self.put_body,
                                     headers={"Content-Type": "application/json"})
                    else:
                        conn.request("GET", path, headers=self.get_headers)
                    resp = conn.getresponse()
                    data = resp.read()
                    status = resp.status
                    if resp.getheader("connection", "").lower() == "close":
                        conn.close()
                        conn = None
                except (OSError, http.client.HTTPException) as e:
                    error = e
                    conn.close()
                    conn = None
                ms = (time.perf_counter() - t) * 1000
                conns[addr] = (conn, time.monotonic())
                kind = failure_kind(status, error)
                self.record(op, addr, ms, status, kind,
                            answer=data[:200].decode(errors="replace") if kind else None)
        finally:
            for conn, _ in conns.values():
                if conn is not None:
                    conn.close()

    def record(self, op, addr, ms, status, kind, answer=None):
        with self.lock:
            if kind is None:
                self.ok[op].append(ms)
            else:
                self.failures[kind] = self.failures.get(kind, 0) + 1
                if len(self.first_failures) < 10:
                    self.first_failures.append(
                        (round(time.monotonic() - self.t0, 3), op, addr, kind, answer))
            if self.slowest is None or ms > self.slowest[0]:
                self.slowest = (ms, op, addr, kind or status)

    def summary(self):
        with self.lock:
            lat = self.ok["get"] + self.ok["put"]
            out = {"threads": self.threads, "put_share": self.put_share,
                   "timeout_secs": self.timeout, "secs": getattr(self, "secs", None),
                   "ok": len(lat), "ok_get": len(self.ok["get"]), "ok_put": len(self.ok["put"]),
                   "failed": sum(self.failures.values()), "failures": dict(self.failures),
                   "first_failures": list(self.first_failures),
                   "slowest": list(self.slowest) if self.slowest else None}
            out.update(latency_summary(lat))
            out["put_p99"] = percentile(self.ok["put"], 99)
            out["put_max"] = max(self.ok["put"]) if self.ok["put"] else None
        return out


def put_keys(addr, numbers, value, threads=8):
    """PUTs key:N for every N of `numbers` through the node at addr
    (relayed to its shard where need be), `threads` connections; returns
    {N: the shard id its answer names}."""
    numbers = list(numbers)
    shard_of, errors = {}, []
    lock = threading.Lock()
    body = json.dumps({"value": value, "causal-metadata": ""})

    def worker(t):
        c = Client(addr, timeout=30)
        mine = {}
        try:
            for n in numbers[t::threads]:
                if errors:
                    return
                st, data = c.request("PUT", f"/key-value-store/{key_name(n)}", body)
                sid = shard_of_answer(data)
                if st not in (200, 201) or sid is None:
                    errors.append(f"PUT {key_name(n)} at {addr}: {st} {data[:200]!r}")
                    return
                mine[n] = sid
        except (OSError, http.client.HTTPException) as e:
            errors.append(f"PUT at {addr}: {type(e).__name__}: {e}")
        finally:
            c.close()
            with lock:
                shard_of.update(mine)

    ts = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        raise ToolError(f"loading the sharded store: {errors[0]}")
    return shard_of


def sharded_context(cl, value, numbers):
    """A real causal context of the sharded store with writes in every
    shard: PUTs of key:N (N from `numbers`, each with its own value again)
    at the nodes in turn, each passing back the context of the previous
    answer, until a write landed in every shard; then a GET of each at
    every node with the context (every member has applied it)."""
    want = set(cl.shard_ids())
    ctx, written, seen = "", [], set()
    for i, n in enumerate(numbers):
        if seen >= want or i >= 1000:
            break
        addr = cl.addrs[i % len(cl.addrs)]
        st, body = http_request(addr, "PUT", f"/key-value-store/{key_name(n)}",
                                json.dumps({"value": value, "causal-metadata": ctx}))
        if st not in (200, 201):
            raise ToolError(f"PUT at {addr} answered {st}: {body[:200]!r}")
        answer = json.loads(body)
        ctx = answer["causal-metadata"]
        sid = answer.get("shard-id")
        if sid not in seen:
            seen.add(sid)
            written.append(n)
    if not seen >= want:
        raise ToolError(f"no write landed in shards {sorted(want - seen)}")
    text = json.dumps(ctx, separators=(",", ":"))
    for n in written:
        for addr in cl.addrs:
            st, body = http_request(addr, "GET", f"/key-value-store/{key_name(n)}",
                                    headers={"X-Causal-Metadata": text})
            if st != 200:
                raise ToolError(f"GET at {addr} with context answered {st}: {body[:200]!r}")
    return text


class ShardParts:
    def part_shards(self):
        res = {"nodes": NODES, "shard_count": SHARDS, "reshard_to": RESHARD_TO}
        try:
            res["figures"] = self.shards_figures()
        except NotSharded as e:
            self.notes.append(f"shards: skipped: {e}")
            return
        res["memory"], res["reshard"] = self.shards_memory_and_reshard()
        self.results["shards"] = res

    # -- throughput and latency: owner, forwarded, unsharded

    def shards_figures(self):
        s = self.s
        log(f"== shards: {NODES} nodes in {SHARDS} shards, beside 3 unsharded replicas, "
            f"{s.keys:,} keys")
        s6 = ShardedKV(self.procs, self.binary, NODES, SHARDS, s.workers, "shards-s6")
        u3 = CausalKV(self.procs, self.binary, 3, s.workers, "shards-u3")
        load = Load(s, self.have_wrk)
        try:
            s6.start()
            u3.start()
            load.load("causalkv", u3.addrs[0], 0, s.keys, self.value)
            if not u3.wait_keys(s.keys, 60):
                raise ToolError("shards: the unsharded replicas do not hold the keys in 60 s")
            ctx_u = u3.make_context(self.value)
            owner = s6.addrs[0]
            shard_of = put_keys(owner, range(s.keys), self.value)
            if not s6.wait_keys(s.keys, 60):
                raise ToolError(f"shards: the {SHARDS} shards do not hold {s.keys} keys in 60 s")
            home = s6.node_shard(owner)
            other = next((a for a in s6.addrs if s6.node_shard(a) != home), None)
            if other is None:
                raise ToolError(f"shards: every node is in shard {home}")
            owned = sorted(n for n, sid in shard_of.items() if sid == home)
            if not owned:
                raise ToolError(f"shards: no key of {s.keys} is in shard {home}")
            ctx_s = sharded_context(s6, self.value, range(s.keys))
            log(f"  shard {home}: {len(owned):,} of {s.keys:,} keys; owner {owner}, "
                f"forwarded through {other} (shard {s6.node_shard(other)}); context {ctx_s}")
            keyfile = write_key_numbers(Path(s.tmp) / "shards-owned-keys.txt", owned)
            figs = {"keys": s.keys, "owned_keys": len(owned), "owner_shard": home,
                    "owner": owner, "forwarded_via": other,
                    # How the node relays (see Cluster::targets).
                    "relayed_to": "the live one it keeps to, drawn from its own address; "
                                  "under load, requests to one member travel in batches",
                    "owner_shard_members": s6.members(home),
                    "shard_keys": {str(sid): sum(1 for x in shard_of.values() if x == sid)
                                   for sid in sorted(set(shard_of.values()))}}
            for op in ("get", "put"):
                specs = [
                    (f"shards: {op} owner", self.kv_load(
                        f"http://{owner}/", op, s.keys, ctx_s, keyfile=keyfile,
                        label=f"wrk {op} (the keys of one shard)"), s6.pids()),
                    (f"shards: {op} forwarded", self.kv_load(
                        f"http://{other}/", op, s.keys, ctx_s, keyfile=keyfile), s6.pids()),
                    (f"shards: {op} unsharded", self.kv_load(
                        f"http://{u3.addrs[0]}/", op, s.keys, ctx_u, keyfile=keyfile),
                     u3.pids()),
                ]
                for where, f in zip(("owner", "forwarded", "unsharded"), self.figures(specs)):
                    figs[f"{op}_{where}"] = f
            return figs
        finally:
            s6.stop()
            u3.stop()

    # -- memory per node, then the reshard

    def shards_memory_and_reshard(self):
        s = self.s
        n = s.scale_keys
        load = Load(s, self.have_wrk)
        mem = {"keys": n}
        log(f"== shards: memory, {n:,} keys in 3 unsharded replicas")
        u3 = CausalKV(self.procs, self.binary, 3, s.workers, "shards-mem-u3")
        try:
            mem["unsharded"] = self.shards_weigh(u3, load, n)
        finally:
            u3.stop()
        log(f"== shards: memory, {n:,} keys in {NODES} nodes, {SHARDS} shards; then a reshard "
            f"to {RESHARD_TO} under load")
        s6 = ShardedKV(self.procs, self.binary, NODES, SHARDS, s.workers, "shards-mem-s6")
        try:
            mem["sharded"] = self.shards_weigh(s6, load, n)
            reshard = self.shards_reshard(s6, n)
        finally:
            s6.stop()
        return mem, reshard

    def shards_weigh(self, cl, load, n):
        """Loads n keys into cl (through its first node, wrk and
        bench/load.lua, 64 connections) and weighs each node: keys (its
        /health) and RSS, before and after."""
        cl.start()
        time.sleep(0.5)
        rss0 = cl.rss()
        t = time.monotonic()
        self.fill(cl, load, 0, n)
        load_secs = time.monotonic() - t
        time.sleep(1.0)
        rss = cl.rss()
        healths = [cl.health(a) for a in cl.addrs]
        out = {"nodes": len(cl.addrs), "load_secs": load_secs, "rss_empty": rss0, "rss": rss,
               "keys": [h["keys"] for h in healths],
               "shard_of_node": [(h.get("shard") or {}).get("shard-id") for h in healths]}
        if isinstance(cl, ShardedKV):
            out["shards"] = cl.shards()
        log(f"  {n:,} keys loaded in {load_secs:.1f} s; keys per node "
            f"{', '.join(f'{k:,}' for k in out['keys'])}; RSS per node "
            f"{', '.join('?' if x is None else f'{x / 2**20:.1f}' for x in rss)} MiB")
        return out

    def shards_reshard(self, cl, n):
        """Reshards cl (n keys, SHARDS shards) to RESHARD_TO while a client
        keeps sending GETs and PUTs to every node (MixedLoad)."""
        limit = reshard_limit_secs(n)
        ctx = sharded_context(cl, self.value, range(n))
        before = self.shards_metrics(cl)
        probe = MixedLoad(cl.addrs, n, self.value, ctx, deadline_secs=limit + 30)
        res = {"from": SHARDS, "to": RESHARD_TO, "keys": n, "limit_secs": limit,
               "coordinator": cl.addrs[0]}
        probe.start()
        try:
            time.sleep(1.0)  # the load runs before the reshard starts
            t = time.monotonic()
            res["load_lead_secs"] = t - probe.t0  # the load's start to the reshard's
            try:
                st, body = http_request(cl.addrs[0], "PUT", f"{SHARD_API}/reshard",
                                        json.dumps({"shard-count": RESHARD_TO}), timeout=limit)
                res["status"], res["answer"] = st, body.decode(errors="replace")[:300]
            except (OSError, http.client.HTTPException) as e:
                res["status"], res["answer"] = None, f"{type(e).__name__}: {e}"
            res["secs"] = time.monotonic() - t
            log(f"  reshard to {RESHARD_TO} answered {res['status']} after {res['secs']:.2f} s: "
                f"{res['answer'][:120]}")
            time.sleep(1.0)  # and after it ends
        finally:
            probe.stop()
        res["load"] = probe.summary()
        ld = res["load"]
        log(f"  meanwhile: {ld['ok']:,} answered, {ld['failed']} failed {ld['failures']}, "
            f"p50 {ld['p50'] or 0:.2f} ms, p99 {ld['p99'] or 0:.2f} ms, "
            f"max {ld['max'] or 0:.0f} ms")
        # Every key where it belongs: the shards' counts add up to the keys.
        t = time.monotonic()
        res["settled"] = cl.wait_keys(n, 60 + n / 20000)
        res["settle_secs"] = time.monotonic() - t
        try:
            res["shards"] = cl.shards()
            res["key_sum"] = sum(x["keys"] for x in res["shards"])
            res["nodes"] = [list(row) for row in cl.node_counts()]
        except (OSError, ToolError, ValueError, KeyError, http.client.HTTPException) as e:
            res["shards"], res["key_sum"] = None, None
            res["error"] = f"{type(e).__name__}: {e}"
        after = self.shards_metrics(cl)
        res["handed_off"] = diff(after.get("handed_off"), before.get("handed_off"))
        res["received"] = diff(after.get("received"), before.get("received"))
        time.sleep(1.0)
        res["rss_after"] = cl.rss()
        log(f"  after: shards {[(x['id'], x['keys']) for x in res['shards'] or []]}, sum "
            f"{res['key_sum']} of {n} (settled: {res['settled']}, {res['settle_secs']:.1f} s); "
            f"{res['handed_off']} versions handed off")
        return res

    @staticmethod
    def shards_metrics(cl):
        """Versions handed off and received in reshards, summed over the
        nodes (/metrics)."""
        out = {}
        for name, metric in (("handed_off", "causalkv_shard_versions_handed_off_total"),
                             ("received", "causalkv_shard_versions_received_total")):
            total = 0.0
            for a in cl.addrs:
                try:
                    st, body = http_request(a, "GET", "/metrics", timeout=5)
                except (OSError, http.client.HTTPException):
                    return out
                got = metric_total(body.decode(errors="replace"), metric) if st == 200 else None
                if got is None:
                    return out
                total += got
            out[name] = total
        return out


def diff(a, b):
    return None if a is None or b is None else a - b
