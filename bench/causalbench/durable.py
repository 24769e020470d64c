"""The durable part: causalkv replicas that keep their state on disk
(DATA_DIR, with DURABILITY=fsync, the default, or os) measured against the
same replicas in memory and the HTTP ceiling, their runs alternating; a
durable replica holding --durable-keys keys killed with SIGKILL and
restarted on its data directory; and the bytes a key takes on disk and in
memory, beside Redis (its append-only file and its RDB dump) and etcd (its
data directory). A mixin of Bench (runner.py)."""

import base64
import http.client
import json
import time
from pathlib import Path

from .base import CLK_TCK, ToolError, log
from .client import http_request
from .load import Load, etcd_txn_load
from .measures import disk_usage, proc_ticks, rss_bytes
from .servers import CausalKV, Ceiling, Etcd, Redis

MODES = ("memory", "fsync", "os")  # the PUT figures, in the order their runs alternate

# How long the durable clusters may take to idle after the PUT runs, and
# how long they must stay idle, before the GET runs (see durable_figures):
# by smoke or not.
GET_SETTLE = {True: (3.0, 1.0), False: (60.0, 3.0)}

# The most keys etcd is loaded with to weigh its data directory: a
# transaction of 128 puts commits at about 100 a second on a small machine,
# so a million keys take a minute and a half.
ETCD_DISK_KEYS = {"full": 1_000_000, "quick": 100_000}


class NoDurability(Exception):
    """This build does not keep its state on disk (an older --rev)."""


