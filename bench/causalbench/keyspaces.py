"""The tables part: what a table costs (README, "Tables and siblings"). A
mixin of Bench (runner.py); the tables and the section of BENCHMARKS.md
are keyspace_report.py's.

1. Per-table overhead: three unsharded replicas, warmed up (PUTs of one key
   on the connections the creations will use, listings at every replica),
   then each replica's RSS once settled (see settled_rss); --table-count
   empty tables created at one replica (`PUT /tables/<name>`, no causal
   context, CREATE_CONNS connections); once every replica lists them all
   (`GET /tables`) with nothing buffered, RSS again, settled. Bytes per
   table: the growth of each replica's RSS over the tables.
2. Per-key cost: --scale-keys keys of --value-size values loaded (wrk,
   bench/load.lua, 64 connections, as the scale part's fill) into the
   default table of three fresh replicas, into a table of three others and
   into a table with siblings of three more, a store at a time: RSS growth
   per key, each replica settled before and after.
3. Throughput: three replicas holding --keys keys in the default table and
   the same keys in a table; GET and PUT (wrk, kv.lua, the settings of
   every figure) at one replica, the default table's runs alternating with
   the table's.
"""

import http.client
import json
import threading
import time

from .base import ToolError, log
from .client import Client, http_request
from .load import Load
from .servers import CausalKV

TABLE = "bench"  # the table of the per-key and throughput figures
SIBLINGS_TABLE = "bench_siblings"  # the one created with {"siblings": true}
CREATE_CONNS = 4  # connections creating the empty tables
WARMUP_REQUESTS = 200  # per connection, before the first RSS
WARMUP_KEY = "bench:tables-warmup"
# RSS is read until two samples SETTLE_SECS apart agree (every replica
# within SETTLE_REL of its last sample, or SETTLE_FLOOR bytes), at most
# SETTLE_SAMPLES samples: the allocator returns freed pages with a delay.
SETTLE_SECS = 0.5
SETTLE_SAMPLES = 20
SETTLE_REL = 0.001
SETTLE_FLOOR = 64 * 1024
STORES = (("default", None, False), ("table", TABLE, False),
          ("siblings", SIBLINGS_TABLE, True))  # the per-key stores: name, table, siblings


class NoTables(Exception):
    """This build has no tables (an older --rev)."""


def table_name(i):
    """The name of the i-th empty table (1 to 50 letters, digits, - and _)."""
    return f"t{i:06d}"


def table_prefix(name):
    """The path before /key-value-store/ of the keys of table `name`
    (None: the default table's, at the root)."""
    return f"/tables/{name}" if name else ""


def listed(body):
    """The tables of a `GET /tables` answer (bytes or str, JSON):
    [{"name", "siblings", "keys"}], or None if it is not one."""
    try:
        tables = json.loads(body).get("tables")
    except (ValueError, AttributeError):
        return None
    return tables if isinstance(tables, list) else None


def table_keys(tables, name):
    """The live keys of table `name` in a listing (see listed), or None if
    it is not listed."""
    for t in tables or []:
        if isinstance(t, dict) and t.get("name") == name:
            return t.get("keys")
    return None


def rss_steady(before, after, rel=SETTLE_REL, floor=SETTLE_FLOOR):
    """Whether two RSS samples of the same processes agree: each within
    `rel` of the earlier sample or `floor` bytes (a process not read:
    never)."""
    if not before or len(before) != len(after):
        return False
    return all(a is not None and b is not None and abs(b - a) <= max(floor, rel * a)
               for a, b in zip(before, after))


def per_item(before, after, n):
    """The growth of each process's RSS divided by n items (None where a
    sample is missing)."""
    return [None if a is None or b is None or not n else (b - a) / n
            for a, b in zip(before, after)]


def mean_or_none(values):
    values = [v for v in values or [] if v is not None]
    return sum(values) / len(values) if values else None


def settled_rss(cl, interval=SETTLE_SECS, samples=SETTLE_SAMPLES):
    """The RSS of every replica of cl once two successive samples agree
    (rss_steady): (rss, samples read, whether they agreed)."""
    time.sleep(interval)
    prev, n = cl.rss(), 1
    while n < samples:
        time.sleep(interval)
        cur = cl.rss()
        n += 1
        if rss_steady(prev, cur):
            return cur, n, True
        prev = cur
    return prev, n, False


def create_table(addr, name, siblings=False, client=None):
    """PUT /tables/<name> at addr, no causal context: the status and body."""
    body = json.dumps({"siblings": True}) if siblings else "{}"
    if client is not None:
        return client.request("PUT", f"/tables/{name}", body)
    return http_request(addr, "PUT", f"/tables/{name}", body)


