"""The figures as tables: the targets (ratios against the project's
goals, PASS or FAIL), throughput/latency/CPU per system, scale; and the
formatting they share, as text (printed) or Markdown (BENCHMARKS.md).
The tables part's rows and tables are keyspace_report.py's. Pure
functions of a run's results dict."""

import scale_join  # bench/scale_join.py (bench/ is on sys.path: run.py's directory)


def fmt_rps(x):
    return "—" if x is None else f"{x:,.0f}"


def fmt_ms(x):
    return "—" if x is None else f"{x:.2f}"


def fmt_ratio(x):
    return "—" if x is None else f"{x:.2f}"


def get(d, *path):
    for p in path:
        if d is None:
            return None
        d = d.get(p) if isinstance(d, dict) else None
    return d


def div(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def target_rows(r):
    """(what, causalkv, reference, ratio or value, target text, pass?)"""
    rows = []

    def ratio_row(what, num, den, minimum, unit="req/s"):
        ratio = div(num, den)
        ok = None if ratio is None else ratio >= minimum
        rows.append((what, fmt_rps(num), fmt_rps(den), fmt_ratio(ratio),
                     f"≥ {minimum:g}" if minimum else "—", ok if minimum else None))

    ck = r.get("causalkv", {})
    ce = r.get("ceiling", {})
    ratio_row("GET one replica / HTTP ceiling GET", get(ck, "get_one", "rps"), get(ce, "get", "rps"), 0.85)
    ratio_row("PUT one replica / HTTP ceiling PUT", get(ck, "put_one", "rps"), get(ce, "put", "rps"), 0.6)
    ratio_row("PUT / etcd PUT (no fsync)", get(ck, "put_one", "rps"), get(r, "etcd_nofsync", "put", "rps"), 5)
    ratio_row("PUT / Redis SET (2 replicas)", get(ck, "put_one", "rps"), get(r, "redis", "set", "rps"), 1)
    lag = r.get("lag")
    if lag:
        p99 = lag.get("poll_p99")
        rows.append((f"replication lag p99 at {fmt_rps(lag.get('bg_rps'))} PUT/s "
                     f"(½ max {fmt_rps(lag.get('target_rps') * 2)})",
                     f"{fmt_ms(p99)} ms", "—", f"{fmt_ms(p99)} ms", "≤ 5 ms",
                     None if p99 is None else p99 <= 5.0))
    sc = r.get("scale")
    if sc:
        levels = sorted(sc["levels"])
        top, bottom = levels[-1], levels[0]
        ck_pk = sc["levels"][top]["rss_per_key"]
        rd_pk = get(sc, "redis", "rss_per_key")
        ratio = div(ck_pk, rd_pk)
        rows.append((f"RSS per key at {top:,} keys / Redis", f"{ck_pk:.0f} B",
                     "—" if rd_pk is None else f"{rd_pk:.0f} B", fmt_ratio(ratio), "≤ 1",
                     None if ratio is None else ratio <= 1.0))
        mid = 100_000 if 100_000 in sc["levels"] and top > 100_000 else bottom
        if top != mid:
            flat = div(ck_pk, sc["levels"][mid]["rss_per_key"])
            rows.append((f"RSS per key, {top:,} / {mid:,} keys", f"{ck_pk:.0f} B",
                         f"{sc['levels'][mid]['rss_per_key']:.0f} B", fmt_ratio(flat), "≤ 1.25",
                         None if flat is None else flat <= 1.25))
        if top != bottom:
            for op in ("get", "put"):
                a = get(sc, "levels", top, op, "rps")
                b = get(sc, "levels", bottom, op, "rps")
                ratio = div(a, b)
                rows.append((f"{op.upper()} req/s, {top:,} / {bottom:,} keys", fmt_rps(a), fmt_rps(b),
                             fmt_ratio(ratio), "≥ 0.8", None if ratio is None else ratio >= 0.8))
        j = sc.get("join")
        if j:
            held = j.get("held_secs")
            rows.append((f"fresh replica holds {j['keys']:,} keys after",
                         "never" if held is None else f"{held:.2f} s", "—",
                         "—" if held is None else f"{held:.2f} s", "≤ 5 s",
                         False if held is None else held <= 5.0))
            slowest = j.get("probe_max")
            rows.append(("cluster serves during the join: failed, slowest request",
                         f"{j['probe_ok']} ok", f"p99 {fmt_ms(j['probe_p99'])} ms",
                         f"{j['probe_failed']} failed, {fmt_ms(slowest)} ms", "0, ≤ 1000 ms",
                         j["probe_failed"] == 0 and slowest is not None and slowest <= 1000))
    rows += conditional_rows(r)
    rows += bigjoin_rows(r.get("bigjoin"))
    rows += durable_rows(r)
    rows += shards_rows(r)
    # Information, no target.
    ratio_row("GET one replica / etcd GET (no fsync)", get(ck, "get_one", "rps"),
              get(r, "etcd_nofsync", "get", "rps"), 0)
    ratio_row("GET one replica / Redis GET", get(ck, "get_one", "rps"), get(r, "redis", "get", "rps"), 0)
    ratio_row("90/10 mix one replica / HTTP ceiling mix", get(ck, "mix_one", "rps"), get(ce, "mix", "rps"), 0)
    ratio_row("PUT / etcd PUT (fsync)", get(ck, "put_one", "rps"), get(r, "etcd_fsync", "put", "rps"), 0)
    if r.get("durable"):
        f = r["durable"].get("figures") or {}
        ratio_row("PUT DATA_DIR os / PUT in memory", get(f, "put_os", "rps"),
                  get(f, "put_memory", "rps"), 0)
    # Imported here: keyspace_report formats with this module's functions.
    from .keyspace_report import tables_target_rows
    rows += tables_target_rows(r)
    return rows


# The target of conditional writes (issue 14): a conditional PUT costs at
# most 10% more than a plain one, judged on throughput like the report's
# other cost targets (a ratio of req/s against a minimum).
CONDITIONAL_PUT_VS_PLAIN = 0.9


def conditional_rows(r):
    """The Targets rows of the conditional part (none if it did not run):
    PUT with If-Match: * over keys that exist against plain PUT, in req/s
    (the target) and in CPU µs per request (information); and the
    conditional PUTs that did not answer 2xx (wrk's errors, and the 412s
    and other non-2xx answers the replica counted), which must be none."""
    c = r.get("conditional")
    if not c:
        return []
    cond, plain = c.get("put_if_match") or {}, c.get("put_plain") or {}
    header = f"If-Match: {c.get('if_match', '*')}"
    rows = [ratio_target(f"PUT {header} / plain PUT, one replica (req/s)", cond.get("rps"),
                         plain.get("rps"), CONDITIONAL_PUT_VS_PLAIN)]
    a, b = cond.get("cpu_us_per_req"), plain.get("cpu_us_per_req")
    rows.append((f"PUT {header} / plain PUT, server CPU µs per request",
                 "—" if a is None else f"{a:.1f} µs", "—" if b is None else f"{b:.1f} µs",
                 fmt_ratio(div(a, b)), "— (≤ 1.1: information)", None))
    errors, server = cond.get("errors"), c.get("server_not_2xx")
    value = "—" if errors is None else f"{errors} errors"
    if server is not None:
        value += f", the replica: {server} not 2xx"
    rows.append((f"PUT {header} of keys that exist: answers other than 2xx (412 included)",
                 f"{cond.get('requests') or 0:,} PUTs", "—", value, "0",
                 None if errors is None else errors == 0 and not server))
    return rows


def conditional_detail_rows(r):
    """(system, operation, target, figure) of the conditional part."""
    c = r.get("conditional") or {}
    rows = []
    for key, system, where in (
            ("put_plain", "causalkv", "1 of 3 replicas"),
            ("put_if_match", f"causalkv, If-Match: {c.get('if_match', '*')}",
             "1 of 3 replicas, keys that exist")):
        if c.get(key):
            rows.append((system, "PUT", where, c[key]))
    return rows


# The targets of durable replicas (DATA_DIR).
DURABLE_PUT_VS_MEMORY = 0.8
DURABLE_PUT_VS_ETCD = 10
DURABLE_GET_VS_CEILING = 0.85
RECOVERY_LIMIT_SECS = 2.0


def ratio_target(what, num, den, minimum):
    """A Targets row: num/den against a minimum (no verdict when either
    figure is missing)."""
    ratio = div(num, den)
    return (what, fmt_rps(num), fmt_rps(den), fmt_ratio(ratio), f"≥ {minimum:g}",
            None if ratio is None else ratio >= minimum)


def durable_rows(r):
    """The Targets rows of the durable part (none if it did not run): PUT
    with DATA_DIR (fsync) against PUT in memory and etcd's PUT (fsync, from
    the etcd part), GET against the ceiling's, and the restart after
    SIGKILL."""
    d = r.get("durable")
    if not d:
        return []
    f = d.get("figures") or {}
    fsync_put = get(f, "put_fsync", "rps")
    rows = [
        ratio_target("PUT DATA_DIR fsync / PUT in memory", fsync_put, get(f, "put_memory", "rps"),
                     DURABLE_PUT_VS_MEMORY),
        ratio_target("PUT DATA_DIR fsync / etcd PUT (fsync)", fsync_put,
                     get(r, "etcd_fsync", "put", "rps"), DURABLE_PUT_VS_ETCD),
        ratio_target("GET DATA_DIR fsync / HTTP ceiling GET", get(f, "get_fsync", "rps"),
                     get(f, "get_ceiling", "rps"), DURABLE_GET_VS_CEILING),
    ]
    rec = get(d, "store", "recovery")
    if rec:
        rows.append(recovery_row(rec))
    return rows


def fmt_s(x):
    return "never" if x is None else f"{x:.2f} s"


def recovery_row(rec, limit=RECOVERY_LIMIT_SECS):
    """The restart after SIGKILL: the time to ready and to every key, the
    larger against the limit; a replica that came back under another
    identity (it copied its keys from a peer) fails whatever the time."""
    ready, held = rec.get("ready_secs"), rec.get("held_secs")
    worst = None if ready is None or held is None else max(ready, held)
    value = fmt_s(worst)
    if rec.get("same_identity") is False:
        value += ", as a new identity"
    ok = worst is not None and worst <= limit and rec.get("same_identity") is not False
    return (f"durable replica with {rec['keys']:,} keys restarted after SIGKILL: "
            "ready, holds every key after", f"{fmt_s(ready)}, {fmt_s(held)}", "—", value,
            f"≤ {limit:g} s", ok)


def join_limit_secs(keys):
    """The target of the join of a large store: 6 s per million keys (the
    1M join's 5 s, and a fifth more for a copy in many pages), at least 5 s."""
    return max(5.0, 6.0 * keys / 1e6)


def bigjoin_rows(j):
    """The Targets rows of the join of a large store (none if not run)."""
    if not j:
        return []
    rows = []
    size = short(j["store_keys"])
    done = j.get("done_secs")
    limit = join_limit_secs(j["store_keys"])
    how = "ready" if j.get("ready_via") == "/ready" else "synced"
    rows.append((f"fresh replica holds {j['keys']:,} keys and is {how} after",
                 "never" if done is None else f"{done:.2f} s", "—",
                 "—" if done is None else f"{done:.2f} s", f"≤ {limit:.0f} s",
                 False if done is None else done <= limit))
    slowest = j.get("probe_max")
    rows.append((f"cluster serves during the {size}-key join: failed, slowest request",
                 f"{j['probe_ok']} ok", f"p99 {fmt_ms(j['probe_p99'])} ms",
                 f"{j['probe_failed']} failed, {fmt_ms(slowest)} ms", "0, ≤ 1000 ms",
                 j["probe_failed"] == 0 and slowest is not None and slowest <= 1000))
    giver, joiner = scale_join.peak_ratio(j)
    if giver is not None or joiner is not None:
        rows.append((f"peak RSS in the {size}-key join: giver, joiner / a member's RSS before",
                     f"{scale_join.mib(j.get('giver_rss_peak'))}, "
                     f"{scale_join.mib(j.get('joiner_rss_peak'))}",
                     scale_join.mib(j.get("giver_rss_before")),
                     f"{fmt_ratio(giver)}, {fmt_ratio(joiner)}", "≤ 1.5 each",
                     giver is not None and joiner is not None and max(giver, joiner) <= 1.5))
    return rows


def detail_rows(r):
    """(system, operation, target, figure)"""
    rows = []
    ck = r.get("causalkv", {})
    ce = r.get("ceiling", {})
    for op in ("get", "put", "mix"):
        if op in ce:
            rows.append(("HTTP ceiling", op.upper(), "1 server", ce[op]))
    for op in ("get", "put", "mix"):
        if f"{op}_one" in ck:
            rows.append(("causalkv", op.upper(), "1 of 3 replicas", ck[f"{op}_one"]))
    for op in ("get", "put", "mix"):
        if f"{op}_spread" in ck:
            rows.append(("causalkv", op.upper(), "spread over 3", ck[f"{op}_spread"]))
    for name, label in (("etcd_fsync", "etcd (fsync)"), ("etcd_nofsync", "etcd (--unsafe-no-fsync)")):
        for op in ("put", "get"):
            if op in r.get(name, {}):
                rows.append((label, "PUT" if op == "put" else "GET (range)", "1 of 3 members", r[name][op]))
    for op in ("set", "get"):
        if op in r.get("redis", {}):
            rows.append(("Redis (redis-benchmark)", op.upper(), "master of 3", r["redis"][op]))
    return rows


def fmt_cpu(f):
    if f.get("cpu") is None:
        return "—"
    each = [x for x in f.get("cpu_each") or [] if x is not None]
    if len(each) > 1:
        return f"{f['cpu']:.2f} ({' + '.join(f'{x:.2f}' for x in each)})"
    return f"{f['cpu']:.2f}"


def table_text(headers, rows):
    widths = [max(len(str(h)), *(len(str(row[i])) for row in rows)) if rows else len(str(h))
              for i, h in enumerate(headers)]
    line = "  ".join(str(h).ljust(w) for h, w in zip(headers, widths))
    out = [line, "  ".join("-" * w for w in widths)]
    for row in rows:
        out.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))
    return "\n".join(out)


