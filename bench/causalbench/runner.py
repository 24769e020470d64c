"""One benchmark run: installs what it lacks, builds, then runs the parts
in order, each figure the median of its runs under a CPU meter, waiting
for a quiet machine before each run. The parts themselves live in parts.py
(the ceiling, causalkv, etcd, Redis), lag.py, conditional.py, durable.py,
scale.py, shards.py and keyspaces.py (tables)."""

import datetime
import random
import shutil
import time
from pathlib import Path

from .base import CLK_TCK, COMMANDS, ToolError, log, median
from .build import build, checkout
from .conditional import ConditionalPart
from .durable import DurablePart
from .install import ensure_modules, install_tools
from .keyspaces import TablesPart
from .lag import LagPart
from .load import Load
from .machine import machine_info, versions
from .measures import CpuMeter, machine_busy_ticks, proc_ticks
from .parts import SystemParts
from .procs import Procs
from .scale import ScaleParts
from .shards import ShardParts


class Bench(SystemParts, LagPart, ConditionalPart, DurablePart, ScaleParts, ShardParts,
            TablesPart):
    """One run: its settings (`s`), notes, results, and the processes it
    started; the parts are the methods of the mixins."""

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
        out["requests"] = sum(r.get("requests") or 0 for r in runs)
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

    def kv_load(self, url, op, nkeys, ctx, hosts=None, threads=None, conns=None, label=None,
                keyfile=None, if_match=None, prefix=None):
        """A load of kv.lua: `op` over key:0..nkeys-1, or over the key
        numbers of `keyfile` (one a line), with the causal context ctx;
        with `if_match`, every PUT carries that If-Match header; with
        `prefix` (/tables/<name>), the keys are a table's."""
        env = {"BENCH_OP": op, "BENCH_KEYS": nkeys, "BENCH_VALUE": self.value, "BENCH_CTX": ctx}
        if hosts:
            env["BENCH_HOSTS"] = ",".join(hosts)
        if keyfile:
            env["BENCH_KEYFILE"] = keyfile
        if if_match:
            env["BENCH_IF_MATCH"] = if_match
        if prefix:
            env["BENCH_PREFIX"] = prefix
        load = Load(self.s, self.have_wrk)
        return lambda: load.http("kv.lua", url, env, self.s.duration, threads=threads,
                                 conns=conns, label=label)

    def spread_shape(self, n):
        """wrk sends each thread's connections to one host: n threads, the
        connections split evenly."""
        per = max(1, round(self.s.connections / n))
        return n, per * n

    # -- the whole run

    def run(self):
        s = self.s
        needed = ["wrk"]
        if not s.smoke:
            needed += [b for b, skip in (("etcd", "etcd"), ("etcdctl", "etcd"),
                                         ("redis-server", "redis"), ("redis-benchmark", "redis"))
                       if skip not in s.skip]
        # Python libraries: the chart always, the Redis client for Redis.
        modules = ["matplotlib"]
        if not s.smoke and "redis" not in s.skip:
            modules.append("redis")
        if s.no_install:
            self.have = {b for b in needed if shutil.which(b)}
        else:
            self.have = install_tools(needed, self.notes)
        self.modules = ensure_modules(modules, self.notes, may_install=not s.no_install)
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
        parts += [("conditional", self.part_conditional)]
        if not s.smoke:
            parts += [("etcd", self.part_etcd)]
        parts += [("durable", self.part_durable)]
        if not s.smoke:
            parts += [("scale", self.part_scale)]
        parts += [("shards", self.part_shards)]
        parts += [("tables", self.part_tables)]
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
            if name == "redis" and "redis" not in self.modules:
                self.notes.append("redis: the Python Redis client could not be installed: skipped")
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
