//! What kvctl prints for each answer: `--json`'s body, the values and
//! entity tags of key commands, and the errors that end a command. The
//! answers about tables are worded by [`super::tables`], those about the
//! cluster (view, health, status, shards, reshard) by [`super::cluster`].

use serde_json::Value;

use crate::client::{ClientError, Precondition, Response};

use super::args::Action;
use super::cluster;
use super::outcome::{
    answer_outcome, server_error, Outcome, EXIT_CONDITION_FAILED, EXIT_NOT_FOUND, EXIT_UNAVAILABLE,
    EXIT_USAGE,
};
use super::tables;

/// The outcome of a request for `action`. With `json`, standard output
/// gets the answer's body as it came, with its `ETag` header added as the
/// field `"etag"` (quoted, as in the header) when it has one.
pub(super) fn respond(
    result: Result<Response, ClientError>,
    action: &Action,
    json: bool,
) -> Outcome {
    respond_in(result, action, None, json)
}

/// [`respond`] for a key command sent to the keys of `table` (`None`: the
/// default table).
pub(super) fn respond_in(
    result: Result<Response, ClientError>,
    action: &Action,
    table: Option<&str>,
    json: bool,
) -> Outcome {
    let response = match result {
        Ok(response) => response,
        Err(e) => return unreachable_outcome(e),
    };
    let mut outcome = render(&response, action, table);
    if json {
        outcome.stdout = vec![json_body(&response).to_string()];
    }
    outcome
}

/// What `--json` prints for `response`: its body, with the `ETag` header
/// as an `"etag"` field (a 412's body names the current tag there itself).
pub(super) fn json_body(response: &Response) -> Value {
    let mut body = response.body.clone();
    if let (Some(tag), Value::Object(fields)) = (&response.etag_header, &mut body) {
        fields
            .entry("etag")
            .or_insert_with(|| Value::String(tag.clone()));
    }
    body
}

/// The human-readable outcome of `response` to `action`, a key command's
/// sent to the keys of `table` (`None`: the default table).
pub(super) fn render(response: &Response, action: &Action, table: Option<&str>) -> Outcome {
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
        // A reshard under way (409) or failed and undone (503): the
        // store's own words.
        (Action::Reshard { .. } | Action::AddMember { .. }, 503 | 409) => Outcome::error(
            EXIT_UNAVAILABLE,
            format!("{} ({})", server_error(response), response.host),
        ),
        (_, 503) => Outcome::error(
            EXIT_UNAVAILABLE,
            "causal dependencies not satisfied in time at any replica \
             (if the cluster was replaced, `kvctl session reset` forgets the old context)",
        ),
        (_, 400 | 404) if tables::is_table_error(response) => {
            tables::table_error(response, action, table)
        }
        (Action::Tables | Action::TableCreate { .. } | Action::TableDrop { .. }, _) => {
            tables::render_tables_answer(response, action)
        }
        (Action::Get { key, etag }, 300) => tables::siblings(response, key, *etag, table),
        (Action::Put { .. }, 201) => ok(&done("added", response)),
        (Action::Put { .. }, 200) => ok(&done("updated", response)),
        (Action::Get { etag: false, .. }, 200) => Outcome::ok([show_value(response.value())]),
        (Action::Get { etag: true, .. }, 200) => match response.etag() {
            Some(tag) => ok(tag),
            None => Outcome::error(
                EXIT_UNAVAILABLE,
                format!(
                    "{} sent no entity tag (a store without conditional writes?)",
                    response.host
                ),
            ),
        },
        (Action::Delete { .. }, 200) => ok(&done("deleted", response)),
        (Action::Put { key, condition, .. } | Action::Delete { key, condition }, 412) => {
            let key = tables::describe_key(key, table);
            condition_failed(&key, condition.as_ref(), action, response)
        }
        (Action::Get { key, .. } | Action::Delete { key, .. }, 404) => {
            let key = tables::describe_key(key, table);
            Outcome::error(
                EXIT_NOT_FOUND,
                match response.shard_id() {
                    Some(id) => format!("{key} not found (shard {id})"),
                    None => format!("{key} not found"),
                },
            )
        }
        (
            Action::View
            | Action::ViewAdd { .. }
            | Action::ViewRemove { .. }
            | Action::Health
            | Action::Reshard { .. }
            | Action::AddMember { .. },
            _,
        ) => cluster::render_answer(response, action),
        _ => answer_outcome(response),
    }
}

