//! Tests of kvctl's command line ([`super`]): what each command line parses
//! into, and which are usage errors.

use serde_json::json;

use super::*;

fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("kvctl").chain(args.iter().copied()))
}

fn action(args: &[&str]) -> Action {
    let cli = parse(args).unwrap();
    cli.command.unwrap().into_action(None).unwrap()
}

#[test]
fn values_are_json_when_they_parse_else_strings() {
    assert_eq!(parse_value("1", false).unwrap(), json!(1));
    assert_eq!(parse_value("-2.5", false).unwrap(), json!(-2.5));
    assert_eq!(parse_value("true", false).unwrap(), json!(true));
    assert_eq!(parse_value(r#""quoted""#, false).unwrap(), json!("quoted"));
    assert_eq!(
        parse_value(r#"{"a": [1, "x"]}"#, false).unwrap(),
        json!({"a": [1, "x"]})
    );
    assert_eq!(parse_value("hello", false).unwrap(), json!("hello"));
    assert_eq!(parse_value("{broken", false).unwrap(), json!("{broken"));
    assert_eq!(parse_value("", false).unwrap(), json!(""));
    assert_eq!(parse_value("1 2", false).unwrap(), json!("1 2"));
}

#[test]
fn write_concerns_are_checked_on_the_command_line() {
    assert_eq!(
        parse(&["--w", "Majority", "put", "k", "1"])
            .unwrap()
            .w
            .as_deref(),
        Some("majority")
    );
    assert_eq!(
        parse(&["put", "k", "1", "--w", "2"]).unwrap().w.as_deref(),
        Some("2")
    );
    assert_eq!(parse(&["get", "k"]).unwrap().w, None);
    for bad in ["0", "most", ""] {
        assert!(parse(&["--w", bad, "put", "k", "1"]).is_err(), "{bad:?}");
    }
}

#[test]
fn string_forces_a_string_and_null_is_refused() {
    assert_eq!(parse_value("1", true).unwrap(), json!("1"));
    assert_eq!(parse_value("null", true).unwrap(), json!("null"));
    assert!(parse_value("null", false).unwrap_err().contains("--string"));
}

#[test]
fn commands_parse_into_actions() {
    assert_eq!(
        action(&["put", "k", "-5"]),
        Action::Put {
            key: "k".into(),
            value: json!(-5),
            condition: None,
        }
    );
    assert_eq!(
        action(&["put", "--string", "k", "5"]),
        Action::Put {
            key: "k".into(),
            value: json!("5"),
            condition: None,
        }
    );
    assert_eq!(
        action(&["get", "k"]),
        Action::Get {
            key: "k".into(),
            etag: false
        }
    );
    assert_eq!(
        action(&["delete", "k"]),
        Action::Delete {
            key: "k".into(),
            condition: None
        }
    );
    assert_eq!(action(&["view"]), Action::View);
    assert_eq!(
        action(&["view", "add", "1.2.3.4:5"]),
        Action::ViewAdd {
            addr: "1.2.3.4:5".into()
        }
    );
    assert_eq!(
        action(&["view", "remove", "1.2.3.4:5"]),
        Action::ViewRemove {
            addr: "1.2.3.4:5".into()
        }
    );
    assert_eq!(action(&["health"]), Action::Health);
    assert_eq!(action(&["status"]), Action::Status);
    assert_eq!(action(&["session"]), Action::SessionShow);
    assert_eq!(action(&["session", "show"]), Action::SessionShow);
    assert_eq!(action(&["session", "reset"]), Action::SessionReset);
    assert_eq!(action(&["shards"]), Action::Shards);
    assert_eq!(action(&["reshard", "3"]), Action::Reshard { count: 3 });
    assert_eq!(
        action(&["add-member", "2", "10.10.0.8:8085"]),
        Action::AddMember {
            id: 2,
            addr: "10.10.0.8:8085".into()
        }
    );
}

#[test]
fn options_go_before_or_after_the_command() {
    let cli = parse(&["get", "k", "--json", "--hosts", "9000"]).unwrap();
    assert!(cli.json);
    assert_eq!(cli.hosts, "9000");
    let cli = parse(&["--no-session", "-i"]).unwrap();
    assert!(cli.no_session && cli.interactive && cli.command.is_none());
}

#[test]
fn malformed_command_lines_are_usage_errors() {
    for args in [
        &["put", "k"][..],
        &["get"],
        &["frobnicate"],
        &["view", "add"],
        &["get", "k", "--bogus"],
        &["reshard"],
        &["reshard", "0"],
        &["reshard", "257"],
        &["reshard", "two"],
        &["reshard", "-1"],
        &["add-member", "1"],
        &["add-member", "x", "10.10.0.8:8085"],
        &["shards", "1"],
        &["put", "k", "v", "--if-absent", "--if-match", "abc"],
        &["put", "k", "v", "--if-match"],
        &["delete", "k", "--if-absent"],
        &["get", "k", "--if-match", "abc"],
    ] {
        let e = parse(args).unwrap_err();
        let line = usage_line(&e, "kvctl --help");
        assert!(!line.contains('\n') && !line.starts_with("error"), "{line}");
    }
}

#[test]
fn conditions_and_etags_parse_into_actions() {
    let tag = "\"9f2c0a1b3d4e5f60\"";
    let matching = Some(Precondition::Matches(tag.into()));
    assert_eq!(
        action(&["put", "k", "1", "--if-absent"]),
        Action::Put {
            key: "k".into(),
            value: json!(1),
            condition: Some(Precondition::Absent),
        }
    );
    // Quotes are optional: a bare tag is quoted.
    for given in ["9f2c0a1b3d4e5f60", tag] {
        assert_eq!(
            action(&["put", "--if-match", given, "k", "1"]),
            Action::Put {
                key: "k".into(),
                value: json!(1),
                condition: matching.clone(),
            }
        );
        assert_eq!(
            action(&["delete", "k", "--if-match", given]),
            Action::Delete {
                key: "k".into(),
                condition: matching.clone(),
            }
        );
    }
    assert_eq!(
        action(&["delete", "k", "--if-match", "*"]),
        Action::Delete {
            key: "k".into(),
            condition: Some(Precondition::Matches("*".into())),
        }
    );
    assert_eq!(
        action(&["get", "--etag", "k"]),
        Action::Get {
            key: "k".into(),
            etag: true
        }
    );
    // A malformed tag is a usage error naming the flag.
    for bad in ["", "a b", "a\"b"] {
        let cli = parse(&["put", "k", "1", "--if-match", bad]).unwrap();
        let e = cli.command.unwrap().into_action(None).unwrap_err();
        assert!(e.starts_with("--if-match: "), "{e}");
        let cli = parse(&["delete", "k", "--if-match", bad]).unwrap();
        assert!(cli.command.unwrap().into_action(None).is_err());
    }
}

#[test]
fn a_dash_reads_the_value_from_stdin() {
    let cli = parse(&["put", "k", "-"]).unwrap();
    let mut input: &[u8] = b"{\"n\": 1}\n";
    let action = cli.command.unwrap().into_action(Some(&mut input)).unwrap();
    assert_eq!(
        action,
        Action::Put {
            key: "k".into(),
            value: json!({"n": 1}),
            condition: None,
        }
    );
    let cli = parse(&["put", "--string", "k", "-"]).unwrap();
    let mut input: &[u8] = b"two\nlines\r\n";
    let action = cli.command.unwrap().into_action(Some(&mut input)).unwrap();
    assert_eq!(
        action,
        Action::Put {
            key: "k".into(),
            value: json!("two\nlines"),
            condition: None,
        }
    );
    let cli = parse(&["put", "k", "-"]).unwrap();
    assert!(cli.command.unwrap().into_action(None).is_err());
}

#[test]
fn sessions_resolve_to_files_under_the_state_dir() {
    let cli = parse(&["--state-dir", "/s", "--session", "work", "get", "k"]).unwrap();
    let session = cli.session_file().unwrap().unwrap();
    assert_eq!(
        session.path(),
        std::path::Path::new("/s/sessions/work.json")
    );
    let cli = parse(&["--session-file", "/tmp/x.json", "get", "k"]).unwrap();
    assert_eq!(
        cli.session_file().unwrap().unwrap().path(),
        std::path::Path::new("/tmp/x.json")
    );
    let cli = parse(&["--no-session", "--session-file", "/tmp/x", "get", "k"]).unwrap();
    assert!(cli.session_file().unwrap().is_none());
    let cli = parse(&["--state-dir", "/s", "--session", "../up", "get", "k"]).unwrap();
    assert!(cli.session_file().is_err());
}

#[test]
fn table_names_are_checked_as_the_store_does() {
    for good in ["t", "orders_2024", "A-b_9", &"x".repeat(50)] {
        assert_eq!(parse_table_name(good).as_deref(), Ok(good));
    }
    for bad in ["", "a b", "a/b", "é", "a.b", &"x".repeat(51)] {
        let e = parse_table_name(bad).unwrap_err();
        assert!(e.starts_with("invalid table name"), "{e}");
        assert!(e.contains("1 to 50 letters"), "{e}");
    }
}

#[test]
fn tables_commands_parse_into_actions() {
    assert_eq!(action(&["tables"]), Action::Tables);
    assert_eq!(action(&["tables", "list"]), Action::Tables);
    assert_eq!(
        action(&["tables", "create", "orders_2024"]),
        Action::TableCreate {
            name: "orders_2024".into(),
            siblings: false
        }
    );
    assert_eq!(
        action(&["tables", "create", "--siblings", "carts"]),
        Action::TableCreate {
            name: "carts".into(),
            siblings: true
        }
    );
    assert_eq!(
        action(&["tables", "create", "carts", "--siblings", "--json"]),
        Action::TableCreate {
            name: "carts".into(),
            siblings: true
        }
    );
    assert_eq!(
        action(&["tables", "drop", "t-1"]),
        Action::TableDrop { name: "t-1".into() }
    );
}

#[test]
fn table_goes_before_or_after_the_command_and_is_checked() {
    assert_eq!(parse(&["get", "k"]).unwrap().table, None);
    let cli = parse(&["--table", "carts", "get", "k"]).unwrap();
    assert_eq!(cli.table.as_deref(), Some("carts"));
    // The key command itself is unchanged: the table is the runner's.
    assert_eq!(
        cli.command.unwrap().into_action(None).unwrap(),
        Action::Get {
            key: "k".into(),
            etag: false
        }
    );
    let cli = parse(&["put", "k", "1", "--if-absent", "--table", "carts"]).unwrap();
    assert_eq!(cli.table.as_deref(), Some("carts"));
    let cli = parse(&["delete", "--table=x_1", "k"]).unwrap();
    assert_eq!(cli.table.as_deref(), Some("x_1"));
    let cli = parse(&["--table", "t", "-i"]).unwrap();
    assert!(cli.interactive && cli.table.as_deref() == Some("t"));
}

#[test]
fn malformed_tables_command_lines_are_usage_errors() {
    let fifty_one = "x".repeat(51);
    for args in [
        &["tables", "create"][..],
        &["tables", "drop"],
        &["tables", "frobnicate"],
        &["tables", "list", "extra"],
        &["tables", "drop", "t", "--siblings"],
        &["tables", "create", "a b"],
        &["tables", "create", "a.b"],
        &["tables", "drop", &fifty_one],
        &["--table", "", "get", "k"],
        &["--table", "a/b", "get", "k"],
        &["get", "k", "--table"],
    ] {
        let e = parse(args).unwrap_err();
        let line = usage_line(&e, "kvctl --help");
        assert!(!line.contains('\n') && !line.starts_with("error"), "{line}");
    }
    // A bad name is refused in the store's terms.
    let e = parse(&["--table", "a.b", "get", "k"]).unwrap_err();
    let line = usage_line(&e, "kvctl --help");
    assert!(
        line.contains("invalid table name \"a.b\": use 1 to 50 letters"),
        "{line}"
    );
}
