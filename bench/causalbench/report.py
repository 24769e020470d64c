"""The report of a run: BENCHMARKS.md (the text around the tables),
BENCHMARKS.json (every figure, read back by --report-from) and the chart
BENCHMARKS.svg; and the tables printed at the end of a run."""

import argparse
import datetime
import json
from pathlib import Path

import scale_join  # bench/scale_join.py (bench/ is on sys.path: run.py's directory)

from . import chart
from .base import log
from .keyspace_report import tables_detail_rows, tables_memory_table, tables_section
from .tables import (CONDITIONAL_PUT_VS_PLAIN, DETAIL_HEADERS, SHARD_FORWARD_P50_LIMIT,
                     SHARD_KEYS_HALF, SHARD_RSS_HALF_LIMIT, conditional_detail_rows, detail_cells,
                     div, durable_detail_rows, durable_disk_table, fmt_ms, fmt_ratio, fmt_rps,
                     fmt_s, get, report_tables, scale_tables, shard_memory_ratios,
                     shards_detail_rows, shards_memory_table, table_md, table_text)


def write_report(bench, out_dir):
    s, r = bench.s, bench.results
    out_dir.mkdir(parents=True, exist_ok=True)
    chart_note = chart.write(r, out_dir / "BENCHMARKS.svg")
    notes = list(bench.notes)  # what BENCHMARKS.json keeps: no chart note
    if chart_note:
        log(f"NO CHART: {chart_note}")
        notes.append(f"chart: {chart_note}")
    (th, targets), (dh, details) = report_tables(r)
    scale = scale_tables(r)
    lag = r.get("lag")
    md = ["# Benchmarks", ""]
    md.append(f"Produced by `{' '.join(['python3', 'bench/run.py'] + s.argv)}` on "
              f"{bench.started:%Y-%m-%d %H:%M} UTC ({(bench.finished - bench.started).total_seconds() / 60:.1f} min). "
              "Every HTTP figure: wrk, "
              f"{s.threads} threads, {s.connections} connections, {s.duration} s, {s.keys:,} keys of "
              f"{s.value_size}-byte values, the median of {s.repeat} run(s) (the runs of the ceiling and "
              "of Redis alternate with those of causalkv at one replica, so that their ratios "
              "compare runs made side by side); servers with "
              f"{s.workers} workers; everything on one machine, over loopback. "
              "Re-run with `python3 bench/run.py` (see the README's Benchmarks section).")
    md += ["", "## Targets", "", table_md(th, targets), ""]
    if chart_note is None:
        md += ["![throughput](BENCHMARKS.svg)", ""]
    md += ["## Throughput, latency and CPU", "", table_md(dh, details), ""]
    md += ["*server CPU*: cores used by the system's processes from /proc/<pid>/stat, in total "
           "and per replica or member (the one under load first; for Redis: master + replicas); *CPU µs/req*: server CPU time per request; *other CPU*: cores busy "
           "on the machine outside the servers, the load generator and this tool (0 means a quiet "
           "machine). Spread: wrk with one thread per replica "
           f"({get(r, 'causalkv', 'spread_shape', 'threads') or 3} threads, "
           f"{get(r, 'causalkv', 'spread_shape', 'connections') or s.connections} connections). "
           "etcd GET is a "
           "linearizable `/v3/kv/range` against member 1. Redis numbers come from redis-benchmark "
           "(RESP, its own client): a reference, not a peer.", ""]
    if lag:
        md += ["## Replication lag", "",
               table_md(("measure", "p50 ms", "p99 ms"), [
                   ("write at A visible at B (polling B without context)", fmt_ms(lag.get("poll_p50")),
                    fmt_ms(lag.get("poll_p99"))),
                   ("GET at B with the PUT's context (waits for / pulls the write)",
                    fmt_ms(lag.get("ctx_p50")), fmt_ms(lag.get("ctx_p99"))),
                   ("baseline GET round trip at B", fmt_ms(lag.get("base_p50")),
                    fmt_ms(lag.get("base_p99"))),
               ]), "",
               f"{lag.get('samples')} probes of each kind per run (median of runs), with a "
               f"background PUT load at replica A of {fmt_rps(lag.get('bg_rps'))} PUT/s "
               f"(target: half the maximum PUT rate, {fmt_rps(lag.get('target_rps'))}; "
               f"{lag.get('connections')} connections each waiting {lag.get('delay_ms')} ms between "
               "requests, as wrk has no fixed-rate mode). A probe PUTs a fresh value at A and "
               "then GETs the key at B (alternately each other replica) until the value shows; "
               "lag = from the PUT's answer to the answer showing it, less the median GET round "
               f"trip. Probes that never saw the value (5 s): {lag.get('timeouts', 0):.0f}. "
               f"{lag.get('note') or ''}", ""]
    if scale or r.get("bigjoin"):
        md += ["## Scale", ""]
    if scale:
        sc = r["scale"]
        md += [table_md(*scale), ""]
        md += ["RSS from /proc/<pid>/status (VmRSS), per replica, minus the RSS of the same "
               "process before loading, divided by the keys. GET/PUT against one replica over all "
               "the keys loaded. Redis: the master's RSS, same keys and values, loaded through a "
               "pipeline of SETs.", ""]
        j = sc.get("join")
        if j:
            held_text = "never" if j["held_secs"] is None else f"{j['held_secs']:.2f} s"
            md += [f"**Join.** A fresh fourth replica started with `VIEW` naming the three and "
                   f"itself answered `/health` after {fmt_ms(j['answer_secs'])} s and held all "
                   f"{j['keys']:,} keys after "
                   f"{held_text}"
                   f" (synced after {fmt_ms(j['synced_secs'])} s; last count {j['last_keys']:,}). "
                   f"Meanwhile one client sent GETs and PUTs (90/10, with context) round-robin to "
                   f"the three: {j['probe_ok']} answered, {j['probe_failed']} failed, latency p50 "
                   f"{fmt_ms(j['probe_p50'])} ms, p99 {fmt_ms(j['probe_p99'])} ms, max "
                   f"{fmt_ms(j['probe_max'])} ms. {scale_join.rss_sentence(j)}".rstrip(), ""]
    if r.get("bigjoin"):
        md += [bigjoin_paragraph(r["bigjoin"], s.value_size), ""]
    ck = r.get("causalkv", {})
    if ck.get("rss_after"):
        md += [f"RSS of the three-replica cluster of the throughput figures: "
               f"{', '.join(f'{x / 2**20:.1f}' for x in ck['rss_empty'])} MiB empty, "
               f"{', '.join(f'{x / 2**20:.1f}' for x in ck['rss_loaded'])} MiB with {s.keys:,} keys, "
               f"{', '.join(f'{x / 2**20:.1f}' for x in ck['rss_after'])} MiB after every figure "
               "(the same keys, overwritten many times).", ""]
    if r.get("conditional"):
        md += conditional_section(r, s)
    if r.get("durable"):
        md += durable_section(r, s)
    if r.get("shards"):
        md += shards_section(r, s)
    if r.get("tables"):
        md += tables_section(r, s)
    if notes:
        md += ["## Skipped or changed", ""] + [f"- {n}" for n in notes] + [""]
    md += ["## Machine", "", table_md(("", ""), list(bench.machine.items())), ""]
    md += ["## Versions", "", table_md(("", ""), list(bench.versions.items())), ""]
    md += ["## Commands", "", "One representative of each command the run used (ports and "
           "temp dirs change from run to run; wrk scripts are in `bench/`, settings passed in "
           "the environment):", "", "```sh"]
    for label, cmd in bench.commands.items():
        md += [f"# {label}", cmd]
    md += ["```", ""]
    (out_dir / "BENCHMARKS.md").write_text("\n".join(md))
    (out_dir / "BENCHMARKS.json").write_text(json.dumps({
        "settings": {k: (sorted(v) if isinstance(v, set) else v) for k, v in vars(s).items()
                     if k != "tmp"},
        "started": bench.started.isoformat(), "finished": bench.finished.isoformat(),
        "results": r, "notes": bench.notes, "versions": bench.versions,
        "machine": bench.machine, "commands": bench.commands,
    }, indent=1, default=str))
    return out_dir / "BENCHMARKS.md"


