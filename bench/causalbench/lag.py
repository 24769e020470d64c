"""Replication lag, measured by probes while a background PUT load runs
at about half the maximum PUT rate: a write at one replica, then reads at
another until it shows, and a read carrying the write's context. A mixin
of Bench (runner.py)."""

import json
import random
import signal
import statistics
import time

from .base import ToolError, key_name, log, median, percentile
from .client import Client
from .load import Load


class LagPart:
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
