"""Unit tests of the benchmark's pure parts: parsing what the load
generators print, the tables and their formatting, the chart's data, the
command line, and the report written again from the repository's
BENCHMARKS.json. No server, no network, no install.

    python3 -m unittest discover bench
"""

import argparse
import datetime
import io
import json
import os
import tempfile
import unittest
from contextlib import redirect_stderr
from pathlib import Path
from unittest import mock

from causalbench import (chart, cli, conditional, install, keyspace_report, keyspaces, report,
                         shards, tables)
from causalbench.base import ROOT, median, percentile
from causalbench.load import Load, key_numbers, parse_redis_benchmark, parse_wrk, write_key_numbers
from causalbench.measures import disk_usage
from causalbench.servers import shards_settled


def figure(rps, p50=1.0, p99=2.0):
    return {"rps": rps, "p50": p50, "p99": p99, "cpu": 1.5, "cpu_each": [1.0, 0.25, 0.25],
            "cpu_us_per_req": 12.0, "cpu_loadgen": 0.5, "cpu_other": 0.0, "errors": 0,
            "runs": [rps]}


class Parsing(unittest.TestCase):
    def test_wrk_result_line(self):
        out = ("Running 1s test @ http://127.0.0.1:1/\n"
               'BENCH_RESULT {"requests": 2000, "duration_us": 2000000, '
               '"latency_us": {"50": 1500, "99": 4000, "max": 9000}, '
               '"errors": {"status": 3, "timeout": 1}}\n')
        raw = parse_wrk(out)
        self.assertEqual(raw["requests"], 2000)
        r = Load.wrk_result(raw)
        self.assertEqual(r["rps"], 1000.0)
        self.assertEqual((r["p50"], r["p99"], r["max"]), (1.5, 4.0, 9.0))
        self.assertEqual((r["errors"], r["status_errors"]), (4, 3))

    def test_wrk_without_result(self):
        self.assertIsNone(parse_wrk("unable to connect to 127.0.0.1:1\n"))
        self.assertIsNone(parse_wrk(None))

    def test_redis_benchmark_csv(self):
        out = ('"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms",'
               '"p95_latency_ms","p99_latency_ms","max_latency_ms"\n'
               '"SET","86956.52","0.300","0.080","0.279","0.487","0.679","1.559"\n')
        r = parse_redis_benchmark(out, 50000)
        self.assertEqual(r["requests"], 50000)
        self.assertAlmostEqual(r["rps"], 86956.52)
        self.assertEqual((r["p50"], r["p99"], r["max"]), (0.279, 0.679, 1.559))
        self.assertEqual(r["errors"], 0)

    def test_percentile_and_median(self):
        values = list(range(1000, 0, -1))
        self.assertEqual(percentile(values, 50), 500)
        self.assertEqual(percentile(values, 99), 990)
        self.assertEqual(percentile(values, 100), 1000)
        self.assertEqual(percentile(values, 0), 1)
        self.assertIsNone(percentile([], 50))
        self.assertEqual(median([3, None, 1, 2]), 2)
        self.assertIsNone(median([None]))


class Tables(unittest.TestCase):
    def test_formats(self):
        self.assertEqual(tables.fmt_rps(12345.6), "12,346")
        self.assertEqual(tables.fmt_ms(None), "—")
        self.assertEqual(tables.fmt_ratio(0.8512), "0.85")
        self.assertEqual([tables.short(n) for n in (5000, 1_000_000, 10_000_000, 1234)],
                         ["5k", "1M", "10M", "1,234"])
        self.assertEqual(tables.join_limit_secs(10_000_000), 60.0)
        self.assertEqual(tables.join_limit_secs(100_000), 5.0)

    def test_tables_text_and_markdown(self):
        rows = [("a|b", "1"), ("c", "22")]
        self.assertEqual(tables.table_md(("x", "y"), rows),
                         "| x | y |\n| --- | --- |\n| a\\|b | 1 |\n| c | 22 |")
        self.assertEqual(tables.table_text(("x", "yy"), rows).splitlines(),
                         ["x    yy", "---  --", "a|b  1 ", "c    22"])

    def test_targets(self):
        r = {"causalkv": {"get_one": figure(90_000), "put_one": figure(50_000)},
             "ceiling": {"get": figure(100_000), "put": figure(100_000)}}
        rows = {row[0]: row for row in tables.target_rows(r)}
        get = rows["GET one replica / HTTP ceiling GET"]
        self.assertEqual(get[1:], ("90,000", "100,000", "0.90", "≥ 0.85", True))
        put = rows["PUT one replica / HTTP ceiling PUT"]
        self.assertEqual(put[3:], ("0.50", "≥ 0.6", False))
        etcd = rows["PUT / etcd PUT (no fsync)"]  # not measured: no verdict
        self.assertEqual(etcd[2:], ("—", "—", "≥ 5", None))
        (th, targets), _ = tables.report_tables(r)
        self.assertEqual(len(th), len(targets[0]))
        self.assertIn("PASS", {t[-1] for t in targets})
        self.assertIn("FAIL", {t[-1] for t in targets})

    def test_details_and_cpu(self):
        r = {"causalkv": {"get_one": figure(90_000)}, "redis": {"n": 5, "set": figure(80_000)}}
        self.assertEqual([(s, op, w) for s, op, w, _ in tables.detail_rows(r)],
                         [("causalkv", "GET", "1 of 3 replicas"),
                          ("Redis (redis-benchmark)", "SET", "master of 3")])
        self.assertEqual(tables.fmt_cpu(figure(1)), "1.50 (1.00 + 0.25 + 0.25)")
        self.assertEqual(tables.fmt_cpu({"cpu": None}), "—")