def bigjoin_paragraph(j, value_size):
    """The join of a large store, as a paragraph of BENCHMARKS.md."""
    ready = ("was ready (`GET /ready` answered 200)" if j.get("ready_via") == "/ready" else
             "was synced (`/health`; this build has no `/ready`)")
    if j.get("done_secs") is not None:
        outcome = (f"held all {j['keys']:,} keys after {j['held_secs']:.2f} s and {ready} after "
                   f"{j['ready_secs']:.2f} s")
    else:
        why = {"exited": f"its process exited with {j.get('exited')}",
               "stalled": "its key count had stopped moving",
               "deadline": "the deadline passed"}.get(j.get("outcome"), "the wait ended")
        outcome = (f"never held every key and was ready: it held {j['last_keys']:,} of "
                   f"{j['keys']:,} keys when {why} (held all: {fmt_ms(j.get('held_secs'))} s; "
                   f"ready: {fmt_ms(j.get('ready_secs'))} s)")
    loaded = [x for x in j.get("members_rss_loaded") or [] if x]
    rss = (f"; each replica then at {', '.join(f'{x / 2**20:,.0f}' for x in loaded)} MiB RSS"
           if loaded else "")
    load_secs = j.get("load_secs")
    load = (f" in {load_secs:.1f} s ({j['store_keys'] / load_secs:,.0f} keys/s)"
            if load_secs else "")
    return (f"**Join of a large store.** Three replicas were loaded with {j['store_keys']:,} keys of "
            f"{value_size}-byte values through one of them (wrk, `bench/load.lua`){load}{rss}. "
            f"A fresh fourth replica started with `VIEW` naming the three and itself answered "
            f"`/health` after {fmt_ms(j['answer_secs'])} s, {outcome}. "
            f"{scale_join.rss_sentence(j)} Meanwhile one client sent GETs and PUTs (90/10, with "
            f"context) round-robin to the three: {j['probe_ok']} answered, {j['probe_failed']} "
            f"failed, latency p50 {fmt_ms(j['probe_p50'])} ms, p99 {fmt_ms(j['probe_p99'])} ms, "
            f"max {fmt_ms(j['probe_max'])} ms. The measure is `bench/scale_join.py`'s.")


