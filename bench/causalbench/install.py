"""Installing what a run lacks: the tools (wrk, etcd, Redis) with apt-get,
and the Python libraries (redis-py, matplotlib) with apt-get or, where the
Debian package cannot serve this interpreter, with pip. What cannot be
installed is named in the notes of the report; the part that needs it is
skipped, nothing stops the run."""

import importlib
import os
import shutil
import site
import sys
from pathlib import Path

from .base import log, run

# Tools the full run uses: binary -> Debian package.
TOOLS = {
    "wrk": "wrk",
    "etcd": "etcd-server",
    "etcdctl": "etcd-client",
    "redis-server": "redis-server",
    "redis-benchmark": "redis-tools",
}

# Python libraries: module -> (Debian package, pip package).
MODULES = {
    "redis": ("python3-redis", "redis"),
    "matplotlib": ("python3-matplotlib", "matplotlib"),
}

# Where Debian's packages put Python modules: only Debian's interpreter reads it.
DEBIAN_MODULES = "/usr/lib/python3/dist-packages"


def can_apt():
    return os.geteuid() == 0 and shutil.which("apt-get") is not None


def apt_install(packages, notes):
    """apt-get install packages (all at once, else one by one); a failure
    is a note."""
    if not packages:
        return
    if not can_apt():
        notes.append(f"cannot install {', '.join(packages)}: not root or no apt-get")
        return
    log(f"installing {' '.join(packages)} with apt-get")
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    # Debian's packages start their services on install (a redis on 6379,
    # an etcd on 2379) unless policy-rc.d forbids it: forbid it for the
    # duration, so that the only servers are our own.
    policy = Path("/usr/sbin/policy-rc.d")
    made_policy = False
    if not policy.exists():
        try:
            policy.write_text("#!/bin/sh\nexit 101\n")
            policy.chmod(0o755)
            made_policy = True
        except OSError:
            pass
    try:
        run(["apt-get", "update", "-qq"], check=False, timeout=600, env=env)
        base = ["apt-get", "install", "-y", "-qq", "--no-install-recommends"]
        r = run(base + packages, check=False, timeout=900, env=env)
        if r.returncode != 0:
            for pkg in packages:  # one by one: install what can be
                r1 = run(base + [pkg], check=False, timeout=900, env=env)
                if r1.returncode != 0:
                    tail = (r1.stdout or "").strip().splitlines()[-1:]
                    notes.append(f"apt-get install {pkg} failed: {' '.join(tail)}")
    finally:
        if made_policy:
            policy.unlink()


def install_tools(binaries, notes):
    """apt-get install the Debian packages of the missing binaries; returns
    the set of binaries available afterwards."""
    missing = [b for b in binaries if not shutil.which(b)]
    apt_install(sorted({TOOLS[b] for b in missing}), notes)
    return {b for b in binaries if shutil.which(b)}


def importable(name):
    importlib.invalidate_caches()
    try:
        importlib.import_module(name)
        return True
    except ImportError:
        return False


def debian_python():
    """Whether this interpreter is Debian's, the one python3-* packages serve."""
    return DEBIAN_MODULES in sys.path


def pip_install(packages, notes):
    """pip install --user; the user site directory is then put on sys.path
    (Python adds it at start only if it existed then)."""
    argv = [sys.executable, "-m", "pip", "install", "--user", "--quiet",
            "--disable-pip-version-check", "--break-system-packages", *packages]
    log("installing " + " ".join(packages) + " with pip (--user)")
    try:
        r = run(argv, check=False, timeout=900)
        if r.returncode != 0 and "--break-system-packages" in (r.stdout or ""):
            # a pip older than 23.0.1 does not know the flag (nor needs it)
            r = run([a for a in argv if a != "--break-system-packages"], check=False, timeout=900)
    except OSError as e:
        notes.append(f"pip install {' '.join(packages)} failed: {e}")
        return
    if r.returncode != 0:
        tail = (r.stdout or "").strip().splitlines()[-1:]
        notes.append(f"pip install {' '.join(packages)} failed: {' '.join(tail)}")
    user_site = site.getusersitepackages()
    if os.path.isdir(user_site) and user_site not in sys.path:
        site.addsitedir(user_site)


def ensure_modules(names, notes, may_install=True):
    """Makes the Python modules `names` importable if it can: the Debian
    packages through apt-get when this is Debian's interpreter, else (or if
    that failed) pip. Returns the set of modules importable afterwards; each
    one missing is named in the notes."""
    missing = [n for n in names if not importable(n)]
    if missing and may_install:
        if debian_python() and can_apt():
            apt_install(sorted(MODULES[n][0] for n in missing), notes)
            missing = [n for n in missing if not importable(n)]
        elif missing:
            log(f"{sys.executable} is not Debian's python3 (it does not read "
                f"{DEBIAN_MODULES}): pip rather than apt-get for {', '.join(missing)}")
        if missing:
            pip_install(sorted(MODULES[n][1] for n in missing), notes)
            missing = [n for n in missing if not importable(n)]
    why = "could not be installed" if may_install else "is missing (--no-install)"
    for n in missing:
        notes.append(f"the Python module {n} ({MODULES[n][0]} or pip's {MODULES[n][1]}) {why}")
    return {n for n in names if n not in missing}
