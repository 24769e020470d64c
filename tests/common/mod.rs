//! End-to-end test harness: real `causalkv` processes on 127.0.0.1.
//!
//! A [`TestCluster`] spawns replicas of the binary cargo built for the
//! tests, each on a free port, with its log captured to a file in a
//! temporary directory. Replicas can be killed (SIGKILL), restarted (a new
//! process at the same address), paused and resumed (SIGSTOP/SIGCONT), and
//! new ones added. Every wait polls with a deadline; nothing sleeps to
//! synchronize. Every child is killed when the cluster is dropped; if the
//! test is failing then, the log directory is kept and its path and the
//! tail of every log are printed.

#![allow(dead_code)]

use std::time::Duration;

mod cluster;
mod http;
mod options;
mod process;
pub mod raw;
mod requests;
mod waits;

// Not every test crate uses every helper.
#[allow(unused_imports)]
pub use cluster::{free_ports, TestCluster};
#[allow(unused_imports)]
pub use http::{encode, kv_path, request, request_with_timeout, Body, Reply};
#[allow(unused_imports)]
pub use options::Options;
#[allow(unused_imports)]
pub use process::durable_replicas;
#[allow(unused_imports)]
pub use requests::{health_count, suspects};
#[allow(unused_imports)]
pub use waits::{timed, wait_for, wait_until};

/// Generous deadline for anything a loaded 2-core machine must get done
/// (cluster formation, failure detection, convergence).
pub const DEADLINE: Duration = Duration::from_secs(40);

/// Deadline for things that should be quick (a replica starting).
pub const SHORT_DEADLINE: Duration = Duration::from_secs(20);

/// How often waits poll.
pub const POLL: Duration = Duration::from_millis(60);

/// Time allowed for one HTTP request made by the tests (above the
/// replicas' causal wait, so a 503 is seen rather than a client timeout).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Time allowed for one polling request (a paused replica must not stall
/// a wait for long).
pub const POLL_REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
