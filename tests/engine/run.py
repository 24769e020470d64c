#!/usr/bin/env python3
"""The docker mode for real: a Docker engine, causalkv's image, dockerRun.py
and the compose file, end to end.

    python3 tests/engine/run.py            # as .ci/run calls it (needs root)

What it does, in order:

1. Installs what is missing (Debian's docker.io, debootstrap, docker-compose)
   and starts a private dockerd: its own data root, exec root, socket and
   pid file under a temporary directory, the vfs storage driver. Every
   docker command below goes to that daemon (DOCKER_HOST). At the end it
   stops exactly that daemon and puts back the iptables rules it found.
   If the daemon cannot start, the step is skipped with a loud banner
   saying why (the only reason it may be skipped).
2. Makes the base image without pulling: no image registry is reachable,
   so `debian:bookworm-slim` is a Debian root file system made with
   `debootstrap --variant=minbase bookworm` (kept in a cache directory for
   the next run) and loaded with `docker import`.
3. dockerRun.py's docker mode as a user runs it: `python3 dockerRun.py
   --mode docker` builds the image from docker/Dockerfile. Its build stage
   needs the official Rust image, which is not here: dockerRun.py then
   builds the binary on this host and the image from the Dockerfile's
   runtime stage, for real (apt-get inside the build, the unprivileged
   user, /data, HEALTHCHECK, ENTRYPOINT); the step checks it took that
   path and says loudly that the build stage did not run (where
   `rust:1-slim-bookworm` exists locally, the whole Dockerfile is built).
4. On that image: start, a write and a causal read at another replica
   through the published ports, `status` (every container's HEALTHCHECK
   healthy), `add` (a fourth container joins and copies the state),
   `docker stop` of one replica and `docker start` (the view follows, its
   data is there), `remove`, `stop` then start again with `--image` (the
   data is kept), then `stop --purge` (no container, network or volume of
   it left).
5. The kevinDB workflow by hand: `docker stop` and `docker rm` of a
   replica, `docker run` of a new one at a new address: the view follows
   and the new container gets a copy of the data.
6. The compose file with the compose this machine can install (Debian's
   docker-compose 1.29, which predates the top-level `name:` of Compose v2:
   the file is run without that line, under the same project name; the
   schema check of tests/manifests/validate.py covers the line).

Exit status 0 when every check passed (or the engine could not start: the
skip), 1 when a check failed.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("CAUSALKV_CI_CACHE", "/var/cache/causalkv-ci"))
IMAGE = "causalkv:latest"
NETWORK = "causalkv-net"
VOLUME_PREFIX = "causalkv-data-"
# The replicas' host ports (dockerRun.py's defaults) and addresses.
PORTS = {1: 8082, 2: 8083, 3: 8084, 4: 8085}
ADDRESS = {i: f"10.10.0.{1 + i}:8085" for i in range(1, 7)}

sys.path.insert(0, str(REPO))
import dockerRun  # noqa: E402  (its names for the images, and the runtime stage)

BASE_IMAGE = dockerRun.RUNTIME_IMAGE
BUILDER_IMAGE = dockerRun.BUILDER_IMAGE


class Failed(Exception):
    pass


class Skip(Exception):
    pass


def say(*lines):
    for line in lines:
        print(line, flush=True)


def banner(*lines):
    bar = "!" * 78
    say(bar, *(f"!!! {line}" for line in lines), bar)


def run(*args, check=True, env=None, timeout=600, capture=True, input=None, cwd=None):
    """Runs a command; its output when `capture`."""
    result = subprocess.run(
        list(args), env=env, timeout=timeout, text=True, input=input, cwd=cwd,
        stdout=subprocess.PIPE if capture else None, stderr=subprocess.STDOUT if capture else None,
    )
    if check and result.returncode != 0:
        out = (result.stdout or "").strip()
        raise Failed(f"`{' '.join(args)}` exited with {result.returncode}" + (f":\n{out}" if out else ""))
    return result


def eventually(what, probe, timeout=60.0, every=0.5):
    """Polls `probe` until it returns something true; returns it."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = probe()
            if last:
                return last
        except (OSError, ValueError):
            last = None  # not answering yet
        except Failed as e:
            last = e
        time.sleep(every)
    raise Failed(f"{what}: not within {timeout:g}s (last: {last!r})")


