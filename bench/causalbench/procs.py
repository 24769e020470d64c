"""The processes a run starts (servers: causalkv, the ceiling, etcd,
Redis), each with its log file; a run stops exactly these, by PID. Also free
loopback ports for them."""

import os
import socket
import subprocess
import threading
from pathlib import Path

from .base import log, note_command


class Procs:
    """The processes this run started; it stops exactly these, by PID."""

    def __init__(self, logdir):
        self.logdir = Path(logdir)
        self.running = []
        self.lock = threading.Lock()

    def start(self, name, argv, env=None, label=None):
        full_env = dict(os.environ)
        if env:
            full_env.update({k: str(v) for k, v in env.items()})
        logf = open(self.logdir / f"{name}.log", "ab")
        try:
            p = subprocess.Popen(
                [str(a) for a in argv],
                stdout=logf,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=full_env,
            )
        finally:
            logf.close()
        p.bench_name = name
        with self.lock:
            self.running.append(p)
        if label:
            note_command(label, argv, env)
        return p

    def stop(self, p, timeout=15):
        if p.poll() is None:
            try:
                p.terminate()
                p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)
            except ProcessLookupError:
                pass
        with self.lock:
            if p in self.running:
                self.running.remove(p)

    def stop_all(self):
        with self.lock:
            procs = list(self.running)
        for p in reversed(procs):
            try:
                self.stop(p, timeout=10)
            except Exception as e:  # keep stopping the others
                log(f"could not stop {getattr(p, 'bench_name', p.pid)}: {e}")


def free_ports(n):
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


# ----------------------------------------------------------- measurements
