//! What kvctl prints for the store's own state rather than its keys: the
//! view and its changes, health, the status table of every replica, the
//! shards, and the answers to `reshard` and `add-member`.

use serde_json::{json, Value};

use super::args::Action;
use super::outcome::{answer_outcome, Outcome, EXIT_NOT_FOUND, EXIT_USAGE};
use crate::client::{ReplicaStatus, Response, Shards};

/// The human-readable outcome of `response` to a view, health, reshard or
/// add-member `action`, once the errors every command shares (a 503, a
/// refused table) are ruled out.
pub(super) fn render_answer(response: &Response, action: &Action) -> Outcome {
    let ok = |line: &str| Outcome::ok([line.to_string()]);
    match (action, response.status) {
        (Action::View, 200) => Outcome::ok(
            response.body["view"]
                .as_str()
                .unwrap_or_default()
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string),
        ),
        (Action::ViewAdd { .. }, 201) => ok("OK (added)"),
        (Action::ViewAdd { addr }, 404) => {
            Outcome::error(EXIT_NOT_FOUND, format!("{addr} is already in the view"))
        }
        (Action::ViewRemove { .. }, 200) => ok("OK (removed)"),
        (Action::ViewRemove { addr }, 404) => {
            Outcome::error(EXIT_NOT_FOUND, format!("{addr} is not in the view"))
        }
        (Action::Health, 200) => Outcome::ok(show_health(&response.body)),
        (Action::Reshard { count }, 200) => ok(&format!(
            "OK (resharded into {count} shard{})",
            if *count == 1 { "" } else { "s" }
        )),
        (Action::Reshard { count }, 400) if response.body.get("error").is_none() => {
            // The family's refusal: fewer than two live nodes per shard.
            Outcome::error(
                EXIT_USAGE,
                format!(
                    "not enough nodes to provide fault-tolerance with {count} shards: \
                     each shard needs 2 live nodes ({})",
                    response.host
                ),
            )
        }
        (Action::AddMember { id, addr }, 200) => ok(&format!("OK ({addr} added to shard {id})")),
        (Action::AddMember { id, .. }, 404) => Outcome::error(
            EXIT_NOT_FOUND,
            format!("shard {id} does not exist ({})", response.host),
        ),
        _ => answer_outcome(response),
    }
}

/// `shards`: a table of every shard (id, key count, members) and the
/// shard of the node asked, or one JSON object with `json`. A shard whose
/// members or key count could not be had shows `-` (and the reason in
/// JSON); the command still succeeds.
pub(super) fn render_shards(shards: &Shards, json: bool) -> Outcome {
    if json {
        let list: Vec<Value> = shards
            .shards
            .iter()
            .map(|shard| {
                let mut entry = json!({
                    "shard-id": shard.id,
                    "shard-id-members": shard.members.as_ref().ok(),
                    "shard-id-key-count": shard.key_count.as_ref().ok(),
                });
                let errors: Vec<&String> = [
                    &shard.members.as_ref().err(),
                    &shard.key_count.as_ref().err(),
                ]
                .into_iter()
                .flatten()
                .copied()
                .collect();
                if !errors.is_empty() {
                    entry["errors"] = json!(errors);
                }
                entry
            })
            .collect();
        return Outcome::ok([json!({
            "node": shards.host,
            "node-shard-id": shards.node_shard,
            "shards": list,
        })
        .to_string()]);
    }
    let mut rows = vec![["SHARD".to_string(), "KEYS".into(), "MEMBERS".into()]];
    for shard in &shards.shards {
        let members = match &shard.members {
            Ok(members) if members.is_empty() => "none".to_string(),
            Ok(members) => members.join(","),
            Err(_) => "-".into(),
        };
        let keys = match &shard.key_count {
            Ok(count) => count.to_string(),
            Err(_) => "-".into(),
        };
        rows.push([shard.id.to_string(), keys, members]);
    }
    let widths: Vec<usize> = (0..2)
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    let mut lines: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "{:<w0$}  {:<w1$}  {}",
                r[0],
                r[1],
                r[2],
                w0 = widths[0],
                w1 = widths[1]
            )
        })
        .collect();
    lines.push(match shards.node_shard {
        Some(id) => format!("{} is in shard {id}", shards.host),
        None => format!("{} is in no shard yet (add-member places it)", shards.host),
    });
    Outcome::ok(lines)
}

/// The fields of `/health` that kvctl shows, in order.
const HEALTH_FIELDS: [&str; 10] = [
    "address",
    "replica",
    "status",
    "synced",
    "ready",
    "suspects",
    "keys",
    "tombstones",
    "buffered",
    "view",
];

/// One field of a `/health` body, as text (a list as its items, joined by
/// commas; `none` when empty).
pub(super) fn health_field(body: &Value, name: &str) -> String {
    match &body[name] {
        Value::String(text) => text.clone(),
        Value::Bool(true) => "yes".into(),
        Value::Bool(false) => "no".into(),
        Value::Null => "-".into(),
        Value::Array(items) if items.is_empty() => "none".into(),
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    }
}