class DurablePart:
    def part_durable(self):
        s = self.s
        res = {"keys": s.keys}
        try:
            res["figures"] = self.durable_figures()
        except NoDurability as e:
            self.notes.append(f"durable: skipped: {e}")
            return
        res["store"] = self.durable_store(s.durable_keys)
        if not s.smoke:
            for name, fn in (("redis", self.durable_redis), ("etcd", self.durable_etcd)):
                why = self.durable_reference_missing(name)
                if why:
                    self.notes.append(f"durable: no {name} bytes per key: {why}")
                    continue
                try:
                    res[name] = fn()
                except ToolError as e:  # the reference only: causalkv's figures stand
                    self.notes.append(f"durable: {name}'s bytes per key not measured: {e}")
        self.results["durable"] = res

    def durable_reference_missing(self, name):
        """Why Redis or etcd cannot be weighed in this run, or None."""
        if name in self.s.skip:
            return f"{name} skipped (--skip)"
        if name == "etcd" and "etcd" not in self.have:
            return "etcd-server is not installed"
        if name == "redis" and "redis-server" not in self.have:
            return "redis-server is not installed"
        if name == "redis" and "redis" not in self.modules:
            return "no Python Redis client"
        return None

    # -- throughput: memory, fsync, os and the ceiling, side by side

    def durable_figures(self):
        """PUT at one of three replicas in memory, with DATA_DIR under
        fsync and under os, their runs alternating; GET with DATA_DIR
        (fsync) alternating with the HTTP ceiling's."""
        s = self.s
        log("== durable: 3 replicas in memory, with DATA_DIR fsync, with DATA_DIR os; "
            "the HTTP ceiling")
        clusters = {m: CausalKV(self.procs, self.binary, 3, s.workers, f"dur-{m}",
                                durability=None if m == "memory" else m, data_root=s.tmp)
                    for m in MODES}
        ceiling = None
        load = Load(s, self.have_wrk)
        try:
            ctx = {}
            modes = {}
            for m, cl in clusters.items():
                cl.start()
                modes[m] = (cl.health(cl.addrs[0]).get("durability") or {}).get("mode")
                if m != "memory" and modes[m] != m:
                    raise NoDurability(f"replicas started with DATA_DIR and DURABILITY={m} say "
                                       f"their mode is {modes[m]!r} in /health: this build "
                                       "does not keep its state on disk")
                load.load("causalkv", cl.addrs[0], 0, s.keys, self.value)
                if not cl.wait_keys(s.keys, 60):
                    raise ToolError(f"durable ({m}): the preloaded keys did not reach every "
                                    "replica in 60 s")
                ctx[m] = cl.make_context(self.value)
            if "ceiling" not in s.skip:
                ceiling = Ceiling(self.procs, self.ceiling_bin, s.workers)

            def spec(m, op):
                cl = clusters[m]
                return (f"durable: causalkv {m} {op}",
                        self.kv_load(f"http://{cl.addrs[0]}/", op, s.keys, ctx[m]), cl.pids())

            figs = {"modes": modes}
            for m, f in zip(MODES, self.figures([spec(m, "put") for m in MODES])):
                figs[f"put_{m}"] = f
            # The PUT runs leave the durable clusters flushing and compacting
            # for a while; GET is measured once that is done, not beside it.
            durable = [m for m in MODES if m != "memory"]
            figs["get_settle_secs"], figs["get_settled"] = settle(
                [p for m in durable for p in clusters[m].pids()],
                [clusters[m].data_dir(a) for m in durable for a in clusters[m].addrs],
                *GET_SETTLE[s.smoke])
            specs = [spec("fsync", "get")]
            if ceiling is not None:
                specs.append(("durable: ceiling get", self.kv_load(
                    f"http://{ceiling.addr}/", "get", s.keys, self.CEILING_CTX),
                    [ceiling.p.pid]))
            got = self.figures(specs)
            figs["get_fsync"] = got[0]
            if ceiling is not None:
                figs["get_ceiling"] = got[1]
            figs["data_dirs"] = {m: disk_usage(clusters[m].data_dir(clusters[m].addrs[0]))["bytes"]
                                 for m in MODES if m != "memory"}
            return figs
        finally:
            if ceiling is not None:
                ceiling.stop()
            for cl in clusters.values():
                cl.stop()

    # -- a store of --durable-keys keys: disk, memory, a restart after SIGKILL

    def durable_store(self, n):
        s = self.s
        log(f"== durable: 3 replicas with DATA_DIR (fsync), {n:,} keys; one killed with SIGKILL "
            "and restarted on its data")
        settle_max, settle_quiet = (3.0, 1.0) if s.smoke else (60.0, 3.0)
        cl = CausalKV(self.procs, self.binary, 3, s.workers, "dur-store", durability="fsync",
                      data_root=s.tmp)
        load = Load(s, self.have_wrk)
        try:
            cl.start()
            time.sleep(0.5)
            rss0 = cl.rss()
            t = time.monotonic()
            self.fill(cl, load, 0, n)
            load_secs = time.monotonic() - t
            log(f"  {n:,} keys loaded and replicated in {load_secs:.1f} s "
                f"({n / load_secs:,.0f} keys/s)")
            dirs = [cl.data_dir(a) for a in cl.addrs]
            settle_secs, settled = settle(cl.pids(), dirs, settle_max, settle_quiet)
            disk = [data_dir_usage(d) for d in dirs]
            rss = cl.rss()
            log(f"  settled after {settle_secs:.0f} s{'' if settled else ' (not quite)'}: "
                f"disk {per_key([x['bytes'] for x in disk], n)} B/key, "
                f"RSS {per_key([diff(a, b) for a, b in zip(rss, rss0)], n)} B/key")
            a = cl.addrs[0]
            expected = n + len(cl.extra_keys)
            rec = kill_and_restart(cl, a, expected, timeout=max(60.0, n / 10_000))
            rec["keys"] = expected
            log(f"  restarted after SIGKILL: answers after {fmt_secs(rec['answer_secs'])}, "
                f"ready after {fmt_secs(rec['ready_secs'])}, holds {expected:,} keys after "
                f"{fmt_secs(rec['held_secs'])}; identity "
                f"{'kept' if rec['same_identity'] else 'CHANGED'}")
            after = {}
            if rec.get("exited") is None:
                pid = cl.proc[a].pid
                after["settle_secs"], after["settled"] = settle(
                    [pid], [cl.data_dir(a)], settle_max, settle_quiet)
                after["disk"] = data_dir_usage(cl.data_dir(a))
                after["rss"] = rss_bytes(pid)
                after["all_hold_keys"] = cl.wait_keys(expected, 30)
            return {"keys": n, "load_secs": load_secs, "settle_secs": settle_secs,
                    "settled": settled, "disk": disk, "rss_empty": rss0, "rss": rss,
                    "replica": a, "recovery": rec, "after_restart": after}
        finally:
            cl.stop()

    # -- the references: Redis and etcd, holding the same keys

    def durable_redis(self):
        """Redis (a master and two replicas, each with an append-only file,
        appendfsync everysec) loaded with the same keys: the master's RSS
        per key, its append-only file per key, then its RDB dump (SAVE)."""
        n = self.s.durable_keys
        log(f"== durable: Redis with an append-only file, {n:,} keys")
        rd = Redis(self.procs, self.s.tmp, "redis-aof", aof=True)
        try:
            port = rd.ports[0]
            time.sleep(0.5)
            r0 = rss_bytes(rd.p[0].pid)
            t = time.monotonic()
            rd.load(n, self.value)
            load_secs = time.monotonic() - t
            end = time.monotonic() + 120
            while True:  # the replicas hold every key; no AOF rewrite under way
                with rd.connect(port) as c:
                    info = c.info("persistence")
                busy = info.get("aof_rewrite_in_progress") or info.get("aof_rewrite_scheduled")
                if not busy and all(rd.dbsize(p) == n for p in rd.ports):
                    break
                if time.monotonic() > end:
                    raise ToolError("Redis: the replicas do not hold every key, or the AOF "
                                    "rewrite did not end, in 120 s")
                time.sleep(0.2)
            time.sleep(1.5)  # appendfsync everysec
            r1 = rss_bytes(rd.p[0].pid)
            aof = disk_usage(Path(rd.dir) / f"aof-{port}")
            with rd.connect(port) as c:
                c.save()
            rdb = disk_usage(Path(rd.dir) / f"dump-{port}.rdb")
            out = {"keys": n, "load_secs": load_secs, "rss": r1,
                   "rss_per_key": None if diff(r1, r0) is None else diff(r1, r0) / n,
                   "aof": aof, "rdb": rdb}
            log(f"  Redis: AOF {per_key([aof['bytes']], n)} B/key, RDB {per_key([rdb['bytes']], n)} "
                f"B/key, RSS {per_key([diff(r1, r0)], n)} B/key")
            return out
        finally:
            rd.stop()

    def durable_etcd(self):
        """etcd (three members, fsync) loaded with the same keys, or fewer
        (ETCD_DISK_KEYS) in 128-put transactions: each member's data
        directory (du), its bbolt file and its WAL, and RSS, per key."""
        mode = "quick" if self.s.quick else "full"
        n = min(self.s.durable_keys, ETCD_DISK_KEYS[mode])
        log(f"== durable: etcd (fsync), {n:,} keys in transactions of 128 puts")
        e = Etcd(self.procs, self.s.tmp, False, "etcd-disk")
        try:
            time.sleep(0.5)
            r0 = [rss_bytes(p) for p in e.pids()]
            value64 = base64.b64encode(self.value.encode()).decode()
            load_secs = etcd_txn_load(e.client[0], 0, n, value64)
            got = e.count_keys()
            if got != n:
                raise ToolError(f"etcd holds {got} keys after loading {n}")
            time.sleep(1.0)
            rss = [rss_bytes(p) for p in e.pids()]
            members = []
            for d in e.dirs:
                members.append({"bytes": disk_usage(d)["bytes"],
                                "db": disk_usage(Path(d) / "member" / "snap" / "db")["bytes"],
                                "wal": disk_usage(Path(d) / "member" / "wal")["bytes"]})
            out = {"keys": n, "load_secs": load_secs, "members": members, "rss": rss,
                   "rss_per_key": [None if diff(a, b) is None else diff(a, b) / n
                                   for a, b in zip(rss, r0)]}
            log(f"  etcd: {n:,} keys in {load_secs:.1f} s; data dir "
                f"{per_key([m['bytes'] for m in members], n)} B/key (bbolt "
                f"{per_key([members[0]['db']], n)}), RSS {per_key(out['rss_per_key'][:1], 1)} B/key")
            return out
        finally:
            e.stop()


