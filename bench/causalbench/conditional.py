"""The conditional part: what a conditional write costs. Three unsharded
replicas loaded with --keys keys (so every key exists), then PUT over those
keys at one replica (wrk, the settings of every PUT figure), plain and with
`If-Match: *` (write only if the key exists: every such write succeeds),
their runs alternating. Every conditional PUT must answer 2xx: wrk counts
any other answer (a 412 among them) as an error, and the replica's
`causalkv_http_requests_total` counts the answers by status. A mixin of
Bench (runner.py)."""

import http.client
import json
import re

from .base import ToolError, key_name, log
from .client import http_request
from .load import Load
from .servers import CausalKV

IF_MATCH = "*"  # the condition measured: the key exists
ABSENT_KEY = "bench:conditional-absent"  # never written: the probe's 412
METRIC = "causalkv_http_requests_total"
KV_ROUTE = "/key-value-store/"


class NoConditions(Exception):
    """This build does not judge If-Match (an older --rev)."""


def labels_of(text):
    """The labels of a Prometheus sample, {name: value}, from the text
    between its braces (values may hold braces: route="/k/{key}")."""
    return {m.group(1): re.sub(r"\\(.)", r"\1", m.group(2))
            for m in re.finditer(r'(\w+)="((?:[^"\\]|\\.)*)"', text or "")}


def status_counts(text, method="PUT", route_prefix=KV_ROUTE, metric=METRIC):
    """{status: count} of the requests of `method` on the routes starting
    with route_prefix, from a /metrics text (causalkv_http_requests_total,
    labelled method, route, status); None if it has no such metric."""
    out, found = {}, False
    pattern = re.compile(rf'^{re.escape(metric)}\{{((?:[^"}}]|"(?:[^"\\]|\\.)*")*)\}}\s+(\S+)')
    for line in (text or "").splitlines():
        m = pattern.match(line)
        if not m:
            continue
        found = True
        lab = labels_of(m.group(1))
        if lab.get("method") != method or not lab.get("route", "").startswith(route_prefix):
            continue
        try:
            n = float(m.group(2))
        except ValueError:
            continue
        status = lab.get("status", "?")
        out[status] = out.get(status, 0) + int(n)
    return out if found else None


def status_delta(before, after):
    """The answers counted between two status_counts (None if either is)."""
    if before is None or after is None:
        return None
    return {k: after.get(k, 0) - before.get(k, 0) for k in sorted(after)
            if after.get(k, 0) != before.get(k, 0)}


def not_2xx(statuses):
    """How many answers of a status_delta were not 2xx (None if unknown)."""
    if statuses is None:
        return None
    return sum(n for k, n in statuses.items() if not str(k).startswith("2"))


class ConditionalPart:
    def part_conditional(self):
        s = self.s
        log(f"== conditional writes: PUT with If-Match: {IF_MATCH} against plain PUT, one of 3 "
            f"replicas, {s.keys:,} keys that exist")
        cl = CausalKV(self.procs, self.binary, 3, s.workers, "cond")
        try:
            cl.start()
            Load(s, self.have_wrk).load("causalkv", cl.addrs[0], 0, s.keys, self.value)
            if not cl.wait_keys(s.keys, 60):
                raise ToolError("conditional: the preloaded keys did not reach every replica "
                                "in 60 s")
            ctx = cl.make_context(self.value)
            addr = cl.addrs[0]
            try:
                self.conditional_check(addr, ctx)
            except NoConditions as e:
                self.notes.append(f"conditional: skipped: {e}")
                return
            one = f"http://{addr}/"
            before = self.put_statuses(addr)
            plain, cond = self.figures([
                ("conditional: put plain", self.kv_load(
                    one, "put", s.keys, ctx, label="wrk put (one server)"), cl.pids()),
                (f"conditional: put If-Match: {IF_MATCH}", self.kv_load(
                    one, "put", s.keys, ctx, if_match=IF_MATCH,
                    label=f"wrk put, If-Match: {IF_MATCH} (one server)"), cl.pids()),
            ])
            statuses = status_delta(before, self.put_statuses(addr))
            res = {"keys": s.keys, "if_match": IF_MATCH, "replica": addr,
                   "put_plain": plain, "put_if_match": cond,
                   "server_statuses": statuses, "server_not_2xx": not_2xx(statuses)}
            log(f"  conditional/plain: {cond['rps'] / plain['rps']:.3f} req/s; errors "
                f"{cond['errors']} of {cond['requests']:,} conditional PUTs; the replica "
                f"answered PUTs with {statuses}")
            self.results["conditional"] = res
        finally:
            cl.stop()

    @staticmethod
    def conditional_check(addr, ctx):
        """The build judges If-Match: a PUT with If-Match: * of a key that
        does not exist answers 412, and one of a key that exists 2xx."""
        body = json.dumps({"value": "x", "causal-metadata": json.loads(ctx)})
        headers = {"If-Match": IF_MATCH}
        try:
            st, data = http_request(addr, "PUT", f"{KV_ROUTE}{ABSENT_KEY}", body, headers)
            if 200 <= st < 300:
                raise NoConditions(f"a PUT with If-Match: {IF_MATCH} of a key that does not "
                                   f"exist answered {st}: this build ignores If-Match")
            if st != 412:
                raise ToolError(f"conditional: a PUT with If-Match: {IF_MATCH} of a missing key "
                                f"answered {st}, not 412: {data[:200]!r}")
            st, data = http_request(addr, "PUT", f"{KV_ROUTE}{key_name(0)}", body, headers)
        except (OSError, http.client.HTTPException) as e:
            raise ToolError(f"conditional: probe PUT at {addr}: {type(e).__name__}: {e}")
        if not 200 <= st < 300:
            raise ToolError(f"conditional: a PUT with If-Match: {IF_MATCH} of {key_name(0)} "
                            f"(loaded) answered {st}: {data[:200]!r}")

    @staticmethod
    def put_statuses(addr):
        """The replica's PUT answers so far, by status (None if /metrics
        does not say)."""
        try:
            st, body = http_request(addr, "GET", "/metrics", timeout=5)
        except (OSError, http.client.HTTPException):
            return None
        return status_counts(body.decode(errors="replace")) if st == 200 else None