/// `OK (what)`, naming the key's shard when the answer does (`OK (added,
/// shard 2)` in a sharded store) and the new version's entity tag when it
/// has one (a put's: `OK (updated, shard 2, etag "9f2c0a1b3d4e5f60")`).
fn done(what: &str, response: &Response) -> String {
    let mut said = vec![what.to_string()];
    if let Some(id) = response.shard_id() {
        said.push(format!("shard {id}"));
    }
    if let Some(tag) = response.etag() {
        said.push(format!("etag {tag}"));
    }
    format!("OK ({})", said.join(", "))
}

/// The error of a write whose condition did not hold (412): what the key
/// (`key "k"`, or `key "k" in table "t"`) holds now (its current entity
/// tag, or that it does not exist), and that nothing was written.
fn condition_failed(
    key: &str,
    condition: Option<&Precondition>,
    action: &Action,
    response: &Response,
) -> Outcome {
    let current = response.etag();
    let state = match (condition, current) {
        (_, None) => format!("{key} does not exist"),
        (Some(Precondition::Matches(wanted)), Some(tag)) if wanted != "*" => {
            format!("{key} has etag {tag}, not {wanted}")
        }
        (_, Some(tag)) => format!("{key} exists (etag {tag})"),
    };
    let nothing = match action {
        Action::Delete { .. } => "nothing deleted",
        _ => "nothing written",
    };
    Outcome::error(
        EXIT_CONDITION_FAILED,
        format!("condition failed: {state}; {nothing}"),
    )
}