def durable_results(put_fsync=45_000, ready=0.4, held=0.5, same=True, etcd_keys=1_000_000):
    """A run's results with the durable part (1M keys), etcd's fsync PUT,
    Redis and etcd weighed."""
    n = 1_000_000
    mib = 2**20
    return {
        "etcd_fsync": {"put": figure(4_000)},
        "durable": {
            "keys": 10_000,
            "figures": {"put_memory": figure(50_000), "put_fsync": figure(put_fsync),
                        "put_os": figure(48_000), "get_fsync": figure(95_000),
                        "get_ceiling": figure(100_000),
                        "modes": {"memory": "memory", "fsync": "fsync", "os": "os"}},
            "store": {
                "keys": n, "load_secs": 50.0, "settle_secs": 4.2, "settled": True,
                "disk": [{"bytes": 300 * n, "journals": 64 * mib, "apparent": 1, "files": 9},
                         {"bytes": 200 * n, "journals": 32 * mib, "apparent": 1, "files": 9},
                         {"bytes": 210 * n, "journals": 32 * mib, "apparent": 1, "files": 9}],
                "rss_empty": [10 * mib] * 3, "rss": [10 * mib + 400 * n, 10 * mib + 300 * n, None],
                "replica": "127.0.0.1:1",
                "recovery": {"keys": n, "answer_secs": 0.1, "ready_secs": ready, "held_secs": held,
                             "last_keys": n if held is not None else 10, "exited": None,
                             "identity_before": "127.0.0.1:1#aa",
                             "identity_after": "127.0.0.1:1#aa" if same else "127.0.0.1:1#bb",
                             "same_identity": same, "tail_truncated": False},
                "after_restart": {"settle_secs": 3.1, "settled": True,
                                  "disk": {"bytes": 190 * n, "journals": 0, "apparent": 1,
                                           "files": 5},
                                  "rss": 10 * mib + 350 * n, "all_hold_keys": True}},
            "redis": {"keys": n, "load_secs": 9.0, "rss": 220 * n, "rss_per_key": 209.0,
                      "aof": {"bytes": 150 * n}, "rdb": {"bytes": 120 * n}},
            "etcd": {"keys": etcd_keys, "load_secs": 80.0, "rss": [1, 2, 3],
                     "members": [{"bytes": 380 * etcd_keys, "db": 183 * etcd_keys,
                                  "wal": 190 * etcd_keys}] * 3,
                     "rss_per_key": [500.0, 450.0, None]},
        },
    }


class Durable(unittest.TestCase):
    def test_the_wait_before_the_get_runs_is_told_when_the_run_made_it(self):
        told = report.get_settled({"get_settle_secs": 4.2, "get_settled": True})
        self.assertIn("idle after 4 s", told)
        busy = report.get_settled({"get_settle_secs": 60.4, "get_settled": False})
        self.assertIn("still busy after 60 s", busy)
        # A run that did not wait (an older BENCHMARKS.json) says nothing of it.
        self.assertEqual(report.get_settled({}), "")

    def test_no_durable_part_no_rows(self):
        r = {"causalkv": {"put_one": figure(50_000)}}
        whats = [row[0] for row in tables.target_rows(r)]
        self.assertFalse([w for w in whats if "DATA_DIR" in w or "SIGKILL" in w])
        self.assertIsNone(tables.durable_disk_table(r))
        self.assertEqual(tables.durable_detail_rows(r), [])

    def test_targets(self):
        rows = {row[0]: row for row in tables.target_rows(durable_results())}
        self.assertEqual(rows["PUT DATA_DIR fsync / PUT in memory"][1:],
                         ("45,000", "50,000", "0.90", "≥ 0.8", True))
        self.assertEqual(rows["PUT DATA_DIR fsync / etcd PUT (fsync)"][1:],
                         ("45,000", "4,000", "11.25", "≥ 10", True))
        self.assertEqual(rows["GET DATA_DIR fsync / HTTP ceiling GET"][3:],
                         ("0.95", "≥ 0.85", True))
        rec = rows["durable replica with 1,000,000 keys restarted after SIGKILL: "
                   "ready, holds every key after"]
        self.assertEqual(rec[1:], ("0.40 s, 0.50 s", "—", "0.50 s", "≤ 2 s", True))
        info = rows["PUT DATA_DIR os / PUT in memory"]  # information: no verdict
        self.assertEqual(info[3:], ("0.96", "—", None))
        slow = {row[0]: row for row in tables.target_rows(durable_results(put_fsync=30_000))}
        self.assertFalse(slow["PUT DATA_DIR fsync / PUT in memory"][-1])
        self.assertFalse(slow["PUT DATA_DIR fsync / etcd PUT (fsync)"][-1])

    def test_recovery_verdicts(self):
        def row(**kw):
            return tables.recovery_row(durable_results(**kw)["durable"]["store"]["recovery"])
        self.assertTrue(row()[-1])
        self.assertFalse(row(held=2.5)[-1])
        never = row(held=None)
        self.assertEqual(never[1], "0.40 s, never")
        self.assertEqual((never[3], never[-1]), ("never", False))
        # Back under another identity: it copied the keys from a peer.
        other = row(same=False)
        self.assertEqual((other[3], other[-1]), ("0.50 s, as a new identity", False))

    def test_missing_references_give_no_verdict(self):
        r = durable_results()
        del r["etcd_fsync"]
        del r["durable"]["figures"]["get_ceiling"]
        rows = {row[0]: row for row in tables.target_rows(r)}
        self.assertIsNone(rows["PUT DATA_DIR fsync / etcd PUT (fsync)"][-1])
        self.assertEqual(rows["GET DATA_DIR fsync / HTTP ceiling GET"][2:],
                         ("—", "—", "≥ 0.85", None))
        (_, targets), _ = tables.report_tables(r)
        marks = {t[0]: t[-1] for t in targets}
        self.assertEqual(marks["PUT DATA_DIR fsync / etcd PUT (fsync)"], "—")
        self.assertEqual(marks["PUT DATA_DIR fsync / PUT in memory"], "PASS")

    def test_detail_rows(self):
        rows = tables.durable_detail_rows(durable_results())
        self.assertEqual([(s, op) for s, op, _, _ in rows],
                         [("HTTP ceiling", "GET"), ("causalkv, DATA_DIR fsync", "GET"),
                          ("causalkv, in memory", "PUT"), ("causalkv, DATA_DIR fsync", "PUT"),
                          ("causalkv, DATA_DIR os", "PUT")])
        cells = tables.detail_cells(*rows[3])
        self.assertEqual(len(cells), len(tables.DETAIL_HEADERS))
        self.assertEqual(cells[3], "45,000")

    def test_disk_table(self):
        r = durable_results()
        r["scale"] = {"levels": {1_000_000: {"rss_per_key": 196.4}}}
        h, rows = tables.durable_disk_table(r)
        self.assertTrue(all(len(row) == len(h) for row in rows))
        by = {row[0]: row for row in rows}
        first = by["causalkv, DATA_DIR fsync: the replica loaded through, after the load"]
        self.assertEqual(first[1:6], ("1,000,000", "286.1", "300", "67", "400"))
        others = by["causalkv, DATA_DIR fsync: the other two replicas, after the load"]
        self.assertEqual(others[3:6], ("200, 210", "34, 34", "300, —"))
        after = by["causalkv, DATA_DIR fsync: the replica loaded through, restarted after SIGKILL"]
        self.assertEqual(after[3:6], ("190", "0", "350"))
        self.assertEqual(by["causalkv in memory (scale part)"][5], "196")
        self.assertEqual(by["Redis, append-only file (everysec): the master"][3:6],
                         ("150", "(all of it)", "209"))
        self.assertEqual(by["Redis, RDB dump (SAVE): the master"][3], "120")
        etcd = by["etcd (fsync): member 1"]
        self.assertEqual(etcd[3:6], ("380", "190", "500"))
        self.assertIn("bbolt file: 183 B/key", etcd[6])
        self.assertEqual(by["etcd (fsync): members 2 and 3"][5], "450, —")

    def test_report_section(self):
        r = durable_results(etcd_keys=100_000)
        s = argparse.Namespace(argv=["--quick"], threads=2, connections=32, duration=3,
                               keys=10_000, value_size=100, repeat=1, workers=2)
        now = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
        bench = argparse.Namespace(s=s, results=r, notes=[], started=now, finished=now,
                                   machine={}, versions={}, commands={})
        with tempfile.TemporaryDirectory() as tmp, \
                mock.patch.object(chart, "write", return_value=None):
            text = report.write_report(bench, Path(tmp)).read_text()
        self.assertIn("## Durability", text)
        self.assertIn("| PUT DATA_DIR fsync / PUT in memory | 45,000 | 50,000 | 0.90 | ≥ 0.8 | PASS |",
                      text)
        self.assertIn("`GET /ready` answered 200 after 0.40 s, and `/health` counted all "
                      "1,000,000 keys after 0.50 s.", text)
        self.assertIn("It came back with the same identity", text)
        self.assertIn("**etcd held 100,000 keys, not 1,000,000**", text)
        self.assertLess(text.index("## Durability"), text.index("## Machine"))

    def test_recovery_paragraph_failures(self):
        st = durable_results(held=None, same=False)["durable"]["store"]
        st["recovery"]["exited"] = 1
        st["settled"] = False
        text = report.recovery_paragraph(st, 100)
        self.assertIn("counted all 1,000,000 keys after never (it counted 10 when the wait "
                      "ended).", text)
        self.assertIn("Its process exited with status 1", text)
        self.assertIn("under another identity (127.0.0.1:1#bb, not 127.0.0.1:1#aa)", text)
        self.assertIn("not quite after the 4 s", text)

    def test_disk_usage(self):
        with tempfile.TemporaryDirectory() as tmp:
            d = Path(tmp) / "db"
            d.mkdir()
            (d / "a.jnl").write_bytes(b"x" * 10_000)
            with open(d / "sparse", "wb") as f:  # a hole: no block allocated
                f.truncate(1 << 20)
            os.link(d / "a.jnl", d / "b.jnl")  # one file, two names: counted once
            got = disk_usage(tmp)
            jnl = disk_usage(d, "*.jnl")
            self.assertEqual((jnl["files"], jnl["apparent"]), (1, 10_000))
            self.assertGreaterEqual(jnl["bytes"], 10_000)
            self.assertEqual(got["files"], 2)
            self.assertEqual(got["apparent"], 10_000 + (1 << 20))
            self.assertLess(got["bytes"], 1 << 20)  # the hole does not count
            self.assertGreater(got["bytes"], jnl["bytes"])  # the directories do
            self.assertEqual(disk_usage(d / "a.jnl")["apparent"], 10_000)
            self.assertEqual(disk_usage(Path(tmp) / "absent"),
                             {"bytes": 0, "apparent": 0, "files": 0})