/// `/health` as `name  value` lines.
fn show_health(body: &Value) -> Vec<String> {
    HEALTH_FIELDS
        .iter()
        .map(|name| format!("{name:<11}{}", health_field(body, name)))
        .collect()
}

/// `status`: a table of every replica, or the raw answers with `json`.
pub(super) fn render_status(view: &Response, replicas: &[ReplicaStatus], json: bool) -> Outcome {
    if json {
        let replicas: Vec<Value> = replicas
            .iter()
            .map(|r| match &r.health {
                Ok(health) => json!({"address": r.address, "in-view": r.in_view,
                                     "status": health.status, "ready": r.readiness(),
                                     "health": health.body}),
                Err(e) => json!({"address": r.address, "in-view": r.in_view, "error": e}),
            })
            .collect();
        return Outcome::ok([json!({"view": view.body, "replicas": replicas}).to_string()]);
    }
    let mut rows = vec![[
        "REPLICA".to_string(),
        "STATUS".into(),
        "READY".into(),
        "KEYS".into(),
        "VIEW".into(),
    ]];
    for replica in replicas {
        let name = if replica.in_view {
            replica.address.clone()
        } else {
            format!("{}*", replica.address)
        };
        rows.push(match &replica.health {
            Ok(r) if r.status == 200 => {
                let field = |name: &str| health_field(&r.body, name);
                let ready = match replica.readiness() {
                    Some(true) => "yes",
                    Some(false) => "no",
                    None => "-",
                };
                [
                    name,
                    field("status"),
                    ready.into(),
                    field("keys"),
                    field("view"),
                ]
            }
            Ok(r) => [
                name,
                format!("http {}", r.status),
                "-".into(),
                "-".into(),
                "-".into(),
            ],
            Err(_) => [name, "down".into(), "-".into(), "-".into(), "-".into()],
        });
    }
    let widths: Vec<usize> = (0..4)
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    let mut lines: Vec<String> = rows
        .iter()
        .map(|r| {
            let mut line = String::new();
            for (c, width) in widths.iter().enumerate() {
                line.push_str(&format!("{:<width$}  ", r[c]));
            }
            line.push_str(&r[4]);
            line
        })
        .collect();
    if replicas.iter().any(|r| !r.in_view) {
        lines.push("* not in the view".into());
    }
    Outcome::ok(lines)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::outcome::EXIT_OK;
    use super::*;
    use crate::client::ShardInfo;

    #[test]
    fn health_fields_print_as_words() {
        let body = json!({"synced": true, "ready": false, "keys": 3,
                          "suspects": ["10.0.0.2:8085", "10.0.0.3:8085"], "view": ""});
        let shown: Vec<String> = ["synced", "ready", "keys", "suspects", "draining"]
            .iter()
            .map(|name| health_field(&body, name))
            .collect();
        assert_eq!(
            shown,
            ["yes", "no", "3", "10.0.0.2:8085,10.0.0.3:8085", "-"]
        );
        assert_eq!(health_field(&json!({"suspects": []}), "suspects"), "none");
    }

    #[test]
    fn shards_print_as_a_table_and_as_one_json_object() {
        let shards = Shards {
            host: "10.10.0.2:8085".into(),
            node_shard: Some(1),
            shards: vec![
                ShardInfo {
                    id: 1,
                    members: Ok(vec!["10.10.0.2:8085".into(), "10.10.0.3:8085".into()]),
                    key_count: Ok(312),
                },
                ShardInfo {
                    id: 12,
                    members: Ok(vec!["10.10.0.4:8085".into(), "10.10.0.5:8085".into()]),
                    key_count: Err("no member of shard 12 answered (http 503)".into()),
                },
            ],
        };
        let outcome = render_shards(&shards, false);
        assert_eq!(outcome.code, EXIT_OK);
        assert_eq!(
            outcome.stdout,
            [
                "SHARD  KEYS  MEMBERS",
                "1      312   10.10.0.2:8085,10.10.0.3:8085",
                "12     -     10.10.0.4:8085,10.10.0.5:8085",
                "10.10.0.2:8085 is in shard 1",
            ]
        );
        let raw: Value = serde_json::from_str(&render_shards(&shards, true).stdout[0]).unwrap();
        assert_eq!(
            raw,
            json!({
                "node": "10.10.0.2:8085",
                "node-shard-id": 1,
                "shards": [
                    {"shard-id": 1, "shard-id-members": ["10.10.0.2:8085", "10.10.0.3:8085"],
                     "shard-id-key-count": 312},
                    {"shard-id": 12, "shard-id-members": ["10.10.0.4:8085", "10.10.0.5:8085"],
                     "shard-id-key-count": null,
                     "errors": ["no member of shard 12 answered (http 503)"]},
                ]
            })
        );
        let unplaced = Shards {
            host: "10.10.0.8:8085".into(),
            node_shard: None,
            shards: Vec::new(),
        };
        assert_eq!(
            render_shards(&unplaced, false).stdout.last().unwrap(),
            "10.10.0.8:8085 is in no shard yet (add-member places it)"
        );
    }
}
