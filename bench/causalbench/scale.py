"""The scale parts: RSS per key and GET/PUT throughput at 10k, 100k and
1M keys, a fresh fourth replica joining, 3 against 5 replicas, Redis's RSS
per key; and the join of a large store (--join-keys). The joins are
measured by bench/scale_join.py. A mixin of Bench (runner.py)."""

import statistics
import time

import scale_join  # bench/scale_join.py (bench/ is on sys.path: run.py's directory)

from .base import ToolError, key_name, log
from .client import Client
from .load import Load
from .measures import rss_bytes
from .procs import free_ports
from .servers import CausalKV, Redis


class ScaleParts:
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
        elif "redis" not in self.modules:
            self.notes.append("scale: no Python Redis client: no Redis RSS per key")
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
                used = rd.used_memory()
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
