#!/usr/bin/env python3
"""Start, inspect, grow, shrink and stop a causalkv store on this machine.

    python3 dockerRun.py                 # = start: three replicas, then how to reach them
    python3 dockerRun.py status          # each replica: address, up/down, ready, view, keys, data; the tables
    python3 dockerRun.py add             # one more replica; it joins and copies the state
    python3 dockerRun.py remove NAME     # take NAME out of the view, stop it, delete its data
    python3 dockerRun.py restart NAME    # stop NAME gracefully, start it again with its data
    python3 dockerRun.py kill NAME       # SIGKILL NAME (a crash); `restart NAME` brings it back
    python3 dockerRun.py logs NAME       # print NAME's log
    python3 dockerRun.py stop            # stop everything `start` and `add` started; data is kept
    python3 dockerRun.py stop --purge    # ... and delete every replica's data
    python3 dockerRun.py --shards 2 -n 6 # a sharded store: six replicas in two shards (no data on disk)
    python3 dockerRun.py add --shard 2   # sharded: one more replica, placed in shard 2

Two modes, chosen automatically (force one with --mode):

docker  when a Docker engine answers (`docker info` succeeds): builds the image
        causalkv:latest from docker/Dockerfile (where its build stage cannot
        run, e.g. no rust:1-slim-bookworm and no registry: the binary is
        built here with cargo and the image from the Dockerfile's runtime
        stage; --image NAME runs a given image as it is instead), creates
        the network causalkv-net
        (subnet 10.10.0.0/16) and runs containers causalkv-replica1..N at
        10.10.0.2..:8085, published on 127.0.0.1:8082.. (the kevinDB layout:
        SOCKET_ADDRESS=10.10.0.<1+i>:8085, VIEW lists every replica; use
        --subnet CIDR if 10.10.0.0/16 is taken on this machine).
local   otherwise: builds target/release/causalkv with `cargo build --release`
        (skipped with --binary PATH or CAUSALKV_BIN=PATH) and runs N detached
        processes at 127.0.0.1:8082.. (change with --base-port), listening on
        loopback only, each logging to a file in the state directory.

Every replica of an unsharded store keeps its state on disk (DATA_DIR):
in local mode in the directory data/<name> of the state directory (e.g.
.causalkv-run/data/causalkv-replica1), in docker mode in the named volume
causalkv-data-<replicaN> (e.g. causalkv-data-replica1) mounted at /data.
`stop` keeps the data: the next `start` (same names, same addresses) finds
it again and the replicas come back with their keys and identities, as does
a replica brought back with `restart`. `stop --purge` deletes it for good,
and `remove` deletes the data of the replica it removes. A replica's data
belongs to its address: start again on the same ports (--base-port) and
subnet (--subnet), or purge it first.

Sharded stores (--shards N): every replica is started with SHARD_COUNT=N
and the same VIEW (every replica), so all compute the same shard map: the
replicas, in address order, are dealt to shards 1..N in turn. -n must be at
least 2*N (two replicas per shard; without -n: 2*N, at least 3). The
addresses are those above (docker: 10.10.0.2.. at :8085; local: 127.0.0.1
at the host ports), but the host ports count up from --base-port SKIPPING
8085 (the port inside the containers), the family's six-node layout:
`--shards 2 -n 6` gives 127.0.0.1:8082-8084 and 8086-8088 (docker:
10.10.0.2-7:8085 published there), and a seventh replica takes 8089.
Sharded replicas keep their state IN MEMORY ONLY: the replica refuses
SHARD_COUNT together with DATA_DIR, so they get no data directory, no
volume and no DURABILITY (--durability is refused, DURABILITY in the
environment is not passed on). `stop` or `kill` loses what a replica held;
`restart` starts it empty and it copies its shard's keys from the other
members of its shard. `add` starts a replica without SHARD_COUNT (its VIEW
names every replica), which joins the store in no shard, then places it
with PUT /key-value-store-shard/add-member/<ID> into the shard with the
fewest members (or `add --shard ID`) and waits until it reports that shard.
`status` shows each replica's shard and, per shard, its members and key
count. `remove` refuses to remove the last member of a shard (its keys
would be lost). The state file records that the store is sharded.

The optional settings RUST_LOG, CLUSTER_TOKEN, CAUSAL_WAIT_MS, MAX_BODY_BYTES,
HEARTBEAT_INTERVAL_MS, FAILURE_TIMEOUT_MS, SUSPECT_TIMEOUT_MS,
HANDOVER_TIMEOUT_MS, WORKERS and DURABILITY are taken from this script's
environment at `start` and given to every replica (also to those `add` and
`restart` start later); `start --durability fsync|os` sets DURABILITY too
(not in a sharded store: see above).
Nothing else of the environment reaches a replica.

`status` also lists the store's tables (GET /tables at the first ready
replica that answers it): each table's name, whether it keeps siblings and
its key count (as that replica sees them); the default table
(/key-value-store/) is not listed. Replicas of a build without tables
(GET /tables answers 404) show no tables section.

A replica counts as up once it is ready: `GET /ready` answers 200, which a
replica does once it holds a copy of the store's state (a joining replica
answers 503 while it copies). `start` and `add` wait for that; `status`
shows it. A replica built before `/ready` existed (it answers 404) counts
as ready once `/health` says `"synced": true`.

`stop`, `remove` and `restart` send SIGTERM, on which a replica stops
taking writes, hands the writes it acknowledged to a live member (for up to
HANDOVER_TIMEOUT_MS, 5 s by default), finishes the requests in flight (up to
10 s) and exits; SIGKILL follows only after --grace seconds, by default
HANDOVER_TIMEOUT_MS plus those 10 s (15 s), so that neither is cut short.
`kill` sends SIGKILL at once (docker mode: `docker kill`), as a crash would,
and leaves the replica down until `restart`.

The state (mode, replicas, PIDs or containers, settings) is one JSON file,
by default .causalkv-run/state.json next to this script (--state-dir DIR to
put it elsewhere, e.g. to run two stores on different ports); the local
replicas' logs and data live beside it and are kept after `stop`, and so is
data.json, what the data was made for (the address each local replica's data
was started with, the docker volumes made for replicas: what `stop --purge`
deletes). The state file is private (mode 0600) because it may hold
CLUSTER_TOKEN.

`start` when a store is already running starts nothing: it says so, prints
the status and exits 0. A state file left by a store whose replicas are all
gone (e.g. after a reboot) is discarded by `start`.

Exit codes:
    0  success
    1  failure: a build failed, a replica did not come up, a request failed;
       for `status`: a replica is not up or not ready
    2  usage error: bad arguments, unknown replica NAME, missing --binary
    3  a required tool is missing: cargo, docker, or a Docker engine
    4  a port needed by a replica is already in use
    5  no store is running (status, add, remove, restart, kill, logs)
  130  interrupted (Ctrl-C); replicas started so far are stopped again

Python 3.8+ standard library only; local mode needs Linux /proc or `ps`.
"""

import argparse
import contextlib
import errno
import http.client as http_client
import ipaddress
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

REPO = os.path.dirname(os.path.abspath(__file__))
DEFAULT_STATE_DIR = os.path.join(REPO, ".causalkv-run")
STATE_FILE = "state.json"
LOCK_FILE = "lock"
STATE_VERSION = 1

NAME_PREFIX = "causalkv-replica"
DEFAULT_REPLICAS = 3
DEFAULT_BASE_PORT = 8082
DEFAULT_TIMEOUT = 60.0
NODE_HANDOVER_MS = 5000  # the replica's default HANDOVER_TIMEOUT_MS
NODE_DRAIN_SECS = 10.0  # how long a replica lets requests in flight finish after the hand-over

DATA_DIR_NAME = "data"  # local mode: replica NAME keeps its state in <state dir>/data/NAME
DATA_RECORD = "data.json"  # what each replica's data was made for; kept by `stop`, for `start` and `stop --purge`
DURABILITY_MODES = ("fsync", "os")

IMAGE = "causalkv:latest"
DOCKERFILE = os.path.join("docker", "Dockerfile")
# The base images of docker/Dockerfile's build and runtime stages, and the
# glibc of the runtime one (Debian bookworm's).
BUILDER_IMAGE = "rust:1-slim-bookworm"
RUNTIME_IMAGE = "debian:bookworm-slim"
RUNTIME_GLIBC = (2, 36)
NETWORK = "causalkv-net"
SUBNET = "10.10.0.0/16"  # replica i (1-based) gets the subnet's address 1+i: 10.10.0.<1+i>
CONTAINER_PORT = 8085
VOLUME_PREFIX = "causalkv-data-"  # docker mode: replica causalkv-replicaN keeps its state in the volume causalkv-data-replicaN
CONTAINER_DATA_DIR = "/data"  # where that volume is mounted (DATA_DIR in the container)
VOLUME_LABEL = "causalkv.replica"  # label of the volumes this script makes: the replica's name

# Sharded stores (--shards N): host ports count up from the base port but
# skip this one (the port inside the containers), as in the family's
# six-node layout: 8082-8084 and 8086-8088.
SHARDED_SKIPPED_PORT = CONTAINER_PORT
SHARD_API = "/key-value-store-shard"
MEMORY_ONLY = "memory"  # what `status` shows as the data of a sharded replica

# Settings passed from this script's environment to every replica.
PASSED_SETTINGS = (
    "RUST_LOG",
    "CLUSTER_TOKEN",
    "CAUSAL_WAIT_MS",
    "MAX_BODY_BYTES",
    "HEARTBEAT_INTERVAL_MS",
    "FAILURE_TIMEOUT_MS",
    "SUSPECT_TIMEOUT_MS",
    "HANDOVER_TIMEOUT_MS",
    "WORKERS",
    "DURABILITY",
)
SECRET_SETTINGS = ("CLUSTER_TOKEN",)

EXIT_OK = 0
EXIT_FAIL = 1
EXIT_USAGE = 2
EXIT_MISSING_TOOL = 3
EXIT_PORT_IN_USE = 4
EXIT_NOT_RUNNING = 5
EXIT_INTERRUPTED = 130

POLL = 0.1  # seconds between polls of a condition
HTTP_TIMEOUT = 2.0  # seconds for one request to a replica
LOG_TAIL = 20  # lines of a log shown when a replica fails

PROG = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "dockerRun.py"