def data_dir_usage(path):
    """du of a causalkv DATA_DIR, and of its journals (db/*.jnl) alone."""
    total = disk_usage(path)
    total["journals"] = disk_usage(Path(path) / "db", "*.jnl")["bytes"]
    return total


def settle(pids, paths, max_secs, quiet_secs=3.0, step=1.0):
    """Waits until the processes idle (under 0.05 cores each) and the
    directories' du stays put (within 1 MiB or 0.5%) for quiet_secs in a
    row: the tree's flushes and compactions after a load are done. Returns
    (seconds waited, whether it settled before max_secs)."""
    start = time.monotonic()
    last = None
    still = 0.0
    while True:
        t0 = time.monotonic()
        before = [proc_ticks(p) for p in pids]
        time.sleep(step)
        after = [proc_ticks(p) for p in pids]
        cores = sum(b - a for a, b in zip(before, after) if a is not None and b is not None) \
            / CLK_TCK / max(time.monotonic() - t0, 1e-3)
        sizes = [disk_usage(p)["bytes"] for p in paths]
        steady = last is not None and all(abs(x - y) <= max(2**20, 0.005 * y)
                                          for x, y in zip(sizes, last))
        still = still + step if steady and cores < 0.05 * len(pids) else 0.0
        last = sizes
        waited = time.monotonic() - start
        if still >= quiet_secs:
            return waited, True
        if waited >= max_secs:
            return waited, False


