//! Operations endpoints: `/health` (liveness), `/ready` (readiness) and
//! `/metrics`.

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::error::Error;
use crate::node::Node;

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/health", web::get().to(health))
        .route("/ready", web::get().to(ready))
        .route("/metrics", web::get().to(metrics));
}

/// 200 while the process serves: liveness. The body says whether the
/// replica holds the state, and who it knows.
async fn health(node: web::Data<Node>) -> HttpResponse {
    let (stats, view, suspects) =
        node.read_replica(|replica| (replica.stats(), replica.view().print(), replica.suspects()));
    let me = node.me();
    HttpResponse::Ok().json(json!({
        "status": "ok",
        "synced": stats.synced,
        "ready": stats.ready,
        "draining": stats.draining,
        "removed": stats.removed,
        "replica": me.id,
        "address": me.address,
        "view": view,
        "suspects": suspects,
        "keys": stats.keys,
        "tombstones": stats.tombstones,
        "buffered": stats.buffered,
        "clock": stats.clock_entries,
        "retired": stats.retired,
        "durability": durability(&node),
        "shard": shard_health(&node),
    }))
}

/// A sharded node's shard, its group and the map version; `null`
/// unsharded.
fn shard_health(node: &Node) -> serde_json::Value {
    let Some(cluster) = node.cluster() else {
        return serde_json::Value::Null;
    };
    cluster.with_map(|map| {
        json!({
            "shard-id": map.shard_of_node(cluster.me()),
            "group": node.me().id.group(),
            "map-version": map.epoch,
            "shards": map.count(),
            "resharding": cluster.pending().map(|p| p.epoch),
        })
    })
}

/// Where and how the replica keeps its state, and whether its disk takes
/// writes.
fn durability(node: &Node) -> serde_json::Value {
    let Some(disk) = node.disk() else {
        return json!({"data-dir": null, "mode": "memory", "disk": "none"});
    };
    let refusal = disk.refusal(0);
    let status = disk.status();
    json!({
        "data-dir": disk.dir().display().to_string(),
        "mode": disk.mode().as_str(),
        "disk": if refusal.is_some() { "unavailable" } else { "ok" },
        "problem": refusal,
        "free-bytes": status.free,
        "durable-batch": status.durable,
    })
}

/// 200 once the replica holds a copy of the state (or started a new
/// store) and is not stopping; 503 otherwise: what load balancers and
/// readiness probes wait on.
async fn ready(node: web::Data<Node>) -> HttpResponse {
    let stats = node.read_replica(|replica| replica.stats());
    if stats.ready {
        return HttpResponse::Ok().json(json!({"ready": true, "replica": node.me().id}));
    }
    let why = if stats.draining {
        Error::ShuttingDown
    } else if stats.removed {
        Error::Removed
    } else {
        Error::NotReady
    };
    HttpResponse::ServiceUnavailable().json(json!({
        "ready": false,
        "error": why.to_string(),
        "message": "Error in GET",
    }))
}

/// A sharded node's shard figures.
fn shard_figures(node: &Node) -> Option<crate::metrics::ShardFigures> {
    let cluster = node.cluster()?;
    Some(cluster.with_map(|map| {
        crate::metrics::ShardFigures {
            node_shard: map.shard_of_node(cluster.me()),
            map_version: map.epoch,
            members: map
                .shards
                .iter()
                .map(|(id, s)| (*id, s.members.len()))
                .collect(),
        }
    }))
}

/// The Prometheus text exposition.
async fn metrics(node: web::Data<Node>) -> HttpResponse {
    let stats = node.read_replica(|replica| replica.stats());
    HttpResponse::Ok()
        .content_type(prometheus::TEXT_FORMAT)
        .body(
            node.metrics
                .render(&stats, node.disk(), shard_figures(&node)),
        )
}