def table_md(headers, rows):
    out = ["| " + " | ".join(str(h) for h in headers) + " |",
           "|" + "|".join(" --- " for _ in headers) + "|"]
    for row in rows:
        out.append("| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |")
    return "\n".join(out)


def mark(ok):
    return "—" if ok is None else ("PASS" if ok else "FAIL")


DETAIL_HEADERS = ("system", "op", "against", "req/s", "p50 ms", "p99 ms", "server CPU (cores)",
                  "CPU µs/req", "load gen CPU", "other CPU", "errors", "runs (req/s)")


def detail_cells(system, op, where, f):
    """One row of a throughput table (DETAIL_HEADERS)."""
    return (system, op, where, fmt_rps(f["rps"]), fmt_ms(f["p50"]), fmt_ms(f["p99"]),
            fmt_cpu(f), "—" if f.get("cpu_us_per_req") is None else f"{f['cpu_us_per_req']:.0f}",
            f"{f.get('cpu_loadgen') or 0:.2f}",
            f"{f.get('cpu_other') or 0:.2f}", str(f.get("errors", 0)),
            " / ".join(f"{x:,}" for x in f.get("runs", [])))


def report_tables(r):
    targets = [(w, a, b, c, t, mark(ok)) for w, a, b, c, t, ok in target_rows(r)]
    th = ("figure", "causalkv", "reference", "ratio / value", "target", "")
    details = [detail_cells(*row) for row in detail_rows(r)]
    return (th, targets), (DETAIL_HEADERS, details)