class Fail(Exception):
    """A failure reported as one line `dockerRun.py: error: ...` and an exit code."""

    def __init__(self, message, code=EXIT_FAIL, details=None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.details = details  # further lines printed after the message (e.g. a log tail)


def option(args, name, default):
    """An option's value; `default` when it was not given (0 counts as given)."""
    value = getattr(args, name, None)
    return default if value is None else value


def plural(n, word):
    return f"{n} {word}" + ("" if n == 1 else "s")


def say(*lines):
    for line in lines:
        print(line, flush=True)


def warn(message):
    print(f"{PROG}: warning: {message}", file=sys.stderr, flush=True)


def display_path(path):
    """`path` relative to the working directory when that is shorter."""
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return rel if len(rel) < len(path) else path


# ----- HTTP to the replicas -------------------------------------------------

# No proxies: replicas are on this machine, whatever http_proxy says.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http(method, hostport, path, body=None, timeout=HTTP_TIMEOUT):
    """(status, parsed JSON or None), or None when the replica did not answer."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"http://{hostport}{path}", data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    except (OSError, ValueError, http_client.HTTPException):
        return None  # refused, timed out, reset, garbled: no answer
    try:
        parsed = json.loads(raw)
    except ValueError:
        parsed = None
    return status, parsed


def health(replica):
    """The /health body of a replica, or None if it does not answer 200."""
    answer = http("GET", replica["client"], "/health")
    if answer is None or answer[0] != 200 or not isinstance(answer[1], dict):
        return None
    return answer[1]


def readiness(replica):
    """(ready, why not): ready is True or False, or None when the replica
    does not answer. GET /ready says it (200 ready, 503 not, with the
    reason in "error"); a replica without /ready (a build before it,
    answering 404) is ready once /health says synced."""
    answer = http("GET", replica["client"], "/ready")
    if answer is None:
        return None, "no answer"
    status, body = answer
    if status == 200:
        return True, ""
    if status == 503:
        why = body.get("error") if isinstance(body, dict) else None
        return False, why or "GET /ready answered 503"
    body = health(replica)
    if body is None:
        return None, "no answer"
    if body.get("synced", True):
        return True, ""
    return False, "still copying the state (/health: synced false)"


def view_members(view):
    return [a for a in (view or "").split(",") if a]


# ----- ports -----------------------------------------------------------------


def port_in_use(port, host="127.0.0.1"):
    """Whether a replica could not bind host:port (someone listens there)."""
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.settimeout(0.3)
        if s.connect_ex((host, port)) == 0:
            return True
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        # Like the replica (Rust's std sets SO_REUSEADDR), so that connections
        # in TIME_WAIT do not count as "in use".
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                return True
            if e.errno == errno.EACCES:
                raise Fail(f"cannot use port {port}: permission denied (ports below 1024 need root)", EXIT_PORT_IN_USE)
            raise Fail(f"cannot use port {port}: {e.strerror}", EXIT_PORT_IN_USE)
    return False


def check_ports(wanted, hint="pick other ports with --base-port"):
    """wanted: [(port, replica name)]; fails on the first port in use."""
    for port, name in wanted:
        if not 1 <= port <= 65535:
            raise Fail(f"port {port} (for {name}) is out of range; {hint}", EXIT_USAGE)
        if port_in_use(port):
            raise Fail(
                f"port {port} is already in use (needed for {name}); stop what uses it or {hint}",
                EXIT_PORT_IN_USE,
            )


# ----- processes (local mode) ------------------------------------------------


def proc_stat(pid):
    """(state letter, start time) of a process from /proc, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            text = f.read().decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:
        return None
    rest = text[text.rfind(")") + 2 :].split()  # fields 3.. (comm may hold spaces)
    if len(rest) < 20:
        return None
    return rest[0], rest[19]


def process_start_time(pid):
    if os.path.isdir("/proc"):
        stat = proc_stat(pid)
        return stat[1] if stat else None
    result = subprocess.run(["ps", "-o", "lstart=", "-p", str(pid)], capture_output=True, text=True)
    return result.stdout.strip() or None


def process_argv(pid):
    """The command line of a live (non-zombie) process, or None."""
    if os.path.isdir("/proc"):
        stat = proc_stat(pid)
        if stat is None or stat[0] in ("Z", "X"):
            return None
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = [a.decode(errors="replace") for a in f.read().split(b"\0")]
        except OSError:
            return None
        return [a for a in argv if a] or None
    result = subprocess.run(["ps", "-o", "stat=,command=", "-p", str(pid)], capture_output=True, text=True)
    line = result.stdout.strip()
    if not line or line.startswith("Z"):
        return None
    return line.split()[1:] or None


def runs_our_binary(replica):
    """Whether the PID recorded for a local replica is still that replica.

    Checks that the process runs the binary we started (argv[0], or argv[1]
    when the binary is a script run by an interpreter) and, where recorded,
    that it started when ours did, so a recycled PID is never signalled."""
    pid = replica.get("pid")
    if not pid:
        return False
    argv = process_argv(pid)
    if not argv:
        return False
    binary = replica.get("binary", "")
    if not any(a == binary or os.path.realpath(a) == os.path.realpath(binary) for a in argv[:2]):
        return False
    recorded = replica.get("starttime")
    return recorded is None or process_start_time(pid) == recorded


def signal_pid(pid, sig):
    """Signals a verified replica and whatever it started: it leads its own
    process group (it was started in a new session)."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError as e:
        raise Fail(f"cannot signal pid {pid}: {e.strerror}")


def stop_local_replicas(replicas, grace, children=None):
    """SIGTERM every replica still running our binary, SIGKILL those still
    there after `grace` seconds. Returns {name: outcome}. `children` maps
    names to Popen objects started by this invocation (reaped here)."""
    children = children or {}
    outcome = {}
    running = []
    for r in replicas:
        if runs_our_binary(r):
            signal_pid(r["pid"], signal.SIGTERM)
            running.append(r)
        else:
            outcome[r["name"]] = "was not running"

    def reap():
        for r in running:
            child = children.get(r["name"])
            if child is not None:
                child.poll()

    deadline = time.monotonic() + grace
    while True:
        reap()
        alive = [r for r in running if runs_our_binary(r)]
        if not alive or time.monotonic() >= deadline:
            break
        time.sleep(POLL)
    for r in running:
        if r in alive:
            if runs_our_binary(r):
                signal_pid(r["pid"], signal.SIGKILL)
            outcome[r["name"]] = f"killed (still running {grace:g}s after SIGTERM)"
        else:
            outcome[r["name"]] = "stopped"
    deadline = time.monotonic() + 5
    while alive and time.monotonic() < deadline:
        reap()
        alive = [r for r in alive if runs_our_binary(r)]
        time.sleep(POLL)
    for r in alive:
        outcome[r["name"]] = "could not be stopped"
    return outcome


def log_tail(path, lines=LOG_TAIL):
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            text = f.read().decode(errors="replace")
    except OSError as e:
        return [f"(cannot read {path}: {e.strerror})"]
    tail = text.splitlines()[-lines:]
    return tail or ["(the log is empty)"]


# ----- docker ----------------------------------------------------------------


def docker(*args, capture=True, timeout=None, env=None):
    """Runs `docker ARGS`; returns CompletedProcess (never raises on failure)."""
    try:
        return subprocess.run(
            ["docker", *args],
            stdout=subprocess.PIPE if capture else None,
            stderr=subprocess.PIPE if capture else None,
            text=True,
            timeout=timeout,
            env=env,
        )
    except FileNotFoundError:
        raise Fail("docker is not installed (not found on PATH)", EXIT_MISSING_TOOL)
    except subprocess.TimeoutExpired:
        raise Fail(f"`docker {' '.join(args)}` did not finish within {timeout:g}s")


def first_line(text, fallback="no output"):
    for line in (text or "").splitlines():
        if line.strip():
            return line.strip()
    return fallback


def docker_engine_error():
    """None when a Docker engine answers, else why not (one line)."""
    if shutil.which("docker") is None:
        return "docker is not installed (not found on PATH)"
    try:
        result = docker("info", "--format", "{{.ServerVersion}}", timeout=20)
    except Fail as e:
        return e.message
    if result.returncode != 0:
        return "the Docker engine is not reachable: " + first_line(result.stderr, "`docker info` failed")
    return None


def container_state(name):
    """'running', 'exited', ... or None when there is no such container."""
    return container_states(name)[0]


def container_states(name):
    """The container's state ('running', 'exited', ...) and health ('starting',
    'healthy', 'unhealthy', or '-' for an image without a HEALTHCHECK), or
    (None, '-') when there is no such container."""
    result = docker(
        "inspect", "--type", "container", "--format",
        "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}-{{end}}", name, timeout=30,
    )
    if result.returncode != 0:
        return None, "-"
    state, _, health = result.stdout.strip().partition(" ")
    return state or None, health or "-"


def docker_remove_containers(names, grace):
    outcome = {}
    for name in names:
        state = container_state(name)
        if state is None:
            outcome[name] = "was not there"
            continue
        if state == "running":
            docker("stop", "--time", str(max(0, int(round(grace)))), name, timeout=grace + 60)
        result = docker("rm", "--force", name, timeout=60)
        if result.returncode == 0:
            outcome[name] = "stopped and removed" if state == "running" else f"removed (was {state})"
        else:
            outcome[name] = "could not be removed: " + first_line(result.stderr)
    return outcome


# ----- state -----------------------------------------------------------------


class State:
    """The JSON state file and the lock serialising commands that change it."""

    def __init__(self, directory):
        self.dir = os.path.abspath(directory)
        self.path = os.path.join(self.dir, STATE_FILE)
        self._lock = None

    def lock(self):
        import fcntl

        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        self._lock = open(os.path.join(self.dir, LOCK_FILE), "a")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"Waiting for another {PROG} working on {display_path(self.dir)} ...")
            fcntl.flock(self._lock, fcntl.LOCK_EX)

    def load(self):
        try:
            with open(self.path) as f:
                data = json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            raise Fail(f"cannot read {display_path(self.path)}: {e}; delete it if no store is running")
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION or "replicas" not in data:
            raise Fail(f"{display_path(self.path)} is not a state file of this script; delete it if no store is running")
        return data

    def save(self, data):
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        tmp = self.path + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, sort_keys=True)
            f.write("\n")
        os.replace(tmp, self.path)

    def delete(self):
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.path)

    def log_path(self, name):
        return os.path.join(self.dir, f"{name}.log")

    def data_root(self):
        """Local mode: where the replicas' data directories live."""
        return os.path.join(self.dir, DATA_DIR_NAME)

    def data_dir(self, name):
        return os.path.join(self.data_root(), name)

    def data_record(self):
        """data.json, kept whether or not a store runs: {"volumes": the
        docker volumes made for replicas, "addresses": {name: the address
        the data directory of local replica `name` was last started with}}."""
        path = os.path.join(self.dir, DATA_RECORD)
        try:
            with open(path) as f:
                record = json.load(f)
        except FileNotFoundError:
            return {"volumes": [], "addresses": {}}
        except (OSError, ValueError) as e:
            raise Fail(f"cannot read {display_path(path)}: {e}; delete it if no store is running")
        if (
            not isinstance(record, dict)
            or not isinstance(record.get("volumes", []), list)
            or not isinstance(record.get("addresses", {}), dict)
        ):
            raise Fail(f"{display_path(path)} is not a record of this script; delete it if no store is running")
        return {"volumes": record.get("volumes", []), "addresses": record.get("addresses", {})}

    def save_data_record(self, record):
        path = os.path.join(self.dir, DATA_RECORD)
        if not record["volumes"] and not record["addresses"]:
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
            return
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(record, f, indent=2, sort_keys=True)
            f.write("\n")
        os.replace(tmp, path)

    def volumes(self):
        return list(self.data_record()["volumes"])

    def save_volumes(self, volumes):
        record = self.data_record()
        record["volumes"] = sorted(set(volumes))
        self.save_data_record(record)

    def data_address(self, name):
        """The address local replica `name`'s data directory was last started with."""
        return self.data_record()["addresses"].get(name)

    def set_data_address(self, name, address):
        record = self.data_record()
        if address is None:
            record["addresses"].pop(name, None)
        else:
            record["addresses"][name] = address
        self.save_data_record(record)


def require_store(state):
    data = state.load()
    if data is None or not data["replicas"]:
        raise Fail(f"no store is running (no state in {display_path(state.dir)}); start one with: {self_command(state)} start", EXIT_NOT_RUNNING)
    return data


def find_replica(data, name):
    """The replica called `name` (also accepted: replicaN, N, its address)."""
    wanted = name.strip()
    for r in data["replicas"]:
        short = r["name"][len("causalkv-") :]
        if wanted in (r["name"], short, str(r["index"]), r["address"], r["client"]):
            return r
    known = ", ".join(r["name"] for r in data["replicas"]) or "none"
    raise Fail(f"no replica named {wanted!r} (known: {known})", EXIT_USAGE)


def self_command(state):
    """How to invoke this script again with the same state directory."""
    command = "python3 " + shlex.quote(display_path(os.path.abspath(sys.argv[0] if sys.argv[0] else __file__)))
    if os.path.abspath(state.dir) != DEFAULT_STATE_DIR:
        command += " --state-dir " + shlex.quote(display_path(state.dir))
    return command


def is_alive(data, replica):
    if data["mode"] == "local":
        return runs_our_binary(replica)
    return container_state(replica["container"]) == "running"


# ----- data ------------------------------------------------------------------


def short_name(name):
    """replica1 for causalkv-replica1."""
    return name[len("causalkv-") :]


def volume_name(name):
    """Docker mode: the volume holding replica `name`'s data."""
    return VOLUME_PREFIX + short_name(name)


