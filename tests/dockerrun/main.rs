//! Tests of `dockerRun.py` and of the container files in `docker/`.
//!
//! The script runs end to end in local mode against the binary cargo built
//! for the tests (`--binary`), with its state in a temporary directory and
//! its replicas on free loopback ports: start, write and read across
//! replicas, add, remove, status, logs, a second start, stop, and that no
//! process it started is left. A stand-in replica whose readiness the test
//! switches shows that a replica counts as up only once `GET /ready` says
//! so (or, for a build without `/ready`, once `/health` says synced), and
//! that `status` shows readiness as it changes; the same stand-in's
//! `GET /tables` shows that `status` lists the store's tables, and stays
//! as it was for a build without them. Its error paths (a taken
//! port, an unknown replica, missing tools, a replica that does not come
//! up) must fail with a clear message and a documented exit code. Docker mode cannot run
//! without a Docker engine; its commands are checked through `--dry-run`, and
//! end to end against a stand-in `docker` that records every command and
//! runs stand-in replicas.
//!
//! Every replica's data (a directory under the state directory, or a docker
//! volume) is checked too: kept by `stop`, found again by `start` and
//! `restart`, deleted by `stop --purge`. The tests that need the node to
//! keep its state in DATA_DIR (keys and identities back after stop and
//! start, or kill and restart) say so when they fail.
//!
//! The Dockerfile, docker-compose.yml and the Kubernetes manifests are
//! checked line by line, and structurally: parsed as YAML by Python's
//! `yaml` module, which the tests install (PyYAML) if it is missing, and
//! fail if they cannot.
//!
//! Sharded stores (`--shards N`) run end to end in local mode too: the
//! layout of the replicas in shards, `status`'s shards, `add` placing a
//! replica in a shard, `restart`, `remove`, and that no replica gets a data
//! directory (sharded replicas keep their state in memory); the family's
//! six-node docker layout is checked through `--dry-run`.
//!
//! Every wait polls with a deadline; nothing sleeps to synchronise.

mod cli;
mod dockerfile;
mod dockermode;
mod durable;
mod failures;
mod lifecycle;
mod manifests;
mod readiness;
mod script;
mod shards;
mod store;
mod support;
mod tables;

use std::path::PathBuf;
use std::time::Duration;

/// Deadline for anything the cluster must get done (start-up, joins, views).
pub(crate) const DEADLINE: Duration = Duration::from_secs(60);

/// Deadline for one run of the script.
pub(crate) const SCRIPT_DEADLINE: Duration = Duration::from_secs(180);

/// How often waits poll.
pub(crate) const POLL: Duration = Duration::from_millis(100);

/// Exit codes documented in dockerRun.py.
pub(crate) const EXIT_FAIL: i32 = 1;
pub(crate) const EXIT_USAGE: i32 = 2;
pub(crate) const EXIT_MISSING_TOOL: i32 = 3;
pub(crate) const EXIT_PORT_IN_USE: i32 = 4;
pub(crate) const EXIT_NOT_RUNNING: i32 = 5;

pub(crate) fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub(crate) fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_causalkv")
}
