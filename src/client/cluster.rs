//! The [`Client`]'s requests about the store rather than its keys: the
//! view and its changes, health, the status of every replica, the shards,
//! add-member and reshard. None carries a causal context.

use std::time::Duration;

use awc::http::Method;
use serde_json::{json, Value};

use super::requests::Client;
use super::response::{ClientError, ReplicaStatus, Response, ShardInfo, Shards};
use super::wire::{http_client, raw};
use crate::shard::ShardId;

/// Time allowed for each replica's `/health` when gathering a cluster's
/// status (a dead replica must not stall the others' report).
pub const STATUS_TIMEOUT: Duration = Duration::from_secs(3);

/// Least time allowed for a reshard request: a reshard answers once
/// every key has moved (each node's step may take up to 120 s), so the
/// per-request timeout is raised to this for it.
pub const RESHARD_TIMEOUT: Duration = Duration::from_secs(150);

impl Client {
    /// The view of the first host that answers.
    pub async fn view(&self) -> Result<Response, ClientError> {
        self.send(Method::GET, "/key-value-store-view", None).await
    }

    /// Adds `address` to the view.
    pub async fn view_add(&self, address: &str) -> Result<Response, ClientError> {
        let body = json!({"socket-address": address});
        self.send(Method::PUT, "/key-value-store-view", Some(body))
            .await
    }

    /// Removes `address` from the view.
    pub async fn view_remove(&self, address: &str) -> Result<Response, ClientError> {
        let body = json!({"socket-address": address});
        self.send(Method::DELETE, "/key-value-store-view", Some(body))
            .await
    }

    /// The health of the first host that answers.
    pub async fn health(&self) -> Result<Response, ClientError> {
        self.send(Method::GET, "/health", None).await
    }

    /// The view of the first host that answers, then the `/health` and
    /// `/ready` of every member of that view and of every host not in it,
    /// asked at once, each with [`STATUS_TIMEOUT`]. Fails only if no host
    /// answered the view request.
    pub async fn status(&self) -> Result<(Response, Vec<ReplicaStatus>), ClientError> {
        let view = self.view().await?;
        let members: Vec<String> = view
            .body
            .get("view")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        let mut addresses: Vec<(String, bool)> =
            members.iter().map(|m| (m.clone(), true)).collect();
        for host in &self.hosts {
            if !members.contains(host) {
                addresses.push((host.clone(), false));
            }
        }
        let http = awc::Client::builder()
            .connector(awc::Connector::new().timeout(STATUS_TIMEOUT))
            .timeout(STATUS_TIMEOUT)
            .finish();
        let asks = addresses.iter().map(|(address, _)| {
            let http = &http;
            async move {
                futures_util::future::join(
                    raw(http, address, Method::GET, "/health", None),
                    raw(http, address, Method::GET, "/ready", None),
                )
                .await
            }
        });
        let answers = futures_util::future::join_all(asks).await;
        let replicas = addresses
            .into_iter()
            .zip(answers)
            .map(|((address, in_view), (health, ready))| ReplicaStatus {
                address,
                in_view,
                health,
                ready,
            })
            .collect();
        Ok((view, replicas))
    }

    /// The ids of every shard (`GET /key-value-store-shard/shard-ids`).
    pub async fn shard_ids(&self) -> Result<Vec<ShardId>, ClientError> {
        let response = self.send(Method::GET, SHARD_IDS, None).await?;
        field(response, "shard-ids")
    }

    /// The shard of the first host that answers; `None` while it is in
    /// none (`GET /key-value-store-shard/node-shard-id`).
    pub async fn node_shard_id(&self) -> Result<Option<ShardId>, ClientError> {
        let response = self.send(Method::GET, NODE_SHARD_ID, None).await?;
        field(response, "shard-id")
    }

    /// The members of shard `id` (`GET
    /// /key-value-store-shard/shard-id-members/<id>`).
    pub async fn shard_members(&self, id: ShardId) -> Result<Vec<String>, ClientError> {
        let response = self.send(Method::GET, &members_path(id), None).await?;
        field(response, "shard-id-members")
    }

    /// How many keys shard `id` holds (`GET
    /// /key-value-store-shard/shard-id-key-count/<id>`).
    pub async fn shard_key_count(&self, id: ShardId) -> Result<u64, ClientError> {
        let response = self.send(Method::GET, &key_count_path(id), None).await?;
        field(response, "shard-id-key-count")
    }