def data_location(replica):
    """Where a replica keeps its data, as shown: its directory or volume
    ("memory" for a replica of a sharded store, "-" for one started by a
    version of this script that gave it none)."""
    if replica.get("data_dir"):
        return display_path(replica["data_dir"])
    if replica.get("volume"):
        return replica["volume"]
    return MEMORY_ONLY if replica.get("memory_only") else "-"


def recorded_address(state, name):
    """The address local replica `name` last ran at on the data it holds
    (None when its data directory is empty or was never started)."""
    return state.data_address(name) if has_data(state.data_dir(name)) else None


def check_local_data(state, name, address, hint):
    """Refuses to start replica `name` at `address` on data written at
    another address, before anything starts (the replica itself would
    refuse it at start, exiting with an error naming SOCKET_ADDRESS)."""
    recorded = recorded_address(state, name)
    if recorded is not None and recorded != address:
        raise Fail(
            f"the data of {name} ({display_path(state.data_dir(name))}) belongs to {recorded}, not {address}; {hint}",
            EXIT_USAGE,
        )


def has_data(data_dir):
    try:
        return bool(os.listdir(data_dir))
    except OSError:
        return False


def prepare_local_data(state, replica, dry_run=False):
    """Makes the replica's data directory unless it exists and records the
    address it is started with; returns whether it holds data of an earlier run."""
    path = replica.get("data_dir")
    if not path:
        return False
    if dry_run:
        say(f"+ mkdir -p -m 700 {shlex.quote(path)}")
        return False
    earlier = has_data(path)
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
    except OSError as e:
        raise Fail(f"cannot make the data directory of {replica['name']} ({display_path(path)}): {e.strerror}")
    state.set_data_address(replica["name"], replica["address"])
    return earlier


def prepare_volume(state, replica, dry_run=False):
    """Makes the replica's docker volume unless it exists, and records it
    for `stop --purge`; returns whether it existed (data of an earlier run)."""
    name = replica.get("volume")
    if not name:
        return False
    create = ["volume", "create", "--label", f"{VOLUME_LABEL}={replica['name']}", name]
    if dry_run:
        say("+ docker " + shlex.join(create))
        return False
    existed = docker("volume", "inspect", name, timeout=30).returncode == 0
    if not existed:
        result = docker(*create, timeout=60)
        if result.returncode != 0:
            raise Fail(f"cannot create the volume {name} for {replica['name']}: {first_line(result.stderr)}")
    volumes = state.volumes()
    if name not in volumes:
        state.save_volumes(volumes + [name])
    return existed


def delete_local_data(path):
    """Deletes a data directory; returns what happened."""
    if not os.path.lexists(path):
        return "was not there"
    try:
        shutil.rmtree(path)
    except OSError as e:
        return f"could not be deleted: {e.strerror}"
    return "deleted"


def delete_volumes(state, names):
    """`docker volume rm` each of `names` (their containers must be gone);
    returns {name: what happened} and forgets the volumes that are gone."""
    outcome = {}
    for name in names:
        result = docker("volume", "rm", name, timeout=60)
        if result.returncode == 0:
            outcome[name] = "deleted"
        elif "no such volume" in (result.stderr or "").lower():
            outcome[name] = "was not there"
        else:
            outcome[name] = "could not be deleted: " + first_line(result.stderr)
    gone = {name for name, what in outcome.items() if not what.startswith("could not")}
    state.save_volumes([v for v in state.volumes() if v not in gone])
    return outcome


# ----- start -----------------------------------------------------------------


def passed_settings():
    settings = {k: os.environ[k] for k in PASSED_SETTINGS if os.environ.get(k, "") != ""}
    return settings


def default_grace(data=None):
    """Seconds between SIGTERM and SIGKILL: the store's HANDOVER_TIMEOUT_MS
    (the replica's default when unset) plus NODE_DRAIN_SECS, the most a
    replica takes to stop gracefully."""
    setting = ((data or {}).get("settings") or {}).get("HANDOVER_TIMEOUT_MS")
    try:
        handover = int(setting) if setting is not None else NODE_HANDOVER_MS
    except ValueError:
        handover = NODE_HANDOVER_MS  # the replica refused it at start anyway
    return handover / 1000.0 + NODE_DRAIN_SECS


def describe_settings(settings):
    return ", ".join(f"{k}=(set)" if k in SECRET_SETTINGS else f"{k}={v}" for k, v in sorted(settings.items()))


def choose_mode(requested):
    if requested == "docker":
        problem = docker_engine_error()
        if problem:
            raise Fail(problem + " (use --mode local to run local processes instead)", EXIT_MISSING_TOOL)
        return "docker", "requested with --mode docker"
    if requested == "local":
        return "local", "requested with --mode local"
    problem = docker_engine_error()
    if problem is None:
        return "docker", "a Docker engine answers"
    return "local", "no Docker engine: " + problem.replace("the Docker engine is not reachable: ", "")


def resolve_binary(args, dry_run):
    """The absolute path of the causalkv binary for local mode (built if needed)."""
    given = getattr(args, "binary", None) or os.environ.get("CAUSALKV_BIN") or None
    if given:
        source = "--binary" if getattr(args, "binary", None) else "CAUSALKV_BIN"
        path = os.path.abspath(os.path.expanduser(given))
        if not os.path.isfile(path):
            raise Fail(f"{source} {given}: no such file", EXIT_USAGE)
        if not os.access(path, os.X_OK):
            raise Fail(f"{source} {given}: not executable", EXIT_USAGE)
        return path
    if dry_run:
        say("+ cargo build --release")
        return os.path.join(REPO, "target", "release", "causalkv")
    cargo = shutil.which("cargo")
    if cargo is None and not getattr(args, "no_build", False):
        raise Fail(
            "cargo not found on PATH: install Rust (https://rustup.rs), "
            "or pass --binary PATH (or CAUSALKV_BIN) pointing to a built causalkv",
            EXIT_MISSING_TOOL,
        )
    target_dir = os.environ.get("CARGO_TARGET_DIR") or os.path.join(REPO, "target")
    if cargo is not None:
        meta = subprocess.run(
            [cargo, "metadata", "--format-version", "1", "--no-deps"],
            cwd=REPO, capture_output=True, text=True,
        )
        if meta.returncode == 0:
            with contextlib.suppress(ValueError, KeyError):
                target_dir = json.loads(meta.stdout)["target_directory"]
    binary = os.path.join(os.path.abspath(target_dir), "release", "causalkv")
    if getattr(args, "no_build", False):
        if not os.path.isfile(binary):
            raise Fail(f"--no-build: {display_path(binary)} does not exist; build it or drop --no-build", EXIT_USAGE)
        return binary
    say("Building causalkv: cargo build --release --bin causalkv ...")
    result = subprocess.run([cargo, "build", "--release", "--bin", "causalkv"], cwd=REPO)
    if result.returncode != 0:
        raise Fail(f"build failed: `cargo build --release` exited with {result.returncode} (see its output above)")
    if not os.path.isfile(binary):
        raise Fail(f"build succeeded but {display_path(binary)} is missing")
    return binary


def host_port(base, index, sharded=False):
    """The host port of replica `index` (1-based): base + index - 1; in a
    sharded store the ports skip SHARDED_SKIPPED_PORT (8085), so that
    base 8082 gives 8082-8084, 8086-8088, 8089, ..."""
    port = base + index - 1
    if sharded and base <= SHARDED_SKIPPED_PORT <= port:
        port += 1
    return port


def local_replica(state, binary, index, port, sharded=False):
    name = f"{NAME_PREFIX}{index}"
    address = f"127.0.0.1:{port}"
    replica = {
        "name": name,
        "index": index,
        "address": address,  # SOCKET_ADDRESS: what the view lists
        "client": address,  # where this machine reaches it
        "port": port,
        "binary": binary,
        "log": state.log_path(name),
        # DATA_DIR: kept by `stop`, found again by the next `start`; none
        # in a sharded store (the replica refuses SHARD_COUNT with DATA_DIR).
        "data_dir": None if sharded else state.data_dir(name),
        "pid": None,
        "starttime": None,
    }
    if sharded:
        replica["memory_only"] = True  # no DATA_DIR: its state lives in memory only
    return replica


def parse_subnet(text):
    try:
        subnet = ipaddress.ip_network(text, strict=True)
    except ValueError as e:
        raise Fail(f"--subnet {text}: {e}", EXIT_USAGE)
    if subnet.version != 4 or subnet.num_addresses < 4:
        raise Fail(f"--subnet {text}: need an IPv4 subnet with room for replicas (e.g. {SUBNET})", EXIT_USAGE)
    return subnet


def docker_ip(subnet, index):
    """Replica `index` (1-based) gets the subnet's address 1+index (.1 is the gateway)."""
    subnet = parse_subnet(subnet)
    if 1 + index >= subnet.num_addresses - 1:
        raise Fail(f"no address left in {subnet} for replica {index}", EXIT_USAGE)
    return str(subnet[1 + index])


def docker_replica(index, port, subnet, sharded=False):
    name = f"{NAME_PREFIX}{index}"
    replica = {
        "name": name,
        "index": index,
        "container": name,
        "address": f"{docker_ip(subnet, index)}:{CONTAINER_PORT}",
        "client": f"127.0.0.1:{port}",
        "port": port,
        # Mounted at /data (DATA_DIR): kept by `stop`; none in a sharded store.
        "volume": None if sharded else volume_name(name),
    }
    if sharded:
        replica["memory_only"] = True  # no volume, no DATA_DIR: its state lives in memory only
    return replica


def launch_local(replica, view, settings, dry_run=False, again=False):
    """Starts one detached replica process; returns its Popen (None in a dry
    run). `again`: a restart, whose output goes on after the log of the last run."""
    env = {"SOCKET_ADDRESS": replica["address"], "VIEW": view, "LISTEN_ADDRESS": replica["address"], "RUST_BACKTRACE": "1"}
    if replica.get("data_dir"):
        env["DATA_DIR"] = replica["data_dir"]
    if replica.get("shard_count"):
        env["SHARD_COUNT"] = str(replica["shard_count"])
    env.update(settings)
    if dry_run:
        shown = " ".join(f"{k}={shlex.quote('(set)' if k in SECRET_SETTINGS else v)}" for k, v in env.items())
        say(f"+ {shown} {shlex.quote(replica['binary'])} >{'>' if again else ''}{shlex.quote(replica['log'])} 2>&1 &")
        return None
    log = open(replica["log"], "ab" if again else "wb")
    if again:
        log.write(f"--- {PROG} restart {replica['name']}, {time.strftime('%Y-%m-%d %H:%M:%S')} ---\n".encode())
        log.flush()
    try:
        child = subprocess.Popen(
            [replica["binary"]],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=os.path.dirname(replica["log"]),
            start_new_session=True,  # own session: survives this script and its terminal
            close_fds=True,
        )
    except OSError as e:
        raise Fail(f"cannot start {replica['binary']}: {e.strerror}")
    finally:
        log.close()
    replica["pid"] = child.pid
    replica["starttime"] = process_start_time(child.pid)
    return child


def docker_run_args(replica, view, settings, image):
    args = [
        "run", "--detach",
        "--name", replica["container"],
        "--hostname", replica["name"],
        "--network", NETWORK,
        "--ip", replica["address"].split(":")[0],
        "--publish", f"127.0.0.1:{replica['port']}:{CONTAINER_PORT}",
    ]
    if replica.get("volume"):
        args += ["--volume", f"{replica['volume']}:{CONTAINER_DATA_DIR}"]
    args += [
        "--env", f"SOCKET_ADDRESS={replica['address']}",
        "--env", f"VIEW={view}",
    ]
    if replica.get("volume"):
        args += ["--env", f"DATA_DIR={CONTAINER_DATA_DIR}"]
    if replica.get("shard_count"):
        args += ["--env", f"SHARD_COUNT={replica['shard_count']}"]
    for key in sorted(settings):
        # `--env NAME` passes the value from our environment: secrets stay off the command line.
        args += ["--env", key if key in SECRET_SETTINGS else f"{key}={settings[key]}"]
    args.append(image)
    return args


