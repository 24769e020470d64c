"""The command line (argparse: modes, settings, their defaults) and main:
a run, or a report written again from a run's BENCHMARKS.json."""

import argparse
import os
import shutil
import signal
import sys
import tempfile
import traceback
from pathlib import Path

from .base import LOADGENS, ROOT, ToolError, log
from .install import ensure_modules
from .keyspace_report import tables_detail_rows
from .report import load_report, print_tables, write_report
from .runner import Bench
from .tables import conditional_detail_rows, detail_rows, durable_detail_rows, shards_detail_rows


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="bench/run.py",
        description="The causalkv benchmark: causalkv (3 replicas) against an HTTP ceiling, "
                    "etcd and Redis on this machine; writes BENCHMARKS.md.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Modes: default = the full run (~25-30 min); --quick = 3 s figures, 1 run, "
               "100k keys at most for the scale and shards parts, 1M for the join of a large "
               "store and for the durable store (100k for etcd's) (a few minutes); --smoke = CI: "
               "1 s figures, 1,000 keys, causalkv (in memory, with conditional PUTs, with "
               "DATA_DIR and in shards) and the ceiling only, a join of 5,000 keys, a durable "
               "store and a reshard of 2,000 keys, 100 empty tables and 2,000 keys in tables, "
               "report in a temp dir.")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--smoke", action="store_true", help="seconds-long run for CI (report in a temp dir)")
    mode.add_argument("--quick", action="store_true", help="shorter figures, 1 run, 100k keys at most")
    p.add_argument("--duration", type=int, help="seconds per figure (default 10; quick 3; smoke 1)")
    p.add_argument("--repeat", type=int, help="runs per figure, the median is kept (default 3)")
    p.add_argument("--keys", type=int, help="keys of the throughput figures (default 10000)")
    p.add_argument("--value-size", type=int, default=100, help="value size in bytes (default 100)")
    p.add_argument("--threads", type=int, default=2, help="load generator threads (default 2)")
    p.add_argument("--connections", type=int, default=32, help="load generator connections (default 32)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="HTTP workers of causalkv and the ceiling (default: the CPU count)")
    p.add_argument("--scale-keys", type=int, help="largest key count of the scale part, and the "
                   "keys of the shards part's memory figures and reshard (default 1000000; "
                   "quick 100000; smoke 2000)")
    p.add_argument("--join-keys", type=int, help="keys of the store a fresh replica joins in the "
                   "bigjoin part (default 10000000; quick 1000000; smoke 5000)")
    p.add_argument("--durable-keys", type=int, help="keys of the durable store that is weighed "
                   "on disk and restarted after SIGKILL (default 1000000; quick 1000000; "
                   "smoke 2000)")
    p.add_argument("--table-count", type=int, help="empty tables created in the tables part "
                   "to weigh one (default 10000; quick 2000; smoke 100)")
    p.add_argument("--lag-samples", type=int, help="lag probes of each kind per run (default 500)")
    p.add_argument("--skip", default="", help="comma-separated parts to skip: "
                   "ceiling,causalkv,lag,conditional (PUT with If-Match: * against plain "
                   "PUT),etcd,redis,durable (DATA_DIR: throughput, restart, "
                   "bytes per key),scale,shards (SHARD_COUNT: owner/forwarded latency, RSS "
                   "per node, a reshard under load),tables (RSS per empty table and per key in "
                   "a table, GET/PUT in a table),bigjoin (the join of a large store)")
    p.add_argument("--out", help="directory for BENCHMARKS.md and BENCHMARKS.svg "
                   "(default: the repository root; smoke: a temp dir)")
    p.add_argument("--no-install", action="store_true", help="never run apt-get or pip")
    p.add_argument("--report-from", metavar="JSON",
                   help="write BENCHMARKS.md and the chart again from a run's BENCHMARKS.json "
                        "(no measurement)")
    p.add_argument("--rev", help="benchmark this git revision (its sources from git archive, "
                   "built in target/bench-rev) instead of the working tree, e.g. HEAD or main~3")
    p.add_argument("--python-load", action="store_true",
                   help="use the built-in Python load generator instead of wrk (what --smoke "
                        "falls back to when wrk cannot be installed)")
    args = p.parse_args(argv)
    args.argv = list(argv)
    if args.smoke:
        dflt = dict(duration=1, repeat=1, keys=1000, scale_keys=2000, lag_samples=20,
                    join_keys=5000, durable_keys=2000, table_count=100)
    elif args.quick:
        dflt = dict(duration=3, repeat=1, keys=10000, scale_keys=100_000, lag_samples=200,
                    join_keys=1_000_000, durable_keys=1_000_000, table_count=2000)
    else:
        dflt = dict(duration=10, repeat=3, keys=10000, scale_keys=1_000_000, lag_samples=500,
                    join_keys=10_000_000, durable_keys=1_000_000, table_count=10_000)
    for k, v in dflt.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    args.skip = {x.strip() for x in args.skip.split(",") if x.strip()}
    unknown = args.skip - {"ceiling", "causalkv", "lag", "conditional", "etcd", "redis",
                           "durable", "scale", "shards", "tables", "bigjoin"}
    if unknown:
        p.error(f"unknown parts to skip: {', '.join(sorted(unknown))}")
    for name in ("duration", "repeat", "keys", "threads", "connections", "workers", "value_size",
                 "join_keys", "durable_keys"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.table_count < 2:  # one to check the build has tables, the others weighed
        p.error("--table-count must be at least 2")
    if args.connections < args.threads:
        p.error("--connections must be at least --threads")
    if args.scale_keys < args.keys:
        args.scale_keys = args.keys
    return args


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    s = parse_args(argv)
    if s.report_from:
        saved = load_report(s.report_from)
        missing = []  # the chart's library: a note on stderr, the report says the rest
        ensure_modules(["matplotlib"], missing, may_install=not s.no_install)
        for note in missing:
            log(f"note: {note}")
        print_tables(saved)
        path = write_report(saved, Path(s.out) if s.out else Path(s.report_from).resolve().parent)
        log(f"report: {path}")
        return 0
    s.tmp = tempfile.mkdtemp(prefix="causalkv-bench-")
    log(f"logs and data in {s.tmp}")

    def on_signal(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    bench = Bench(s)
    failed = False
    try:
        bench.run()
    except KeyboardInterrupt:
        log("interrupted: stopping every process started")
        failed = True
    except ToolError as e:
        log(f"error: {e}")
        failed = True
    except Exception:
        traceback.print_exc()
        failed = True
    finally:
        for p in list(LOADGENS):
            if p.poll() is None:
                p.kill()
                p.wait()
        bench.procs.stop_all()
    if failed:
        log(f"FAILED (logs in {s.tmp})")
        return 1
    if s.out:
        out_dir = Path(s.out)
    elif s.smoke:
        out_dir = Path(s.tmp) / "report"
    else:
        out_dir = ROOT
    try:
        print_tables(bench)
        path = write_report(bench, out_dir)
    except Exception:
        traceback.print_exc()
        log(f"FAILED writing the report (logs in {s.tmp})")
        return 1
    if s.smoke:
        broken = [f"{system} {op} {where}: {f['errors']} errors"
                  for system, op, where, f in
                  detail_rows(bench.results) + conditional_detail_rows(bench.results)
                  + durable_detail_rows(bench.results) + shards_detail_rows(bench.results)
                  + tables_detail_rows(bench.results)
                  if f.get("errors")]
        if broken:
            log("smoke: error answers: " + "; ".join(broken))
            return 1
    log(f"report: {path}")
    if not s.smoke:
        shutil.rmtree(s.tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