def durable_detail_rows(r):
    """(system, operation, target, figure) of the durable part's figures."""
    f = get(r, "durable", "figures") or {}
    rows = []
    for key, system, op, where in (
            ("get_ceiling", "HTTP ceiling", "GET", "1 server"),
            ("get_fsync", "causalkv, DATA_DIR fsync", "GET", "1 of 3 replicas"),
            ("put_memory", "causalkv, in memory", "PUT", "1 of 3 replicas"),
            ("put_fsync", "causalkv, DATA_DIR fsync", "PUT", "1 of 3 replicas"),
            ("put_os", "causalkv, DATA_DIR os", "PUT", "1 of 3 replicas")):
        if f.get(key):
            rows.append((system, op, where, f[key]))
    return rows


def per_key(total, keys):
    return "—" if total is None or not keys else f"{total / keys:,.0f}"


def mib_list(values):
    return ", ".join("—" if v is None else f"{v / 2**20:,.1f}" for v in values)


def durable_disk_table(r):
    """Bytes per key on disk and in memory: the durable causalkv replicas
    (after the load, settled; the replica restarted after SIGKILL), and
    beside them Redis (AOF, RDB) and etcd (data directory) holding the same
    keys, and causalkv in memory (the scale part, when it held as many).
    (headers, rows), or None."""
    d = r.get("durable")
    st = (d or {}).get("store")
    if not st:
        return None
    n = st["keys"]
    rows = []
    disk, rss, rss0 = st["disk"], st["rss"], st["rss_empty"]

    def rss_key(a, b, keys):
        return "—" if a is None or b is None else f"{(a - b) / keys:,.0f}"

    rows.append(("causalkv, DATA_DIR fsync: the replica loaded through, after the load",
                 f"{n:,}", mib_list([disk[0]["bytes"]]), per_key(disk[0]["bytes"], n),
                 per_key(disk[0].get("journals"), n), rss_key(rss[0], rss0[0], n),
                 "du of DATA_DIR (journals: db/*.jnl)"))
    if len(disk) > 1:
        rows.append(("causalkv, DATA_DIR fsync: the other two replicas, after the load",
                     f"{n:,}", mib_list([x["bytes"] for x in disk[1:]]),
                     ", ".join(per_key(x["bytes"], n) for x in disk[1:]),
                     ", ".join(per_key(x.get("journals"), n) for x in disk[1:]),
                     ", ".join(rss_key(a, b, n) for a, b in zip(rss[1:], rss0[1:])),
                     "the same, copies made by replication"))
    after = st.get("after_restart") or {}
    if after.get("disk"):
        rows.append(("causalkv, DATA_DIR fsync: the replica loaded through, restarted after "
                     "SIGKILL", f"{n:,}", mib_list([after["disk"]["bytes"]]),
                     per_key(after["disk"]["bytes"], n), per_key(after["disk"].get("journals"), n),
                     rss_key(after.get("rss"), rss0[0], n), "the same, once settled again"))
    lv = get(r, "scale", "levels")
    if lv:
        mem = lv.get(n, lv.get(str(n)))
        if mem:
            rows.append(("causalkv in memory (scale part)", f"{n:,}", "—", "—", "—",
                         f"{mem['rss_per_key']:,.0f}", "RSS, mean of the three replicas"))
    rd = d.get("redis")
    if rd:
        k = rd["keys"]
        rows.append(("Redis, append-only file (everysec): the master", f"{k:,}",
                     mib_list([rd["aof"]["bytes"]]), per_key(rd["aof"]["bytes"], k), "(all of it)",
                     "—" if rd.get("rss_per_key") is None else f"{rd['rss_per_key']:,.0f}",
                     "du of its appendonlydir after the SETs"))
        rows.append(("Redis, RDB dump (SAVE): the master", f"{k:,}", mib_list([rd["rdb"]["bytes"]]),
                     per_key(rd["rdb"]["bytes"], k), "—", "—", "the dump file after SAVE"))
    et = d.get("etcd")
    if et:
        k, m = et["keys"], et["members"]
        rows.append(("etcd (fsync): member 1", f"{k:,}", mib_list([m[0]["bytes"]]),
                     per_key(m[0]["bytes"], k), per_key(m[0]["wal"], k),
                     "—" if et["rss_per_key"][0] is None else f"{et['rss_per_key'][0]:,.0f}",
                     f"du of its data dir (bbolt file: {per_key(m[0]['db'], k)} B/key; WAL)"))
        if len(m) > 1:
            rows.append(("etcd (fsync): members 2 and 3", f"{k:,}",
                         mib_list([x["bytes"] for x in m[1:]]),
                         ", ".join(per_key(x["bytes"], k) for x in m[1:]),
                         ", ".join(per_key(x["wal"], k) for x in m[1:]),
                         ", ".join("—" if x is None else f"{x:,.0f}" for x in et["rss_per_key"][1:]),
                         "the same"))
    h = ("store", "keys", "on disk (MiB)", "disk B/key", "of which journal / WAL B/key",
         "RSS B/key", "measured")
    return h, rows