def launch_docker(replica, view, settings, image, dry_run=False):
    args = docker_run_args(replica, view, settings, image)
    if dry_run:
        say("+ docker " + shlex.join(args))
        return
    env_for_secrets = dict(os.environ)
    env_for_secrets.update(settings)
    try:
        result = subprocess.run(["docker", *args], capture_output=True, text=True, env=env_for_secrets, timeout=120)
    except FileNotFoundError:
        raise Fail("docker is not installed (not found on PATH)", EXIT_MISSING_TOOL)
    except subprocess.TimeoutExpired:
        raise Fail(f"`docker run` for {replica['name']} did not finish within 120s")
    if result.returncode != 0:
        # `docker run` may have created the container before failing to start it.
        docker("rm", "--force", replica["container"], timeout=60)
        raise Fail(f"cannot start container {replica['container']}: {first_line(result.stderr)}")


def replica_log_tail(data, replica):
    if data["mode"] == "local":
        return replica["log"], log_tail(replica["log"])
    result = docker("logs", "--tail", str(LOG_TAIL), replica["container"], timeout=30)
    text = (result.stdout or "") + (result.stderr or "")
    return f"docker logs {replica['container']}", (text.splitlines()[-LOG_TAIL:] or ["(the log is empty)"])


def await_up(data, replicas, timeout, children=None, quiet=False):
    """Waits until each replica is ready (see readiness()).

    Fails as soon as one exits, or when the deadline passes, with the tail
    of the failing replica's log."""
    children = children or {}
    deadline = time.monotonic() + timeout
    pending = list(replicas)
    why = {}
    while pending:
        for r in list(pending):
            child = children.get(r["name"])
            exited = None
            if child is not None and child.poll() is not None:
                exited = f"exited with status {child.returncode}"
            elif data["mode"] == "docker":
                state = container_state(r["container"])
                if state not in ("running", "created", "restarting"):
                    exited = f"container is {state or 'gone'}"
            if exited:
                where, tail = replica_log_tail(data, r)
                raise Fail(
                    f"{r['name']} ({r['address']}) did not come up: {exited}; last lines of {display_path(where)}:",
                    details=tail,
                )
            ready, why[r["name"]] = readiness(r)
            if ready:
                if not quiet:
                    say(f"  {r['name']} is up at {r['client']}")
                pending.remove(r)
        if pending and time.monotonic() >= deadline:
            r = pending[0]
            where, tail = replica_log_tail(data, r)
            raise Fail(
                f"{r['name']} ({r['address']}) did not come up within {timeout:g}s "
                f"(not ready: {why.get(r['name']) or 'no answer'}); last lines of {display_path(where)}:",
                details=tail,
            )
        if pending:
            time.sleep(POLL)


def await_views(data, members, expected_in=(), expected_out=(), timeout=10.0):
    """Waits until every answering member's view contains `expected_in` and
    lacks `expected_out`; returns the members that did not get there."""
    deadline = time.monotonic() + timeout
    while True:
        lagging = []
        for r in members:
            body = health(r)
            if body is None:
                continue  # down replicas have no say
            view = set(view_members(body.get("view")))
            if not set(expected_in) <= view or view & set(expected_out):
                lagging.append(r)
        if not lagging or time.monotonic() >= deadline:
            return lagging
        time.sleep(POLL)


# ----- shards ------------------------------------------------------------------


def is_sharded(data):
    """Whether the store of this state was started with --shards."""
    return bool((data or {}).get("shards"))


def shard_of(body):
    """From a /health body: (whether the replica is a node of a sharded
    store, its shard id or None when it is in no shard, the map version)."""
    shard = (body or {}).get("shard")
    if not isinstance(shard, dict):
        return False, None, None
    return True, shard.get("shard-id"), shard.get("map-version")


def shard_layout(replicas):
    """The shard map as the first replica that answers tells it: (that
    replica, {shard id: [member addresses]}), or (None, None)."""
    for r in replicas:
        answer = http("GET", r["client"], f"{SHARD_API}/shard-ids")
        if answer is None or answer[0] != 200 or not isinstance(answer[1], dict):
            continue
        ids = answer[1].get("shard-ids")
        if not isinstance(ids, list):
            continue
        layout = {}
        for shard_id in ids:
            answer = http("GET", r["client"], f"{SHARD_API}/shard-id-members/{shard_id}")
            if answer is None or answer[0] != 200 or not isinstance(answer[1], dict):
                break
            layout[shard_id] = list(answer[1].get("shard-id-members") or [])
        else:
            return r, layout
    return None, None


def shard_key_count(replica, shard_id):
    """The key count of a shard, asked at `replica` (which relays to a
    member), or None."""
    answer = http("GET", replica["client"], f"{SHARD_API}/shard-id-key-count/{shard_id}", timeout=5.0)
    if answer is None or answer[0] != 200 or not isinstance(answer[1], dict):
        return None
    return answer[1].get("shard-id-key-count")


def await_shards(replicas, timeout, placed=True):
    """Waits until every replica answers as a node of a sharded store (in a
    shard, unless `placed` is False) and all hold the same map version;
    returns the replicas that did not get there."""
    deadline = time.monotonic() + timeout
    while True:
        seen = {}
        for r in replicas:
            sharded, shard_id, version = shard_of(health(r))
            if sharded and (shard_id is not None or not placed):
                seen[r["name"]] = version
        versions = set(seen.values())
        lagging = [r for r in replicas if r["name"] not in seen]
        if not lagging and len(versions) > 1:
            newest = max(versions)
            lagging = [r for r in replicas if seen[r["name"]] != newest]
        if not lagging or time.monotonic() >= deadline:
            return lagging
        time.sleep(POLL)


def names_of(data, addresses):
    """The replica names for `addresses` (the address itself when no
    replica of the state has it)."""
    by_address = {r["address"]: r["name"] for r in data["replicas"]}
    return [by_address.get(a, a) for a in addresses]


def launch_view(data, replica):
    """The VIEW a replica is (re)started with: the one the store's first
    replicas got for one started with SHARD_COUNT (so that it computes the
    same first map), else every replica of the store, itself included."""
    if replica.get("shard_count") and data.get("shard_view"):
        return data["shard_view"]
    addresses = [r["address"] for r in data["replicas"]]
    if replica["address"] not in addresses:
        addresses.append(replica["address"])
    return ",".join(addresses)


def cmd_start(args, state):
    dry_run = getattr(args, "dry_run", False)
    if not dry_run:
        state.lock()
    data = state.load()
    if data is not None and data["replicas"]:
        alive = [r for r in data["replicas"] if is_alive(data, r)]
        if alive:
            say(
                f"A causalkv store is already running ({len(data['replicas'])} replicas, {data['mode']} mode); "
                f"not starting another. Stop it first with: {self_command(state)} stop",
                "",
            )
            cmd_status(args, state, data)
            return EXIT_OK
        say(
            f"Discarding the state of a previous store whose replicas are all gone ({display_path(state.path)}); "
            + ("its replicas kept their state in memory only (sharded)." if is_sharded(data) else "their data is kept.")
        )
        if not dry_run:
            if data["mode"] == "docker":
                docker_remove_containers([r["container"] for r in data["replicas"]], 0)
            state.delete()

    shards = getattr(args, "shards", None)
    if shards is not None:
        if shards < 1:
            raise Fail("--shards must be at least 1", EXIT_USAGE)
        if getattr(args, "durability", None):
            raise Fail(
                "--durability does not apply to a sharded store: sharded replicas keep their state in memory "
                "only (the replica refuses SHARD_COUNT together with DATA_DIR)",
                EXIT_USAGE,
            )
    n = option(args, "replicas", DEFAULT_REPLICAS if shards is None else max(DEFAULT_REPLICAS, 2 * shards))
    if n < 1:
        raise Fail("-n must be at least 1", EXIT_USAGE)
    if shards is not None and n < 2 * shards:
        raise Fail(
            f"--shards {shards} needs at least {2 * shards} replicas (two per shard, so that every shard "
            f"survives the loss of one), but -n is {n}; use -n {2 * shards} or more, or fewer shards",
            EXIT_USAGE,
        )
    sharded = shards is not None
    base_port = option(args, "base_port", DEFAULT_BASE_PORT)
    timeout = option(args, "timeout", DEFAULT_TIMEOUT)
    if timeout <= 0:
        raise Fail("--timeout must be positive", EXIT_USAGE)
    subnet = str(parse_subnet(getattr(args, "subnet", None) or SUBNET))
    requested = getattr(args, "mode", None) or "auto"
    if dry_run and requested == "auto":
        mode, why = ("docker", "a Docker engine answers") if docker_engine_error() is None else ("local", "no Docker engine")
    elif dry_run:
        mode, why = requested, f"requested with --mode {requested}"
    else:
        mode, why = choose_mode(requested)
    settings = passed_settings()
    if getattr(args, "durability", None):
        settings["DURABILITY"] = args.durability
    say(f"Mode: {mode} ({why}).")
    if sharded:
        say(
            f"Sharded: {plural(shards, 'shard')} over {n} replicas (SHARD_COUNT={shards}). "
            "Sharded replicas keep their state in memory only: no data directory, no volume, no DURABILITY."
        )
        if settings.pop("DURABILITY", None) is not None:
            warn("DURABILITY from the environment is not passed on: sharded replicas keep their state in memory only")
    ports = [host_port(base_port, i, sharded) for i in range(1, n + 1)]
    if dry_run:
        say("Dry run: these commands would run (nothing is started):")
    else:
        # Before a build that may take minutes (and again before launching).
        check_ports([(ports[i - 1], f"{NAME_PREFIX}{i}") for i in range(1, n + 1)])
    if mode == "local" and not sharded:
        for i in range(1, n + 1):
            name = f"{NAME_PREFIX}{i}"
            check_local_data(state, name, f"127.0.0.1:{base_port + i - 1}", start_hint(state, name, i))

    # docker mode: the image given with --image, run as is, or ours, built
    # from docker/Dockerfile unless --no-build.
    image = getattr(args, "image", None) or IMAGE
    build = getattr(args, "image", None) is None and not getattr(args, "no_build", False)
    if mode == "docker":
        replicas = [docker_replica(i, ports[i - 1], subnet, sharded) for i in range(1, n + 1)]
    else:
        binary = resolve_binary(args, dry_run)
        replicas = [local_replica(state, binary, i, ports[i - 1], sharded) for i in range(1, n + 1)]
    view = ",".join(r["address"] for r in replicas)
    data = {
        "version": STATE_VERSION,
        "mode": mode,
        "repo": REPO,
        "base_port": base_port,
        "next_index": n + 1,
        "settings": settings,
        "replicas": [],
    }
    if sharded:
        # What later commands need to know: the store is sharded, and the
        # VIEW its first replicas were started with (a replica started with
        # SHARD_COUNT again must be given the same VIEW to compute the same
        # first map; the others then hand it the current one).
        data["shards"] = shards
        data["shard_view"] = view
        for r in replicas:
            r["shard_count"] = shards

    if dry_run:
        if mode == "docker" and build:
            say("+ docker " + shlex.join(docker_build_args()))
            say(f"+ docker network create --subnet {subnet} {NETWORK}")
        for r in replicas:
            if mode == "docker":
                prepare_volume(state, r, dry_run=True)
                launch_docker(r, view, settings, image, dry_run=True)
            else:
                prepare_local_data(state, r, dry_run=True)
                launch_local(r, view, settings, dry_run=True)
        return EXIT_OK

    check_ports([(r["port"], r["name"]) for r in replicas])
    created_network = False
    if mode == "docker":
        created_network = prepare_docker(replicas, subnet, image, build)
        data["network"] = NETWORK
        data["subnet"] = subnet
        data["image"] = image
        earlier = [r["name"] for r in replicas if prepare_volume(state, r)]
    else:
        earlier = [r["name"] for r in replicas if prepare_local_data(state, r)]

    children = {}
    try:
        say(f"Starting {n} replica{'s' if n != 1 else ''} ...")
        for r in replicas:
            if mode == "docker":
                launch_docker(r, view, settings, image)
            else:
                children[r["name"]] = launch_local(r, view, settings)
            data["replicas"].append(r)
            state.save(data)  # so that `stop` finds whatever got started
        await_up(data, replicas, timeout, children)
    except (Fail, KeyboardInterrupt) as e:
        if data["replicas"]:
            say("Stopping the replicas started so far ...")
            if mode == "docker":
                docker_remove_containers([r["container"] for r in data["replicas"]], 2)
            else:
                stop_local_replicas(data["replicas"], 2, children)
        if created_network:
            docker("network", "rm", NETWORK, timeout=60)
        state.delete()
        if isinstance(e, KeyboardInterrupt):
            raise Fail("interrupted", EXIT_INTERRUPTED)
        raise
    if sharded:
        # Each replica's view is its shard's members: wait until every one
        # is placed in a shard and all hold the same map.
        lagging = await_shards(replicas, timeout)
        if lagging:
            warn("not every replica is placed in a shard of the same map yet: " + ", ".join(r["name"] for r in lagging))
    else:
        lagging = await_views(data, replicas, expected_in=[r["address"] for r in replicas])
        if lagging:
            warn("not every replica lists all the others yet: " + ", ".join(r["name"] for r in lagging))
    print_started(data, state, settings, earlier)
    return EXIT_OK


