"""What the report names besides the figures: the machine (CPU, memory,
kernel, temp dir filesystem) and the versions of causalkv, its toolchain
and the systems it is compared with."""

import os
import platform
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from .base import ROOT, run


def machine_info():
    info = {}
    try:
        out = run(["lscpu"], check=False).stdout
        for line in out.splitlines():
            k, _, v = line.partition(":")
            if k.strip() in ("Model name", "CPU(s)", "Thread(s) per core", "Architecture"):
                info[k.strip()] = v.strip()
    except OSError:
        pass
    info["cores (nproc)"] = str(os.cpu_count())
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
        info["memory"] = f"{kb / 2**20:.1f} GiB"
    except OSError:
        pass
    info["kernel"] = platform.release()
    try:
        info["Debian"] = Path("/etc/debian_version").read_text().strip()
    except OSError:
        pass
    try:
        fs = run(["df", "-T", tempfile.gettempdir()], check=False).stdout.splitlines()[-1].split()[1]
        info["temp dir filesystem (data of etcd, Redis, causalkv DATA_DIR)"] = f"{tempfile.gettempdir()} ({fs})"
    except (OSError, IndexError):
        pass
    return info


def versions(rev=None):
    v = {}

    def first_line(argv):
        try:
            r = run(argv, check=False, timeout=20)
            return (r.stdout or "").strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return None

    if rev:
        v["causalkv"] = first_line(["git", "-C", str(ROOT), "rev-parse", "--short", rev]) + \
            f" (--rev {rev}: that commit's sources, built apart)"
        rev = None
    else:
        rev = first_line(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    try:
        dirty = run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no",
                     "--", "src", "Cargo.toml", "Cargo.lock"], check=False).stdout.split("\n")
        dirty = [line[3:] for line in dirty if line.strip()]
    except OSError:
        dirty = []
    if rev:
        v["causalkv"] = f"{rev}" + (f" + uncommitted changes to {', '.join(dirty)}" if dirty else "")
    v["rustc"] = first_line(["rustc", "--version"])
    try:
        lock = (ROOT / "Cargo.lock").read_text()
        m = re.search(r'name = "actix-web"\nversion = "([^"]+)"', lock)
        v["actix-web"] = m.group(1) if m else None
    except OSError:
        pass
    if shutil.which("wrk"):
        v["wrk"] = first_line(["wrk", "-v"])
    if shutil.which("etcd"):
        v["etcd"] = first_line(["etcd", "--version"])
    if shutil.which("redis-server"):
        v["redis"] = first_line(["redis-server", "--version"])
    v["python"] = platform.python_version()
    return {k: x for k, x in v.items() if x}