def scale_tables(r):
    sc = r.get("scale")
    if not sc:
        return None
    rows = []
    for lv in sorted(sc["levels"]):
        row = sc["levels"][lv]
        rows.append((f"{lv:,}", "3", f"{row['rss_mean'] / 2**20:.1f}", f"{row['rss_per_key']:.0f}",
                     fmt_rps(row["get"]["rps"]), fmt_ms(row["get"]["p99"]),
                     fmt_rps(row["put"]["rps"]), fmt_ms(row["put"]["p99"]),
                     f"{row['load_secs']:.1f}"))
    if sc.get("five"):
        lv = sorted(sc["levels"])[0]
        row = sc["five"]
        rows.append((f"{lv:,}", "5", f"{row['rss_mean'] / 2**20:.1f}", f"{row['rss_per_key']:.0f}",
                     fmt_rps(row["get"]["rps"]), fmt_ms(row["get"]["p99"]),
                     fmt_rps(row["put"]["rps"]), fmt_ms(row["put"]["p99"]), "—"))
    if sc.get("redis"):
        rd = sc["redis"]
        rows.append((f"{rd['keys']:,}", "Redis 1+2", f"{rd['rss'] / 2**20:.1f}", f"{rd['rss_per_key']:.0f}",
                     "—", "—", "—", "—", "—"))
    h = ("keys", "replicas", "RSS per replica (MiB)", "RSS B/key", "GET req/s", "GET p99 ms",
         "PUT req/s", "PUT p99 ms", "load (s)")
    return h, rows