def conditional_section(r, s):
    """The Conditional writes section of BENCHMARKS.md: plain PUT and PUT
    with If-Match: * side by side, and how they were measured."""
    c = r["conditional"]
    header = f"If-Match: {c.get('if_match', '*')}"
    md = ["## Conditional writes", ""]
    rows = conditional_detail_rows(r)
    if rows:
        md += [table_md(DETAIL_HEADERS, [detail_cells(*row) for row in rows]), ""]
    cond, plain = c.get("put_if_match") or {}, c.get("put_plain") or {}
    statuses = c.get("server_statuses")
    counted = ("" if statuses is None else
               " The replica's `causalkv_http_requests_total` counted its PUT answers (plain "
               "and conditional; a plain PUT never answers 412) by status meanwhile: "
               + (", ".join(f"{n:,} × {k}" for k, n in sorted(statuses.items())) or "none")
               + ".")
    md += [f"Three unsharded replicas were loaded with {c['keys']:,} keys of {s.value_size}-byte "
           "values and given a real causal context; then wrk sent PUTs of those keys to one "
           f"replica ({c.get('replica', 'the first')}) with the settings of the PUT figures "
           f"above, plain and with `{header}` (write only if the key exists: every key does, so "
           "every such write must succeed), their runs alternating (plain, conditional, "
           "plain, ...) so that the ratio compares runs made side by side. Of the "
           f"{cond.get('requests') or 0:,} conditional PUTs, {cond.get('errors', 0)} answered "
           f"other than 2xx or failed, by wrk's count (a 412 is an error here).{counted} The "
           "target "
           "(issue 14) is a conditional PUT costing at most 10% more than a plain one, judged "
           "on throughput like the report's other cost targets: conditional/plain req/s "
           f"≥ {CONDITIONAL_PUT_VS_PLAIN:g} (here "
           f"{fmt_ratio(div(cond.get('rps'), plain.get('rps')))}); the ratio of server CPU "
           "per request (here "
           f"{fmt_ratio(div(cond.get('cpu_us_per_req'), plain.get('cpu_us_per_req')))}, at most "
           "1.1 for the same goal) is given for information.", ""]
    return md


