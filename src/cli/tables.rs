//! kvctl and tables: what kvctl prints for the answers of the `tables`
//! command (list, create, drop) and of key commands sent to a table's keys
//! with `--table NAME` (`/tables/NAME/key-value-store/KEY`): the list of
//! tables, a table that does not exist, an invalid name, and the
//! concurrent values (siblings) a GET answers with (300) in a table that
//! keeps them. The command line itself ([`super::args::TablesCommand`],
//! [`super::args::parse_table_name`]) is parsed in [`super::args`].

use serde_json::Value;

use super::args::{invalid_name, Action};
use super::outcome::{answer_outcome, Outcome, EXIT_NOT_FOUND, EXIT_USAGE};
use crate::client::Response;

/// What the store says of a request naming a table that does not exist.
const NO_TABLE: &str = "Table does not exist";

/// What the store says of a request naming a table by an invalid name.
const BAD_NAME: &str = "Table name is invalid";

/// `key "k"`, or `key "k" in table "t"`.
pub(super) fn describe_key(key: &str, table: Option<&str>) -> String {
    match table {
        Some(table) => format!("key {key:?} in table {table:?}"),
        None => format!("key {key:?}"),
    }
}

/// Whether `response` refuses a request for its table: the table does not
/// exist (404) or its name is invalid (400).
pub(super) fn is_table_error(response: &Response) -> bool {
    let error = response.body["error"].as_str();
    matches!(
        (response.status, error),
        (404, Some(NO_TABLE)) | (400, Some(BAD_NAME))
    )
}

/// The error of a request refused for its table ([`is_table_error`]): the
/// table the request named is `table` (a key command's `--table`), else
/// the one `action` names.
pub(super) fn table_error(response: &Response, action: &Action, table: Option<&str>) -> Outcome {
    let name = table.or(match action {
        Action::TableCreate { name, .. } | Action::TableDrop { name } => Some(name.as_str()),
        _ => None,
    });
    let shown = name.map_or_else(|| "the table".to_string(), |n| format!("table {n:?}"));
    if response.status == 400 {
        return Outcome::error(
            EXIT_USAGE,
            match name {
                Some(name) => invalid_name(name),
                None => "invalid table name".to_string(),
            },
        );
    }
    let hint = match (action, name) {
        (Action::TableDrop { .. }, _) | (_, None) => String::new(),
        (_, Some(name)) => format!(" (`kvctl tables create {name}` creates it)"),
    };
    Outcome::error(EXIT_NOT_FOUND, format!("{shown} does not exist{hint}"))
}

/// The outcome of an answer to `tables`, `tables create` or `tables
/// drop` (refusals of the table aside: [`table_error`]).
pub(super) fn render_tables_answer(response: &Response, action: &Action) -> Outcome {
    match (action, response.status) {
        (Action::Tables, 200) => match response.body["tables"].as_array() {
            Some(tables) => list_tables(tables),
            None => answer_outcome(response),
        },
        (Action::TableCreate { name, siblings }, 201 | 200) => created(name, *siblings, response),
        (Action::TableDrop { name }, 200) => Outcome::ok([format!("OK (table {name:?} dropped)")]),
        // A 404 that is not about the table: a node without tables.
        (_, 404) => Outcome::error(
            EXIT_USAGE,
            format!(
                "{} does not serve tables (a build before them?): {}",
                response.host, response.body
            ),
        ),
        _ => answer_outcome(response),
    }
}

/// `OK (table "t" created)` or `OK (table "t" already exists, ...)`; if
/// it existed with other settings than asked for, a warning that they are
/// unchanged.
fn created(name: &str, siblings: bool, response: &Response) -> Outcome {
    let table = &response.body["table"];
    let has = table["siblings"].as_bool();
    let mut said = Vec::new();
    if has.unwrap_or(siblings) {
        said.push("with siblings".to_string());
    }
    if response.status == 201 {
        let mut line = format!("OK (table {name:?} created");
        for part in &said {
            line.push_str(&format!(", {part}"));
        }
        return Outcome::ok([line + ")"]);
    }
    if let Some(keys) = table["keys"].as_u64() {
        said.push(plural(keys, "key"));
    }
    let mut line = format!("OK (table {name:?} already exists");
    for part in &said {
        line.push_str(&format!(", {part}"));
    }
    let mut outcome = Outcome::ok([line + ")"]);
    if has.is_some_and(|has| has != siblings) {
        outcome.stderr.push(format!(
            "kvctl: table {name:?} already exists {}; its settings are unchanged \
             (drop it and create it again to change them)",
            if siblings {
                "without siblings"
            } else {
                "with siblings"
            }
        ));
    }
    outcome
}

