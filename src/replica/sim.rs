//! A deterministic simulated cluster: the protocol under an adversarial
//! network, checked after every input.
//!
//! [`Sim`] drives N [`Replica`] state machines (`10.0.0.1:8085`, ...) with a
//! simulated clock (milliseconds, advanced by [`STEP`], every live replica
//! ticked each step) and a network whose every choice comes from one seeded
//! PRNG, so a failing seed (named by `for_seeds`, `sim/seeds.rs`)
//! replays exactly. It
//! models:
//!
//! - **One-shot requests** ([`Effect::Send`]): each arrives after a random
//!   latency (so in any order), sometimes seconds late, sometimes twice (the
//!   copy's reply is discarded). A request or reply that is dropped, crosses
//!   a partition or meets a crashed replica makes the sender see
//!   `on_reply(.., Err(..))` after a timeout.
//! - **Replication queues** ([`Effect::Replicate`]) as `transport.rs` keeps
//!   them: one ordered queue per (sender, peer) with one batch (a prefix of
//!   random length) in flight, popped only on an `Ack`, else retried after
//!   an exponential backoff, so a lost ack means a duplicate.
//!   [`Effect::DropQueue`] discards a queue; its batch's reply is ignored.
//! - **Partitions** into groups (cut both ways) and heal; **crashes**, which
//!   lose a replica's state, queues and pending replies; **restarts** as a
//!   new incarnation at the same address.
//! - **Client sessions** that hop between replicas, pass back the
//!   `causal-metadata` JSON of their last reply, and, when a replica lacks
//!   their context, call `catch_up` and retry as the network runs (after
//!   10 s they give up, like the 503, and start afresh).
//!
//! After every input to a replica the harness audits it: what it has
//! applied (its clock and retired incarnations) counts only issued writes,
//! each with all its dependencies; its store holds, for each key, an issued
//! version at least as new as the winner among the writes applied (a copy
//! in pages may bring newer ones early; an older tombstone may stand where
//! a newer one was forgotten), and never loses a live winner (a tombstone
//! may be forgotten). While a copy is being merged the store is
//! not audited. Every client read must return a version no older, in the
//! key's order, than one its session wrote or read before (read-your-
//! writes, monotonic reads), and no deleted value its session saw deleted.
//! [`Sim::settle`] heals, restarts and runs until every replica holds the
//! same store, knowledge and view (a write that waits for one lost in a
//! crash stays buffered, as it must), then checks that every write of an
//! incarnation that never crashed is applied everywhere.
//!
//! A failing test prints the last steps of the simulation, each replica's
//! state and the command that replays its seed (`sim/report.rs`).
//!
//! What lives where (under `sim/`): `cluster.rs` the simulated cluster and
//! its steps; `rng.rs` the seeded generator and the network's faults;
//! `net.rs` the network and the replication queues; `session.rs` and
//! `client.rs` the clients and their checks; `audit.rs` the invariants;
//! `trace.rs` the steps recorded and `report.rs` what a failing test
//! prints; `chaos.rs` random faults over a long life; `seeds.rs` runs a
//! test over many seeds; `script.rs` the scripted scenarios
//! (`scripts/*.txt`).

mod audit;
mod chaos;
mod client;
mod cluster;
mod disk;
mod net;
mod report;
mod rng;
mod script;
mod seeds;
mod session;
mod trace;

pub(super) use cluster::{key, sim_timing, Sim};
pub(super) use rng::{Faults, CALM, LOSSY, ROUGH};
pub(super) use seeds::for_seeds;
pub(super) use session::{Op, Session};
pub(super) use trace::trace;