def durable_section(r, s):
    """The Durability section of BENCHMARKS.md: the figures with DATA_DIR,
    the restart after SIGKILL, bytes per key, and how each was measured."""
    d = r["durable"]
    keys = d.get("keys", s.keys)
    md = ["## Durability", ""]
    rows = durable_detail_rows(r)
    if rows:
        md += [table_md(DETAIL_HEADERS, [detail_cells(*row) for row in rows]), ""]
    md += ["Three clusters of three replicas ran at once: one in memory, one whose replicas "
           "were started with `DATA_DIR` (each a directory of its own under the run's temp dir, "
           "on the file system the Machine table names) and `DURABILITY=fsync` (the default: an "
           "answer waits until its write is fsynced, with group commit), one with `DATA_DIR` and "
           "`DURABILITY=os` (it waits until the write is handed to the OS). Each was loaded with "
           f"the same {keys:,} keys and given a real causal context; the load went to one "
           "replica, with the wrk settings of the figures above. The PUT runs of the three "
           "alternate (memory, fsync, os, memory, ...), and the GET runs of the fsync cluster "
           "alternate with those of an HTTP ceiling started for the purpose, so that each ratio "
           f"compares runs made side by side.{get_settled(d.get('figures') or {})} The etcd PUT "
           "(fsync) of the targets is the etcd part's figure, from another moment of the run.",
           ""]
    st = d.get("store")
    if st:
        md += [recovery_paragraph(st, s.value_size), ""]
    disk = durable_disk_table(r)
    if disk:
        md += [table_md(*disk), ""]
        md += [disk_note(d), ""]
    return md


def get_settled(figs):
    """The sentence on how long the durable clusters took to idle before
    the GET runs (nothing for a run that did not wait for them)."""
    secs = figs.get("get_settle_secs")
    if secs is None:
        return ""
    how = (f"idle after {secs:.0f} s" if figs.get("get_settled")
           else f"still busy after {secs:.0f} s, when the GET runs started anyway")
    return (" The GET runs start once the clusters with `DATA_DIR` are done with what the PUT "
            f"runs left them to do, their flushes and compactions ({how}).")