def create_or_raise(addr, name, siblings=False):
    """Creates table `name` at addr; NoTables if this build has no tables."""
    try:
        st, data = create_table(addr, name, siblings)
    except (OSError, http.client.HTTPException) as e:
        raise ToolError(f"tables: PUT /tables/{name} at {addr}: {type(e).__name__}: {e}")
    if st == 404:
        raise NoTables(f"PUT /tables/{name} answered 404: this build has no tables")
    if st not in (200, 201):
        raise ToolError(f"tables: PUT /tables/{name} at {addr} answered {st}: {data[:200]!r}")


def create_tables(addr, names, conns=CREATE_CONNS):
    """Creates every table of `names` at addr, from `conns` persistent
    connections; returns how many answered 201 (created)."""
    created, errors = [0], []
    lock = threading.Lock()

    def worker(i):
        c = Client(addr, timeout=30)
        mine = 0
        try:
            for name in names[i::conns]:
                if errors:
                    return
                st, data = create_table(addr, name, client=c)
                if st not in (200, 201):
                    errors.append(f"PUT /tables/{name} answered {st}: {data[:200]!r}")
                    return
                mine += st == 201
        except (OSError, http.client.HTTPException) as e:
            errors.append(f"{type(e).__name__}: {e}")
        finally:
            c.close()
            with lock:
                created[0] += mine

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(conns)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        raise ToolError(f"tables: creating tables at {addr}: {errors[0]}")
    return created[0]


