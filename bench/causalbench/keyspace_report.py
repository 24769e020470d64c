"""The tables part's figures (keyspaces.py measures them) as rows of the
targets table, as tables, and as the Tables section of BENCHMARKS.md.
Pure functions of a run's results dict. No target exists for what a table
costs: every row is information."""

from .keyspaces import (CREATE_CONNS, SETTLE_FLOOR, SETTLE_REL, SETTLE_SECS, TABLE,
                        WARMUP_REQUESTS)
from .tables import (DETAIL_HEADERS, detail_cells, div, fmt_ratio, get, mib_list, short,
                     table_md)

INFO = "— (information)"
STORE_LABELS = (("default", "the default table"), ("table", "a table"),
                ("siblings", "a table with siblings"))


def fmt_bytes(x):
    return "—" if x is None else f"{x:,.0f} B"


def fmt_each(values):
    return ", ".join("—" if v is None else f"{v:,.0f}" for v in values or [])


def tables_target_rows(r):
    """The Targets rows of the tables part (none if it did not run): RSS
    per empty table, and RSS per key in a table against the default
    table's; information, no verdict."""
    t = r.get("tables")
    if not t:
        return []
    rows = []
    o = t.get("overhead")
    if o:
        m = o.get("bytes_per_table_mean")
        rows.append((f"RSS per empty table, {o['measured']:,} tables (mean of "
                     f"{len(o.get('rss_after') or [])} replicas)", fmt_bytes(m), "—",
                     fmt_bytes(m), INFO, None))
    k = t.get("keys")
    if k:
        tab, dft = get(k, "table", "per_key_mean"), get(k, "default", "per_key_mean")
        rows.append((f"RSS per key in a table / in the default table ({short(k['keys'])} keys)",
                     fmt_bytes(tab), fmt_bytes(dft), fmt_ratio(div(tab, dft)), INFO, None))
    return rows


def tables_detail_rows(r):
    """(system, operation, target, figure) of the tables part's GET and PUT."""
    f = get(r, "tables", "figures") or {}
    rows = []
    for op in ("get", "put"):
        for key, system in ((f"{op}_default", "causalkv, the default table"),
                            (f"{op}_table", f"causalkv, table {f.get('table', TABLE)}")):
            if f.get(key):
                rows.append((system, op.upper(), "1 of 3 replicas", f[key]))
    return rows


def tables_memory_table(r):
    """RSS per empty table and per key (the default table, a table, a table
    with siblings), each replica's and their mean. (headers, rows), or None."""
    t = r.get("tables")
    if not t:
        return None
    rows = []
    o = t.get("overhead")
    if o:
        rows.append(("empty tables", f"{o['measured']:,} tables", mib_list(o["rss_before"]),
                     mib_list(o["rss_after"]), fmt_each(o["bytes_per_table"]),
                     fmt_bytes(o.get("bytes_per_table_mean")), "—"))
    k = t.get("keys") or {}
    dft = get(k, "default", "per_key_mean")
    for kind, label in STORE_LABELS:
        x = k.get(kind)
        if x:
            rows.append((f"keys in {label}", f"{k['keys']:,} keys", mib_list(x["rss_empty"]),
                         mib_list(x["rss"]), fmt_each(x["per_key"]),
                         fmt_bytes(x.get("per_key_mean")),
                         fmt_ratio(div(x.get("per_key_mean"), dft))))
    h = ("what", "count", "RSS before, per replica (MiB)", "RSS after (MiB)",
         "RSS growth per item, per replica (B)", "mean per item", "/ the default table's")
    return h, rows


def extra_siblings(k):
    """The values beyond one a key that each replica of the table with
    siblings stored (its /health count less the keys and the table), or
    None."""
    stored = get(k, "siblings", "stored_keys")
    if not stored:
        return None
    return [None if x is None else x - k["keys"] - 1 for x in stored]


def settle_text(samples, steady):
    """How many RSS samples a figure took, and whether they agreed."""
    text = " and ".join(str(n) for n in samples or [])
    if steady and not all(steady):
        text += ", **not all steady** when the tool stopped reading"
    return text