# ----- HTTP ------------------------------------------------------------------


def request(method, port, path, body=None, timeout=10):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=data, method=method,
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        text = e.read()
        try:
            return e.code, json.loads(text)
        except ValueError:
            return e.code, text.decode(errors="replace")


def put(port, key, value, context=""):
    status, body = request("PUT", port, f"/key-value-store/{key}", {"value": value, "causal-metadata": context})
    if status not in (200, 201):
        raise Failed(f"PUT {key} at {port}: {status} {body}")
    return body["causal-metadata"]


def read(port, key, context=""):
    status, body = request("GET", port, f"/key-value-store/{key}", {"causal-metadata": context})
    if status != 200:
        raise Failed(f"GET {key} at {port}: {status} {body}")
    return body["value"]


def view(port):
    status, body = request("GET", port, "/key-value-store-view", timeout=5)
    if status != 200:
        raise Failed(f"GET view at {port}: {status} {body}")
    return set(filter(None, body["view"].split(",")))


def expect(what, got, wanted):
    if got != wanted:
        raise Failed(f"{what}: got {got!r}, wanted {wanted!r}")
    say(f"  ok: {what}")


# ----- the engine ------------------------------------------------------------


def install_missing():
    wanted = {"dockerd": "docker.io", "debootstrap": "debootstrap", "docker-compose": "docker-compose"}
    missing = sorted({package for tool, package in wanted.items() if shutil.which(tool) is None})
    if not missing:
        return
    if os.geteuid() != 0:
        raise Skip(f"{', '.join(missing)} missing and not root to install them")
    say(f"Installing {' '.join(missing)} (apt-get) ...")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        run("apt-get", "update", "-qq", env=env)
        run("apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing, env=env)
    except Failed as e:
        if shutil.which("dockerd") is None:
            raise Skip(f"cannot install docker.io: {e}")
        raise


class Engine:
    """A dockerd of our own, stopped by `stop`."""

    def __init__(self, root):
        self.root = root
        self.socket = root / "docker.sock"
        self.log = root / "dockerd.log"
        self.proc = None
        self.iptables = None
        self.had_docker0 = True
        self.env = dict(os.environ, DOCKER_HOST=f"unix://{self.socket}")

    def start(self):
        if os.geteuid() != 0:
            raise Skip("dockerd needs root")
        if shutil.which("iptables-save"):
            self.iptables = run("iptables-save", check=False).stdout
        self.had_docker0 = Path("/sys/class/net/docker0").exists()
        args = [
            "dockerd",
            "--data-root", str(self.root / "data"),
            "--exec-root", str(self.root / "exec"),
            "--pidfile", str(self.root / "dockerd.pid"),
            "--host", f"unix://{self.socket}",
            "--storage-driver", "vfs",
        ]
        say("+ " + " ".join(args) + " &")
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise Skip(f"dockerd exited with {self.proc.returncode}: {self.log_tail()}")
            if self.docker("info", "--format", "{{.ServerVersion}}", check=False).returncode == 0:
                version = self.docker("version", "--format", "{{.Server.Version}}", check=False).stdout.strip()
                say(f"dockerd {version} is up (pid {self.proc.pid}, socket {self.socket})")
                return
            time.sleep(0.5)
        raise Skip(f"dockerd did not answer within 60s: {self.log_tail()}")

    def log_tail(self, n=15):
        try:
            return " | ".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def docker(self, *args, check=True, timeout=600, capture=True, env=None):
        return run("docker", *args, check=check, env={**self.env, **(env or {})}, timeout=timeout, capture=capture)

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        say(f"Stopping dockerd (pid {self.proc.pid}) ...")
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        # dockerd leaves its chains, the FORWARD policy DROP and docker0.
        if self.iptables is not None:
            run("iptables-restore", input=restorable(self.iptables), check=False)
        if not self.had_docker0:
            run("ip", "link", "delete", "docker0", check=False)

    def has_image(self, name):
        return self.docker("image", "inspect", name, check=False).returncode == 0


# The built-in chains of the tables dockerd writes to.
EMPTY_TABLES = {
    "filter": ["INPUT", "FORWARD", "OUTPUT"],
    "nat": ["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"],
}


def restorable(saved):
    """`saved` (iptables-save's output) with the tables dockerd writes to
    added, empty, where they were not there: restoring it puts back every
    rule, chain and policy as it was."""
    text = saved if saved.endswith("\n") or not saved else saved + "\n"
    for table, chains in EMPTY_TABLES.items():
        if f"*{table}\n" not in text:
            text += f"*{table}\n" + "".join(f":{c} ACCEPT [0:0]\n" for c in chains) + "COMMIT\n"
    return text


# ----- images ----------------------------------------------------------------


def base_image(engine):
    """debian:bookworm-slim from a debootstrapped root file system."""
    if engine.has_image(BASE_IMAGE):
        say(f"{BASE_IMAGE} is here already")
        return
    tarball = CACHE / "bookworm-minbase.tar"
    if not tarball.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        rootfs = Path(tempfile.mkdtemp(prefix="bookworm-", dir=CACHE))
        say(f"debootstrap --variant=minbase bookworm (for {BASE_IMAGE}) ...")
        try:
            run("debootstrap", "--variant=minbase", "bookworm", str(rootfs), "http://deb.debian.org/debian", timeout=900)
            # The image's / (mkdtemp made it private).
            rootfs.chmod(0o755)
            partial = tarball.with_suffix(".partial")
            run("tar", "-C", str(rootfs), "-cf", str(partial), ".")
            partial.rename(tarball)
        finally:
            shutil.rmtree(rootfs, ignore_errors=True)
    say(f"docker import {tarball.name} {BASE_IMAGE}")
    with open(tarball, "rb") as f:
        result = subprocess.run(["docker", "import", "-", BASE_IMAGE], stdin=f, env=engine.env,
                                capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise Failed(f"docker import: {result.stderr.strip()}")


# ----- dockerRun.py ----------------------------------------------------------


class DockerRun:
    def __init__(self, engine, state_dir):
        self.engine = engine
        self.state_dir = state_dir

    def __call__(self, *args, check=True, timeout=900, env=None):
        cmd = [sys.executable, str(REPO / "dockerRun.py"), "--state-dir", str(self.state_dir), *args]
        say("+ dockerRun.py " + " ".join(args))
        result = run(*cmd, check=False, env={**self.engine.env, **(env or {})}, timeout=timeout)
        out = self.last = result.stdout or ""
        for line in out.splitlines():
            say("    " + line)
        if check and result.returncode != 0:
            raise Failed(f"dockerRun.py {' '.join(args)} exited with {result.returncode}")
        return result.returncode, out


def containers(engine, prefix="causalkv"):
    out = engine.docker("ps", "--all", "--format", "{{.Names}}").stdout.split()
    return sorted(n for n in out if n.startswith(prefix))


def health(engine, name):
    return engine.docker("inspect", "--format", "{{if .State.Health}}{{.State.Health.Status}}{{end}}", name).stdout.strip()


def volumes(engine):
    return sorted(v for v in engine.docker("volume", "ls", "--format", "{{.Name}}").stdout.split()
                  if v.startswith(VOLUME_PREFIX))


def has_network(engine):
    return engine.docker("network", "inspect", NETWORK, check=False).returncode == 0


def docker_mode(engine, work):
    dr = DockerRun(engine, work / "state")
    say("", "== dockerRun.py --mode docker (it builds the image)")
    builder_here = engine.has_image(BUILDER_IMAGE)
    _, out = dr("--mode", "docker")
    fell_back = "Building the binary on this host instead" in out
    if builder_here:
        expect("the whole Dockerfile built (build stage included)", fell_back, False)
    else:
        expect(f"no {BUILDER_IMAGE}: the image built from the runtime stage and the host's binary", fell_back, True)
        banner(f"The build stage of docker/Dockerfile did not run: it needs {BUILDER_IMAGE}, which is",
               "not in this engine and cannot be pulled (no image registry is reachable). Its runtime",
               f"stage was built for real around the host's binary. Load {BUILDER_IMAGE} to build it all.")
    config = engine.docker("image", "inspect", "--format", "{{.Config.User}} {{json .Config.Healthcheck.Test}}", IMAGE).stdout
    expect("the image runs as the unprivileged user with a HEALTHCHECK",
           (config.split()[0], "/health" in config), ("10001:10001", True))
    names = [f"causalkv-replica{i}" for i in (1, 2, 3)]
    expect("three containers", containers(engine), names)

    context = put(PORTS[1], "k1", "v1")
    expect("causal read of k1 at replica2 with the PUT's context", read(PORTS[2], "k1", context), "v1")
    context = put(PORTS[3], "k2", "v2", context)

    eventually("every container healthy (its HEALTHCHECK)",
               lambda: all(health(engine, n) == "healthy" for n in names), timeout=90, every=1)
    code, out = dr("status")
    expect("status exits 0", code, 0)
    expect("status shows every container healthy", out.count(" healthy "), 3)

    say("", "== add: a fourth container joins and copies the state")
    dr("add")
    expect("k1 at the new replica", read(PORTS[4], "k1", context), "v1")
    eventually("replica1's view lists the new replica", lambda: ADDRESS[4] in view(PORTS[1]), timeout=30)
    say("  ok: replica1's view lists the new replica")

    say("", "== docker stop of replica2, then docker start")
    engine.docker("stop", "--time", "20", "causalkv-replica2", timeout=120)
    eventually("replica1's view drops replica2", lambda: ADDRESS[2] not in view(PORTS[1]), timeout=30)
    say("  ok: replica1's view drops replica2")
    context = put(PORTS[1], "k3", "v3", context)
    engine.docker("start", "causalkv-replica2")
    eventually("replica1's view lists replica2 again", lambda: ADDRESS[2] in view(PORTS[1]), timeout=60)
    say("  ok: replica1's view lists replica2 again")
    expect("k1 at replica2 after its restart (its data)",
           eventually("replica2 answers", lambda: read(PORTS[2], "k1", context), timeout=60), "v1")
    expect("k3, written while it was down, at replica2", read(PORTS[2], "k3", context), "v3")

    say("", "== remove replica4")
    dr("remove", "causalkv-replica4")
    expect("containers after remove", containers(engine), names)
    eventually("replica1's view drops replica4", lambda: ADDRESS[4] not in view(PORTS[1]), timeout=30)
    say("  ok: replica1's view drops replica4")

    say("", "== stop, then start again: the data is kept")
    dr("stop")
    expect("no container after stop", containers(engine), [])
    expect("the volumes are kept", volumes(engine), [f"{VOLUME_PREFIX}replica{i}" for i in (1, 2, 3)])
    dr("--mode", "docker", "--image", IMAGE)
    expect("--image: nothing built", "Building the image" in dr.last, False)
    expect("k2 at replica1 after the restart, from its volume", read(PORTS[1], "k2", context), "v2")
    expect("k3 at replica3 after the restart, from its volume", read(PORTS[3], "k3", context), "v3")

    kevindb_workflow(engine, context)

    say("", "== stop --purge: nothing left")
    dr("stop", "--purge")
    expect("containers", containers(engine), [])
    expect("network causalkv-net gone", not has_network(engine), True)
    expect("volumes", volumes(engine), [])


def kevindb_workflow(engine, context):
    """docker stop / rm / run by hand, as the kevinDB assignment does."""
    say("", "== by hand: docker stop and rm of replica3, docker run of a new replica")
    engine.docker("stop", "--time", "20", "causalkv-replica3", timeout=120)
    engine.docker("rm", "causalkv-replica3")
    eventually("replica1's view drops replica3", lambda: ADDRESS[3] not in view(PORTS[1]), timeout=30)
    say("  ok: replica1's view drops replica3")
    new_view = ",".join(ADDRESS[i] for i in (1, 2, 5))
    engine.docker(
        "run", "--detach", "--name", "causalkv-byhand", "--network", NETWORK, "--ip", ADDRESS[5].split(":")[0],
        "--publish", "127.0.0.1:8086:8085",
        "--env", f"SOCKET_ADDRESS={ADDRESS[5]}", "--env", f"VIEW={new_view}", IMAGE,
    )
    try:
        expect("k1 at the new container (a copy of the data)",
               eventually("the new container answers", lambda: read(8086, "k1", context), timeout=60), "v1")
        eventually("replica1's view lists the new container", lambda: ADDRESS[5] in view(PORTS[1]), timeout=30)
        say("  ok: replica1's view lists the new container")
        expect("the new container's view", view(8086), {ADDRESS[1], ADDRESS[2], ADDRESS[5]})
    finally:
        engine.docker("rm", "--force", "causalkv-byhand", check=False)


# ----- compose ---------------------------------------------------------------


def compose(engine, work):
    say("", "== docker/docker-compose.yml")
    tool = shutil.which("docker-compose")
    if tool is None:
        banner("SKIPPED: no compose implementation could be installed; tests/manifests/validate.py",
               "checks the compose file against the Compose Specification schema instead")
        return
    version = run(tool, "version", "--short", check=False).stdout.strip()
    text = (REPO / "docker" / "docker-compose.yml").read_text()
    lines = text.splitlines(keepends=True)
    names = [line for line in lines if line.startswith("name:")]
    if len(names) != 1:
        raise Failed("docker/docker-compose.yml: no top-level `name:` line")
    project = names[0].split(":", 1)[1].strip()
    # Outside the repository; relative paths in it are the docker/ folder's
    # (--project-directory), as the README shows for Compose v1.
    file = work / "compose.yml"
    if version.startswith("1."):
        say(f"docker-compose {version} predates Compose v2's top-level `name:`: run without it, as project {project}")
        file.write_text("".join(line for line in lines if not line.startswith("name:")))
    else:
        file.write_text(text)
    base = [tool, "--project-name", project, "--project-directory", str(REPO / "docker"), "--file", str(file)]
    try:
        run(*base, "up", "--detach", "--no-build", env=engine.env, timeout=300)
        for port in (8082, 8083, 8084):
            eventually(f"the replica on {port} ready",
                       lambda port=port: request("GET", port, "/ready", timeout=3)[0] == 200, timeout=60)
        context = put(8082, "ck", "compose")
        expect("causal read at replica3 (compose)", read(8084, "ck", context), "compose")
        eventually("every compose replica healthy",
                   lambda: all(health(engine, f"causalkv-replica{i}") == "healthy" for i in (1, 2, 3)),
                   timeout=90, every=1)
        say("  ok: every compose replica healthy")
        run(*base, "down", env=engine.env, timeout=300)
        expect("volumes kept by down", len([v for v in engine.docker("volume", "ls", "--format", "{{.Name}}").stdout.split()
                                            if v.startswith(f"{project}_replica")]), 3)
        run(*base, "up", "--detach", "--no-build", env=engine.env, timeout=300)
        expect("ck after down and up (volumes)",
               eventually("replica2 answers", lambda: read(8083, "ck", context), timeout=60), "compose")
    finally:
        run(*base, "down", "--volumes", env=engine.env, timeout=300, check=False)
        file.unlink(missing_ok=True)
    left = [v for v in engine.docker("volume", "ls", "--format", "{{.Name}}").stdout.split() if v.startswith(project)]
    expect("nothing of the compose project left", (containers(engine), left), ([], []))


def main():
    work = Path(tempfile.mkdtemp(prefix="causalkv-engine-"))
    engine = Engine(work)
    started = time.monotonic()
    try:
        try:
            install_missing()
            engine.start()
        except Skip as why:
            banner("THE DOCKER ENGINE STEP IS SKIPPED: dockerd cannot start here.", str(why),
                   "Nothing of the docker mode, the image or compose was run.")
            return 0
        base_image(engine)
        docker_mode(engine, work)
        compose(engine, work)
    except Failed as e:
        say("", f"FAILED: {e}")
        say(f"dockerd log: {engine.log_tail(30)}")
        DockerRun(engine, work / "state")("stop", "--purge", check=False)
        return 1
    finally:
        engine.stop()
        shutil.rmtree(work, ignore_errors=True)
    say("", f"docker engine: every check passed in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
