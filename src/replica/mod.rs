//! The replication protocol as a state machine: inputs in, effects out.
//!
//! A [`Replica`] owns one replica's state: its store, what it has applied
//! ([`Knowledge`](crate::causal::Knowledge)), its delivery buffer and its view. It never does I/O and
//! never reads the time. Inputs are client operations, requests from
//! peers, replies to its own requests, and `tick(now)`; outputs are
//! [`Effect`]s (queue a write for peers, send a request, drop a queue)
//! collected in an outbox that the caller drains. The HTTP server drives it
//! with real sockets and a real clock; the simulated cluster in the tests
//! drives it with a deterministic, adversarial network.
//!
//! # What lives where
//!
//! - `state.rs`: every field of a [`Replica`] and its read-only accessors.
//! - `timing.rs`: the clock ([`Millis`]) and the pace ([`Timing`]).
//! - `message.rs`: every replica-to-replica request and reply.
//! - `outputs.rs`: what the driver gets back: [`Effect`]s, client answers,
//!   [`Wait`] reasons, [`Stats`].
//! - `client.rs`: client reads and writes, and the pulls a waiting client
//!   asks for.
//! - `peers.rs`: requests from peers and replies to this replica's own;
//!   writes received, buffered and applied; anti-entropy (pulls, deltas).
//! - `tick.rs`: the passing of time: heartbeats, probes, failure detection.
//! - `view.rs` and `peer.rs`: who is a member, a suspect, evicted; what is
//!   known of each peer.
//! - `join.rs`: announcing a replica and deciding who copies whom.
//! - `transfer.rs`: copying another replica's state, a page at a time.
//! - `membership.rs`: operator and DNS view changes, stamped and relayed.
//! - `gc.rs` and `retire.rs`: forgetting tombstones and gone incarnations.
//! - `saved.rs`: what a replica with a disk keeps there, and its restore.
//! - `reshard.rs`: keys handed between shards when the store is resharded.
//! - `tables.rs`: tables for clients: created, dropped, listed; reads and
//!   writes of a table's keys, siblings included.
//! - Tests: `tests.rs` (single mechanisms), `sim*.rs` (the simulated
//!   cluster in `sim.rs` and `sim/`, its tests in `sim_tests.rs` and
//!   `sim_lifetime.rs` (the long life of a store), `sim_shards.rs` (two
//!   shards, contexts carried across, keys handed over),
//!   `sim_conditions.rs` (conditional writes), `sim_tables.rs` (tables and
//!   siblings under partitions), `sim_disk.rs` (crashes
//!   that keep the disk), readable scenarios in
//!   `sim/scripts/`), `regressions.rs` (interleavings once found wrong).
//!
//! # How a write travels
//!
//! A client write is applied locally, acknowledged, and queued once per
//! vetted member of the view ([`Effect::Replicate`]). Receivers hold it in
//! their [`DeliveryBuffer`](crate::causal::DeliveryBuffer) until it is deliverable (see [`crate::causal`]
//! for the rule and a worked example), then apply it through the store's
//! conflict rule. Queues retry until the peer acknowledges or leaves the
//! view, so a write is never dropped while its target is a member.
//!
//! Three mechanisms repair what queues cannot:
//!
//! - **Pull on demand.** A client request whose context names writes not
//!   applied here waits, and [`Replica::catch_up`] asks every live peer for
//!   what this replica lacks. Writes stuck in the buffer trigger the same.
//! - **Anti-entropy.** Heartbeats carry each replica's applied clock. When
//!   a peer reports writes this replica still lacks a moment later, it
//!   pulls them ([`Request::Pull`]): the peer sends every version made by a
//!   write this replica has not counted, plus its clock. This is how a
//!   replica that was cut off, or missed a queue that was dropped, catches
//!   up, in both directions.
//! - **State transfer.** A starting replica announces itself to every
//!   address of `VIEW` ([`Request::Join`]) and copies the whole state of the
//!   first member that holds one, a page at a time (`transfer.rs`).
//!
//! # Forgetting safely
//!
//! A replica forgets things for good: tombstones once every member and
//! suspect applied the delete (`gc.rs`), replicas silent for longer than
//! the suspect timeout, and the incarnations of replicas that are gone once
//! every member applied their writes (`retire.rs`). Each is decided among
//! the replicas it knows; one it had forgotten, evicted, or never seen may
//! still hold what was forgotten (an old value whose delete was collected,
//! writes of a retired incarnation it never got). Handing it writes or
//! deltas could resurrect the value or apply a write before the
//! dependencies it no longer names. So replicas exchange writes only once
//! they have *joined* each other and each holds everything the other
//! forgot (`join.rs`); otherwise the one that lacks it copies the other's
//! state first and merges it by a rule that drops what the other deleted
//! ([`crate::store`]'s merge).
//!
//! # Membership
//!
//! Heartbeats go to every member; a member silent for the failure timeout
//! becomes a suspect and leaves the view, its queue dropped. Suspects keep
//! being probed and the first reply readmits them; a suspect silent for the
//! suspect timeout is forgotten. The addresses of `VIEW` (and of
//! `VIEW_DNS`), and those an operator added and did not remove since, are
//! seeds: one that is not known is sent a join now and then, so that
//! replicas that forgot each other across a long partition find each other
//! again. An operator's view change is relayed to every member,
//! in order and retried until each acknowledges it (a change lost on the way
//! would leave the views different for good). Changes are stamped, so one
//! sent again changes nothing and every replica agrees on the last change
//! of each address; they also travel in joins, so a replica that was away
//! learns them when it meets the others again. An address removed that way
//! is refused until it joins again; a replica refused so serves no client
//! until the replicas that refused it hear it again (its store may lack
//! what they forgot since, and its clients' contexts may no longer name
//! it).
//!
//! # Implementation caveats
//!
//! - Without a disk, state lives in memory: a restarted replica is a new
//!   incarnation with an empty store that copies the state of a live
//!   member. With one, the driver saves every step and a restarted replica
//!   is restored as the same incarnation ([`saved`]).
//! - Views are decided locally: under a partial partition two replicas may
//!   disagree about a third until the links heal.
//! - A replica cut off for longer than the suspect timeout serves what it
//!   has until it meets the others again, and so does one restarted while
//!   cut off from every member (past the start-up grace it starts a store
//!   of its own). A client that crosses the partition with a context
//!   pruned of an incarnation the others retired meanwhile may read there
//!   what that incarnation overwrote. Once the replicas meet, the one that
//!   lacks what the other forgot stops answering until it has copied it.
//! - An operator's view change is acknowledged once the replica that took
//!   it applied it; if that replica dies before relaying it to any member,
//!   the change is lost.

