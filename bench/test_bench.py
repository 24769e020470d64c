"""Unit tests of the benchmark's pure parts: parsing what the load
generators print, the tables and their formatting, the chart's data, the
command line, and the report written again from the repository's
BENCHMARKS.json. No server, no network, no install.

    python3 -m unittest discover bench
"""

import io
import tempfile
import unittest
from contextlib import redirect_stderr
from pathlib import Path
from unittest import mock

from causalbench import chart, cli, install, report, tables
from causalbench.base import ROOT, median, percentile
from causalbench.load import Load, parse_redis_benchmark, parse_wrk


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

    def test_bad_arguments(self):
        for argv in (["--skip", "nothing"], ["--threads", "4", "--connections", "2"],
                     ["--smoke", "--quick"], ["--duration", "0"]):
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
