//! What kvctl prints for each answer: values, health, the status table,
//! and the errors that end a command.

use serde_json::{json, Value};

use crate::client::{ClientError, Response};

use super::args::Action;
use super::outcome::{Outcome, EXIT_NOT_FOUND, EXIT_UNAVAILABLE, EXIT_USAGE};

/// The outcome of a request for `action`.
pub(super) fn respond(
    result: Result<Response, ClientError>,
    action: &Action,
    json: bool,
) -> Outcome {
    let response = match result {
        Ok(response) => response,
        Err(e) => return unreachable_outcome(e),
    };
    let mut outcome = render(&response, action);
    if json {
        outcome.stdout = vec![response.body.to_string()];
    }
    outcome
}

/// The human-readable outcome of `response` to `action`.
fn render(response: &Response, action: &Action) -> Outcome {
    let ok = |line: &str| Outcome::ok([line.to_string()]);
    match (action, response.status) {
        (_, 503) if crate::client::concern_not_met(response) => Outcome::error(
            EXIT_UNAVAILABLE,
            format!(
                "the write was made, but only {} of the {} replicas asked for held it in time; \
                 it is kept and will still spread",
                response.body["replicas-holding"], response.body["replicas-needed"]
            ),
        ),
        (_, 503)
            if response.body["error"]
                .as_str()
                .is_some_and(|e| e.starts_with("Disk")) =>
        {
            Outcome::error(
                EXIT_UNAVAILABLE,
                response.body["error"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        }
        (_, 503) => Outcome::error(
            EXIT_UNAVAILABLE,
            "causal dependencies not satisfied in time at any replica \
             (if the cluster was replaced, `kvctl session reset` forgets the old context)",
        ),
        (Action::Put { .. }, 201) => ok("OK (added)"),
        (Action::Put { .. }, 200) => ok("OK (updated)"),
        (Action::Get { .. }, 200) => Outcome::ok([show_value(response.value())]),
        (Action::Delete { .. }, 200) => ok("OK (deleted)"),
        (Action::Get { key } | Action::Delete { key }, 404) => {
            Outcome::error(EXIT_NOT_FOUND, format!("key {key:?} not found"))
        }
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
        (_, 400..=499) => Outcome::error(
            EXIT_USAGE,
            format!("{} ({})", server_error(response), response.host),
        ),
        _ => Outcome::error(
            EXIT_UNAVAILABLE,
            format!(
                "unexpected answer from {}: {} {}",
                response.host, response.status, response.body
            ),
        ),
    }
}

/// A stored value as `get` prints it: strings raw, the rest compact JSON.
fn show_value(value: Option<&Value>) -> String {
    match value {
        Some(Value::String(text)) => text.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

/// The `error` of a response body, lowercased at the start.
fn server_error(response: &Response) -> String {
    let text = response.body["error"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| format!("{} {}", response.status, response.body));
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => text,
    }
}

pub(super) fn unreachable_outcome(error: ClientError) -> Outcome {
    match error {
        ClientError::NoHosts => Outcome::error(EXIT_USAGE, "no host given"),
        ClientError::Unreachable(_) => Outcome::error(EXIT_UNAVAILABLE, error.to_string()),
    }
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
pub(super) fn render_status(
    view: &Response,
    replicas: &[crate::client::ReplicaStatus],
    json: bool,
) -> Outcome {
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

    use super::*;

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
}
