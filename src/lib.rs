//! causalkv: a causally consistent, replicated key-value store.
//!
//! Every replica holds every key and serves the kevinDB REST API
//! (`/key-value-store/<key>`, `/key-value-store-view`). Writes are applied
//! where they are made, acknowledged at once, and spread to the other
//! replicas in causal order; reads wait until the replica has applied
//! everything the client has seen. The store stays available on both sides
//! of a partition and converges when it heals.
//!
//! # A tour
//!
//! Data flows one way: an HTTP handler ([`http`]) parses the request into
//! domain types ([`store::Key`], [`store::Value`],
//! [`causal::CausalContext`], [`address::SocketAddress`]); the
//! [`replica::Replica`] state machine decides; the [`store::Store`]
//! applies; the [`transport`] ships the resulting effects to peers.
//!
//! - [`address`] — replica socket addresses, ordered as views print them.
//! - [`causal`] — vector clocks, client contexts, the delivery buffer. Pure.
//! - [`store`] — versions, tombstones and the one conflict rule. Pure.
//! - [`replica`] — the protocol: client operations, peer messages,
//!   membership, anti-entropy and state transfer, as inputs and effects.
//!   Pure, so a simulated cluster tests it deterministically.
//! - [`node`] — the state the adapters share: the replica behind a
//!   read-write lock, the effects it produces handed on, client requests
//!   waiting for their context, the hand-over when stopping.
//! - [`queues`] — the peers' replication queues, filled by whoever runs a
//!   step of the replica (mostly the HTTP workers).
//! - [`transport`] — drains the queues with retry and backoff, and sends
//!   one-off requests, over awc. The only code that talks to peers.
//! - [`http`] — actix handlers, one file per group of endpoints;
//!   [`http::error`] maps failures to status codes.
//! - [`shard`] — placement of keys in shards, the shard map, what a node
//!   knows of the others. Pure.
//! - [`sharding`] — a sharded store's talking: the map's exchange,
//!   requests relayed to the key's shard, add-member and the reshard.
//! - [`server`] — wiring, the ticker, signals and the orderly stop.
//! - [`config`] — the environment and flags, validated.
//! - [`incarnation`] — fresh replica identities, drawn by the binary.
//! - [`metrics`] — what `/metrics` exposes, in the Prometheus text format.
//! - [`client`] — a typed client that carries causal context.
//! - [`cli`] — kvctl, the command-line client: commands, exit codes, the
//!   session files that carry the causal context between runs, the
//!   interactive shell (`src/bin/kvctl.rs` only parses arguments).

pub mod address;
pub mod causal;
pub mod cli;
pub mod client;
pub mod concern;
pub mod config;
pub mod durable;
pub mod http;
pub mod incarnation;
pub mod metrics;
pub mod node;
pub mod queues;
pub mod replica;
pub mod server;
pub mod shard;
pub mod sharding;
pub mod store;
pub mod transport;
