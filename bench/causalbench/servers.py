"""The systems under test, each started on free loopback ports through
Procs (so that a run stops exactly them, by PID) and waited for until it
serves: causalkv (n replicas, or n nodes in shards), the HTTP ceiling
(examples/http_ceiling.rs), etcd (three members) and Redis (a master and
two replicas)."""

import base64
import http.client
import json
import shutil
import tempfile
import time
from pathlib import Path

from .base import ToolError, key_name
from .client import http_request
from .measures import rss_bytes
from .procs import free_ports


class CausalKV:
    """n replicas on loopback. With `durability` (fsync or os), each keeps
    its state in a DATA_DIR of its own under `data_root` (see data_dir),
    removed when the cluster is stopped; without, memory only."""

    def __init__(self, procs, binary, n, workers, tag, durability=None, data_root=None):
        self.procs = procs
        self.env = {}  # more settings of every replica (ShardedKV: SHARD_COUNT)
        self.label = "causalkv replica"
        self.binary = binary
        self.workers = workers
        self.tag = tag
        self.addrs = [f"127.0.0.1:{p}" for p in free_ports(n)]
        self.proc = {}
        self.extra_keys = set()  # keys other than key:N written
        self.durability = durability
        self.data_root = Path(data_root) if durability else None

    def data_dir(self, addr):
        """The DATA_DIR of the replica at addr (None in memory)."""
        if self.data_root is None:
            return None
        return self.data_root / f"{self.tag}-data-{addr.rsplit(':', 1)[1]}"

    def start_replica(self, addr, view):
        env = {
            "SOCKET_ADDRESS": addr,
            "LISTEN_ADDRESS": addr,
            "VIEW": ",".join(view),
            "WORKERS": self.workers,
            "RUST_LOG": "info",
            **self.env,
        }
        label = self.label
        if self.durability:
            env["DATA_DIR"] = self.data_dir(addr)
            env["DURABILITY"] = self.durability
            label = f"causalkv replica (DATA_DIR, {self.durability})"
        p = self.procs.start(f"{self.tag}-{addr.rsplit(':', 1)[1]}", [self.binary], env,
                             label=label)
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
        for a in self.addrs if self.data_root is not None else ():
            shutil.rmtree(self.data_dir(a), ignore_errors=True)


SHARD_API = "/key-value-store-shard"


class NotSharded(Exception):
    """This build does not shard (an older --rev: SHARD_COUNT means nothing
    to it)."""


def shards_settled(nodes, expected):
    """Whether a sharded store holds `expected` keys in all, settled:
    `nodes` lists each node's (shard id, keys, buffered) from its /health;
    every member of a shard holds the same count with nothing buffered, and
    the shards' counts (one per shard) add up to `expected`."""
    counts = {}
    for shard, keys, buffered in nodes:
        if shard is None or buffered:
            return False
        if counts.setdefault(shard, keys) != keys:
            return False
    return bool(counts) and sum(counts.values()) == expected


