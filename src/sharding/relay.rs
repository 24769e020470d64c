//! Client requests relayed to a member of their key's shard.

use std::time::Duration;

use crate::node::Node;
use crate::shard::ShardId;
use crate::transport::{self, Forwarded};

/// Relays a client request for a key of shard `shard` to its members,
/// trying the next when one cannot be reached.
pub async fn relay(
    node: &Node,
    shard: ShardId,
    method: actix_web::http::Method,
    path_and_query: &str,
    headers: &[(String, String)],
    body: actix_web::web::Bytes,
) -> Result<Forwarded, String> {
    let Some(cluster) = node.cluster() else {
        return Err("this node is not sharded".into());
    };
    let targets = cluster.targets(shard);
    if targets.is_empty() {
        return Err(format!(
            "shard {shard} has no other member to serve the request"
        ));
    }
    let deadline = node.config.causal_wait + Duration::from_secs(5);
    let mut last = String::new();
    for to in targets {
        match transport::forward(
            &to,
            method.clone(),
            path_and_query,
            headers,
            body.clone(),
            deadline,
        )
        .await
        {
            Ok(answer) => {
                cluster.heard(&to);
                relayed(node, shard, "ok");
                return Ok(answer);
            }
            Err(e) => last = format!("{to}: {e}"),
        }
    }
    relayed(node, shard, "failed");
    Err(format!(
        "no member of shard {shard} could be reached ({last})"
    ))
}

fn relayed(node: &Node, shard: ShardId, outcome: &str) {
    node.metrics
        .shards
        .relayed
        .with_label_values(&[&shard.to_string(), outcome])
        .inc();
}