/// The tables as a table: name, whether it keeps siblings, key count.
fn list_tables(tables: &[Value]) -> Outcome {
    if tables.is_empty() {
        return Outcome::ok([
            "no tables (the default table aside; `kvctl tables create NAME` creates one)"
                .to_string(),
        ]);
    }
    let mut rows = vec![["TABLE".to_string(), "SIBLINGS".into(), "KEYS".into()]];
    for table in tables {
        let siblings = match table["siblings"].as_bool() {
            Some(true) => "yes",
            Some(false) => "no",
            None => "-",
        };
        let keys = table["keys"]
            .as_u64()
            .map_or_else(|| "-".to_string(), |k| k.to_string());
        let name = table["name"].as_str().unwrap_or("?").to_string();
        rows.push([name, siblings.into(), keys]);
    }
    let widths: Vec<usize> = (0..2)
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    Outcome::ok(rows.iter().map(|r| {
        format!(
            "{:<w0$}  {:<w1$}  {}",
            r[0],
            r[1],
            r[2],
            w0 = widths[0],
            w1 = widths[1]
        )
    }))
}

/// A GET's 300: the key's concurrent values (siblings), one per line as
/// compact JSON under a line saying how many; with `etag`, an error, since
/// no one version has a tag.
pub(super) fn siblings(response: &Response, key: &str, etag: bool, table: Option<&str>) -> Outcome {
    let values = response.values().unwrap_or_default();
    let count = format!("{} concurrent values (siblings)", values.len());
    if etag {
        return Outcome::error(
            EXIT_USAGE,
            format!(
                "{} has {count}, so no etag; a put or delete ordered after them \
                 (as after this get) replaces them all",
                describe_key(key, table)
            ),
        );
    }
    let mut lines = vec![format!("{count}:")];
    lines.extend(values.iter().map(|value| format!("  {value}")));
    Outcome::ok(lines)
}