def recovery_paragraph(st, value_size):
    """The restart after SIGKILL, as a paragraph of BENCHMARKS.md."""
    n, rec = st["keys"], st["recovery"]
    settled = (f"after {st['settle_secs']:.0f} s" if st.get("settled") else
               f"not quite after the {st['settle_secs']:.0f} s the tool waits at most")
    text = (f"**Restart after SIGKILL.** A fresh three-replica cluster with `DATA_DIR` "
            f"(fsync) was loaded with {n:,} keys of {value_size}-byte values through one "
            f"replica (wrk, `bench/load.lua`, 64 connections, the scale part's fill) in "
            f"{st['load_secs']:.1f} s ({n / st['load_secs']:,.0f} keys/s), then left to settle "
            f"(the replicas idle and the du of their directories steady for a few seconds: "
            f"{settled}). The replica loaded through was then killed with SIGKILL and started "
            "again at once with the same settings and `DATA_DIR`. From the start of its new "
            f"process it answered after {fmt_s(rec.get('answer_secs'))}, `GET /ready` answered "
            f"200 after {fmt_s(rec.get('ready_secs'))}, and `/health` counted all "
            f"{rec['keys']:,} keys after {fmt_s(rec.get('held_secs'))}")
    if rec.get("held_secs") is None and rec.get("last_keys") is not None:
        text += f" (it counted {rec['last_keys']:,} when the wait ended)"
    text += "."
    if rec.get("exited") is not None:
        text += f" Its process exited with status {rec['exited']} (see its log)."
    same = rec.get("same_identity")
    if same is True:
        text += " It came back with the same identity (the `replica` of `/health`)"
    elif same is False:
        text += (f" It came back under another identity ({rec.get('identity_after')}, not "
                 f"{rec.get('identity_before')}): it started over and copied the keys from a "
                 "peer, which is no recovery")
    if same is not None:
        text += {True: "; its log reported a torn journal tail, truncated.",
                 False: "; its log reported no torn journal tail.",
                 None: "."}[rec.get("tail_truncated")]
    after = st.get("after_restart") or {}
    if after.get("all_hold_keys") is False:
        text += " After the restart the three replicas did not all hold every key within 30 s."
    return text


def disk_note(d):
    """How the bytes per key were measured (the note under the table)."""
    n = d["store"]["keys"]
    text = ("*disk*: `du` of each directory once settled (the blocks allocated: the "
            "preallocated space of a journal or WAL counts); *RSS*: VmRSS less that of the "
            "same process before the load, divided by the keys.")
    if d.get("redis"):
        text += (" Redis: a master and two replicas started with `--appendonly yes "
                 "--appendfsync everysec` (its default rewrite settings), loaded with the "
                 "same keys and values through a pipeline of SETs; its append-only directory "
                 "once the replicas held every key and no rewrite was under way, then its "
                 "RDB file after `SAVE`.")
    et = d.get("etcd")
    if et:
        text += (" etcd: three members (fsync), loaded in transactions of 128 puts (one put "
                 "per request commits once per key: far slower); its data directory holds the "
                 "bbolt file and the WAL, in preallocated segments of 64 MiB.")
        if et["keys"] < n:
            text += (f" **etcd held {et['keys']:,} keys, not {n:,}**: loading it takes about "
                     "a minute and a half per million keys on this kind of machine, so this "
                     "mode loads fewer; its WAL's preallocated segments then weigh more per "
                     "key, and its bbolt file alone is the figure to compare.")
    return text


NUMBERS = {2: "Two", 3: "Three", 4: "Four", 5: "Five", 6: "Six", 8: "Eight", 9: "Nine"}


# Which member a node relays to, as runs before the figure named it said.
RELAYED_TO_BEFORE = "the first live one in address order"