def shards_results(get_fwd_p50=0.5, failed=0, status=200, key_sum=1_000_000, rss_half=0.55):
    """A run's results with the shards part (1M keys)."""
    n = 1_000_000
    mib = 2**20
    u_rss = 230 * mib
    return {"shards": {
        "nodes": 6, "shard_count": 2, "reshard_to": 3,
        "figures": {
            "keys": 10_000, "owned_keys": 5_010, "owner_shard": 1, "owner": "127.0.0.1:1",
            "forwarded_via": "127.0.0.1:2", "owner_shard_members": ["127.0.0.1:1", "127.0.0.1:3"],
            "shard_keys": {"1": 5_010, "2": 4_990},
            "get_owner": figure(40_000, p50=0.4), "get_forwarded": figure(25_000, p50=get_fwd_p50),
            "get_unsharded": figure(80_000, p50=0.3),
            "put_owner": figure(30_000, p50=0.6), "put_forwarded": figure(15_000, p50=1.2),
            "put_unsharded": figure(50_000, p50=0.5)},
        "memory": {
            "keys": n,
            "unsharded": {"nodes": 3, "load_secs": 13.0, "rss_empty": [8 * mib] * 3,
                          "rss": [u_rss] * 3, "keys": [n] * 3, "shard_of_node": [None] * 3},
            "sharded": {"nodes": 6, "load_secs": 20.0, "rss_empty": [8 * mib] * 6,
                        "rss": [int(u_rss * rss_half)] * 6,
                        "keys": [500_100, 499_900, 500_100, 499_900, 500_100, 499_900],
                        "shard_of_node": [1, 2, 1, 2, 1, 2]}},
        "reshard": {
            "from": 2, "to": 3, "keys": n, "limit_secs": 200.0, "coordinator": "127.0.0.1:1",
            "status": status, "answer": '{"message":"Resharding done successfully"}', "secs": 12.5,
            "load_lead_secs": 1.0,
            "load": {"threads": 4, "put_share": 0.5, "timeout_secs": 60.0, "secs": 14.5,
                     "ok": 20_000, "ok_get": 10_000, "ok_put": 10_000, "failed": failed,
                     "failures": {"HTTP 503": failed} if failed else {},
                     "first_failures": [[11.1, "put", "127.0.0.1:2", "HTTP 503", '{"error":"x"}'],
                                        [19.8, "get", "127.0.0.1:3", "HTTP 503", None]]
                     if failed else [],
                     "slowest": [900.0, "put", "127.0.0.1:1", 201], "p50": 1.0, "p99": 50.0,
                     "max": 900.0, "put_p99": 80.0, "put_max": 900.0},
            "settled": True, "settle_secs": 0.4,
            "shards": [{"id": 1, "members": ["127.0.0.1:1", "127.0.0.1:4"], "keys": 333_000},
                       {"id": 2, "members": ["127.0.0.1:2", "127.0.0.1:5"], "keys": 333_500},
                       {"id": 3, "members": ["127.0.0.1:3", "127.0.0.1:6"],
                        "keys": key_sum - 666_500}],
            "key_sum": key_sum,
            "nodes": [["127.0.0.1:1", 1, 333_000, 0], ["127.0.0.1:2", 2, 333_500, 0],
                      ["127.0.0.1:3", 3, key_sum - 666_500, 0]],
            "handed_off": 2_000_000.0, "received": 1_333_000.0,
            "rss_after": [150 * mib, 150 * mib, 120 * mib]},
    }}


