//! The actix adapters: parse requests into domain types, call the node,
//! print the results. Nothing here decides anything.
//!
//! - [`kv`]: `/key-value-store/<key>`, the client API; [`answers`]: what
//!   its requests are answered with.
//! - [`tables`]: `/tables`: tables, and the keys of each; [`spread`]:
//!   a sharded store's table requests, made in every shard.
//! - [`view`]: `/key-value-store-view`, membership by operators.
//! - [`relay`]: requests relayed to the node that serves their key;
//!   [`batch`]: the batches of them a member serves.
//! - [`shard`]: `/key-value-store-shard/...`, the shards, add-member and
//!   reshard; the shard map's internal endpoints.
//! - [`internal`]: the replica-to-replica endpoints (replicate, heartbeat,
//!   pull, join, snapshot pages, view changes).
//! - [`ops`]: `/health`, `/ready`, `/metrics`.
//! - [`conditions`]: `If-Match` / `If-None-Match`, 412 and 304.
//! - [`body`]: body limits and parsing, the 404 of unknown paths.
//! - [`error`]: what went wrong, as a status code and a JSON body.
//! - [`observe`]: the span, request id and metrics of every request.

pub mod answers;
pub mod batch;
pub mod body;
pub mod conditions;
pub mod error;
pub mod internal;
pub mod kv;
pub mod observe;
pub mod ops;
pub mod relay;
pub mod shard;
pub mod spread;
pub mod tables;
pub mod view;

use actix_web::web;

use crate::node::Node;

pub use error::{ApiError, Error};
pub use observe::{record_metrics, RequestSpan};

/// Registers every route of the node.
pub fn configure(cfg: &mut web::ServiceConfig, node: web::Data<Node>) {
    cfg.app_data(node)
        .configure(kv::routes)
        .configure(tables::routes)
        // Before the routes with patterns: batches are frequent.
        .configure(batch::routes)
        .configure(view::routes)
        .configure(shard::routes)
        .configure(internal::routes)
        .configure(ops::routes)
        .default_service(web::to(body::not_found));
}
