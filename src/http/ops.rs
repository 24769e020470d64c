//! Operations endpoints: `/health` and `/metrics`.

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::server::Node;

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/health", web::get().to(health))
        .route("/metrics", web::get().to(metrics));
}

/// 200 while the replica serves; says whether its start-up sync is done.
async fn health(node: web::Data<Node>) -> HttpResponse {
    let (stats, view) = node.with_replica(|replica, _| (replica.stats(), replica.view().print()));
    HttpResponse::Ok().json(json!({
        "status": "ok",
        "synced": stats.synced,
        "replica": node.me().id,
        "address": node.me().address,
        "view": view,
        "keys": stats.keys,
        "tombstones": stats.tombstones,
        "buffered": stats.buffered,
    }))
}

/// The Prometheus text exposition.
async fn metrics(node: web::Data<Node>) -> HttpResponse {
    let stats = node.with_replica(|replica, _| replica.stats());
    HttpResponse::Ok()
        .content_type(prometheus::TEXT_FORMAT)
        .body(node.metrics.render(&stats))
}
