"""What every part of the benchmark shares: the repository's paths, the
log, the error that means the tool broke, medians and percentiles, key
names, running a command, and the record of the commands a run used (the
report lists one of each)."""

import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
BENCH = ROOT / "bench"
CLK_TCK = os.sysconf("SC_CLK_TCK")
T0 = time.monotonic()


class ToolError(Exception):
    """Something in the benchmark itself broke (not a missed target)."""


def log(msg):
    print(f"[{time.monotonic() - T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def percentile(values, p):
    """The p-th percentile (0-100) of values, nearest rank."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(p / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


COMMANDS = {}  # label -> a representative command line, for BENCHMARKS.md
LOADGENS = set()  # wrk processes running (stopped, by PID, if the run is cut short)


def note_command(label, argv, env=None):
    if label in COMMANDS:
        return
    argv = [str(a).replace(str(ROOT) + "/", "") for a in argv]
    prefix = ""
    if env:
        prefix = " ".join(f"{k}={shlex.quote(str(v))}" for k, v in env.items()) + " "
    COMMANDS[label] = prefix + " ".join(shlex.quote(str(a)) for a in argv)


def key_name(i):
    return f"key:{i:012d}"


def run(argv, check=True, capture=True, timeout=None, env=None):
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    return subprocess.run(
        argv,
        check=check,
        stdout=subprocess.PIPE if capture else None,
        stderr=subprocess.STDOUT if capture else None,
        text=True,
        timeout=timeout,
        env=full_env,
    )
