//! Hostile clients at the HTTP edge: property-based fuzzing of bodies,
//! keys and causal metadata, truncated and oversized requests over raw
//! TCP, idle half-open connections, injected replica-to-replica messages
//! and forged contexts.
//!
//! Every answer must be a success, a 4xx whose body is JSON with an `error`
//! string (and `message` on the key-value and view routes), or, only for a
//! forged or unsatisfiable context, SPEC's 503. Never another 5xx, never a
//! hang (every request has a timeout), never a reset of a well-formed
//! request. After every batch the replica must still be up, still serve a
//! normal client promptly, and still hold exactly the keys and the view it
//! held before.
//!
//! The fuzzing tests drive proptest's `TestRunner` by hand (its macro does
//! not do async) with a fixed seed per batch, so a failure reproduces; the
//! cases talk to one cluster started once per test, over a small blocking
//! HTTP/1.1 client on `std::net::TcpStream` (`common::raw`) that sends the
//! request target and body bytes exactly as generated. Each test asserts its generators
//! reached every kind of answer it expects (successes, 400s, 404s, 503s).
//!
//! Requests that are not HTTP at all (garbage request lines, broken
//! chunked framing, heads over the HTTP layer's limits) are answered, if at
//! all, by the HTTP layer before the application sees them: for those only
//! "a 4xx or a close, never a 5xx, and the node is fine afterwards" is
//! required.
//!
//! Tests marked `#[ignore = "..."]` pin known contract violations
//! found here, with their minimal inputs first; the fuzzing tests leave
//! those input classes to them so that the rest stays green.

#[path = "../common/mod.rs"]
mod common;

mod answers;
mod bodies;
mod forged;
mod generators;
mod harness;
mod idle;
mod keys;
mod malformed;
mod metadata;
mod token;

use std::time::Duration;

/// `CAUSAL_WAIT_MS` of the fuzzing clusters: fuzzed contexts that happen
/// to be well-formed but unsatisfiable get their 503 quickly.
pub(crate) const FUZZ_WAIT_MS: u64 = 200;

/// Time allowed for one request of a fuzzing case (far above the causal
/// wait: a request that takes this long is a hang).
pub(crate) const CASE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a normal client may wait, whatever else is going on. Not a
/// latency target (a loaded machine may take a second or more to answer):
/// the point is that nothing hangs or starves it, and a hang lasts until a
/// request timeout ([`CASE_TIMEOUT`] and above).
pub(crate) const PROMPT: Duration = Duration::from_secs(5);

/// Fuzzing batches per test, and cases per batch; the replica is checked
/// after every batch.
pub(crate) const BATCHES: u32 = 4;
pub(crate) const CASES_PER_BATCH: u32 = 50;
