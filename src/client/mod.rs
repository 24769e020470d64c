//! A typed client for causalkv that carries the causal context for you.
//!
//! [`Client`] keeps the latest `causal-metadata` it was given and sends it
//! with every request, so a sequence of calls is causally ordered even when
//! they go to different replicas. It talks to a list of hosts and moves on
//! to the next one when a host is unreachable, times out, or answers 503.
//! The shard endpoints have typed methods too ([`Client::shard_ids`],
//! [`Client::shards`], [`Client::reshard`], ...).
//!
//! Conditional writes: [`Client::put_if`] and [`Client::delete_if`] send a
//! [`Precondition`] (`If-None-Match: *` or `If-Match`); when it does not
//! hold, the answer is a 412 ([`Response::precondition_failed`]) naming the
//! key's current version ([`Response::etag`]), and its context is kept like
//! any answer's. GET and PUT answers carry the version's entity tag
//! ([`Response::etag`]); [`Client::get_if_none_match`] asks for a value
//! only if it changed.
//!
//! Tables: [`Client::set_table`] sends the key requests to a table's keys
//! (`/tables/<name>/key-value-store/<key>`); [`Client::create_table`],
//! [`Client::list_tables`] and [`Client::drop_table`] carry the context
//! like the key requests. A GET of a key with concurrent values in a table
//! that keeps siblings answers 300 with all of them ([`Response::values`]).
//! Used by the end-to-end tests, and by the command-line client `kvctl`
//! (see [`crate::cli`]), which also keeps the context between runs in a
//! session file ([`crate::cli::session`]).
//!
//! The files, each re-exported here so that every item keeps its name
//! `causalkv::client::…`: `requests.rs` the [`Client`] and its key and
//! table requests, `cluster.rs` its view, health, status and shard
//! requests, `response.rs` what a request gets back ([`Response`],
//! [`ClientError`], [`ReplicaStatus`], [`Shards`]), `precondition.rs`
//! conditional writes ([`Precondition`], [`quote_etag`]), `context.rs`
//! causal contexts merged ([`merge_contexts`]), `hosts.rs` host lists
//! ([`parse_hosts`]) and `wire.rs` one request to one host ([`raw`]).

mod cluster;
mod context;
mod hosts;
mod precondition;
mod requests;
mod response;
mod wire;

pub use cluster::{RESHARD_TIMEOUT, STATUS_TIMEOUT};
pub use context::{context_is_empty, merge_contexts};
pub use hosts::{parse_hosts, DEFAULT_HOSTS};
pub use precondition::{quote_etag, Precondition};
pub use requests::{Client, DEFAULT_TIMEOUT};
pub use response::{concern_not_met, ClientError, ReplicaStatus, Response, ShardInfo, Shards};
pub use wire::{encode_key, raw, raw_with_headers};
