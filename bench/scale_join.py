"""Measuring a fresh replica's join while the cluster keeps serving.

bench/run.py measures two joins with this module: the one of its scale part
(a fresh fourth replica joins the three that hold up to 1,000,000 keys) and
the join of a large store (--join-keys, 10,000,000 keys in the full run),
which exists to show that state transfer scales: that a replica can join a
store far larger than one snapshot message, in a time proportional to the
data, without the replica it copies from (the giver) or the joiner needing
memory beyond the data itself, and without the cluster pausing.

What one join measures, from the moment the joiner's process is started:

- when it first answers `/health`, when it holds every key (`keys` in
  `/health`), when it is ready (`GET /ready` answers 200), and the time by
  which both hold (`done_secs`, the figure reported). A node without a
  `/ready` endpoint (it answers 404: an older build) is taken
  to be ready once `/health` says `"synced": true`; the result names which
  of the two was used (`ready_via`).
- peak resident memory during the join, of the joiner and of each of the
  three members. Each process's peak (`VmHWM` in /proc/<pid>/status) is
  reset when the join starts by writing 5 to /proc/<pid>/clear_refs, so
  that the peak read at the end is exactly the peak during the join, not
  that of the load before it. Where the reset is refused (another user's
  process, an old kernel), `VmRSS` polled every 50 ms stands in (it can miss
  a peak shorter than that). The joiner's peak is its lifetime peak anyway.
- which member gave the state: the joiner's log names it (the line of the
  copy, with `peer=<address>`). When the log does not tell, the giver's
  figure is the largest peak of the three, and the result says so
  (`giver` is None).
- what the cluster served meanwhile: one client thread sends GETs and PUTs
  (90/10) to the three members in turn, every request with the causal
  context of the run, over keys that exist; answered (200 or 201) and
  failed requests, and latency p50/p99/max.

The wait ends when the joiner holds every key and is ready, when its
process exits, when its key count has not moved for `stall_secs` (a copy
that failed for good, e.g. one refused as too large), or at the deadline;
a figure never reached is None.

Python 3 standard library only. This module imports nothing from the
benchmark's package (bench/causalbench/): its scale part hands in what it
needs (its HTTP client, its log function, its key names).
"""

import http.client
import json
import random
import re
import threading
import time

# How often the RSS of the processes is polled (where VmHWM cannot be reset).
SAMPLE_SECS = 0.05

# How often the joiner's /health and /ready are polled.
POLL_SECS = 0.02

# How long a joiner that is ready but short of keys may show no progress.
READY_STALL_SECS = 30.0

# Lines of the joiner's log that name (peer=...) the member it copies the
# state from: "copying a member's state", "copied the state of a member".
GIVER_LINE = re.compile(r"\bcop(y|ying|ied)\b|snapshot", re.I)


# ------------------------------------------------------------------ /proc


def proc_status(pid):
    """VmRSS and VmHWM of a process in bytes ({} once it is gone)."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    name, rest = line.split(":", 1)
                    out[name] = int(rest.split()[0]) * 1024
    except (OSError, ValueError):
        pass
    return out


def reset_peak(pid):
    """Resets a process's VmHWM to its current RSS; whether the kernel let us."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class RssSampler:
    """Peak RSS of some processes over an interval: the kernel's VmHWM,
    reset at the start where allowed, and VmRSS polled meanwhile."""

    def __init__(self, pids):
        self.pids = dict(pids)  # name -> pid
        self.before = {}
        self.polled = {}
        self.exact = {}  # name -> whether VmHWM is the peak since the start
        self.samples = 0
        self.stopped = threading.Event()
        self.thread = None

    def _watch(self, name, pid, exact):
        self.pids[name] = pid
        self.before[name] = proc_status(pid).get("VmRSS")
        self.polled[name] = self.before[name] or 0
        self.exact[name] = exact

    def start(self):
        for name, pid in list(self.pids.items()):
            self._watch(name, pid, reset_peak(pid))
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()
        return self

    def add(self, name, pid):
        """Starts watching a process born after start() (the joiner): its
        lifetime peak is its peak during the interval."""
        self._watch(name, pid, True)

    def _poll(self):
        while not self.stopped.wait(SAMPLE_SECS):
            for name, pid in list(self.pids.items()):
                rss = proc_status(pid).get("VmRSS")
                if rss is not None and rss > self.polled.get(name, 0):
                    self.polled[name] = rss
            self.samples += 1

    def stop(self):
        """{name: {"before", "peak", "after", "exact"}}, in bytes; "exact"
        says the peak is the kernel's VmHWM rather than the polled maximum."""
        self.stopped.set()
        if self.thread is not None:
            self.thread.join(5)
        out = {}
        for name, pid in self.pids.items():
            st = proc_status(pid)
            exact = self.exact[name] and st.get("VmHWM") is not None
            peak = max(self.polled[name], st.get("VmHWM", 0) if exact else 0)
            out[name] = {"before": self.before[name], "peak": peak or None,
                         "after": st.get("VmRSS"), "exact": exact}
        return out


