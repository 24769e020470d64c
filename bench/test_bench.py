"""Unit tests of the benchmark's pure parts: parsing what the load
generators print, the tables and their formatting, the chart's data, the
command line, and the report written again from the repository's
BENCHMARKS.json. No server, no network, no install.

    python3 -m unittest discover bench
"""

import argparse
import datetime
import io
import os
import tempfile
import unittest
from contextlib import redirect_stderr
from pathlib import Path
from unittest import mock

from causalbench import chart, cli, install, report, tables
from causalbench.base import ROOT, median, percentile
from causalbench.load import Load, parse_redis_benchmark, parse_wrk
from causalbench.measures import disk_usage


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

    def test_bad_arguments(self):
        for argv in (["--skip", "nothing"], ["--threads", "4", "--connections", "2"],
                     ["--smoke", "--quick"], ["--duration", "0"], ["--durable-keys", "0"]):
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