def kill_and_restart(cl, addr, expected, timeout, poll=0.01):
    """Kills the replica at addr with SIGKILL, starts it again at once with
    the same settings and DATA_DIR, and times, from the new process's
    start: its first answer, GET /ready answering 200, and /health counting
    `expected` keys. Also whether it kept its identity (the `replica` id of
    /health: a replica that had to start over as a new incarnation would
    copy the keys from a peer, which is not a recovery) and whether its log
    says it truncated a torn journal tail."""
    identity = cl.health(addr)["replica"]
    p = cl.proc[addr]
    p.kill()
    p.wait(timeout=30)
    cl.procs.stop(p)  # it is gone: only forgotten
    log_path = cl.log_path(addr)
    offset = log_path.stat().st_size if log_path.exists() else 0
    t0 = time.monotonic()
    new = cl.start_replica(addr, cl.addrs)
    out = {"answer_secs": None, "ready_secs": None, "held_secs": None, "last_keys": None,
           "identity_before": identity, "identity_after": None, "exited": None}
    end = t0 + timeout
    while time.monotonic() < end:
        if new.poll() is not None:
            out["exited"] = new.returncode
            break
        try:
            st, _ = http_request(addr, "GET", "/ready", timeout=2)
            now = time.monotonic() - t0
            if out["answer_secs"] is None:
                out["answer_secs"] = now
            if st == 200 and out["ready_secs"] is None:
                out["ready_secs"] = now
            st, body = http_request(addr, "GET", "/health", timeout=2)
            now = time.monotonic() - t0
            if st == 200:
                h = json.loads(body)
                out["last_keys"] = h.get("keys")
                out["identity_after"] = h.get("replica")
                if out["held_secs"] is None and h.get("keys") == expected:
                    out["held_secs"] = now
        except (OSError, ValueError, http.client.HTTPException):
            pass
        if out["ready_secs"] is not None and out["held_secs"] is not None:
            break
        time.sleep(poll)
    out["same_identity"] = (None if out["identity_after"] is None
                            else out["identity_after"] == identity)
    try:
        with open(log_path, "rb") as f:
            f.seek(offset)
            out["tail_truncated"] = b"journal tail truncated" in f.read()
    except OSError:
        out["tail_truncated"] = None
    return out


def diff(a, b):
    return None if a is None or b is None else a - b


def per_key(values, n):
    """'336, 229, 229': bytes per key, for the log."""
    return ", ".join("?" if v is None else f"{v / n:,.0f}" for v in values)


def fmt_secs(x):
    return "never" if x is None else f"{x:.2f} s"