# ------------------------------------------------------------------- HTTP


def get_json(addr, path, timeout=2.0):
    """(status, parsed JSON body or None) of GET path at addr; raises
    OSError or HTTPException when there is no answer."""
    host, port = addr.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        raw = resp.read()
    finally:
        conn.close()
    try:
        return resp.status, json.loads(raw)
    except ValueError:
        return resp.status, None


def readiness(addr, timeout=2.0):
    """What GET /ready says: True (200), False (503), or None when the node
    has no such endpoint (any other answer: an older build)."""
    status, _ = get_json(addr, "/ready", timeout)
    if status == 200:
        return True
    if status == 503:
        return False
    return None


def find_giver(log_text, members):
    """The member the joiner's log says it copied the state from (the last
    one named, if a first attempt failed), or None when no line says so."""
    giver = None
    for line in log_text.splitlines():
        if GIVER_LINE.search(line):
            for m in re.finditer(r"peer=\"?([^\s\",]+)", line):
                if m.group(1) in members:
                    giver = m.group(1)
    return giver


# ---------------------------------------------------------------- traffic


class Traffic:
    """One client sending GETs and PUTs (90/10) round-robin to `addrs`, each
    with the causal context `ctx`, over the keys key_name(0..keys-1)."""

    def __init__(self, addrs, keys, ctx, value, client, key_name):
        self.addrs, self.keys, self.ctx, self.value = list(addrs), keys, ctx, value
        self.client, self.key_name = client, key_name
        self.ok = self.failed = 0
        self.lat = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def _run(self):
        clients = [self.client(a, timeout=5) for a in self.addrs]
        rnd = random.Random(4)
        put_body = f'{{"value":"{self.value}","causal-metadata":{self.ctx}}}'
        i = 0
        while not self.stopped.is_set():
            c = clients[i % len(clients)]
            k = self.key_name(rnd.randrange(self.keys))
            t = time.perf_counter()
            try:
                if i % 10 == 9:
                    st, _ = c.request("PUT", f"/key-value-store/{k}", put_body)
                else:
                    st, _ = c.request("GET", f"/key-value-store/{k}",
                                      headers={"X-Causal-Metadata": self.ctx})
                good = st in (200, 201)
            except (OSError, http.client.HTTPException):
                good = False
            self.lat.append(time.perf_counter() - t)
            if good:
                self.ok += 1
            else:
                self.failed += 1
            i += 1
        for c in clients:
            c.close()

    def stop(self):
        """Stops the client; its figures (latencies in ms)."""
        self.stopped.set()
        self.thread.join(10)
        lat = sorted(x * 1000 for x in self.lat)

        def pct(p):
            if not lat:
                return None
            return lat[max(0, min(len(lat) - 1, int(round(p / 100.0 * len(lat) + 0.5)) - 1))]

        return {"probe_ok": self.ok, "probe_failed": self.failed, "probe_p50": pct(50),
                "probe_p99": pct(99), "probe_max": lat[-1] if lat else None}


# ------------------------------------------------------------------- join