def shards_section(r, s):
    """The Shards section of BENCHMARKS.md: owner, forwarded and unsharded
    figures, keys and RSS per node, the reshard under load, and how each
    was measured."""
    sh = r["shards"]
    f = sh.get("figures") or {}
    md = ["## Shards", ""]
    rows = shards_detail_rows(r)
    if rows:
        md += [table_md(DETAIL_HEADERS, [detail_cells(*row) for row in rows]), ""]
    if f:
        members = f.get("owner_shard_members") or []
        md += [f"{NUMBERS.get(sh['nodes'], sh['nodes'])} nodes were started with the same "
               f"`VIEW` and `SHARD_COUNT={sh['shard_count']}` (shards of three nodes), beside three "
               f"unsharded replicas, and loaded with the same {f['keys']:,} keys; "
               f"{f['owned_keys']:,} of them are in shard {f['owner_shard']} (its members: "
               f"{', '.join(members)}). Every figure of this table is GET or PUT over those "
               "keys only, with the wrk settings of the figures above and a real causal context "
               "(from writes in both shards). *A node of the keys' shard* (the owner): wrk sent "
               f"every request to {f['owner']}, which serves it where it lands. *A node of the "
               f"other shard*: wrk sent them to {f['forwarded_via']}, which relays each to a "
               f"member of the key's shard ({f.get('relayed_to', RELAYED_TO_BEFORE)}) and returns its "
               "answer: the figure is the price of one relay hop at the same load. *Unsharded*: "
               "the same keys at one of the three unsharded replicas. The runs of the three "
               "alternate, so that their ratios compare runs made side by side; server CPU is "
               "the six nodes' (or the three replicas'). The target is a relayed request's p50 "
               f"at most {SHARD_FORWARD_P50_LIMIT:g} times that of a request served where it "
               "lands.", ""]
    mem = shards_memory_table(r)
    if mem:
        m = sh["memory"]
        keys, rss = shard_memory_ratios(m)
        lo, hi = SHARD_KEYS_HALF
        md += [table_md(*mem), ""]
        md += [f"**Memory per node.** {m['keys']:,} keys of {s.value_size}-byte values were "
               "loaded through one node (wrk, `bench/load.lua`, 64 connections, the scale part's "
               "fill) into three unsharded replicas, then into the six nodes of two shards (half "
               "the requests relayed), a store at a time; *keys per node* is each node's "
               "`/health` count once the store settled, *RSS* its VmRSS. Sharding should divide "
               "a node's keys by the shard count: the target is a sharded node holding "
               f"{lo:g}–{hi:g} of an unsharded replica's keys (here {fmt_ratio(keys)}), and at "
               f"most {SHARD_RSS_HALF_LIMIT:g} of its RSS (here {fmt_ratio(rss)}: a little more "
               "than half, since the memory of a process that holds no key is not divided)."
               + (" The last row is the sharded store after the reshard below (its RSS counts "
                  "memory the nodes have not returned to the system)."
                  if get(sh, "reshard", "rss_after") else ""), ""]
    rs = sh.get("reshard")
    if rs:
        md += [reshard_paragraph(rs), ""]
    return md


def reshard_paragraph(rs):
    """The reshard under load, as a paragraph of BENCHMARKS.md."""
    ld = rs.get("load") or {}
    if rs.get("status") == 200:
        outcome = f"answered 200 after {fmt_s(rs.get('secs'))}"
    else:
        outcome = (f"did not succeed: it answered {rs.get('status') or 'nothing'} after "
                   f"{fmt_s(rs.get('secs'))} ({rs.get('answer')})")
    kinds = ", ".join(f"{n} {k}" for k, n in sorted((ld.get("failures") or {}).items()))
    text = (f"**Reshard under load.** The two-shard store holding {rs['keys']:,} keys was then "
            f"resharded to {rs['to']} shards (six nodes: two a shard): "
            f"`PUT /key-value-store-shard/reshard` with `{{\"shard-count\": {rs['to']}}}` at "
            f"{rs['coordinator']} {outcome}. From a second before it until a second after, "
            f"{ld.get('threads')} client threads sent GETs and PUTs "
            f"({(ld.get('put_share') or 0) * 100:.0f}% PUTs) of random keys of the store, each "
            f"with a causal context, to the six nodes in turn, one request at a time: "
            f"{ld.get('ok', 0):,} answered (2xx, or 404) and {ld.get('failed', 0)} failed"
            f"{f' ({kinds})' if kinds else ''}; a failure is any other answer, or an error or "
            f"no answer within {ld.get('timeout_secs', 0):.0f} s on the connection. Latency of "
            f"those answered: p50 {fmt_ms(ld.get('p50'))} ms, p99 {fmt_ms(ld.get('p99'))} ms, "
            f"max {fmt_ms(ld.get('max'))} ms (PUTs: p99 {fmt_ms(ld.get('put_p99'))} ms, max "
            f"{fmt_ms(ld.get('put_max'))} ms; a write to a key that changes shard waits for the "
            "reshard). The target is no failed request.")
    first = ld.get("first_failures") or []
    if first:
        lead = rs.get("load_lead_secs")
        since = "the reshard" if lead is not None else "the client load"
        text += (f" The first failures, from the start of {since}: "
                 + "; ".join(failure_text(f, lead or 0.0) for f in first[:5]) + ".")
    if rs.get("handed_off") is not None:
        text += (f" The nodes handed {rs['handed_off']:,.0f} versions to the members of their "
                 f"keys' new shards (`causalkv_shard_versions_handed_off_total`).")
    shards = rs.get("shards")
    if shards:
        listed = "; ".join(f"shard {x['id']} ({', '.join(x['members'])}): {x['keys']:,} keys"
                           for x in shards)
        settled = ("once settled, after" if rs.get("settled") else
                   "not settled (members disagreeing or writes buffered) after")
        text += (f" Afterwards ({settled} {fmt_s(rs.get('settle_secs'))}): {listed}; "
                 f"{rs['key_sum']:,} in all, of {rs['keys']:,}.")
    elif rs.get("error"):
        text += f" Afterwards the shards' key counts could not be read: {rs['error']}."
    return text