def start_hint(state, name, index):
    """How to get past data written at another address (see check_local_data)."""
    port = (recorded_address(state, name) or "").rpartition(":")[2]
    base = int(port) - index + 1 if port.isdigit() else 0
    again = f"start on the ports it was started on (--base-port {base}), or " if base >= 1 else ""
    return f"{again}delete the data of every replica with: {self_command(state)} stop --purge"


def docker_build_args():
    return ["build", "--tag", IMAGE, "--file", os.path.join(REPO, DOCKERFILE), REPO]


def build_env():
    """The environment for `docker build`: the classic builder where the
    docker CLI (version 23 or later) lacks its buildx plugin, without which
    it refuses to build."""
    if os.environ.get("DOCKER_BUILDKIT") is None and docker("buildx", "version", timeout=30).returncode != 0:
        say("(docker buildx is not installed: building with the classic builder, DOCKER_BUILDKIT=0)")
        return dict(os.environ, DOCKER_BUILDKIT="0")
    return None


def build_image():
    """Builds IMAGE from docker/Dockerfile. Where that fails (its build
    stage's image is not here and no registry can be reached, or the build
    cannot download the crates), builds the binary on this host with cargo
    and the image from the Dockerfile's runtime stage around it."""
    say(f"Building the image {IMAGE} from {DOCKERFILE} ...")
    env = build_env()
    result = docker(*docker_build_args(), capture=False, env=env)
    if result.returncode == 0:
        return
    failed = f"build failed: `docker build` exited with {result.returncode} (see its output above)"
    try:
        dockerfile = runtime_stage_dockerfile()
    except Fail as e:
        raise Fail(f"{failed}; {e.message}")
    problem = host_build_problem()
    if problem:
        raise Fail(f"{failed}; it cannot be built on this host instead: {problem}")
    warn(
        f"`docker build` of {DOCKERFILE} failed (above): e.g. no {BUILDER_IMAGE} here and no registry to pull it "
        "from, or no way to download the crates inside the build. Building the binary on this host instead "
        "and the image from the Dockerfile's runtime stage around it."
    )
    binary = resolve_binary(argparse.Namespace(), dry_run=False)
    with tempfile.TemporaryDirectory(prefix="causalkv-image-") as context:
        shutil.copy2(binary, os.path.join(context, "causalkv"))
        with open(os.path.join(context, "Dockerfile"), "w") as f:
            f.write(dockerfile)
        say(f"Building the image {IMAGE} from the runtime stage of {DOCKERFILE} and {display_path(binary)} ...")
        result = docker("build", "--tag", IMAGE, context, capture=False, env=env)
    if result.returncode != 0:
        raise Fail(f"build failed: `docker build` of the runtime stage exited with {result.returncode} (see its output above)")


def runtime_stage_dockerfile(text=None):
    """docker/Dockerfile from its runtime stage on, taking the binary from
    the build context (a file named causalkv) instead of the build stage."""
    if text is None:
        with open(os.path.join(REPO, DOCKERFILE)) as f:
            text = f.read()
    start = text.find(f"FROM {RUNTIME_IMAGE}")
    copy = "COPY --from=builder /src/target/release/causalkv /usr/local/bin/causalkv"
    if start < 0 or copy not in text[start:]:
        raise Fail(f"{DOCKERFILE} has no runtime stage `FROM {RUNTIME_IMAGE}` taking `{copy}`")
    return text[start:].replace(copy, "COPY causalkv /usr/local/bin/causalkv")


def host_build_problem():
    """Why a binary built on this host would not do for the image, or None."""
    if shutil.which("cargo") is None:
        return "cargo is not installed (not found on PATH)"
    version = os.confstr("CS_GNU_LIBC_VERSION") if "CS_GNU_LIBC_VERSION" in os.confstr_names else ""
    parts = version.split()[-1].split(".") if version.startswith("glibc ") else []
    if len(parts) < 2 or not all(p.isdigit() for p in parts[:2]):
        return f"this host's C library ({version or 'unknown'}) is not glibc"
    glibc = (int(parts[0]), int(parts[1]))
    if glibc > RUNTIME_GLIBC:
        wanted = ".".join(map(str, RUNTIME_GLIBC))
        return f"this host's glibc {glibc[0]}.{glibc[1]} is newer than the image's {wanted}: a binary built here would not run there"
    return None


def prepare_docker(replicas, subnet, image, build):
    """Builds the image and makes sure the network exists; returns whether
    it created the network."""
    taken = [r["container"] for r in replicas if container_state(r["container"]) is not None]
    if taken:
        raise Fail(
            f"container {taken[0]} already exists (not started by this state directory); "
            f"remove it with: docker rm -f {' '.join(taken)}"
        )
    if build:
        build_image()
    elif docker("image", "inspect", image, timeout=30).returncode != 0:
        if image != IMAGE:
            raise Fail(f"--image: there is no image {image} in this Docker engine", EXIT_USAGE)
        raise Fail(f"--no-build: there is no image {IMAGE}; build it or drop --no-build", EXIT_USAGE)
    existing = docker("network", "inspect", "--format", "{{range .IPAM.Config}}{{.Subnet}} {{end}}", NETWORK, timeout=30)
    if existing.returncode == 0:
        subnets = existing.stdout.split()
        if subnet not in subnets:
            raise Fail(
                f"network {NETWORK} exists with subnet {' '.join(subnets) or 'unknown'}, not {subnet}; "
                f"remove it with: docker network rm {NETWORK}"
            )
        say(f"Using the existing network {NETWORK} ({subnet}).")
        return False
    result = docker("network", "create", "--subnet", subnet, NETWORK, timeout=60)
    if result.returncode != 0:
        raise Fail(
            f"cannot create the network {NETWORK} ({subnet}): {first_line(result.stderr)}"
            + ("; pick another subnet with --subnet" if "overlap" in (result.stderr or "") else "")
        )
    return True


def print_started(data, state, settings, earlier=()):
    replicas = data["replicas"]
    n = len(replicas)
    where = "local processes" if data["mode"] == "local" else f"docker containers on {NETWORK} ({data['subnet']})"
    sharded = is_sharded(data)
    shard_ids = {}
    if sharded:
        _, layout = shard_layout(replicas)
        for shard_id, members in (layout or {}).items():
            for address in members:
                shard_ids[address] = shard_id
        where += f", {plural(data['shards'], 'shard')}"
    say("", f"causalkv is running: {n} replica{'s' if n != 1 else ''}, {where}.")
    width = max(len(r["name"]) for r in replicas)
    for r in replicas:
        if sharded:
            kept = f"shard {shard_ids.get(r['address'], '?')}"
        elif data["mode"] == "local":
            kept = f"data {data_location(r)}"
        else:
            kept = f"data in volume {data_location(r)}"
        if data["mode"] == "local":
            extra = f"pid {r['pid']}, log {display_path(r['log'])}, {kept}"
        else:
            extra = f"container address {r['address']}, {kept}"
        say(f"  {r['name']:<{width}}  http://{r['client']}  ({extra})")
    if sharded:
        for shard_id, members in sorted((layout or {}).items()):
            say(f"Shard {shard_id}: {', '.join(names_of(data, members))}")
        say(
            "Data: NOT DURABLE. Sharded replicas keep their state in memory only (the replica refuses "
            "SHARD_COUNT together with DATA_DIR): no data directory, no volume, no DURABILITY. `stop` loses "
            "every key; a replica that is killed or restarted comes back empty and copies its shard's keys "
            "from the other members of its shard."
        )
    elif data["mode"] == "local":
        kept = f"Data: each replica keeps its state in {display_path(state.data_root())}/<name>"
    else:
        kept = f"Data: each replica keeps its state in the docker volume {VOLUME_PREFIX}<replicaN>, mounted at {CONTAINER_DATA_DIR}"
    if not sharded:
        say(f"{kept}; `stop` keeps it for the next start, `stop --purge` deletes it.")
    if earlier:
        say(f"Started on the data of an earlier run: {', '.join(earlier)}.")
    if settings:
        say(f"Settings given to every replica: {describe_settings(settings)}")
    first = replicas[0]["client"]
    other = replicas[1]["client"] if n > 1 else first
    me = self_command(state)
    say(
        "",
        "Try it:",
        f"  curl -s -X PUT http://{first}/key-value-store/sampleKey -H 'Content-Type: application/json' "
        "-d '{\"value\": \"sampleValue\", \"causal-metadata\": \"\"}'",
        f"  curl -s -X GET http://{other}/key-value-store/sampleKey -H 'Content-Type: application/json' "
        "-d '{\"causal-metadata\": <the causal-metadata the PUT returned>}'",
    )
    if sharded:
        say(
            f"  curl -s http://{first}{SHARD_API}/shard-ids",
            f"  curl -s http://{first}{SHARD_API}/shard-id-members/1",
        )
    say(
        "",
        f"Then: {me} status | add{' [--shard ID]' if sharded else ''} | remove NAME | restart NAME | kill NAME | "
        "logs NAME | stop" + ("" if sharded else " [--purge]"),
    )


# ----- status ----------------------------------------------------------------


def replica_row(data, r):
    if data["mode"] == "local":
        running = runs_our_binary(r)
        process = str(r["pid"]) if running else "-"
    else:
        cstate, container_health = container_states(r["container"])
        running = cstate == "running"
        process = cstate or "missing"
    body = health(r) if running else None
    ready, why = readiness(r) if body is not None else (None, "")
    if not running:
        status = "down"
    elif body is None:
        status = "no answer"
    else:
        status = "up"
    keys = str(body.get("keys", "?")) if body else "-"
    view = body.get("view", "?") if body else "-"
    shown = {True: "yes", False: "no", None: "-"}[ready]
    row = {"name": r["name"], "address": r["address"], "client": r["client"], "status": status, "ready": shown, "why": why if ready is False else "", "process": process, "keys": keys, "data": data_location(r), "view": view}
    if data["mode"] != "local":
        row["health"] = container_health
    if is_sharded(data):
        # Its shard ("none": a node of the store placed in no shard yet;
        # "?": not (yet) a node of the sharded store) and the map version.
        in_store, shard_id, version = shard_of(body)
        if body is None:
            row["shard"] = "-"
        elif not in_store:
            row["shard"] = "?"
        else:
            row["shard"] = "none" if shard_id is None else str(shard_id)
        row["map"] = version
    return row