def measure(cl, new, keys, ctx, value, *, client, key_name, log, deadline_secs,
            stall_secs=60.0):
    """Starts a fresh replica at `new` with VIEW naming the members of `cl`
    (run.py's CausalKV, holding key_name(0..keys-1) and its extra keys) and
    itself, and measures its join (see the module doc). Stops the joiner
    before returning the figures."""
    expected = keys + len(cl.extra_keys)
    members = list(cl.addrs)
    traffic = Traffic(members, keys, ctx, value, client, key_name).start()
    time.sleep(0.3)  # the client is under way before the join starts
    sampler = RssSampler({a: cl.proc[a].pid for a in members}).start()
    t0 = time.monotonic()
    proc = cl.start_replica(new, members + [new])
    sampler.add(new, proc.pid)
    answered = held = synced = ready = None
    ready_via = "/ready"
    last_keys, progress_at = 0, t0
    exited = None
    outcome = "done"
    deadline = t0 + deadline_secs
    while True:
        now = time.monotonic()
        if proc.poll() is not None:
            exited, outcome = proc.returncode, "exited"
            break
        if now > deadline:
            log(f"  the joiner is not done after {deadline_secs:.0f} s: giving up")
            outcome = "deadline"
            break
        try:
            status, h = get_json(new, "/health")
            if status != 200 or not isinstance(h, dict):
                raise ValueError(f"/health answered {status}")
            now = time.monotonic()
            answered = answered or now
            if h.get("keys", 0) != last_keys:
                last_keys, progress_at = h.get("keys", 0), now
            if synced is None and h.get("synced"):
                synced = now
            if held is None and last_keys >= expected:
                held = now
            if ready is None and ready_via == "/ready":
                r = readiness(new)
                if r is None:
                    ready_via = "/health synced"
                elif r:
                    ready = time.monotonic()
            if ready is None and ready_via != "/ready" and h.get("synced"):
                ready = now
            if held and ready:
                break
            # A ready joiner short of keys has given up copying; one still
            # copying may show no progress for a while (a page being read).
            patience = READY_STALL_SECS if ready else stall_secs
            if now - progress_at > patience:
                log(f"  the joiner's key count stayed at {last_keys:,} for {patience:.0f} s: "
                    "giving up")
                outcome = "stalled"
                break
        except (OSError, ValueError, http.client.HTTPException):
            pass
        time.sleep(POLL_SECS)
    time.sleep(0.3)
    rss = sampler.stop()
    served = traffic.stop()
    try:
        log_text = cl.log_path(new).read_text(errors="replace")
    except OSError:
        log_text = ""
    giver = find_giver(log_text, members)

    def since(t):
        return (t - t0) if t else None

    out = {
        "keys": expected,
        "joiner": new,
        "answer_secs": since(answered),
        "held_secs": since(held),
        "synced_secs": since(synced),
        "ready_secs": since(ready),
        "ready_via": ready_via,
        "done_secs": since(max(held, ready)) if held and ready else None,
        "last_keys": last_keys,
        "outcome": outcome,
        "exited": exited,
        "giver": giver,
        "rss": {a: rss[a] for a in members},
        "joiner_rss": rss[new],
        "rss_samples": sampler.samples,
    }
    out.update(served)
    # The giver's figure: its own, or the largest of the three.
    source = giver or max(members, key=lambda a: rss[a]["peak"] or 0)
    out["giver_rss_before"] = rss[source]["before"]
    out["giver_rss_peak"] = rss[source]["peak"]
    out["giver_rss_source"] = source
    out["joiner_rss_peak"] = rss[new]["peak"]
    out["joiner_rss_after"] = rss[new]["after"]
    log(f"  join: answers after {fmt_s(out['answer_secs'])}, holds every key after "
        f"{fmt_s(out['held_secs'])}, ready ({ready_via}) after {fmt_s(out['ready_secs'])}; "
        f"cluster answered {out['probe_ok']} requests, {out['probe_failed']} failed, "
        f"p99 {out['probe_p99'] or 0:.1f} ms, max {out['probe_max'] or 0:.1f} ms; peak RSS: "
        f"giver {giver or '(the largest of the members)'} {mib(out['giver_rss_peak'])} "
        f"(before: {mib(out['giver_rss_before'])}), joiner {mib(out['joiner_rss_peak'])}")
    if exited is not None:
        log(f"  the joiner exited with {exited} (see its log)")
    cl.procs.stop(cl.proc.pop(new))
    return out


def fmt_s(x):
    """Seconds for the log ("never" for a moment that did not come)."""
    return "never" if x is None else f"{x:.2f} s"


def mib(b):
    """Bytes as whole MiB for the report ("—" when unknown)."""
    return "—" if b is None else f"{b / 2**20:,.0f} MiB"


def rss_sentence(j):
    """The peak memory of a join, as a sentence for BENCHMARKS.md ('' when
    the join was measured by a version of run.py that did not take it)."""
    if not j.get("joiner_rss"):
        return ""
    giver = j.get("giver")
    who = (f"the giver ({giver}, named in the joiner's log)" if giver else
           "the members (the joiner's log does not name its giver: the largest of the three)")
    exact = j["joiner_rss"].get("exact") and all(
        r.get("exact") for r in j.get("rss", {}).values())
    how = ("VmHWM, reset when the join started" if exact else
           f"VmRSS polled every {SAMPLE_SECS * 1000:.0f} ms")
    return (f"Peak RSS during the join ({how}): {who} {mib(j['giver_rss_peak'])} "
            f"({mib(j['giver_rss_before'])} before), the joiner {mib(j['joiner_rss_peak'])} "
            f"({mib(j['joiner_rss_after'])} once done).")


def peak_ratio(j):
    """(giver peak / its RSS before, joiner peak / the giver's RSS before):
    the memory the transfer costs on each side, relative to the data."""
    before = j.get("giver_rss_before")
    if not before:
        return None, None
    g, n = j.get("giver_rss_peak"), j.get("joiner_rss_peak")
    return (g / before if g else None), (n / before if n else None)