/// A stored value as `get` prints it: strings raw, the rest compact JSON.
fn show_value(value: Option<&Value>) -> String {
    match value {
        Some(Value::String(text)) => text.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

pub(super) fn unreachable_outcome(error: ClientError) -> Outcome {
    match error {
        ClientError::NoHosts => Outcome::error(EXIT_USAGE, "no host given"),
        ClientError::Invalid(why) => Outcome::error(EXIT_USAGE, why),
        ClientError::Unreachable(_) => Outcome::error(EXIT_UNAVAILABLE, error.to_string()),
        ClientError::Answer(response) => answer_outcome(&response),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::outcome::EXIT_OK;
    use super::*;

    fn answer(status: u16, body: Value) -> Response {
        Response::new("10.10.0.2:8085", status, body)
    }

    /// `answer` with an `ETag` header.
    fn tagged(status: u16, body: Value, tag: &str) -> Response {
        let mut response = answer(status, body);
        response.etag_header = Some(tag.into());
        response
    }

    fn put(key: &str) -> Action {
        Action::Put {
            key: key.into(),
            value: json!(1),
            condition: None,
        }
    }

    #[test]
    fn key_value_answers_name_their_shard_when_they_have_one() {
        let ctx = json!({"10.10.0.2:8085#ab": 1});
        let added = answer(
            201,
            json!({"causal-metadata": ctx, "message": "Added successfully", "shard-id": 2}),
        );
        assert_eq!(
            render(&added, &put("k"), None).stdout,
            ["OK (added, shard 2)"]
        );
        let updated = answer(
            200,
            json!({"causal-metadata": ctx, "message": "Updated successfully"}),
        );
        assert_eq!(render(&updated, &put("k"), None).stdout, ["OK (updated)"]);
        let delete = Action::Delete {
            key: "k".into(),
            condition: None,
        };
        let deleted = answer(
            200,
            json!({"causal-metadata": ctx, "message": "Deleted successfully", "shard-id": 1}),
        );
        assert_eq!(
            render(&deleted, &delete, None).stdout,
            ["OK (deleted, shard 1)"]
        );
        // `get` prints the value alone, so that `$(kvctl get k)` is the value.
        let get = Action::Get {
            key: "k".into(),
            etag: false,
        };
        let found = answer(
            200,
            json!({"causal-metadata": ctx, "message": "Retrieved successfully", "shard-id": 1, "value": "v"}),
        );
        assert_eq!(render(&found, &get, None).stdout, ["v"]);
        let missing = answer(
            404,
            json!({"causal-metadata": ctx, "doesExist": false, "error": "Key does not exist", "message": "Error in GET", "shard-id": 2}),
        );
        let outcome = render(&missing, &get, None);
        assert_eq!(outcome.code, EXIT_NOT_FOUND);
        assert_eq!(outcome.stderr, [r#"kvctl: key "k" not found (shard 2)"#]);
        // --json prints the answer as it came, shard-id included.
        let raw = respond(Ok(added.clone()), &put("k"), true);
        assert_eq!(raw.stdout, [added.body.to_string()]);
    }

    const TAG: &str = "\"9f2c0a1b3d4e5f60\"";
    const OLD: &str = "\"0123456789abcdef\"";

    #[test]
    fn puts_show_their_etag_beside_the_shard() {
        let ctx = json!({"10.10.0.2:8085#ab": 1});
        let added = tagged(
            201,
            json!({"causal-metadata": ctx, "message": "Added successfully"}),
            TAG,
        );
        assert_eq!(
            render(&added, &put("k"), None).stdout,
            [format!("OK (added, etag {TAG})")]
        );
        let sharded = tagged(
            200,
            json!({"causal-metadata": ctx, "message": "Updated successfully", "shard-id": 2}),
            TAG,
        );
        assert_eq!(
            render(&sharded, &put("k"), None).stdout,
            [format!("OK (updated, shard 2, etag {TAG})")]
        );
        // --json: the body with the header as a field "etag".
        let raw = respond(Ok(sharded.clone()), &put("k"), true);
        let body: Value = serde_json::from_str(&raw.stdout[0]).unwrap();
        assert_eq!(
            body,
            json!({"causal-metadata": ctx, "message": "Updated successfully",
                   "shard-id": 2, "etag": TAG})
        );
        assert_eq!(raw.code, EXIT_OK);

        // get --etag prints the tag alone; get --json carries it too.
        let found = tagged(
            200,
            json!({"causal-metadata": ctx, "message": "Retrieved successfully", "value": "v"}),
            TAG,
        );
        let get = |etag| Action::Get {
            key: "k".into(),
            etag,
        };
        assert_eq!(render(&found, &get(true), None).stdout, [TAG]);
        assert_eq!(render(&found, &get(false), None).stdout, ["v"]);
        let raw = respond(Ok(found.clone()), &get(false), true);
        let body: Value = serde_json::from_str(&raw.stdout[0]).unwrap();
        assert_eq!(body["etag"], TAG);
        assert_eq!(body["value"], "v");
        // A missing key has no tag: not found, as without --etag.
        let missing = answer(
            404,
            json!({"causal-metadata": ctx, "error": "Key does not exist", "message": "Error in GET"}),
        );
        assert_eq!(render(&missing, &get(true), None).code, EXIT_NOT_FOUND);
        // An answer without the header (an older store) is not a tag.
        let untagged = answer(
            200,
            json!({"message": "Retrieved successfully", "value": 1}),
        );
        assert_eq!(render(&untagged, &get(true), None).code, EXIT_UNAVAILABLE);
    }

    #[test]
    fn a_failed_condition_names_the_current_etag_and_exits_4() {
        let unmet = |etag: Option<&str>, method: &str| {
            let mut body = json!({
                "causal-metadata": {"10.10.0.2:8085#ab": 2},
                "error": "Precondition failed: the key exists (If-None-Match: *)",
                "message": format!("Error in {method}"),
            });
            if let Some(tag) = etag {
                body["etag"] = json!(tag);
            }
            answer(412, body)
        };
        let put_if = |condition| Action::Put {
            key: "k".into(),
            value: json!(1),
            condition: Some(condition),
        };
        let delete_if = |condition| Action::Delete {
            key: "k".into(),
            condition: Some(condition),
        };
        let cases = [
            (
                put_if(Precondition::Absent),
                unmet(Some(TAG), "PUT"),
                format!("kvctl: condition failed: key \"k\" exists (etag {TAG}); nothing written"),
            ),
            (
                put_if(Precondition::Matches(OLD.into())),
                unmet(Some(TAG), "PUT"),
                format!(
                    "kvctl: condition failed: key \"k\" has etag {TAG}, not {OLD}; nothing written"
                ),
            ),
            (
                put_if(Precondition::Matches(OLD.into())),
                unmet(None, "PUT"),
                "kvctl: condition failed: key \"k\" does not exist; nothing written".into(),
            ),
            (
                delete_if(Precondition::Matches(OLD.into())),
                unmet(Some(TAG), "DELETE"),
                format!(
                    "kvctl: condition failed: key \"k\" has etag {TAG}, not {OLD}; nothing deleted"
                ),
            ),
            (
                delete_if(Precondition::Matches("*".into())),
                unmet(None, "DELETE"),
                "kvctl: condition failed: key \"k\" does not exist; nothing deleted".into(),
            ),
        ];
        for (action, response, line) in cases {
            let outcome = render(&response, &action, None);
            assert_eq!(outcome.code, EXIT_CONDITION_FAILED, "{action:?}");
            assert_eq!(outcome.stderr, [line], "{action:?}");
            assert!(outcome.stdout.is_empty());
            // --json: the 412's body on stdout (its etag as it came), the
            // error line still on stderr, the same code.
            let raw = respond(Ok(response.clone()), &action, true);
            assert_eq!(raw.code, EXIT_CONDITION_FAILED);
            assert_eq!(raw.stdout, [response.body.to_string()]);
            assert_eq!(raw.stderr, outcome.stderr);
        }
    }

    #[test]
    fn reshard_and_add_member_answers_and_their_exit_codes() {
        let reshard = |count| Action::Reshard { count };
        let done = answer(200, json!({"message": "Resharding done successfully"}));
        assert_eq!(
            render(&done, &reshard(3), None).stdout,
            ["OK (resharded into 3 shards)"]
        );
        assert_eq!(
            render(&done, &reshard(1), None).stdout,
            ["OK (resharded into 1 shard)"]
        );
        let refused = answer(
            400,
            json!({"message": "Not enough nodes to provide fault-tolerance with the given shard count!"}),
        );
        let outcome = render(&refused, &reshard(3), None);
        assert_eq!(outcome.code, EXIT_USAGE);
        assert_eq!(
            outcome.stderr,
            [
                "kvctl: not enough nodes to provide fault-tolerance with 3 shards: \
              each shard needs 2 live nodes (10.10.0.2:8085)"
            ]
        );
        let unsharded = answer(
            400,
            json!({"error": "the store is not sharded (start it with SHARD_COUNT)", "message": "Error in PUT"}),
        );
        let outcome = render(&unsharded, &reshard(2), None);
        assert_eq!(outcome.code, EXIT_USAGE);
        assert!(outcome.stderr[0].contains("not sharded"), "{outcome:?}");
        let busy = answer(
            409,
            json!({"error": "a reshard to map version 4 (by 10.10.0.3:8085) is under way", "message": "Error in PUT"}),
        );
        let outcome = render(&busy, &reshard(2), None);
        assert_eq!(outcome.code, EXIT_UNAVAILABLE);
        assert!(outcome.stderr[0].contains("under way"), "{outcome:?}");
        let failed = answer(
            503,
            json!({"error": "The reshard failed and was undone: 10.10.0.4:8085: timed out", "message": "Error in PUT"}),
        );
        let outcome = render(&failed, &reshard(2), None);
        assert_eq!(outcome.code, EXIT_UNAVAILABLE);
        assert!(
            outcome.stderr[0].contains("kvctl: the reshard failed and was undone"),
            "{outcome:?}"
        );

        let add = Action::AddMember {
            id: 2,
            addr: "10.10.0.8:8085".into(),
        };
        let added = answer(200, json!({"message": "Node added to shard successfully"}));
        assert_eq!(
            render(&added, &add, None).stdout,
            ["OK (10.10.0.8:8085 added to shard 2)"]
        );
        let unknown = answer(
            404,
            json!({"error": "Shard ID 2 does not exist", "message": "Error in PUT"}),
        );
        let outcome = render(&unknown, &add, None);
        assert_eq!(outcome.code, EXIT_NOT_FOUND);
        assert_eq!(
            outcome.stderr,
            ["kvctl: shard 2 does not exist (10.10.0.2:8085)"]
        );
        let malformed = answer(
            400,
            json!({"error": "Socket address is malformed: no port", "message": "Error in PUT"}),
        );
        assert_eq!(render(&malformed, &add, None).code, EXIT_USAGE);
    }
}