def tables_section(r, s):
    """The Tables section of BENCHMARKS.md: RSS per empty table and per
    key, GET and PUT in a table against the default table, and how each
    was measured."""
    t = r["tables"]
    md = ["## Tables", ""]
    mem = tables_memory_table(r)
    if mem and mem[1]:
        md += [table_md(*mem), ""]
    o = t.get("overhead")
    if o:
        rate = o["measured"] / o["create_secs"] if o.get("create_secs") else None
        md += [f"**Per table.** Three unsharded replicas were started and warmed up "
               f"({WARMUP_REQUESTS} PUTs of one key from each of the {CREATE_CONNS} connections "
               "that then created the tables, and listings at every replica); one table was "
               f"created first (to check the build has tables), then {o['measured']:,} empty "
               f"tables at {o['created_at']} (`PUT /tables/<name>`, body `{{}}`, no causal "
               f"context, {o.get('connections', CREATE_CONNS)} connections"
               + (f"; {rate:,.0f} tables/s" if rate else "")
               + f"). Every replica listed all {o['tables']:,} (`GET /tables`) "
               f"{o['listed_secs']:.1f} s after the first creation. *RSS growth per item*: "
               "each replica's VmRSS after, less before, over those tables: what a table "
               "costs in memory, its record and its share of the store's structures; the "
               "mean of the replicas is the figure of the targets table (information: no "
               "target exists for it). RSS moves in pages and the allocator returns freed "
               f"memory with a delay, so each RSS above is read every {SETTLE_SECS:g} s until "
               f"two successive samples agree (each replica within {SETTLE_REL * 100:g}% or "
               f"{SETTLE_FLOOR // 1024} KiB; here after "
               f"{settle_text(o.get('samples'), o.get('steady'))} "
               "samples); even so a few hundred tables grow RSS by a few pages at most, so "
               "the figure of a small count (`--smoke`) is noise. The replicas' `/health` "
               f"then counted {fmt_each(o.get('stored_keys'))} stored keys (a table is one "
               "key, and the warm-up's key is one more).",
               ""]
    k = t.get("keys")
    if k:
        extra = extra_siblings(k)
        stored = (" Here the replicas of the table with siblings held "
                  f"{fmt_each(extra)} such second values (their `/health` count of stored "
                  f"keys, less the {k['keys']:,} keys and the table)." if extra else "")
        md += [f"**Per key.** {k['keys']:,} keys (`--scale-keys`) of {s.value_size}-byte values "
               "were loaded through one replica (wrk, `bench/load.lua`, 64 connections, the "
               "scale part's fill) into the default table of three fresh replicas, into a "
               "table of three others (created first, empty) and into a table created with "
               "`{\"siblings\": true}` of three more, a store at a time. *RSS growth per "
               "item*: each replica's VmRSS once every replica held the keys (`/health` for "
               "the default table, `GET /tables` for a table), less that before the load, "
               "over the keys, each read as above. A table's key is stored with the table's "
               "name and id before it, and a key of a table with siblings as one value of "
               "its own with the context it was written with. The loader's last requests "
               "rewrite a few keys (up to two per connection) without a context: in the table "
               "with siblings each such rewrite is a second value of its key, a sibling."
               + stored, ""]
    f = t.get("figures")
    rows = tables_detail_rows(r)
    if f and rows:
        ratios = "; ".join(
            f"{op.upper()} table/default "
            f"{fmt_ratio(div(get(f, op + '_table', 'rps'), get(f, op + '_default', 'rps')))}"
            for op in ("get", "put"))
        md += [table_md(DETAIL_HEADERS, [detail_cells(*row) for row in rows]), ""]
        md += [f"**GET and PUT in a table.** Three replicas held {f['keys']:,} keys in the "
               f"default table and the same keys in table `{f['table']}`; wrk sent GETs, then "
               f"PUTs, to one replica ({f['replica']}) with the settings of the figures above "
               "and a real causal context, over the default table's keys and over the "
               f"table's (`/tables/{f['table']}/key-value-store/<key>`, `BENCH_PREFIX` of "
               "`bench/kv.lua`), their runs alternating so that the ratio compares runs "
               f"made side by side: {ratios} (req/s; information, no target).", ""]
    return md