fn plural(n: u64, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::outcome::{EXIT_OK, EXIT_UNAVAILABLE};
    use super::super::render::{render, respond};
    use super::*;

    fn answer(status: u16, body: Value) -> Response {
        Response::new("10.10.0.2:8085", status, body)
    }

    fn create(name: &str, siblings: bool) -> Action {
        Action::TableCreate {
            name: name.into(),
            siblings,
        }
    }

    fn get(etag: bool) -> Action {
        Action::Get {
            key: "k".into(),
            etag,
        }
    }

    const CTX: &str = r#"{"10.10.0.2:8085#ab": 3}"#;

    fn ctx() -> Value {
        serde_json::from_str(CTX).unwrap()
    }

    #[test]
    fn tables_list_as_a_table_sorted_as_the_store_sent_them() {
        let listed = answer(
            200,
            json!({"message": "Retrieved successfully", "causal-metadata": ctx(),
                   "tables": [{"name": "carts", "siblings": true, "keys": 3},
                              {"name": "orders_2024", "siblings": false, "keys": 12}]}),
        );
        let outcome = render(&listed, &Action::Tables, None);
        assert_eq!(outcome.code, EXIT_OK);
        assert_eq!(
            outcome.stdout,
            [
                "TABLE        SIBLINGS  KEYS",
                "carts        yes       3",
                "orders_2024  no        12",
            ]
        );
        // --json: the body as it came.
        let raw = respond(Ok(listed.clone()), &Action::Tables, true);
        assert_eq!(raw.stdout, [listed.body.to_string()]);
        let none = answer(
            200,
            json!({"message": "Retrieved successfully", "tables": [], "causal-metadata": ctx()}),
        );
        let outcome = render(&none, &Action::Tables, None);
        assert_eq!(outcome.code, EXIT_OK);
        assert!(outcome.stdout[0].starts_with("no tables"), "{outcome:?}");
        // A node without tables answers 404: said so, exit 2.
        let old = answer(
            404,
            json!({"error": "no such endpoint: /tables", "message": "Error in GET"}),
        );
        let outcome = render(&old, &Action::Tables, None);
        assert_eq!(outcome.code, EXIT_USAGE);
        assert!(
            outcome.stderr[0].contains("10.10.0.2:8085 does not serve tables"),
            "{outcome:?}"
        );
        assert_eq!(
            render(&old, &create("t", false), None).code,
            EXIT_USAGE,
            "a create there too"
        );
    }

    #[test]
    fn create_says_whether_it_created_and_warns_of_other_settings() {
        let table =
            |siblings: bool, keys: u64| json!({"name": "t", "siblings": siblings, "keys": keys});
        let made = answer(
            201,
            json!({"message": "Table created successfully", "table": table(true, 0), "causal-metadata": ctx()}),
        );
        assert_eq!(
            render(&made, &create("t", true), None),
            Outcome::ok(["OK (table \"t\" created, with siblings)".to_string()])
        );
        let made = answer(
            201,
            json!({"message": "Table created successfully", "table": table(false, 0), "causal-metadata": ctx()}),
        );
        assert_eq!(
            render(&made, &create("t", false), None).stdout,
            ["OK (table \"t\" created)"]
        );
        let existed = answer(
            200,
            json!({"message": "Table already exists", "table": table(false, 1), "causal-metadata": ctx()}),
        );
        assert_eq!(
            render(&existed, &create("t", false), None),
            Outcome::ok(["OK (table \"t\" already exists, 1 key)".to_string()])
        );
        // Asked with siblings, it has none: still OK, with a warning.
        let outcome = render(&existed, &create("t", true), None);
        assert_eq!(outcome.code, EXIT_OK);
        assert_eq!(outcome.stdout, ["OK (table \"t\" already exists, 1 key)"]);
        assert_eq!(
            outcome.stderr,
            [
                "kvctl: table \"t\" already exists without siblings; its settings are \
              unchanged (drop it and create it again to change them)"
            ]
        );
        let existed = answer(
            200,
            json!({"message": "Table already exists", "table": table(true, 7), "causal-metadata": ctx()}),
        );
        let outcome = render(&existed, &create("t", false), None);
        assert_eq!(
            outcome.stdout,
            ["OK (table \"t\" already exists, with siblings, 7 keys)"]
        );
        assert!(
            outcome.stderr[0].contains("already exists with siblings"),
            "{outcome:?}"
        );
    }

    #[test]
    fn a_missing_table_and_a_bad_name_are_clear_errors() {
        let drop = Action::TableDrop { name: "t".into() };
        let dropped = answer(
            200,
            json!({"message": "Table dropped successfully", "causal-metadata": ctx()}),
        );
        assert_eq!(
            render(&dropped, &drop, None).stdout,
            ["OK (table \"t\" dropped)"]
        );
        let missing = |method: &str| {
            answer(
                404,
                json!({"error": "Table does not exist", "message": format!("Error in {method}"),
                       "causal-metadata": ctx()}),
            )
        };
        let outcome = render(&missing("DELETE"), &drop, None);
        assert_eq!(outcome.code, EXIT_NOT_FOUND);
        assert_eq!(outcome.stderr, ["kvctl: table \"t\" does not exist"]);
        // A key command in a table that does not exist: the table is
        // named, not the key, whatever the method.
        let put = Action::Put {
            key: "k".into(),
            value: json!(1),
            condition: None,
        };
        for (action, method) in [(put, "PUT"), (get(false), "GET"), (get(true), "GET")] {
            let outcome = render(&missing(method), &action, Some("t"));
            assert_eq!(outcome.code, EXIT_NOT_FOUND, "{action:?}");
            assert_eq!(
                outcome.stderr,
                ["kvctl: table \"t\" does not exist (`kvctl tables create t` creates it)"],
                "{action:?}"
            );
        }
        // A key missing from a table that exists names both.
        let no_key = answer(
            404,
            json!({"doesExist": false, "error": "Key does not exist", "message": "Error in GET",
                   "causal-metadata": ctx()}),
        );
        assert_eq!(
            render(&no_key, &get(false), Some("t")).stderr,
            ["kvctl: key \"k\" in table \"t\" not found"]
        );
        let bad = answer(
            400,
            json!({"error": "Table name is invalid", "message": "Error in GET"}),
        );
        let outcome = render(&bad, &get(false), Some("a.b"));
        assert_eq!(outcome.code, EXIT_USAGE);
        assert_eq!(
            outcome.stderr,
            ["kvctl: invalid table name \"a.b\": use 1 to 50 letters, digits, '-' and '_'"]
        );
    }

    #[test]
    fn siblings_are_listed_one_per_line_and_exit_0() {
        let body = json!({"doesExist": true, "message": "Retrieved successfully",
                          "values": ["hello", {"a": [1, 2]}, 3], "causal-metadata": ctx()});
        let many = answer(300, body.clone());
        let outcome = render(&many, &get(false), Some("t"));
        assert_eq!(
            outcome,
            Outcome::ok([
                "3 concurrent values (siblings):".to_string(),
                "  \"hello\"".into(),
                "  {\"a\":[1,2]}".into(),
                "  3".into(),
            ])
        );
        // --json: the 300's body as it came, exit 0.
        let raw = respond(Ok(many.clone()), &get(false), true);
        assert_eq!((raw.code, raw.stdout), (EXIT_OK, vec![body.to_string()]));
        // No one version, so no etag.
        let outcome = render(&many, &get(true), Some("t"));
        assert_eq!(outcome.code, EXIT_USAGE);
        assert!(
            outcome.stderr[0].starts_with(
                "kvctl: key \"k\" in table \"t\" has 3 concurrent values (siblings), so no etag"
            ),
            "{outcome:?}"
        );
        // The causal wait still wins over everything else.
        let waited = answer(
            503,
            json!({"error": "Causal dependencies not satisfied", "message": "Error in GET"}),
        );
        assert_eq!(
            render(&waited, &Action::Tables, None).code,
            EXIT_UNAVAILABLE
        );
    }
}