def warm_up(cl, conns=CREATE_CONNS, requests=WARMUP_REQUESTS):
    """Requests before the first RSS: PUTs of one default key at the first
    replica from `conns` connections (as the creations will come: their
    buffers, and the peers' replication paths) and listings everywhere."""
    body = json.dumps({"value": "warm", "causal-metadata": ""})

    def worker():
        c = Client(cl.addrs[0], timeout=30)
        try:
            for _ in range(requests):
                c.request("PUT", f"/key-value-store/{WARMUP_KEY}", body)
        finally:
            c.close()

    ts = [threading.Thread(target=worker) for _ in range(conns)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    cl.extra_keys.add(WARMUP_KEY)
    for a in cl.addrs:
        for _ in range(10):
            http_request(a, "GET", "/tables")


def replica_tables(cl, addr):
    """(listing, buffered) at the replica at addr (listing None if
    unreadable)."""
    st, body = http_request(addr, "GET", "/tables", timeout=30)
    return (listed(body) if st == 200 else None), cl.health(addr, timeout=5).get("buffered", 0)


def wait_tables(cl, timeout, count=None, name=None, keys=None):
    """Waits until every replica lists `count` tables (if given) and table
    `name` with `keys` live keys (if given), with nothing buffered; returns
    whether it did in time."""
    end = time.monotonic() + timeout
    while True:
        try:
            ok = True
            for a in cl.addrs:
                tables, buffered = replica_tables(cl, a)
                if tables is None or buffered or \
                        (count is not None and len(tables) != count) or \
                        (name is not None and table_keys(tables, name) != keys):
                    ok = False
                    break
            if ok:
                return True
        except (OSError, ToolError, ValueError, http.client.HTTPException):
            pass
        if time.monotonic() > end:
            return False
        time.sleep(0.25)


class TablesPart:
    def part_tables(self):
        res = {}
        try:
            res["overhead"] = self.tables_overhead()
        except NoTables as e:
            self.notes.append(f"tables: skipped: {e}")
            return
        res["keys"] = self.tables_per_key()
        res["figures"] = self.tables_figures()
        self.results["tables"] = res

    # -- 1. empty tables

    def tables_overhead(self):
        n = self.s.table_count
        log(f"== tables: {n:,} empty tables created at one of 3 replicas: RSS per table")
        cl = CausalKV(self.procs, self.binary, 3, self.s.workers, "tables-empty")
        try:
            cl.start()
            create_or_raise(cl.addrs[0], table_name(0))
            if not wait_tables(cl, 30, count=1):
                raise ToolError("tables: the first table did not reach every replica in 30 s")
            warm_up(cl)
            if not cl.wait_keys(2, 30):  # the first table and the warm-up key
                log("  (the replicas' key counts did not settle in 30 s after the warm-up)")
            rss0, samples0, steady0 = settled_rss(cl)
            names = [table_name(i) for i in range(1, n)]
            t = time.monotonic()
            created = 1 + create_tables(cl.addrs[0], names)
            create_secs = time.monotonic() - t
            if not wait_tables(cl, max(60.0, n / 100), count=n):
                raise ToolError(f"tables: the replicas do not all list {n:,} tables")
            listed_secs = time.monotonic() - t
            rss, samples, steady = settled_rss(cl)
            each = per_item(rss0, rss, n - 1)  # the first table was there before
            out = {"tables": n, "measured": n - 1, "created": created,
                   "created_at": cl.addrs[0], "replicas": list(cl.addrs),
                   "connections": CREATE_CONNS, "create_secs": create_secs,
                   "listed_secs": listed_secs, "rss_before": rss0, "rss_after": rss,
                   "samples": [samples0, samples], "steady": [steady0, steady],
                   "bytes_per_table": each, "bytes_per_table_mean": mean_or_none(each),
                   "stored_keys": [cl.health(a)["keys"] for a in cl.addrs]}
            log(f"  {n - 1:,} tables created in {create_secs:.1f} s ({(n - 1) / create_secs:,.0f}"
                f"/s), listed everywhere after {listed_secs:.1f} s; RSS per table "
                f"{', '.join('?' if x is None else f'{x:,.0f}' for x in each)} B "
                f"(settled after {samples0} and {samples} samples: {steady0}, {steady})")
            return out
        finally:
            cl.stop()

    # -- 2. bytes per key: the default table, a table, a table with siblings

    def tables_per_key(self):
        n = self.s.scale_keys
        load = Load(self.s, self.have_wrk)
        out = {"keys": n}
        for kind, name, siblings in STORES:
            where = "the default table" if not name else \
                f"table {name}{' (siblings)' if siblings else ''}"
            log(f"== tables: {n:,} keys in {where} of 3 fresh replicas: RSS per key")
            cl = CausalKV(self.procs, self.binary, 3, self.s.workers, f"tables-{kind}")
            try:
                cl.start()
                if name:
                    create_or_raise(cl.addrs[0], name, siblings)
                    if not wait_tables(cl, 30, count=1):
                        raise ToolError(f"tables: table {name} did not reach every replica")
                out[kind] = self.tables_weigh(cl, load, n, name)
                out[kind]["siblings"] = siblings
            finally:
                cl.stop()
        return out

    def tables_fill(self, cl, load, n, name=None):
        """Loads key:0..n-1 through the first replica into table `name`
        (None: the default table) and waits until every replica holds
        them; loads the range once more if some went missing."""
        for attempt in range(2):
            load.load("causalkv", cl.addrs[0], 0, n, self.value, conns=64,
                      deadline=max(1800, n // 2000), prefix=table_prefix(name))
            limit = 120 + n / 2000
            if name:
                held = wait_tables(cl, limit, count=1, name=name, keys=n)
            else:
                held = cl.wait_keys(n, limit)
            if held:
                return
            if attempt == 1:
                raise ToolError(f"tables: the replicas do not hold {n} keys in "
                                f"{name or 'the default table'} after loading")
            log("  some keys missing after the load: loading the range again")

    def tables_weigh(self, cl, load, n, name):
        rss0, samples0, steady0 = settled_rss(cl)
        t = time.monotonic()
        self.tables_fill(cl, load, n, name)
        load_secs = time.monotonic() - t
        rss, samples, steady = settled_rss(cl)
        each = per_item(rss0, rss, n)
        out = {"table": name, "load_secs": load_secs, "rss_empty": rss0, "rss": rss,
               "samples": [samples0, samples], "steady": [steady0, steady],
               "per_key": each, "per_key_mean": mean_or_none(each),
               "stored_keys": [cl.health(a)["keys"] for a in cl.addrs]}
        log(f"  loaded in {load_secs:.1f} s; RSS per key "
            f"{', '.join('?' if x is None else f'{x:,.0f}' for x in each)} B; RSS "
            f"{', '.join('?' if x is None else f'{x / 2**20:.1f}' for x in rss)} MiB; "
            f"stored keys {out['stored_keys']}")
        return out

    # -- 3. GET and PUT in a table against the default table

    def tables_figures(self):
        s = self.s
        log(f"== tables: GET and PUT at one of 3 replicas, {s.keys:,} keys in the default table "
            f"against the same keys in table {TABLE}")
        cl = CausalKV(self.procs, self.binary, 3, s.workers, "tables-kv")
        load = Load(s, self.have_wrk)
        try:
            cl.start()
            load.load("causalkv", cl.addrs[0], 0, s.keys, self.value)
            if not cl.wait_keys(s.keys, 60):
                raise ToolError("tables: the default table's keys did not reach every replica")
            create_or_raise(cl.addrs[0], TABLE)
            load.load("causalkv", cl.addrs[0], 0, s.keys, self.value, prefix=table_prefix(TABLE))
            if not wait_tables(cl, 60, count=1, name=TABLE, keys=s.keys):
                raise ToolError(f"tables: table {TABLE}'s keys did not reach every replica")
            ctx = cl.make_context(self.value)
            one = f"http://{cl.addrs[0]}/"
            res = {"keys": s.keys, "table": TABLE, "replica": cl.addrs[0]}
            for op in ("get", "put"):
                default, table = self.figures([
                    (f"tables: {op} default table", self.kv_load(
                        one, op, s.keys, ctx, label=f"wrk {op} (one server)"), cl.pids()),
                    (f"tables: {op} table {TABLE}", self.kv_load(
                        one, op, s.keys, ctx, prefix=table_prefix(TABLE),
                        label=f"wrk {op}, a table's keys (one server)"), cl.pids()),
                ])
                res[f"{op}_default"], res[f"{op}_table"] = default, table
                log(f"  {op}: table/default {table['rps'] / default['rps']:.3f} req/s")
            return res
        finally:
            cl.stop()
