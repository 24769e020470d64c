"""Building causalkv and the HTTP ceiling with cargo, from the working tree
or from a git revision (--rev), and copying the binaries aside for the run."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from .base import ROOT, ToolError, log, note_command


def checkout(rev, tmp):
    """The sources of git revision `rev` in a temp dir (git archive: the
    repository is not touched), with the current examples/http_ceiling.rs."""
    src = Path(tmp) / "src-tree"
    src.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", rev],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if archive.returncode != 0:
        raise ToolError(f"git archive {rev}: {archive.stderr.decode().strip()}")
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive.stdout, check=True)
    (src / "examples").mkdir(exist_ok=True)
    shutil.copy2(ROOT / "examples" / "http_ceiling.rs", src / "examples" / "http_ceiling.rs")
    return src


def build(notes, dest, src=None):
    argv = ["cargo", "build", "--release", "--bin", "causalkv", "--example", "http_ceiling"]
    env = dict(os.environ)
    if src is None:
        src = ROOT
        target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
        if not target.is_absolute():
            target = ROOT / target
    else:
        # its own target dir (kept, so that the next --rev build is
        # incremental), never the tree's: target/release/causalkv stays the
        # tree's own build
        target = ROOT / "target" / "bench-rev"
        env["CARGO_TARGET_DIR"] = str(target)
    note_command("build", argv)
    log(f"building in {src}: " + " ".join(argv))
    r = subprocess.run(argv, cwd=src, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       env=env)
    if r.returncode != 0:
        sys.stderr.write(r.stdout[-5000:])
        raise ToolError("cargo build failed")
    binary = target / "release" / "causalkv"
    ceiling = target / "release" / "examples" / "http_ceiling"
    for b in (binary, ceiling):
        if not b.exists():
            raise ToolError(f"{b} missing after the build")
    # Run copies: a later cargo build in the same tree (someone working on
    # the node meanwhile) must not change the binary in the middle of a run.
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    copies = []
    for b in (binary, ceiling):
        shutil.copy2(b, dest / b.name)
        copies.append(dest / b.name)
    return copies[0], copies[1]


# ---------------------------------------------------------- load generation