class ShardedKV(CausalKV):
    """n nodes on loopback, each started with the same VIEW and
    SHARD_COUNT=count: the store split into `count` shards, the nodes dealt
    to them round-robin in address order. Any node takes any key's request
    and relays it to a member of the key's shard. A node's /health names
    its own shard (`shard`), and its `view` and `keys` are its shard's."""

    def __init__(self, procs, binary, n, count, workers, tag):
        super().__init__(procs, binary, n, workers, tag)
        self.count = count
        self.env = {"SHARD_COUNT": count}
        self.label = f"causalkv node (SHARD_COUNT={count})"

    def shard_api(self, path, addr=None, timeout=10):
        addr = addr or self.addrs[0]
        st, body = http_request(addr, "GET", SHARD_API + path, timeout=timeout)
        if st != 200:
            raise ToolError(f"GET {addr}{SHARD_API}{path} answered {st}: {body[:200]!r}")
        return json.loads(body)

    def shard_ids(self, addr=None):
        return self.shard_api("/shard-ids", addr)["shard-ids"]

    def node_shard(self, addr):
        return self.shard_api("/node-shard-id", addr)["shard-id"]

    def members(self, shard, addr=None):
        return self.shard_api(f"/shard-id-members/{shard}", addr)["shard-id-members"]

    def key_count(self, shard, addr=None):
        return self.shard_api(f"/shard-id-key-count/{shard}", addr)["shard-id-key-count"]

    def shards(self):
        """[{"id", "members", "keys"}] of every shard, as the first node
        answers."""
        return [{"id": sid, "members": self.members(sid), "keys": self.key_count(sid)}
                for sid in self.shard_ids()]

    def wait_ready(self, addrs, timeout=60):
        """Waits until every node is synced in a shard of a map of
        `count` shards; NotSharded at once if a node's /health has no
        shard (this build does not shard)."""
        end = time.monotonic() + timeout
        while True:
            ok = True
            for a in addrs:
                p = self.proc.get(a)
                if p is not None and p.poll() is not None:
                    raise ToolError(f"causalkv {a} exited with {p.returncode} (see its log)")
                try:
                    h = self.health(a)
                except (OSError, ToolError, ValueError, http.client.HTTPException):
                    ok = False
                    continue
                shard = h.get("shard")
                if shard is None:
                    raise NotSharded(f"{a}/health names no shard with SHARD_COUNT={self.count}: "
                                     "this build does not shard")
                if not h.get("synced") or shard.get("shard-id") is None or \
                        shard.get("shards") != self.count:
                    ok = False
            if ok:
                return
            if time.monotonic() > end:
                raise ToolError(f"causalkv nodes {addrs} not ready in {self.count} shards in "
                                f"{timeout}s")
            time.sleep(0.1)

    def node_counts(self):
        """[(address, shard id, keys, buffered)] of every node, from /health."""
        out = []
        for a in self.addrs:
            h = self.health(a, timeout=5)
            out.append((a, (h.get("shard") or {}).get("shard-id"), h["keys"],
                        h.get("buffered", 0)))
        return out

    def wait_keys(self, expected, timeout):
        """Waits until the shards hold `expected` keys in all, settled (see
        shards_settled); returns whether they did in time."""
        end = time.monotonic() + timeout
        while True:
            try:
                if shards_settled([row[1:] for row in self.node_counts()], expected):
                    return True
            except (OSError, ToolError, ValueError, KeyError, http.client.HTTPException):
                pass
            if time.monotonic() > end:
                return False
            time.sleep(0.2)


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


class Redis:
    """A Redis master and two replicas on loopback, spoken to with redis-py
    (the module `redis`, imported here: callers check it is installed)."""

    def __init__(self, procs, tmp, tag, aof=False):
        """aof: each server keeps an append-only file (appendfsync
        everysec, Redis's default with AOF; its own appenddirname in the
        shared --dir); else no persistence at all, as in the figures."""
        import redis

        self.redis = redis
        self.procs = procs
        self.ports = free_ports(3)
        self.dir = tempfile.mkdtemp(prefix=f"{tag}-", dir=tmp)
        self.p = []
        for i, port in enumerate(self.ports):
            persist = (["--appendonly", "yes", "--appendfsync", "everysec",
                        "--appenddirname", f"aof-{port}"] if aof else ["--appendonly", "no"])
            argv = [
                "redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "",
                *persist, "--dir", self.dir, "--dbfilename", f"dump-{port}.rdb",
                "--daemonize", "no",
            ]
            if i > 0:
                argv += ["--replicaof", "127.0.0.1", self.ports[0]]
            label = "redis master" if i == 0 else "redis replica"
            self.p.append(procs.start(f"{tag}-{port}", argv,
                                      label=label + (" (AOF)" if aof else "")))
        end = time.monotonic() + 30
        while True:
            try:
                ups = 0
                for port in self.ports[1:]:
                    with self.connect(port) as c:
                        if c.info("replication").get("master_link_status") == "up":
                            ups += 1
                if ups == 2:
                    break
            except (OSError, redis.RedisError):
                pass
            for p in self.p:
                if p.poll() is not None:
                    raise ToolError(f"redis-server exited with {p.returncode}")
            if time.monotonic() > end:
                raise ToolError("redis replicas not linked in 30 s")
            time.sleep(0.1)

    def connect(self, port):
        return self.redis.Redis(host="127.0.0.1", port=port, socket_timeout=30,
                                socket_connect_timeout=5)

    def pids(self):
        return [p.pid for p in self.p]

    def dbsize(self, port):
        with self.connect(port) as c:
            return c.dbsize()

    def used_memory(self):
        """The master's own count of the memory it uses (INFO memory)."""
        with self.connect(self.ports[0]) as c:
            return int(c.info("memory").get("used_memory", 0))

    def load(self, count, value):
        """SETs key:0..count-1 through a pipeline (what redis-cli --pipe does)."""
        batch = 10000
        with self.connect(self.ports[0]) as c:
            for start in range(0, count, batch):
                pipe = c.pipeline(transaction=False)
                for i in range(start, min(start + batch, count)):
                    pipe.set(key_name(i), value)
                pipe.execute()

    def stop(self):
        for p in self.p:
            self.procs.stop(p)
        shutil.rmtree(self.dir, ignore_errors=True)