def store_tables(replicas):
    """The tables as the first of `replicas` that answers GET /tables tells
    them: (that replica, [{"name", "siblings", "keys"}, ...]). (None, None)
    when each answered 404 (a build without tables); (None, False) when one
    did not answer, or answered something else."""
    unanswered = False
    for r in replicas:
        answer = http("GET", r["client"], "/tables")
        if answer is None:
            unanswered = True
            continue
        status, body = answer
        tables = body.get("tables") if isinstance(body, dict) else None
        if status == 200 and isinstance(tables, list):
            return r, [t for t in tables if isinstance(t, dict)]
        if status != 404:
            unanswered = True
    return None, (False if unanswered else None)


def status_tables(data, ready_rows):
    """`status`'s tables section: the tables as a ready replica tells
    them, or nothing when none is ready or they have no tables (a build
    before them)."""
    ready = [r for r in data["replicas"] if r["name"] in {row["name"] for row in ready_rows}]
    if not ready:
        return
    via, tables = store_tables(ready)
    if tables is None:
        return
    if tables is False:
        say("", "Tables: no ready replica answered GET /tables.")
        return
    if not tables:
        say("", f"Tables: none besides the default one (as {via['name']} sees them).")
        return
    yes_no = {True: "yes", False: "no"}
    table = [("TABLE", "SIBLINGS", "KEYS")] + [
        (str(t.get("name", "?")), yes_no.get(t.get("siblings"), "?"), str(t.get("keys", "?")))
        for t in tables
    ]
    widths = [max(len(line[i]) for line in table) for i in range(2)]
    say("", f"Tables ({plural(len(tables), 'table')} besides the default one, as {via['name']} sees them):")
    for line in table:
        say(f"{line[0]:<{widths[0]}}  {line[1]:<{widths[1]}}  {line[2]}".rstrip())