def short(n):
    return f"{n // 1_000_000}M" if n >= 1_000_000 and n % 1_000_000 == 0 else (
        f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else f"{n:,}")


# The targets of the shards part.
SHARD_FORWARD_P50_LIMIT = 1.6  # a relayed request's p50 / one served where it lands
SHARD_KEYS_HALF = (0.45, 0.55)  # keys per node, 2 shards / unsharded
SHARD_RSS_HALF_LIMIT = 0.6  # RSS per node, 2 shards / unsharded


def mean_of(values):
    values = [v for v in values or [] if v is not None]
    return sum(values) / len(values) if values else None


def mib(x):
    return "—" if x is None else f"{x / 2**20:,.1f} MiB"


def shard_memory_ratios(m):
    """(keys per node, RSS per node) of the 2-shard store over the
    unsharded store's, the means of their nodes (None when missing)."""
    u, s = m.get("unsharded") or {}, m.get("sharded") or {}
    return (div(mean_of(s.get("keys")), mean_of(u.get("keys"))),
            div(mean_of(s.get("rss")), mean_of(u.get("rss"))))


def shards_rows(r):
    """The Targets rows of the shards part (none if it did not run)."""
    sh = r.get("shards")
    if not sh:
        return []
    rows = []
    f = sh.get("figures") or {}
    for op in ("get", "put"):
        fwd, own = get(f, f"{op}_forwarded", "p50"), get(f, f"{op}_owner", "p50")
        ratio = div(fwd, own)
        rows.append((f"{op.upper()} p50, relayed from the other shard / at the key's shard "
                     f"({sh['shard_count']} shards)", f"{fmt_ms(fwd)} ms", f"{fmt_ms(own)} ms",
                     fmt_ratio(ratio), f"≤ {SHARD_FORWARD_P50_LIMIT:g}",
                     None if ratio is None else ratio <= SHARD_FORWARD_P50_LIMIT))
    m = sh.get("memory")
    if m and m.get("unsharded") and m.get("sharded"):
        size = short(m["keys"])
        keys, rss = shard_memory_ratios(m)
        lo, hi = SHARD_KEYS_HALF
        rows.append((f"keys per node, {sh['shard_count']} shards / unsharded ({size} keys)",
                     fmt_rps(mean_of(m["sharded"]["keys"])),
                     fmt_rps(mean_of(m["unsharded"]["keys"])), fmt_ratio(keys),
                     f"{lo:g}–{hi:g}", None if keys is None else lo <= keys <= hi))
        rows.append((f"RSS per node, {sh['shard_count']} shards / unsharded ({size} keys)",
                     mib(mean_of(m["sharded"]["rss"])), mib(mean_of(m["unsharded"]["rss"])),
                     fmt_ratio(rss), f"≤ {SHARD_RSS_HALF_LIMIT:g}",
                     None if rss is None else rss <= SHARD_RSS_HALF_LIMIT))
    rs = sh.get("reshard")
    if rs:
        ld = rs.get("load") or {}
        done = rs.get("status") == 200
        value = f"{ld.get('failed', 0)} failed"
        if not done:
            value += f", the reshard answered {rs.get('status') or 'nothing'}"
        rows.append((f"reshard {rs['from']} → {rs['to']} shards, {short(rs['keys'])} keys, under "
                     "load: duration, failed requests", f"{fmt_s(rs.get('secs'))}",
                     f"{ld.get('ok', 0):,} ok", value, "0 failed",
                     done and ld.get("failed", 0) == 0))
        total = rs.get("key_sum")
        rows.append((f"after the reshard: keys in the {rs['to']} shards, in all",
                     "—" if total is None else f"{total:,}", f"{rs['keys']:,}",
                     "—" if total is None else f"{total - rs['keys']:+,}", "= the keys (+0)",
                     total == rs["keys"]))
    return rows