def failure_text(failure, lead):
    """One failed request of the reshard's load: (seconds from the load's
    start, op, node, kind[, answer]), the time told from the reshard's
    start (`lead` seconds after the load's)."""
    at, op, node, kind = failure[:4]
    answer = failure[4] if len(failure) > 4 else None
    text = f"{at - lead:.1f} s, {op.upper()} at {node}: {kind}"
    return text + (f" `{' '.join(answer.split())[:120]}`" if answer else "")


def print_tables(bench):
    r = bench.results
    (th, targets), (dh, details) = report_tables(r)
    print()
    print(table_text(dh, details))
    lag = r.get("lag")
    if lag:
        print(f"\nreplication lag at {fmt_rps(lag.get('bg_rps'))} PUT/s background: visible at a peer "
              f"p50 {fmt_ms(lag.get('poll_p50'))} ms, p99 {fmt_ms(lag.get('poll_p99'))} ms; "
              f"GET with context p50 {fmt_ms(lag.get('ctx_p50'))} ms, p99 {fmt_ms(lag.get('ctx_p99'))} ms")
    scale = scale_tables(r)
    if scale:
        print()
        print(table_text(*scale))
    for rows in (conditional_detail_rows(r), durable_detail_rows(r)):
        if rows:
            print()
            print(table_text(DETAIL_HEADERS, [detail_cells(*row) for row in rows]))
    disk = durable_disk_table(r)
    if disk:
        print()
        print(table_text(*disk))
    rows = shards_detail_rows(r)
    if rows:
        print()
        print(table_text(DETAIL_HEADERS, [detail_cells(*row) for row in rows]))
    mem = shards_memory_table(r)
    if mem:
        print()
        print(table_text(*mem))
    rows = tables_detail_rows(r)
    if rows:
        print()
        print(table_text(DETAIL_HEADERS, [detail_cells(*row) for row in rows]))
    mem = tables_memory_table(r)
    if mem:
        print()
        print(table_text(*mem))
    print()
    print(table_text(th, targets))
    for n in bench.notes:
        print(f"note: {n}")


def load_report(path):
    """The saved state of a run (BENCHMARKS.json), to write its report again."""
    data = json.loads(Path(path).read_text())
    r = data["results"]
    sc = r.get("scale")
    if sc:
        sc["levels"] = {int(k): v for k, v in sc["levels"].items()}
    s = argparse.Namespace(**data["settings"])
    return argparse.Namespace(
        s=s, results=r, notes=data["notes"], versions=data["versions"],
        machine=data["machine"], commands=data["commands"],
        started=datetime.datetime.fromisoformat(data["started"]),
        finished=datetime.datetime.fromisoformat(data["finished"]))