    /// Every shard with its members and key count, and the shard of the
    /// node asked: the shard ids from the first host that answers, then
    /// the rest from that same host, each shard's questions at once. A
    /// shard whose members or key count could not be had says why in its
    /// [`ShardInfo`]; fails only if the shard ids or the node's shard
    /// could not be had.
    pub async fn shards(&self) -> Result<Shards, ClientError> {
        let first = self.send(Method::GET, SHARD_IDS, None).await?;
        let host = first.host.clone();
        let ids: Vec<ShardId> = field(first, "shard-ids")?;
        let http = &self.http;
        let host = host.as_str();
        let node_shard = match raw(http, host, Method::GET, NODE_SHARD_ID, None).await {
            Ok(response) => field(response, "shard-id")?,
            Err(e) => return Err(ClientError::Unreachable(format!("{host}: {e}"))),
        };
        let asks = ids.iter().map(|&id| async move {
            let (members_path, count_path) = (members_path(id), key_count_path(id));
            let (members, count) = futures_util::future::join(
                raw(http, host, Method::GET, &members_path, None),
                raw(http, host, Method::GET, &count_path, None),
            )
            .await;
            ShardInfo {
                id,
                members: members.and_then(|r| field(r, "shard-id-members").map_err(why)),
                key_count: count.and_then(|r| field(r, "shard-id-key-count").map_err(why)),
            }
        });
        let shards = futures_util::future::join_all(asks).await;
        Ok(Shards {
            host: host.to_string(),
            node_shard,
            shards,
        })
    }

    /// Places the node at `address` in shard `id` (`PUT
    /// /key-value-store-shard/add-member/<id>`); 200 when done.
    pub async fn add_member(&self, id: ShardId, address: &str) -> Result<Response, ClientError> {
        let body = json!({"socket-address": address});
        let path = format!("/key-value-store-shard/add-member/{id}");
        self.send(Method::PUT, &path, Some(body)).await
    }

    /// Reshards the store into `count` shards (`PUT
    /// /key-value-store-shard/reshard`); 200 once done, 400 with too few
    /// nodes for `count` shards. The request is allowed at least
    /// [`RESHARD_TIMEOUT`].
    pub async fn reshard(&self, count: u32) -> Result<Response, ClientError> {
        let body = json!({"shard-count": count});
        let http = http_client(self.timeout.max(RESHARD_TIMEOUT));
        self.send_with(
            &http,
            Method::PUT,
            "/key-value-store-shard/reshard",
            Some(body),
            &[],
        )
        .await
    }
}

const SHARD_IDS: &str = "/key-value-store-shard/shard-ids";
const NODE_SHARD_ID: &str = "/key-value-store-shard/node-shard-id";

fn members_path(id: ShardId) -> String {
    format!("/key-value-store-shard/shard-id-members/{id}")
}

fn key_count_path(id: ShardId) -> String {
    format!("/key-value-store-shard/shard-id-key-count/{id}")
}

/// The field `name` of a 200 answer, as a `T`; any other answer, or a
/// body without such a field, is [`ClientError::Answer`].
fn field<T: serde::de::DeserializeOwned>(response: Response, name: &str) -> Result<T, ClientError> {
    if response.status == 200 {
        if let Some(Ok(value)) = response.body.get(name).map(|v| T::deserialize(v)) {
            return Ok(value);
        }
    }
    Err(ClientError::Answer(Box::new(response)))
}

/// Why a request got no useful answer, in a few words: the answer's
/// `error` (else `message`) and status, or the client error.
fn why(error: ClientError) -> String {
    match error {
        ClientError::Answer(response) => {
            let said = ["error", "message"]
                .iter()
                .find_map(|name| response.body.get(*name).and_then(Value::as_str));
            match said {
                Some(text) => format!("{text} (http {})", response.status),
                None => format!("http {} {}", response.status, response.body),
            }
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn typed_answers_take_their_field_or_say_why_not() {
        let answer = |status: u16, body: Value| Response::new("127.0.0.1:1", status, body);
        let ids = answer(200, json!({"message": "m", "shard-ids": [1, 2]}));
        assert_eq!(field::<Vec<ShardId>>(ids, "shard-ids").unwrap(), [1, 2]);
        let unplaced = answer(200, json!({"message": "m", "shard-id": null}));
        assert_eq!(
            field::<Option<ShardId>>(unplaced, "shard-id").unwrap(),
            None
        );
        let unknown = answer(
            404,
            json!({"error": "Shard ID 7 does not exist", "message": "Error in GET"}),
        );
        let e = field::<u64>(unknown, "shard-id-key-count").unwrap_err();
        assert!(matches!(&e, ClientError::Answer(r) if r.status == 404));
        assert_eq!(why(e), "Shard ID 7 does not exist (http 404)");
        let wrong = answer(200, json!({"shard-id-key-count": "many"}));
        assert!(field::<u64>(wrong, "shard-id-key-count").is_err());

        assert_eq!(answer(201, json!({"shard-id": 3})).shard_id(), Some(3));
        assert_eq!(
            answer(201, json!({"message": "Added successfully"})).shard_id(),
            None
        );
    }
}