def shards_detail_rows(r):
    """(system, operation, target, figure) of the shards part's figures."""
    sh = r.get("shards")
    f = (sh or {}).get("figures") or {}
    rows = []
    sharded = f"causalkv, {(sh or {}).get('shard_count')} shards of 3"
    for op in ("get", "put"):
        for key, system, where in (
                (f"{op}_owner", sharded, "a node of the keys' shard"),
                (f"{op}_forwarded", sharded, "a node of the other shard (relays)"),
                (f"{op}_unsharded", "causalkv, unsharded", "1 of 3 replicas")):
            if f.get(key):
                rows.append((system, op.upper(), where, f[key]))
    return rows


def shards_memory_table(r):
    """Keys and RSS per node: the unsharded store, the 2-shard store, and
    the latter after its reshard. (headers, rows), or None."""
    sh = r.get("shards")
    m = (sh or {}).get("memory")
    if not m:
        return None
    rows = []

    def row(name, keys, rss, rss0):
        held = [None if a is None or b is None or not k else (a - b) / k
                for k, a, b in zip(keys, rss, rss0 or [None] * len(keys))]
        rows.append((name, str(len(keys)), ", ".join(f"{k:,}" for k in keys), mib_list(rss),
                     fmt_rps(mean_of(keys)),
                     "—" if mean_of(rss) is None else f"{mean_of(rss) / 2**20:,.1f}",
                     fmt_rps(mean_of(held))))

    for key, name in (("unsharded", "unsharded, 3 replicas"),
                      ("sharded", f"{sh['shard_count']} shards of 3 nodes")):
        x = m.get(key)
        if x:
            row(name, x["keys"], x["rss"], x["rss_empty"])
    rs = sh.get("reshard") or {}
    if rs.get("nodes") and rs.get("rss_after"):
        row(f"the same after the reshard to {rs['to']} shards", [n[2] for n in rs["nodes"]],
            rs["rss_after"], (m.get("sharded") or {}).get("rss_empty"))
    h = ("store", "nodes", "keys per node", "RSS per node (MiB)", "mean keys", "mean RSS (MiB)",
         "RSS over empty, B/key held")
    return h, rows