def cmd_status(args, state, data=None):
    data = data or require_store(state)
    rows = [replica_row(data, r) for r in data["replicas"]]
    sharded = is_sharded(data)
    say(
        f"causalkv: {len(rows)} replica{'s' if len(rows) != 1 else ''}, {data['mode']} mode"
        + (f", sharded (started with {plural(data['shards'], 'shard')}; state in memory only)" if sharded else "")
        + f" (state: {display_path(state.path)})"
    )
    if data["mode"] == "local":
        columns = [("NAME", "name"), ("ADDRESS", "address"), ("STATUS", "status"), ("READY", "ready"), ("PID", "process"), ("KEYS", "keys"), ("DATA", "data"), ("VIEW", "view")]
    else:
        columns = [("NAME", "name"), ("ADDRESS", "address"), ("HOST", "client"), ("STATUS", "status"), ("READY", "ready"), ("CONTAINER", "process"), ("HEALTH", "health"), ("KEYS", "keys"), ("DATA", "data"), ("VIEW", "view")]
    if sharded:
        # Its shard after READY; KEYS are those of its shard, VIEW its
        # shard's members as it sees them.
        at = [key for _, key in columns].index("ready") + 1
        columns.insert(at, ("SHARD", "shard"))
    widths = [max([len(title)] + [len(row[key]) for row in rows]) for title, key in columns]
    lines = [[title for title, _ in columns]] + [[row[key] for _, key in columns] for row in rows]
    for line in lines:
        say("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip())
    for row in rows:
        if row["why"]:
            say(f"{row['name']} is not ready: {row['why']}")
        elif row["status"] == "down":
            say(f"{row['name']} is down; bring it back with: {self_command(state)} restart {short_name(row['name'])}")
    up = [row for row in rows if row["status"] == "up"]
    ready = [row for row in up if row["ready"] == "yes"]
    views = {row["view"] for row in up}
    if sharded:
        return status_shards(data, state, rows, up, ready)
    status_tables(data, ready)
    if len(ready) == len(rows):
        agree = "agree on the view" if len(views) <= 1 else "do not agree on the view yet (it converges within seconds)"
        say(f"All {len(rows)} replicas are up and ready and {agree}.")
        return EXIT_OK
    say(f"{len(up)} of {len(rows)} replicas are up, {len(ready)} ready.")
    return EXIT_FAIL


def status_shards(data, state, rows, up, ready):
    """`status` of a sharded store, after the table of replicas: each
    shard's members and key count, as an up replica tells them."""
    answering = [r for r, row in zip(data["replicas"], rows) if row["status"] == "up"]
    via, layout = shard_layout(answering)
    if layout is None:
        say("", "No replica answered with the shard map.")
    else:
        counts = {shard_id: shard_key_count(via, shard_id) for shard_id in layout}
        table = [("SHARD", "KEYS", "MEMBERS")] + [
            (str(shard_id), "?" if counts[shard_id] is None else str(counts[shard_id]),
             ", ".join(names_of(data, members)) or "(none)")
            for shard_id, members in sorted(layout.items())
        ]
        widths = [max(len(line[i]) for line in table) for i in range(2)]
        say("", f"Shards ({plural(len(layout), 'shard')}, as {via['name']} sees them):")
        for line in table:
            say(f"{line[0]:<{widths[0]}}  {line[1]:<{widths[1]}}  {line[2]}".rstrip())
        for shard_id, members in sorted(layout.items()):
            if len(members) < 2:
                warn(
                    f"shard {shard_id} has {plural(len(members), 'member')}: it does not survive the loss of a "
                    f"replica; add one with: {self_command(state)} add --shard {shard_id}"
                )
        unplaced = [row for row in up if row["shard"] == "none"]
        for row in unplaced:
            say(
                f"{row['name']} is in no shard yet; place it with: curl -s -X PUT "
                f"http://{via['client']}{SHARD_API}/add-member/<ID> -H 'Content-Type: application/json' "
                f"-d '{{\"socket-address\": \"{row['address']}\"}}'"
            )
    status_tables(data, ready)
    if len(ready) == len(rows):
        versions = {row["map"] for row in rows}
        agree = (
            f"agree on the shard map (version {next(iter(versions))})" if len(versions) == 1
            else "do not agree on the shard map yet (it converges within seconds)"
        )
        say(f"All {len(rows)} replicas are up and ready and {agree}.")
        return EXIT_OK
    say(f"{len(up)} of {len(rows)} replicas are up, {len(ready)} ready.")
    return EXIT_FAIL


# ----- add -------------------------------------------------------------------


def cmd_add(args, state):
    state.lock()
    data = require_store(state)
    timeout = option(args, "timeout", DEFAULT_TIMEOUT)
    if timeout <= 0:
        raise Fail("--timeout must be positive", EXIT_USAGE)
    index = data["next_index"]
    members = data["replicas"]
    settings = data.get("settings", {})
    sharded = is_sharded(data)
    wanted_shard = getattr(args, "shard", None)
    if wanted_shard is not None and not sharded:
        raise Fail("--shard only applies to a sharded store (one started with --shards N)", EXIT_USAGE)
    if sharded:
        # Where it goes, before anything starts: the shard asked for, or
        # the one with the fewest members (the lowest id of those).
        via, layout = shard_layout([r for r in members if is_alive(data, r)])
        if layout is None:
            raise Fail("no replica of the store answered with its shard map, so the new replica could not be placed")
        if wanted_shard is None:
            wanted_shard = min(layout, key=lambda shard_id: (len(layout[shard_id]), shard_id))
            why = f"the one with the fewest members, {len(layout[wanted_shard])}"
        elif wanted_shard not in layout:
            known = ", ".join(str(shard_id) for shard_id in sorted(layout))
            raise Fail(f"--shard {wanted_shard}: no such shard (the store has shards {known})", EXIT_USAGE)
        else:
            why = "asked for with --shard"
    if data["mode"] == "docker":
        problem = docker_engine_error()
        if problem:
            raise Fail(problem, EXIT_MISSING_TOOL)
        port = option(args, "port", host_port(data["base_port"], index, sharded))
        replica = docker_replica(index, port, data["subnet"], sharded)
    else:
        binary = members[0]["binary"] if members else None
        if not binary or not os.path.isfile(binary):
            raise Fail(f"the binary the store was started with is gone: {binary}")
        port = option(args, "port", host_port(data["base_port"], index, sharded))
        replica = local_replica(state, binary, index, port, sharded)
        if not sharded:
            recorded = recorded_address(state, replica["name"]) or ""
            again = f"add it at the port it had (--port {recorded.rpartition(':')[2]}), or " if recorded.startswith("127.0.0.1:") else ""
            where = shlex.quote(display_path(replica["data_dir"]))
            check_local_data(state, replica["name"], replica["address"], f"{again}delete that data first: rm -r {where}")
    check_ports([(replica["port"], replica["name"])], hint="pick another port with add --port PORT")
    view = ",".join([r["address"] for r in members] + [replica["address"]])
    if sharded:
        say(
            f"Adding {replica['name']} at {replica['address']} to shard {wanted_shard} ({why}); "
            f"it starts without SHARD_COUNT, with VIEW={view} ..."
        )
    else:
        say(f"Adding {replica['name']} at {replica['address']} with VIEW={view} ...")
    if data["mode"] == "docker":
        earlier = prepare_volume(state, replica)
    else:
        earlier = prepare_local_data(state, replica)
    if sharded:
        say("Its data: in memory only (sharded: no data directory, no volume).")
    else:
        say(f"Its data: {data_location(replica)}" + (" (from an earlier run)." if earlier else "."))
    children = {}
    started = time.monotonic()
    try:
        if data["mode"] == "docker":
            launch_docker(replica, view, settings, data.get("image", IMAGE))
        else:
            children[replica["name"]] = launch_local(replica, view, settings)
        data["replicas"].append(replica)
        data["next_index"] = index + 1
        state.save(data)
        await_up(data, [replica], timeout, children)
        if sharded:
            place_in_shard(data, replica, wanted_shard, timeout - (time.monotonic() - started), children)
    except (Fail, KeyboardInterrupt) as e:
        say(f"Stopping {replica['name']} again ...")
        if data["mode"] == "docker":
            docker_remove_containers([replica["container"]], 2)
        else:
            stop_local_replicas([replica], 2, children)
        if sharded:
            # It joined the store's map as a node (perhaps as a member of
            # its shard): take it out again.
            for r in members:
                if http("DELETE", r["client"], "/key-value-store-view", {"socket-address": replica["address"]}) is not None:
                    break
        if replica in data["replicas"]:
            data["replicas"].remove(replica)
            state.save(data)
        if isinstance(e, KeyboardInterrupt):
            raise Fail("interrupted", EXIT_INTERRUPTED)
        raise
    if sharded:
        _, layout = shard_layout([replica] + members)
        shard_members = (layout or {}).get(wanted_shard, [])
        peers = [r for r in members if r["address"] in shard_members]
        lagging = await_views(data, peers, expected_in=[replica["address"]])
        if lagging:
            warn(f"{replica['address']} is not yet in the view of: " + ", ".join(r["name"] for r in lagging))
        body = health(replica) or {}
        say(
            f"Added {replica['name']} at http://{replica['client']} to shard {wanted_shard}: it copied the "
            f"shard's state ({plural(body.get('keys', '?'), 'key')}).",
            f"Shard {wanted_shard} now: {', '.join(names_of(data, shard_members)) or '?'}",
        )
        return EXIT_OK
    lagging = await_views(data, members, expected_in=[replica["address"]])
    if lagging:
        warn(f"{replica['address']} is not yet in the view of: " + ", ".join(r["name"] for r in lagging))
    body = health(replica) or {}
    say(
        f"Added {replica['name']} at http://{replica['client']}: it joined and copied the state "
        f"({plural(body.get('keys', '?'), 'key')}).",
        f"View now: {body.get('view', '?')}",
    )
    return EXIT_OK


def place_in_shard(data, replica, shard_id, timeout, children):
    """Sharded `add`: waits until the new replica (started without
    SHARD_COUNT) is a node of the sharded store, places it in shard
    `shard_id` with add-member (sent to another replica), and waits until
    it reports that shard and is ready (it copied the shard's state)."""
    deadline = time.monotonic() + max(timeout, 1.0)
    name = replica["name"]

    def check_alive():
        child = children.get(name)
        if child is not None and child.poll() is not None:
            where, tail = replica_log_tail(data, replica)
            raise Fail(f"{name} exited with status {child.returncode}; last lines of {display_path(where)}:", details=tail)

    def wait(what, done):
        """Polls done() (True, or False with why not) until the deadline."""
        while True:
            check_alive()
            ok, why = done()
            if ok:
                return
            if time.monotonic() >= deadline:
                where, tail = replica_log_tail(data, replica)
                raise Fail(
                    f"{name} {what} within {timeout:g}s{f' ({why})' if why else ''}; "
                    f"last lines of {display_path(where)}:",
                    details=tail,
                )
            time.sleep(POLL)

    wait("did not join the sharded store (it asks the replicas of its VIEW for the shard map)",
         lambda: (shard_of(health(replica))[0], ""))
    others = [r for r in data["replicas"] if r is not replica]
    body = {"socket-address": replica["address"]}
    placed_via = None
    for r in others:
        answer = http("PUT", r["client"], f"{SHARD_API}/add-member/{shard_id}", body, timeout=30.0)
        if answer is None:
            continue
        status, reply = answer
        if status != 200:
            raise Fail(f"{r['name']} refused to add {replica['address']} to shard {shard_id}: {status} {json.dumps(reply)}")
        placed_via = r
        break
    if placed_via is None:
        raise Fail(f"no other replica answered, so {name} could not be placed in shard {shard_id}")
    say(f"  placed in shard {shard_id} through {placed_via['name']} (PUT {SHARD_API}/add-member/{shard_id})")
    wait(f"did not report shard {shard_id}", lambda: (shard_of(health(replica))[1] == shard_id, ""))

    def ready():
        ok, why = readiness(replica)
        return ok is True, f"not ready: {why or 'no answer'}"

    wait("did not become ready in its shard (it copies the shard's state from the other members)", ready)
    say(f"  {name} is in shard {shard_id} and ready")


# ----- remove ----------------------------------------------------------------


def cmd_remove(args, state):
    state.lock()
    data = require_store(state)
    replica = find_replica(data, args.name)
    others = [r for r in data["replicas"] if r is not replica]
    if not others:
        raise Fail(f"{replica['name']} is the only replica; stop the store with: {self_command(state)} stop", EXIT_USAGE)
    grace = getattr(args, "grace", None)
    grace = default_grace(data) if grace is None else grace
    sharded = is_sharded(data)
    shard_id = None
    if sharded:
        _, layout = shard_layout([r for r in others if is_alive(data, r)] + [replica])
        shard_id = next((i for i, members in (layout or {}).items() if replica["address"] in members), None)
        if shard_id is not None and layout[shard_id] == [replica["address"]]:
            raise Fail(
                f"{replica['name']} is the only member of shard {shard_id}: removing it would lose the shard's "
                f"keys (sharded replicas keep them in memory only); add a replica to it first with: "
                f"{self_command(state)} add --shard {shard_id}",
                EXIT_USAGE,
            )
    via = None
    for r in others:
        answer = http("DELETE", r["client"], "/key-value-store-view", {"socket-address": replica["address"]})
        if answer is None:
            continue
        status, body = answer
        message = (body or {}).get("message", "") if isinstance(body, dict) else ""
        if status == 200 or (status == 404 and "does not exist" in json.dumps(body)):
            via = r
            if status == 200:
                say(f"Removed {replica['name']} ({replica['address']}) from the view through {r['name']}: {message}.")
            else:
                say(f"{replica['name']} ({replica['address']}) was no longer in the view of {r['name']}.")
            break
        raise Fail(f"{r['name']} refused to remove {replica['address']} from the view: {status} {json.dumps(body)}")
    if via is None:
        raise Fail(f"no other replica answered, so {replica['name']} was not removed from the view (and is left running)")
    if data["mode"] == "docker":
        outcome = docker_remove_containers([replica["container"]], grace)[replica["container"]]
    else:
        outcome = stop_local_replicas([replica], grace)[replica["name"]]
    say(f"{replica['name']}: {outcome}" + (f" (pid {replica['pid']})." if replica.get("pid") else "."))
    data["replicas"].remove(replica)
    state.save(data)
    # Out of the store for good: a replica started later under its name
    # starts afresh instead of on the state of one the others removed.
    where = data_location(replica)
    if outcome.startswith("could not"):
        warn(f"the data of {replica['name']} ({where}) is kept: it is still running")
    elif replica.get("memory_only"):
        pass  # nothing on disk
    elif replica.get("data_dir"):
        say(f"{replica['name']}'s data ({where}): {delete_local_data(replica['data_dir'])}.")
        state.set_data_address(replica["name"], None)
    elif replica.get("volume"):
        say(f"{replica['name']}'s data (volume {where}): {delete_volumes(state, [replica['volume']])[replica['volume']]}.")
    lagging = await_views(data, others, expected_out=[replica["address"]])
    if lagging:
        warn(f"{replica['address']} is still in the view of: " + ", ".join(r["name"] for r in lagging))
    if sharded:
        _, layout = shard_layout(others)
        for i, members in sorted((layout or {}).items()):
            say(f"Shard {i} now: {', '.join(names_of(data, members)) or '(no members)'}")
            if i == shard_id and len(members) < 2:
                warn(
                    f"shard {i} is left with {plural(len(members), 'member')}: it does not survive the loss of "
                    f"another; add one with: {self_command(state)} add --shard {i}"
                )
        return EXIT_OK
    body = next((b for b in (health(r) for r in others) if b), None)
    if body:
        say(f"View now: {body.get('view')}")
    return EXIT_OK


# ----- restart, kill -----------------------------------------------------------


def cmd_restart(args, state):
    state.lock()
    data = require_store(state)
    replica = find_replica(data, args.name)
    name = replica["name"]
    timeout = option(args, "timeout", DEFAULT_TIMEOUT)
    if timeout <= 0:
        raise Fail("--timeout must be positive", EXIT_USAGE)
    grace = getattr(args, "grace", None)
    grace = default_grace(data) if grace is None else grace
    settings = data.get("settings", {})
    if data["mode"] == "docker":
        problem = docker_engine_error()
        if problem:
            raise Fail(problem, EXIT_MISSING_TOOL)
    elif not os.path.isfile(replica["binary"]):
        raise Fail(f"the binary {name} was started with is gone: {replica['binary']}")
    sharded = is_sharded(data)
    if sharded:
        say(
            f"Restarting {name} at {replica['address']} (sharded: its state was in memory only; it comes back "
            "empty and copies its shard's keys from the other members) ..."
        )
    else:
        say(f"Restarting {name} at {replica['address']} (data: {data_location(replica)}) ...")
    if data["mode"] == "docker":
        outcome = docker_remove_containers([replica["container"]], grace)[replica["container"]]
    else:
        outcome = stop_local_replicas([replica], grace)[name]
    say(f"  {name}: {outcome}.")
    if outcome.startswith("could not"):
        raise Fail(f"{name} could not be stopped, so it was not started again")
    check_ports([(replica["port"], name)], hint=f"{name} comes back on the same port: stop what took it")
    # The same address, port and data; the view of the whole store (the
    # first VIEW for a replica started with SHARD_COUNT: see launch_view).
    view = launch_view(data, replica)
    children = {}
    try:
        if data["mode"] == "docker":
            prepare_volume(state, replica)
            launch_docker(replica, view, settings, data.get("image", IMAGE))
        else:
            prepare_local_data(state, replica)
            children[name] = launch_local(replica, view, settings, again=True)
        state.save(data)
        await_up(data, [replica], timeout, children)
        if sharded:
            # It may start on the store's first map and take the current one
            # from the others (then starting again in its shard's group).
            alive = [r for r in data["replicas"] if r is not replica and is_alive(data, r)]
            lagging = await_shards([replica] + alive, timeout, placed=False)
            if lagging:
                warn("not on the same shard map as the others yet: " + ", ".join(r["name"] for r in lagging))
            await_up(data, [replica], timeout, children, quiet=True)
    except (Fail, KeyboardInterrupt) as e:
        say(f"Stopping {name} again (it stays in the store, down) ...")
        if data["mode"] == "docker":
            docker_remove_containers([replica["container"]], 2)
        else:
            stop_local_replicas([replica], 2, children)
        state.save(data)
        if isinstance(e, KeyboardInterrupt):
            raise Fail("interrupted", EXIT_INTERRUPTED)
        raise
    others = [r for r in data["replicas"] if r is not replica]
    if sharded:
        # Its view is its shard's: only the other members list it.
        _, layout = shard_layout([replica] + others)
        members = next((m for m in (layout or {}).values() if replica["address"] in m), [])
        others = [r for r in others if r["address"] in members]
    lagging = await_views(data, others, expected_in=[replica["address"]])
    if lagging:
        warn(f"{replica['address']} is not yet in the view of: " + ", ".join(r["name"] for r in lagging))
    body = health(replica) or {}
    if sharded:
        shard_id = shard_of(body)[1]
        say(
            f"Restarted {name} at http://{replica['client']} as replica {body.get('replica', '?')} in shard "
            f"{'none' if shard_id is None else shard_id} ({plural(body.get('keys', '?'), 'key')}, copied from its "
            "shard; state in memory only)."
        )
        return EXIT_OK
    say(
        f"Restarted {name} at http://{replica['client']} as replica {body.get('replica', '?')} "
        f"({plural(body.get('keys', '?'), 'key')}; data: {data_location(replica)})."
    )
    return EXIT_OK


def cmd_kill(args, state):
    state.lock()
    data = require_store(state)
    replica = find_replica(data, args.name)
    name = replica["name"]
    if data["mode"] == "docker":
        container = replica["container"]
        if shutil.which("docker") is None:
            raise Fail("docker is not installed (not found on PATH), so the container cannot be killed", EXIT_MISSING_TOOL)
        if container_state(container) != "running":
            outcome = "was not running"
        else:
            result = docker("kill", container, timeout=60)
            if result.returncode != 0:
                raise Fail(f"`docker kill {container}` failed: {first_line(result.stderr)}")
            outcome = f"killed (docker kill {container})"
    elif not runs_our_binary(replica):
        outcome = "was not running"
    else:
        signal_pid(replica["pid"], signal.SIGKILL)
        deadline = time.monotonic() + 5
        while runs_our_binary(replica):
            if time.monotonic() >= deadline:
                raise Fail(f"{name} (pid {replica['pid']}) is still running 5s after SIGKILL")
            time.sleep(POLL)
        outcome = f"killed (SIGKILL to pid {replica['pid']})"
    if replica.get("memory_only"):
        kept = "Its state was in memory only (sharded) and is gone; `restart` starts it empty and it copies its shard's keys"
    else:
        kept = f"Its data is kept ({data_location(replica)})"
    say(
        f"{name}: {outcome}.",
        f"{kept}; bring it back with: {self_command(state)} restart {short_name(name)}",
    )
    return EXIT_OK


# ----- logs ------------------------------------------------------------------


def cmd_logs(args, state):
    data = require_store(state)
    replica = find_replica(data, args.name)
    tail = getattr(args, "tail", None)
    follow = getattr(args, "follow", False)
    if data["mode"] == "docker":
        command = ["logs"]
        if tail is not None:
            command += ["--tail", str(tail)]
        if follow:
            command.append("--follow")
        result = docker(*command, replica["container"], capture=False)
        if result.returncode != 0:
            raise Fail(f"`docker logs {replica['container']}` failed")
        return EXIT_OK
    path = replica["log"]
    try:
        f = open(path, "rb")
    except OSError as e:
        raise Fail(f"cannot read the log of {replica['name']} ({display_path(path)}): {e.strerror}")
    out = sys.stdout.buffer
    with f:
        if tail is not None:
            lines = f.read().splitlines(keepends=True)
            out.write(b"".join(lines[-tail:] if tail > 0 else []))
        else:
            shutil.copyfileobj(f, out)
        out.flush()
        while follow:
            chunk = f.read()
            if chunk:
                out.write(chunk)
                out.flush()
            elif not runs_our_binary(replica):
                break
            else:
                time.sleep(0.5)
    return EXIT_OK


# ----- stop ------------------------------------------------------------------


def purge_data(state, data):
    """`stop --purge`: deletes the data directories under the state directory
    and the docker volumes made for its replicas (their containers gone)."""
    volumes = list(state.volumes())
    for r in (data or {}).get("replicas", []):
        if r.get("volume") and r["volume"] not in volumes:
            volumes.append(r["volume"])
    root = state.data_root()
    found = os.path.lexists(root) or volumes
    failed = []
    if os.path.lexists(root):
        what = delete_local_data(root)
        say(f"  data {display_path(root)}: {what}")
        if what.startswith("could not"):
            failed.append(display_path(root))
    if not os.path.lexists(root):
        record = state.data_record()
        record["addresses"] = {}
        state.save_data_record(record)
    if not found:
        say("No data to delete.")
        return
    if volumes:
        if shutil.which("docker") is None:
            raise Fail(f"docker is not installed (not found on PATH), so the volumes {', '.join(volumes)} cannot be deleted", EXIT_MISSING_TOOL)
        for volume, what in delete_volumes(state, volumes).items():
            say(f"  volume {volume}: {what}")
            if what.startswith("could not"):
                failed.append(volume)
    if failed:
        raise Fail("could not delete the data in: " + ", ".join(failed))
    say("Deleted the data of every replica.")


def cmd_stop(args, state):
    purge = getattr(args, "purge", False)
    data = None
    if os.path.exists(state.path) or (purge and os.path.isdir(state.dir)):
        state.lock()
        data = state.load()
    if data is None:
        say(f"Nothing to stop: no store is running (no state in {display_path(state.dir)}).")
        if purge:
            purge_data(state, None)
        return EXIT_OK
    grace = getattr(args, "grace", None)
    grace = default_grace(data) if grace is None else grace
    names = [r["name"] for r in data["replicas"]]
    say(f"Stopping {len(names)} replica{'s' if len(names) != 1 else ''} ({data['mode']} mode) ...")
    if data["mode"] == "docker":
        if shutil.which("docker") is None:
            raise Fail("docker is not installed (not found on PATH), so the containers cannot be stopped", EXIT_MISSING_TOOL)
        outcome = docker_remove_containers([r["container"] for r in data["replicas"]], grace)
    else:
        outcome = stop_local_replicas(data["replicas"], grace)
    failed = []
    for name in names:
        say(f"  {name}: {outcome[name]}")
        if outcome[name].startswith("could not"):
            failed.append(name)
    if data["mode"] == "docker" and data.get("network"):
        result = docker("network", "rm", data["network"], timeout=60)
        if result.returncode == 0:
            say(f"  network {data['network']}: removed")
        elif "not found" not in (result.stderr or ""):
            warn(f"cannot remove the network {data['network']}: {first_line(result.stderr)}")
    if failed:
        raise Fail(
            "could not stop: " + ", ".join(failed) + f"; the state is kept in {display_path(state.path)}"
            + ("; no data was deleted" if purge else "")
        )
    state.delete()
    if purge:
        purge_data(state, data)
        kept = ""
    elif is_sharded(data):
        kept = " The replicas were sharded and kept their state in memory only: it is gone."
    elif data["mode"] == "local":
        kept = f" The data is kept in {display_path(state.data_root())} (`stop --purge` deletes it)."
    else:
        volumes = ", ".join(r["volume"] for r in data["replicas"] if r.get("volume"))
        kept = f" The data is kept in the volumes {volumes} (`stop --purge` deletes them)." if volumes else ""
    if data["mode"] == "local":
        say(f"Stopped. Logs are kept in {display_path(state.dir)}.{kept}")
    else:
        say(f"Stopped.{kept}")
    return EXIT_OK


# ----- command line ----------------------------------------------------------

START_OPTIONS = ("mode", "replicas", "binary", "base_port", "subnet", "no_build", "image", "dry_run", "durability", "shards")


def add_common(parser, top):
    default = None if top else argparse.SUPPRESS
    parser.add_argument(
        "--state-dir", metavar="DIR", default=default,
        help=f"where the state file, local logs and local data live (default: {display_path(DEFAULT_STATE_DIR)})",
    )


def add_start_options(parser):
    s = argparse.SUPPRESS
    parser.add_argument("--mode", choices=("auto", "docker", "local"), default=s,
                        help="docker: containers; local: processes; auto (default): docker if `docker info` works")
    parser.add_argument("-n", "--replicas", type=int, metavar="N", default=s,
                        help=f"number of replicas (default {DEFAULT_REPLICAS}; with --shards N: 2*N, at least {DEFAULT_REPLICAS})")
    parser.add_argument("--binary", metavar="PATH", default=s,
                        help="local mode: run this causalkv binary instead of building one (also: env CAUSALKV_BIN)")
    parser.add_argument("--base-port", type=int, metavar="PORT", default=s,
                        help=f"port of the first replica; the next ones follow (default {DEFAULT_BASE_PORT}; host ports in docker mode)")
    parser.add_argument("--subnet", metavar="CIDR", default=s,
                        help=f"docker mode: the network's subnet; replica i gets its address 1+i (default {SUBNET})")
    parser.add_argument("--no-build", action="store_true", default=s,
                        help="use the existing image / target/release/causalkv as is")
    parser.add_argument("--image", metavar="NAME", default=s,
                        help=f"docker mode: run the image NAME as is (built or imported beforehand) instead of building {IMAGE}")
    parser.add_argument("--timeout", type=float, metavar="SECONDS", default=s,
                        help=f"how long to wait for the replicas to come up (default {DEFAULT_TIMEOUT:g})")
    parser.add_argument("--dry-run", action="store_true", default=s,
                        help="print the commands start would run, run nothing")
    parser.add_argument("--durability", choices=DURABILITY_MODES, default=s,
                        help="DURABILITY of every replica: fsync (a write is answered once on disk) or os "
                             "(once handed to the OS); unset: the replica's default (fsync); not with --shards")
    parser.add_argument("--shards", type=int, metavar="N", default=s,
                        help="start a sharded store: SHARD_COUNT=N on every replica (-n must be at least 2*N); "
                             f"host ports count up from --base-port skipping {SHARDED_SKIPPED_PORT} (8082-8084, "
                             "8086-8088 for six). NOT DURABLE: sharded replicas keep their state in memory only "
                             "(no data directory, no volume, no DURABILITY)")


def build_parser():
    description, _, rest = __doc__.partition("\n\n")
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=description.strip(),
        epilog=rest.strip("\n"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common(parser, top=True)
    add_start_options(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands (default: start)")

    p = sub.add_parser("start", help="start a store (if none is running) and print how to reach it", description="Start a store (if none is running) and print how to reach it.")
    add_common(p, top=False)
    add_start_options(p)

    p = sub.add_parser("status", help="each replica: name, address, up/down, ready, key count, data, view; the tables", description="Each replica: name, address, up/down, whether it is ready (GET /ready), its key count, where its data lives and its view; then the store's tables (name, siblings, key count) as a ready replica tells them.")
    add_common(p, top=False)

    p = sub.add_parser(
        "add", help="start one more replica; it joins the store and copies its state",
        description="Start one more replica; it joins the store and copies its state. In a sharded store it is "
                    "started without SHARD_COUNT, placed with add-member in the shard with the fewest members "
                    "(or --shard ID), and copies that shard's state.",
    )
    add_common(p, top=False)
    p.add_argument("--shard", type=int, metavar="ID", default=argparse.SUPPRESS,
                   help="sharded store: the shard to place it in (default: the one with the fewest members)")
    p.add_argument("--port", type=int, metavar="PORT", default=argparse.SUPPRESS,
                   help="its port (host port in docker mode); default: the next after the base port")
    p.add_argument("--timeout", type=float, metavar="SECONDS", default=argparse.SUPPRESS,
                   help=f"how long to wait for it to come up (default {DEFAULT_TIMEOUT:g})")

    p = sub.add_parser("remove", help="remove replica NAME from the view (DELETE at another member), stop it, delete its data", description="Remove replica NAME from the view (DELETE at another member), then stop it and delete its data.")
    add_common(p, top=False)
    p.add_argument("name", metavar="NAME", help="e.g. causalkv-replica2 (or replica2, 2, or its address)")
    p.add_argument("--grace", type=float, metavar="SECONDS", default=argparse.SUPPRESS,
                   help=f"time between SIGTERM and SIGKILL (default: HANDOVER_TIMEOUT_MS + {NODE_DRAIN_SECS:g} s, {default_grace():g} s unless set)")

    grace_help = f"time between SIGTERM and SIGKILL (default: HANDOVER_TIMEOUT_MS + {NODE_DRAIN_SECS:g} s, {default_grace():g} s unless set)"
    p = sub.add_parser(
        "restart", help="stop replica NAME gracefully, then start it again (same address, port and data)",
        description="Stop replica NAME gracefully (if it runs), then start it again with the same address, port and "
                    "data, and wait until it is ready. Also brings back a replica that `kill` stopped or that crashed.",
    )
    add_common(p, top=False)
    p.add_argument("name", metavar="NAME", help="e.g. causalkv-replica2 (or replica2, 2, or its address)")
    p.add_argument("--grace", type=float, metavar="SECONDS", default=argparse.SUPPRESS, help=grace_help)
    p.add_argument("--timeout", type=float, metavar="SECONDS", default=argparse.SUPPRESS,
                   help=f"how long to wait for it to come up (default {DEFAULT_TIMEOUT:g})")

    p = sub.add_parser(
        "kill", help="SIGKILL replica NAME (docker kill), as a crash would; its data is kept",
        description="Kill replica NAME at once (SIGKILL; docker mode: docker kill), as a crash would. It is not started "
                    "again: `status` shows it down until `restart NAME`. Its data is kept.",
    )
    add_common(p, top=False)
    p.add_argument("name", metavar="NAME", help="e.g. causalkv-replica2 (or replica2, 2, or its address)")

    p = sub.add_parser("logs", help="print the log of replica NAME", description="Print the log of replica NAME.")
    add_common(p, top=False)
    p.add_argument("name", metavar="NAME", help="e.g. causalkv-replica1 (or replica1, 1, or its address)")
    p.add_argument("--tail", type=int, metavar="N", default=argparse.SUPPRESS, help="only the last N lines")
    p.add_argument("-f", "--follow", action="store_true", default=argparse.SUPPRESS, help="keep printing new lines")

    p = sub.add_parser(
        "stop", help="stop every replica this state directory started (and remove the network); their data is kept",
        description="Stop every replica this state directory started (and remove the network). Their data is kept: "
                    "the next start brings it back. With --purge, delete it too.",
    )
    add_common(p, top=False)
    p.add_argument("--grace", type=float, metavar="SECONDS", default=argparse.SUPPRESS, help=grace_help)
    p.add_argument("--purge", action="store_true", default=argparse.SUPPRESS,
                   help=f"also delete every replica's data for good: the directories under {DATA_DIR_NAME}/ of the "
                        f"state directory and the docker volumes made for the replicas ({VOLUME_PREFIX}...); "
                        "also when no store is running")
    return parser


COMMANDS = {
    "start": cmd_start,
    "status": cmd_status,
    "add": cmd_add,
    "remove": cmd_remove,
    "restart": cmd_restart,
    "kill": cmd_kill,
    "logs": cmd_logs,
    "stop": cmd_stop,
}


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    command = args.command or "start"
    if command != "start":
        stray = [o for o in START_OPTIONS if hasattr(args, o)]
        if stray:
            parser.error(f"--{stray[0].replace('_', '-')} only applies to start")
    state = State(getattr(args, "state_dir", None) or DEFAULT_STATE_DIR)
    try:
        return COMMANDS[command](args, state)
    except Fail as e:
        print(f"{PROG}: error: {e.message}", file=sys.stderr, flush=True)
        for line in e.details or []:
            print(f"    {line}", file=sys.stderr)
        sys.stderr.flush()
        return e.code
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