class Shards(unittest.TestCase):
    def test_answers_and_failures(self):
        self.assertEqual(shards.shard_of_answer(
            b'{"causal-metadata":{},"message":"Added successfully","shard-id":2}'), 2)
        self.assertIsNone(shards.shard_of_answer(b'{"message":"Added successfully"}'))
        self.assertIsNone(shards.shard_of_answer(b"<html>"))
        self.assertIsNone(shards.shard_of_answer(b"[1]"))
        for status in (200, 201, 204, 404):
            self.assertIsNone(shards.failure_kind(status))
        self.assertEqual(shards.failure_kind(503), "HTTP 503")
        self.assertEqual(shards.failure_kind(400), "HTTP 400")
        self.assertEqual(shards.failure_kind(error=ConnectionResetError()), "ConnectionResetError")
        self.assertEqual(shards.failure_kind(error=TimeoutError("timed out")), "TimeoutError")
        self.assertEqual(shards.failure_kind(), "no answer")
        self.assertEqual(shards.reshard_limit_secs(2000), 120.0)
        self.assertEqual(shards.reshard_limit_secs(10_000_000), 2000.0)

    def test_metric_total(self):
        text = ("# HELP causalkv_shard_versions_handed_off_total Versions handed\n"
                "# TYPE causalkv_shard_versions_handed_off_total counter\n"
                "causalkv_shard_versions_handed_off_total 1500\n"
                'causalkv_shard_relayed_requests_total{outcome="ok",shard="1"} 7\n'
                'causalkv_shard_relayed_requests_total{outcome="failed",shard="2"} 2\n'
                "causalkv_shard_relayed_requests_total_other 100\n")
        self.assertEqual(shards.metric_total(text, "causalkv_shard_versions_handed_off_total"),
                         1500.0)
        self.assertEqual(shards.metric_total(text, "causalkv_shard_relayed_requests_total"), 9.0)
        self.assertIsNone(shards.metric_total(text, "causalkv_reshards_total"))
        self.assertIsNone(shards.metric_total(None, "x"))

    def test_settled(self):
        self.assertTrue(shards_settled([(1, 500, 0), (2, 500, 0), (1, 500, 0), (2, 500, 0)], 1000))
        self.assertFalse(shards_settled([(1, 500, 0), (2, 499, 0), (1, 500, 0)], 1000))
        self.assertFalse(shards_settled([(1, 500, 0), (2, 500, 0), (1, 499, 0)], 999))
        self.assertFalse(shards_settled([(1, 500, 0), (2, 500, 3)], 1000))
        self.assertFalse(shards_settled([(1, 500, 0), (None, 500, 0)], 1000))
        self.assertFalse(shards_settled([], 0))

    def test_key_file(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = write_key_numbers(Path(tmp) / "keys.txt", [3, 7, 12])
            self.assertEqual(Path(path).read_text(), "3\n7\n12\n")
            self.assertEqual(key_numbers({"BENCH_KEYFILE": str(path)}), [3, 7, 12])
            write_key_numbers(Path(tmp) / "none.txt", [])
            with self.assertRaises(Exception):
                key_numbers({"BENCH_KEYFILE": str(Path(tmp) / "none.txt")})
        self.assertEqual(list(key_numbers({"BENCH_KEYS": "4"})), [0, 1, 2, 3])

    def test_load_record_and_summary(self):
        ld = shards.MixedLoad(["127.0.0.1:1"], 10, "v", '{"a#1":1}', threads=2)
        self.assertEqual(json.loads(ld.put_body), {"value": "v", "causal-metadata": {"a#1": 1}})
        ld.t0 = 0.0
        for ms in (1.0, 2.0, 3.0):
            ld.record("get", "127.0.0.1:1", ms, 200, None)
        ld.record("put", "127.0.0.1:1", 40.0, 201, None)
        ld.record("put", "127.0.0.1:1", 9.0, 503, "HTTP 503", answer='{"error":"x"}')
        ld.record("get", "127.0.0.1:1", 5.0, None, "ConnectionResetError")
        got = ld.summary()
        self.assertEqual((got["ok"], got["ok_get"], got["ok_put"], got["failed"]), (4, 3, 1, 2))
        self.assertEqual(got["failures"], {"HTTP 503": 1, "ConnectionResetError": 1})
        self.assertEqual((got["p50"], got["max"], got["put_max"]), (2.0, 40.0, 40.0))
        self.assertEqual(got["slowest"], [40.0, "put", "127.0.0.1:1", 201])
        self.assertEqual(len(got["first_failures"]), 2)
        self.assertEqual(got["first_failures"][0][1:], ("put", "127.0.0.1:1", "HTTP 503",
                                                        '{"error":"x"}'))
        ld.max_requests = 1
        self.assertTrue(ld.take_turn())
        self.assertFalse(ld.take_turn())

    def test_targets(self):
        rows = {row[0]: row for row in tables.target_rows(shards_results())}
        get = rows["GET p50, relayed from the other shard / at the key's shard (2 shards)"]
        self.assertEqual(get[1:], ("0.50 ms", "0.40 ms", "1.25", "≤ 1.6", True))
        put = rows["PUT p50, relayed from the other shard / at the key's shard (2 shards)"]
        self.assertEqual(put[3:], ("2.00", "≤ 1.6", False))
        keys = rows["keys per node, 2 shards / unsharded (1M keys)"]
        self.assertEqual(keys[1:], ("500,000", "1,000,000", "0.50", "0.45–0.55", True))
        rss = rows["RSS per node, 2 shards / unsharded (1M keys)"]
        self.assertEqual(rss[1:], ("126.5 MiB", "230.0 MiB", "0.55", "≤ 0.6", True))
        rs = rows["reshard 2 → 3 shards, 1M keys, under load: duration, failed requests"]
        self.assertEqual(rs[1:], ("12.50 s", "20,000 ok", "0 failed", "0 failed", True))
        total = rows["after the reshard: keys in the 3 shards, in all"]
        self.assertEqual(total[1:], ("1,000,000", "1,000,000", "+0", "= the keys (+0)", True))
        bad = {row[0]: row for row in tables.target_rows(
            shards_results(get_fwd_p50=0.7, failed=3, status=503, key_sum=999_990, rss_half=0.7))}
        self.assertFalse(bad["GET p50, relayed from the other shard / at the key's shard "
                             "(2 shards)"][-1])
        self.assertFalse(bad["RSS per node, 2 shards / unsharded (1M keys)"][-1])
        rs = bad["reshard 2 → 3 shards, 1M keys, under load: duration, failed requests"]
        self.assertEqual(rs[3:], ("3 failed, the reshard answered 503", "0 failed", False))
        total = bad["after the reshard: keys in the 3 shards, in all"]
        self.assertEqual(total[3], "-10")
        self.assertFalse(total[-1])
        self.assertEqual([r for r in tables.target_rows({}) if "shard" in r[0]], [])

    def test_tables(self):
        r = shards_results()
        rows = tables.shards_detail_rows(r)
        self.assertEqual([(s, op, w) for s, op, w, _ in rows][:3],
                         [("causalkv, 2 shards of 3", "GET", "a node of the keys' shard"),
                          ("causalkv, 2 shards of 3", "GET", "a node of the other shard (relays)"),
                          ("causalkv, unsharded", "GET", "1 of 3 replicas")])
        self.assertEqual(len(rows), 6)
        self.assertEqual(tables.shards_detail_rows({}), [])
        h, mem = tables.shards_memory_table(r)
        self.assertTrue(all(len(row) == len(h) for row in mem))
        self.assertEqual(mem[0][:2], ("unsharded, 3 replicas", "3"))
        self.assertEqual(mem[0][4:], ("1,000,000", "230.0", "233"))
        self.assertEqual(mem[1][4:6], ("500,000", "126.5"))
        self.assertEqual(mem[2][0], "the same after the reshard to 3 shards")
        self.assertEqual(mem[2][2], "333,000, 333,500, 333,500")
        self.assertIsNone(tables.shards_memory_table({}))

    def test_report_section(self):
        r = shards_results(failed=2)
        s = argparse.Namespace(argv=["--skip", "ceiling"], threads=2, connections=32, duration=10,
                               keys=10_000, value_size=100, repeat=3, workers=2)
        now = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
        bench = argparse.Namespace(s=s, results=r, notes=[], started=now, finished=now,
                                   machine={}, versions={}, commands={})
        with tempfile.TemporaryDirectory() as tmp, \
                mock.patch.object(chart, "write", return_value=None):
            text = report.write_report(bench, Path(tmp)).read_text()
            saved = json.loads((Path(tmp) / "BENCHMARKS.json").read_text())
        self.assertEqual(saved["results"]["shards"]["reshard"]["key_sum"], 1_000_000)
        self.assertIn("## Shards", text)
        self.assertLess(text.index("## Shards"), text.index("## Machine"))
        self.assertIn("| GET p50, relayed from the other shard / at the key's shard (2 shards) | "
                      "0.50 ms | 0.40 ms | 1.25 | ≤ 1.6 | PASS |", text)
        self.assertIn("| reshard 2 → 3 shards, 1M keys, under load: duration, failed requests | "
                      "12.50 s | 20,000 ok | 2 failed | 0 failed | FAIL |", text)
        self.assertIn("wrk sent them to 127.0.0.1:2, which relays each", text)
        self.assertIn("answered 200 after 12.50 s", text)
        self.assertIn("20,000 answered (2xx, or 404) and 2 failed (2 HTTP 503)", text)
        self.assertIn("The first failures, from the start of the reshard: 10.1 s, PUT at "
                      '127.0.0.1:2: HTTP 503 `{"error":"x"}`; 18.8 s, GET at 127.0.0.1:3: '
                      "HTTP 503.", text)
        self.assertIn("shard 3 (127.0.0.1:3, 127.0.0.1:6): 333,500 keys; 1,000,000 in all", text)
        self.assertIn("(here 0.50)", text)

    def test_reshard_paragraph_failures(self):
        rs = shards_results(status=None)["shards"]["reshard"]
        rs["answer"] = "TimeoutError: timed out"
        rs["shards"], rs["key_sum"], rs["error"] = None, None, "ToolError: 503"
        text = report.reshard_paragraph(rs)
        self.assertIn("did not succeed: it answered nothing after 12.50 s (TimeoutError", text)
        self.assertIn("could not be read: ToolError: 503", text)


def conditional_results(cond_rps=46_000, errors=0, statuses=None, cond_cpu=13.0):
    """A run's results with the conditional part."""
    cond = dict(figure(cond_rps, p50=0.7, p99=2.5), cpu_us_per_req=cond_cpu, errors=errors,
                requests=cond_rps * 30)
    plain = dict(figure(50_000, p50=0.6, p99=2.2), requests=1_500_000)
    return {"conditional": {
        "keys": 10_000, "if_match": "*", "replica": "127.0.0.1:1",
        "put_plain": plain, "put_if_match": cond,
        "server_statuses": statuses if statuses is not None else {"200": 2_880_000},
        "server_not_2xx": conditional.not_2xx(
            statuses if statuses is not None else {"200": 2_880_000})}}


METRICS = (
    "# HELP causalkv_http_requests_total HTTP requests answered\n"
    "# TYPE causalkv_http_requests_total counter\n"
    'causalkv_http_requests_total{method="GET",route="/key-value-store/{key}",status="200"} 9\n'
    'causalkv_http_requests_total{method="PUT",route="/key-value-store/{key}",status="200"} 100\n'
    'causalkv_http_requests_total{method="PUT",route="/key-value-store/{key}",status="201"} 3\n'
    'causalkv_http_requests_total{method="PUT",route="/key-value-store/{key}",status="412"} 1\n'
    'causalkv_http_requests_total{method="PUT",route="/key-value-store-view",status="200"} 4\n'
    'causalkv_http_requests_total_other{method="PUT",route="/key-value-store/x",status="200"} 7\n')


class Conditional(unittest.TestCase):
    def test_status_counts(self):
        self.assertEqual(conditional.labels_of('a="x{y}",b="q\\"r"'), {"a": "x{y}", "b": 'q"r'})
        before = conditional.status_counts(METRICS)
        self.assertEqual(before, {"200": 100, "201": 3, "412": 1})
        self.assertEqual(conditional.status_counts(METRICS, method="GET"), {"200": 9})
        self.assertEqual(conditional.status_counts("causalkv_http_requests_total 1\n"), None)
        self.assertIsNone(conditional.status_counts(None))
        self.assertEqual(conditional.status_counts(
            'causalkv_http_requests_total{method="GET",route="/health",status="200"} 1\n'), {})
        after = conditional.status_counts(METRICS.replace('"200"} 100', '"200"} 150')
                                          .replace('"412"} 1', '"412"} 3'))
        delta = conditional.status_delta(before, after)
        self.assertEqual(delta, {"200": 50, "412": 2})
        self.assertEqual(conditional.not_2xx(delta), 2)
        self.assertEqual(conditional.not_2xx({"200": 5, "201": 1}), 0)
        self.assertIsNone(conditional.status_delta(None, after))
        self.assertIsNone(conditional.not_2xx(None))

    def test_targets(self):
        rows = {row[0]: row for row in tables.target_rows(conditional_results())}
        rps = rows["PUT If-Match: * / plain PUT, one replica (req/s)"]
        self.assertEqual(rps[1:], ("46,000", "50,000", "0.92", "≥ 0.9", True))
        cpu = rows["PUT If-Match: * / plain PUT, server CPU µs per request"]
        self.assertEqual(cpu[1:], ("13.0 µs", "12.0 µs", "1.08", "— (≤ 1.1: information)", None))
        err = rows["PUT If-Match: * of keys that exist: answers other than 2xx (412 included)"]
        self.assertEqual(err[1:], ("1,380,000 PUTs", "—", "0 errors, the replica: 0 not 2xx",
                                   "0", True))
        bad = {row[0]: row for row in tables.target_rows(
            conditional_results(cond_rps=40_000, errors=5, statuses={"200": 10, "412": 5}))}
        self.assertEqual(bad["PUT If-Match: * / plain PUT, one replica (req/s)"][3:],
                         ("0.80", "≥ 0.9", False))
        err = bad["PUT If-Match: * of keys that exist: answers other than 2xx (412 included)"]
        self.assertEqual(err[3:], ("5 errors, the replica: 5 not 2xx", "0", False))
        # The replica's count alone fails it too (wrk saw none); no count: wrk's errors.
        r = conditional_results(statuses={"200": 10, "412": 1})
        self.assertFalse(tables.conditional_rows(r)[2][-1])
        r["conditional"]["server_not_2xx"] = None
        self.assertEqual(tables.conditional_rows(r)[2][3:], ("0 errors", "0", True))
        self.assertEqual(tables.conditional_rows({}), [])
        self.assertEqual([row for row in tables.target_rows({}) if "If-Match" in row[0]], [])

    def test_detail_rows_and_report(self):
        r = conditional_results(errors=2, statuses={"200": 100, "412": 2})
        self.assertEqual([(s, op, w) for s, op, w, _ in tables.conditional_detail_rows(r)],
                         [("causalkv", "PUT", "1 of 3 replicas"),
                          ("causalkv, If-Match: *", "PUT", "1 of 3 replicas, keys that exist")])
        self.assertEqual(tables.conditional_detail_rows({}), [])
        s = argparse.Namespace(argv=["--skip", "etcd"], threads=2, connections=32, duration=10,
                               keys=10_000, value_size=100, repeat=3, workers=2)
        now = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
        bench = argparse.Namespace(s=s, results=r, notes=[], started=now, finished=now,
                                   machine={}, versions={}, commands={})
        with tempfile.TemporaryDirectory() as tmp, \
                mock.patch.object(chart, "write", return_value=None):
            text = report.write_report(bench, Path(tmp)).read_text()
            saved = json.loads((Path(tmp) / "BENCHMARKS.json").read_text())
        self.assertEqual(saved["results"]["conditional"]["put_if_match"]["rps"], 46_000)
        self.assertIn("## Conditional writes", text)
        self.assertLess(text.index("## Conditional writes"), text.index("## Machine"))
        self.assertIn("| PUT If-Match: * / plain PUT, one replica (req/s) | 46,000 | 50,000 | "
                      "0.92 | ≥ 0.9 | PASS |", text)
        self.assertIn("| causalkv, If-Match: * | PUT | 1 of 3 replicas, keys that exist | "
                      "46,000 | 0.70 | 2.50 |", text)
        self.assertIn("Of the 1,380,000 conditional PUTs, 2 answered other than 2xx or failed, "
                      "by wrk's count (a 412 is an error here). The replica's", text)
        self.assertIn("a plain PUT never answers 412) by status meanwhile: 100 × 200, 2 × 412. "
                      "The target (issue 14)", text)
        self.assertIn("≥ 0.9 (here 0.92)", text)
        self.assertIn("(here 1.08, at most 1.1", text)

    def test_smoke_counts_its_errors(self):
        """A smoke run fails on conditional PUTs that did not answer 2xx."""
        bench = argparse.Namespace(results=conditional_results(errors=3), notes=[],
                                   procs=mock.Mock())
        bench.run = lambda: None
        with tempfile.TemporaryDirectory() as tmp, \
                mock.patch.object(cli.tempfile, "mkdtemp", return_value=tmp), \
                mock.patch.object(cli.signal, "signal"), \
                mock.patch.object(cli, "Bench", return_value=bench), \
                mock.patch.object(cli, "print_tables"), \
                mock.patch.object(cli, "write_report", return_value=Path("x")), \
                redirect_stderr(io.StringIO()) as err:
            self.assertEqual(cli.main(["--smoke"]), 1)
        self.assertIn("causalkv, If-Match: * PUT 1 of 3 replicas, keys that exist: 3 errors",
                      err.getvalue())


def tables_results(errors=0):
    """The results of a tables part: 10,000 empty tables, 1M keys in each
    store, GET and PUT in a table against the default table."""
    mib = 2**20
    return {"tables": {
        "overhead": {"tables": 10_000, "measured": 9_999, "created": 10_000,
                     "created_at": "127.0.0.1:1", "replicas": ["127.0.0.1:1"] * 3,
                     "connections": 4, "create_secs": 3.333, "listed_secs": 4.25,
                     "rss_before": [20 * mib] * 3, "rss_after": [25 * mib, 24 * mib, None],
                     "samples": [2, 3], "steady": [True, False],
                     "bytes_per_table": [524.3, 419.4, None], "bytes_per_table_mean": 471.85,
                     "stored_keys": [10_001] * 3},
        "keys": {"keys": 1_000_000,
                 "default": {"table": None, "rss_empty": [20 * mib] * 3,
                             "rss": [220 * mib] * 3, "per_key": [210.0] * 3,
                             "per_key_mean": 210.0, "stored_keys": [1_000_000] * 3,
                             "siblings": False},
                 "table": {"table": "bench", "rss_empty": [20 * mib] * 3,
                           "rss": [240 * mib] * 3, "per_key": [231.0] * 3,
                           "per_key_mean": 231.0, "stored_keys": [1_000_001] * 3,
                           "siblings": False},
                 "siblings": {"table": "bench_siblings", "rss_empty": [20 * mib] * 3,
                              "rss": [300 * mib] * 3, "per_key": [294.0] * 3,
                              "per_key_mean": 294.0, "stored_keys": [1_000_101] * 3,
                              "siblings": True}},
        "figures": {"keys": 10_000, "table": "bench", "replica": "127.0.0.1:2",
                    "get_default": figure(100_000), "get_table": figure(95_000),
                    "put_default": figure(40_000), "put_table": dict(figure(38_000),
                                                                     errors=errors)},
    }}


class Keyspaces(unittest.TestCase):
    def test_names_and_listing(self):
        self.assertEqual(keyspaces.table_name(7), "t000007")
        self.assertEqual(keyspaces.table_prefix("bench"), "/tables/bench")
        self.assertEqual(keyspaces.table_prefix(None), "")
        body = json.dumps({"message": "Retrieved successfully", "causal-metadata": {},
                           "tables": [{"name": "a", "siblings": False, "keys": 3},
                                      {"name": "b", "siblings": True, "keys": 0}]}).encode()
        got = keyspaces.listed(body)
        self.assertEqual([x["name"] for x in got], ["a", "b"])
        self.assertEqual(keyspaces.table_keys(got, "a"), 3)
        self.assertEqual(keyspaces.table_keys(got, "b"), 0)
        self.assertIsNone(keyspaces.table_keys(got, "c"))
        self.assertIsNone(keyspaces.table_keys(None, "a"))
        for bad in (b"not json", b"[1]", b'{"tables": 3}', b"{}"):
            self.assertIsNone(keyspaces.listed(bad), bad)

    def test_rss(self):
        mib = 2**20
        self.assertTrue(keyspaces.rss_steady([100 * mib, 50 * mib], [100 * mib + 1000, 50 * mib]))
        self.assertTrue(keyspaces.rss_steady([1000 * mib], [1000 * mib + 1000 * 1024]))  # 0.1%
        self.assertFalse(keyspaces.rss_steady([100 * mib], [101 * mib]))
        self.assertFalse(keyspaces.rss_steady([100 * mib, None], [100 * mib, 5]))
        self.assertFalse(keyspaces.rss_steady([], []))
        self.assertFalse(keyspaces.rss_steady([1], [1, 2]))
        self.assertEqual(keyspaces.per_item([1000, None, 500], [3000, 7, 400], 10),
                         [200.0, None, -10.0])
        self.assertEqual(keyspaces.per_item([1], [2], 0), [None])
        self.assertEqual(keyspaces.mean_or_none([1, None, 3]), 2)
        self.assertIsNone(keyspaces.mean_or_none([None]))

    def test_settled_rss(self):
        cl = mock.Mock()
        cl.rss.side_effect = [[100 * 2**20], [104 * 2**20], [104 * 2**20], [1]]
        with mock.patch.object(keyspaces.time, "sleep"):
            self.assertEqual(keyspaces.settled_rss(cl), ([104 * 2**20], 3, True))
        cl.rss.side_effect = [[i * 2**20] for i in range(1, 10)]
        with mock.patch.object(keyspaces.time, "sleep"):
            self.assertEqual(keyspaces.settled_rss(cl, samples=4), ([4 * 2**20], 4, False))

    def test_targets(self):
        rows = {row[0]: row for row in tables.target_rows(tables_results())}
        self.assertEqual(rows["RSS per empty table, 9,999 tables (mean of 3 replicas)"][1:],
                         ("472 B", "—", "472 B", "— (information)", None))
        self.assertEqual(rows["RSS per key in a table / in the default table (1M keys)"][1:],
                         ("231 B", "210 B", "1.10", "— (information)", None))
        self.assertEqual(keyspace_report.tables_target_rows({}), [])
        self.assertEqual([r for r in tables.target_rows({}) if "table" in r[0].lower()], [])
        marks = [row[5] for row in tables.report_tables(tables_results())[0][1]
                 if "table" in row[0]]
        self.assertEqual(marks, ["—", "—"])

    def test_tables(self):
        r = tables_results()
        self.assertEqual([(s, op) for s, op, _, _ in keyspace_report.tables_detail_rows(r)],
                         [("causalkv, the default table", "GET"), ("causalkv, table bench", "GET"),
                          ("causalkv, the default table", "PUT"), ("causalkv, table bench", "PUT")])
        self.assertEqual(keyspace_report.tables_detail_rows({}), [])
        h, rows = keyspace_report.tables_memory_table(r)
        self.assertEqual(len(h), len(rows[0]))
        self.assertEqual(rows[0], ("empty tables", "9,999 tables", "20.0, 20.0, 20.0",
                                   "25.0, 24.0, —", "524, 419, —", "472 B", "—"))
        self.assertEqual([row[0] for row in rows[1:]],
                         ["keys in the default table", "keys in a table",
                          "keys in a table with siblings"])
        self.assertEqual([row[-1] for row in rows[1:]], ["1.00", "1.10", "1.40"])
        self.assertIsNone(keyspace_report.tables_memory_table({}))
        self.assertEqual(keyspace_report.extra_siblings(r["tables"]["keys"]), [100] * 3)
        self.assertIsNone(keyspace_report.extra_siblings({"keys": 5}))
        self.assertEqual(keyspace_report.settle_text([2, 3], [True, False]),
                         "2 and 3, **not all steady** when the tool stopped reading")

    def test_report_section(self):
        s = argparse.Namespace(argv=["--quick"], threads=2, connections=32, duration=3,
                               keys=10_000, value_size=100, repeat=1, workers=2)
        now = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
        bench = argparse.Namespace(s=s, results=tables_results(), notes=[], started=now,
                                   finished=now, machine={}, versions={}, commands={})
        with tempfile.TemporaryDirectory() as tmp, \
                mock.patch.object(chart, "write", return_value=None):
            text = report.write_report(bench, Path(tmp)).read_text()
            saved = json.loads((Path(tmp) / "BENCHMARKS.json").read_text())
        self.assertEqual(saved["results"]["tables"]["overhead"]["measured"], 9_999)
        self.assertIn("## Tables", text)
        self.assertLess(text.index("## Tables"), text.index("## Machine"))
        self.assertIn("| RSS per empty table, 9,999 tables (mean of 3 replicas) | 472 B | — | "
                      "472 B | — (information) | — |", text)
        self.assertIn("| empty tables | 9,999 tables | 20.0, 20.0, 20.0 | 25.0, 24.0, — |", text)
        self.assertIn("then 9,999 empty tables at 127.0.0.1:1", text)
        self.assertIn("4 connections; 3,000 tables/s). Every replica listed all 10,000", text)
        self.assertIn("here after 2 and 3, **not all steady**", text)
        self.assertIn("held 100, 100, 100 such second values", text)
        self.assertIn("| causalkv, table bench | GET | 1 of 3 replicas | 95,000 |", text)
        self.assertIn("GET table/default 0.95; PUT table/default 0.95 (req/s", text)

    def test_smoke_counts_its_errors(self):
        bench = argparse.Namespace(results=tables_results(errors=4), notes=[], procs=mock.Mock())
        bench.run = lambda: None
        with tempfile.TemporaryDirectory() as tmp, \
                mock.patch.object(cli.tempfile, "mkdtemp", return_value=tmp), \
                mock.patch.object(cli.signal, "signal"), \
                mock.patch.object(cli, "Bench", return_value=bench), \
                mock.patch.object(cli, "print_tables"), \
                mock.patch.object(cli, "write_report", return_value=Path("x")), \
                redirect_stderr(io.StringIO()) as err:
            self.assertEqual(cli.main(["--smoke"]), 1)
        self.assertIn("causalkv, table bench PUT 1 of 3 replicas: 4 errors", err.getvalue())


class Chart(unittest.TestCase):
    def test_panels(self):
        r = {"causalkv": {"get_one": figure(90_000)},
             "scale": {"levels": {10_000: {"get": figure(1), "put": figure(2)}}}}
        (systems, groups), (scale, sgroups) = chart.panels(r)
        self.assertEqual([label for label, _ in groups], ["GET", "PUT", "90/10 mix"])
        self.assertEqual(dict(groups[0][1])["causalkv, 1 replica"], 90_000)
        self.assertIsNone(dict(groups[0][1])["HTTP ceiling"])
        self.assertEqual(sgroups, [("10k keys", [("scale: GET", 1), ("scale: PUT", 2)])])
        self.assertTrue(all(name in chart.COLORS for _, g in groups + sgroups for name, _ in g))


class CommandLine(unittest.TestCase):
    def test_modes(self):
        s = cli.parse_args(["--smoke"])
        self.assertEqual((s.duration, s.repeat, s.keys, s.join_keys), (1, 1, 1000, 5000))
        q = cli.parse_args(["--quick", "--skip", "etcd, redis"])
        self.assertEqual((q.duration, q.scale_keys), (3, 100_000))
        self.assertEqual(q.skip, {"etcd", "redis"})
        full = cli.parse_args([])
        self.assertEqual((full.duration, full.repeat, full.join_keys), (10, 3, 10_000_000))
        self.assertEqual((s.durable_keys, q.durable_keys, full.durable_keys),
                         (2000, 1_000_000, 1_000_000))
        self.assertEqual(cli.parse_args(["--skip", "durable", "--durable-keys", "5"]).skip,
                         {"durable"})
        self.assertEqual(cli.parse_args(["--skip", "shards,bigjoin"]).skip, {"shards", "bigjoin"})
        self.assertEqual(cli.parse_args(["--skip", "conditional"]).skip, {"conditional"})
        self.assertEqual((s.scale_keys, q.scale_keys, full.scale_keys), (2000, 100_000, 1_000_000))
        self.assertEqual((s.table_count, q.table_count, full.table_count), (100, 2000, 10_000))
        self.assertEqual(cli.parse_args(["--skip", "tables", "--table-count", "5"]).skip,
                         {"tables"})

    def test_bad_arguments(self):
        for argv in (["--skip", "nothing"], ["--threads", "4", "--connections", "2"],
                     ["--smoke", "--quick"], ["--duration", "0"], ["--durable-keys", "0"],
                     ["--table-count", "1"]):
            with self.subTest(argv=argv), redirect_stderr(io.StringIO()):
                with self.assertRaises(SystemExit):
                    cli.parse_args(argv)


class Install(unittest.TestCase):
    def test_missing_module_is_a_note(self):
        notes = []
        with mock.patch.dict(install.MODULES, {"no_such_module_x": ("python3-x", "x")}):
            got = install.ensure_modules(["unittest", "no_such_module_x"], notes,
                                         may_install=False)
        self.assertEqual(got, {"unittest"})
        self.assertEqual(len(notes), 1)
        self.assertIn("no_such_module_x", notes[0])


class Report(unittest.TestCase):
    def test_report_from_the_saved_run(self):
        """BENCHMARKS.md is what the report writer makes of BENCHMARKS.json
        (the chart itself is not drawn here)."""
        saved_json = ROOT / "BENCHMARKS.json"
        saved_md = ROOT / "BENCHMARKS.md"
        if not saved_json.exists() or not saved_md.exists():
            self.skipTest("no saved run")
        with tempfile.TemporaryDirectory() as tmp, \
                mock.patch.object(chart, "write", return_value=None):
            path = report.write_report(report.load_report(saved_json), Path(tmp))
            self.assertEqual(path.read_text(), saved_md.read_text())

    def test_report_without_a_chart_says_so(self):
        saved_json = ROOT / "BENCHMARKS.json"
        if not saved_json.exists():
            self.skipTest("no saved run")
        with tempfile.TemporaryDirectory() as tmp, redirect_stderr(io.StringIO()), \
                mock.patch.object(chart, "write", return_value="matplotlib is not installed"):
            text = report.write_report(report.load_report(saved_json), Path(tmp)).read_text()
        self.assertNotIn("BENCHMARKS.svg)", text)
        self.assertIn("- chart: matplotlib is not installed", text)


if __name__ == "__main__":
    unittest.main()
