"""Reading what processes use, from /proc: CPU ticks of one process, the
busy ticks of the whole machine, resident memory (VmRSS), and the CPU
meter that splits one measurement's CPU between the servers, the load
generators, this tool and everything else; and the disk space a data
directory takes (what du counts).

/proc read directly: a few lines each, and no dependency (psutil would read
the same files)."""

import fnmatch
import os
import resource
import time

from .base import CLK_TCK


def proc_ticks(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
        fields = text[text.rindex(")") + 2:].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, ValueError, IndexError):
        return None


def rss_bytes(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def machine_busy_ticks():
    with open("/proc/stat") as f:
        parts = f.readline().split()[1:]
    values = [int(x) for x in parts[:8]]
    idle = values[3] + values[4]
    return sum(values) - idle


class CpuMeter:
    """CPU used by the servers, by the load generators (children of this
    process that exited meanwhile: wrk, redis-benchmark), by this process,
    and by everything else on the machine, over one measurement."""

    def __init__(self, pids):
        self.pids = list(pids)

    def __enter__(self):
        self.t = time.monotonic()
        self.ticks = {pid: proc_ticks(pid) for pid in self.pids}
        self.machine = machine_busy_ticks()
        self.children = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.me = resource.getrusage(resource.RUSAGE_SELF)
        return self

    def __exit__(self, *exc):
        wall = max(time.monotonic() - self.t, 1e-6)
        server = 0
        self.each = []
        for pid, before in self.ticks.items():
            after = proc_ticks(pid)
            if before is not None and after is not None:
                server += after - before
                self.each.append((after - before) / CLK_TCK / wall)
            else:
                self.each.append(None)
        machine = machine_busy_ticks() - self.machine
        ch = resource.getrusage(resource.RUSAGE_CHILDREN)
        me = resource.getrusage(resource.RUSAGE_SELF)
        loadgen = (ch.ru_utime + ch.ru_stime) - (self.children.ru_utime + self.children.ru_stime)
        mine = (me.ru_utime + me.ru_stime) - (self.me.ru_utime + self.me.ru_stime)
        self.server_cores = server / CLK_TCK / wall
        self.loadgen_cores = (loadgen + mine) / wall
        self.machine_cores = machine / CLK_TCK / wall
        self.other_cores = max(0.0, self.machine_cores - self.server_cores - self.loadgen_cores)
        return False

    def add_loadgen_seconds(self, seconds, wall):
        """Load generators still running (measured by the caller)."""
        self.loadgen_cores += seconds / wall
        self.other_cores = max(0.0, self.other_cores - seconds / wall)


def disk_usage(path, pattern=None):
    """What `du` counts under path (a directory or one file): the bytes of
    the blocks allocated (st_blocks: preallocated space counts, holes do
    not; directories count; a file with several links once), besides the
    files' apparent size and their count. `pattern` (fnmatch, on the name):
    only the files it matches, no directory. A path that does not exist:
    zeros."""
    total = apparent = files = 0
    seen = set()
    if os.path.isdir(path):
        entries = []
        for d, _, names in os.walk(path):
            if pattern is None:
                entries.append((d, True))
            entries += [(os.path.join(d, n), False) for n in names
                        if pattern is None or fnmatch.fnmatch(n, pattern)]
    else:
        entries = [(path, False)]
    for p, is_dir in entries:
        try:
            st = os.lstat(p)
        except OSError:  # removed meanwhile (a compaction), or absent
            continue
        if (st.st_dev, st.st_ino) in seen:
            continue
        seen.add((st.st_dev, st.st_ino))
        total += st.st_blocks * 512
        if not is_dir:
            apparent += st.st_size
            files += 1
    return {"bytes": total, "apparent": apparent, "files": files}

# ------------------------------------------------------------------- http
