"""The parts that compare systems: the HTTP ceiling, causalkv at three
replicas (one replica and spread over three; the ceiling's and Redis's runs
alternate with its one-replica runs), etcd and Redis. A mixin of Bench
(runner.py): the methods use its settings, figures and results."""

import base64
import time

from .base import ToolError, log, run
from .load import Load, redis_benchmark
from .servers import CausalKV, Ceiling, Etcd, Redis


class SystemParts:
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

    def part_etcd(self):
        nofsync_ok = True
        r = run(["etcd", "--unsafe-no-fsync", "--version"], check=False)
        if r.returncode != 0 or "not defined" in (r.stdout or ""):
            nofsync_ok = False
            self.notes.append("etcd: this etcd has no --unsafe-no-fsync; measured with fsync only")
        configs = [("etcd_fsync", False)] + ([("etcd_nofsync", True)] if nofsync_ok else [])
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

            timeout = self.s.duration * 10 + 60

            def bench(test, n, label="redis-benchmark"):
                return redis_benchmark(base, test, n, timeout, label)

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
