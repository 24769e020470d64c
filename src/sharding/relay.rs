//! Client requests relayed to a member of their key's shard.

use std::rc::Rc;
use std::time::Duration;

use super::batch;
use super::batch_wire::Relayed;

use crate::address::SocketAddress;
use crate::node::Node;
use crate::shard::ShardId;
use crate::transport::{self, Forwarded};

/// Relays a client request for a key of shard `shard` to its members (in
/// batches, see `sharding/batch.rs`), trying the next when one cannot be
/// reached.
pub async fn relay(node: &Node, shard: ShardId, request: Relayed) -> Result<Forwarded, String> {
    let token = node.config.cluster_token.as_deref();
    let request = Rc::new(request);
    to_members(node, shard, |to, deadline| {
        let request = request.clone();
        async move { batch::relay(&to, request, token, deadline).await }
    })
    .await
}

/// Relays a client request that is not about one key (`method`,
/// `path_and_query`, the headers worth keeping and the body) to the
/// members of shard `shard`, on its own, trying the next when one cannot
/// be reached.
pub async fn relay_alone(
    node: &Node,
    shard: ShardId,
    method: actix_web::http::Method,
    path_and_query: &str,
    headers: &[(String, String)],
    body: actix_web::web::Bytes,
) -> Result<Forwarded, String> {
    to_members(node, shard, |to, deadline| {
        let (method, body) = (method.clone(), body.clone());
        async move { transport::forward(&to, method, path_and_query, headers, body, deadline).await }
    })
    .await
}

/// Asks the live members of shard `shard` in turn, with `ask`, until one
/// answers.
async fn to_members<F, A>(node: &Node, shard: ShardId, ask: A) -> Result<Forwarded, String>
where
    A: Fn(SocketAddress, Duration) -> F,
    F: std::future::Future<Output = Result<Forwarded, String>>,
{
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
        match ask(to.clone(), deadline).await {
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