mod client;
mod gc;
mod join;
mod membership;
pub mod message;
mod outputs;
mod peer;
mod peers;
#[cfg(test)]
mod regressions;
#[cfg(test)]
mod rescue_tests;
mod rescued;
mod reshard;
mod retire;
pub mod saved;
#[cfg(test)]
mod sim;
#[cfg(test)]
mod sim_conditions;
#[cfg(test)]
mod sim_disk;
#[cfg(test)]
mod sim_lifetime;
#[cfg(test)]
mod sim_shards;
#[cfg(test)]
mod sim_tables;
#[cfg(test)]
mod sim_tests;
mod state;
mod tables;
#[cfg(test)]
mod tests;
mod tick;
mod timing;
mod transfer;
pub mod view;

pub use message::{
    Decision, Kind, Member, Page, Refusal, Reply, Request, Start, StateTransfer, Versions,
    ViewChange, Write,
};
pub use outputs::{
    Condition, Effect, Handover, Learned, Outcome, ReadResult, Stats, Wait, WriteResult,
};
pub use peer::{Heard, Peer};
pub use rescued::Rescued;
pub use state::Replica;
pub use tables::{TableOutcome, TableResult};
pub use timing::{Millis, Timing, DNS_MISSES_TO_LEAVE};
pub use view::View;

// What the simulated cluster's tests reach through `super::*`.
#[cfg(test)]
use {crate::address::SocketAddress, crate::causal::CausalContext, state::single};
