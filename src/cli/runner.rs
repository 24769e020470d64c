//! Running one kvctl action: the request, the session bookkeeping around
//! it, and what to print.

use serde_json::{json, Value};

use super::args::Action;
use super::cluster::{render_shards, render_status};
use super::outcome::{Outcome, EXIT_UNAVAILABLE, EXIT_USAGE};
use super::render::{respond, respond_in, unreachable_outcome};
use super::session::SessionFile;
use crate::client::{context_is_empty, merge_contexts, Client};

/// Runs actions with one client, keeping the session file up to date.
pub struct Runner {
    client: Client,
    session: Option<SessionFile>,
    /// The table whose keys the key commands use (`None`: the default).
    table: Option<String>,
}

impl Runner {
    /// A runner sending through `client`, sharing the context of
    /// `session` (none: the context lives only as long as the runner).
    pub fn new(client: Client, session: Option<SessionFile>) -> Self {
        Runner {
            client,
            session,
            table: None,
        }
    }

    /// Sends the key commands (get, put, delete) to the keys of `table`
    /// (`None`: the default table), as `--table` asks.
    pub fn set_table(&mut self, table: Option<String>) {
        self.table = table;
    }

    /// The table whose keys the key commands use (`None`: the default).
    pub fn table(&self) -> Option<&str> {
        self.table.as_deref()
    }

    /// The client (and so the context the next request carries).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The session file, if any.
    pub fn session(&self) -> Option<&SessionFile> {
        self.session.as_ref()
    }

    /// Runs `action`; with `json`, standard output gets the raw response.
    pub async fn run(&mut self, action: &Action, json: bool) -> Outcome {
        self.run_in(action, None, json).await
    }

    /// Runs `action` as [`Runner::run`] does, a key command in `table`
    /// rather than the runner's table ([`Runner::set_table`]) if given.
    pub async fn run_in(&mut self, action: &Action, table: Option<&str>, json: bool) -> Outcome {
        match action {
            Action::Put { .. } | Action::Get { .. } | Action::Delete { .. } => {
                let table = table.or(self.table.as_deref()).map(str::to_string);
                self.run_causal(action, table.as_deref(), json).await
            }
            Action::Tables | Action::TableCreate { .. } | Action::TableDrop { .. } => {
                self.run_causal(action, None, json).await
            }
            Action::View => respond(self.client.view().await, action, json),
            Action::ViewAdd { addr } => respond(self.client.view_add(addr).await, action, json),
            Action::ViewRemove { addr } => {
                respond(self.client.view_remove(addr).await, action, json)
            }
            Action::Health => respond(self.client.health().await, action, json),
            Action::Status => match self.client.status().await {
                Ok((view, replicas)) => render_status(&view, &replicas, json),
                Err(e) => unreachable_outcome(e),
            },
            Action::SessionShow => self.session_show(json),
            Action::SessionReset => self.session_reset(),
            Action::Shards => match self.client.shards().await {
                Ok(shards) => render_shards(&shards, json),
                Err(e) => unreachable_outcome(e),
            },
            Action::Reshard { count } => respond(self.client.reshard(*count).await, action, json),
            Action::AddMember { id, addr } => {
                respond(self.client.add_member(*id, addr).await, action, json)
            }
        }
    }

    /// A key-value request (to the keys of `table`, if given) or a table
    /// request: start from the session's context, end by merging the
    /// answer's context into it.
    async fn run_causal(&mut self, action: &Action, table: Option<&str>, json: bool) -> Outcome {
        // Another process sharing the session may have learned more since
        // this runner last looked (the shell runs many commands).
        if let Some(session) = &self.session {
            let stored = match session.load() {
                Ok(stored) => stored,
                Err(e) => return Outcome::error(EXIT_USAGE, e.to_string()),
            };
            if let Err(e) = self.client.merge_context(&stored) {
                return Outcome::error(EXIT_USAGE, format!("bad causal context: {e}"));
            }
        }
        let client = &mut self.client;
        client.set_table(table.map(str::to_string));
        let result = match action {
            Action::Put {
                key,
                value,
                condition: None,
            } => client.put(key, value.clone()).await,
            Action::Put {
                key,
                value,
                condition: Some(condition),
            } => client.put_if(key, value.clone(), condition).await,
            Action::Get { key, .. } => client.get(key).await,
            Action::Delete {
                key,
                condition: None,
            } => client.delete(key).await,
            Action::Delete {
                key,
                condition: Some(condition),
            } => client.delete_if(key, condition).await,
            Action::Tables => client.list_tables().await,
            Action::TableCreate { name, siblings } => client.create_table(name, *siblings).await,
            Action::TableDrop { name } => client.drop_table(name).await,
            _ => unreachable!("not a key-value or table action"),
        };
        client.set_table(None);
        let made = result.as_ref().is_ok_and(crate::client::concern_not_met);
        let mut outcome = respond_in(result, action, table, json);
        // The client adopted the answer's context unless it was a 503 (a
        // write short of its concern was made all the same); a failed
        // condition's 412 carries a context too, and it is kept.
        if let Some(session) = &self.session {
            if outcome.code != EXIT_UNAVAILABLE || made {
                match session.merge(self.client.context()) {
                    Ok(merged) => self.client.set_context(merged),
                    Err(e) => outcome
                        .stderr
                        .push(format!("kvctl: the session was not saved: {e}")),
                }
            }
        }
        outcome
    }

    fn session_show(&self, json: bool) -> Outcome {
        let stored = match &self.session {
            Some(session) => match session.load() {
                Ok(stored) => stored,
                Err(e) => return Outcome::error(EXIT_USAGE, e.to_string()),
            },
            None => json!({}),
        };
        let context = merge_contexts(&stored, self.client.context()).unwrap_or(stored);
        let path = self
            .session
            .as_ref()
            .map(|s| s.path().display().to_string());
        if json {
            return Outcome::ok([json!({"session": path, "causal-metadata": context}).to_string()]);
        }
        let shown = if context_is_empty(&context) {
            "(empty)".to_string()
        } else {
            context.to_string()
        };
        Outcome::ok([
            format!(
                "session  {}",
                path.unwrap_or_else(|| "none (--no-session)".into())
            ),
            format!("context  {shown}"),
        ])
    }

    fn session_reset(&mut self) -> Outcome {
        if let Some(session) = &self.session {
            if let Err(e) = session.reset() {
                return Outcome::error(EXIT_USAGE, e.to_string());
            }
        }
        self.client.set_context(Value::String(String::new()));
        Outcome::ok(["OK (session reset)".to_string()])
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::cli::shell::run_script;
    use crate::cli::{parse_value, EXIT_CONDITION_FAILED, EXIT_NOT_FOUND, EXIT_OK};
    use crate::client::Precondition;
    use crate::config::{Args, Config};

    /// A lone replica served in this process on port 0 (causal wait
    /// 300 ms), and its address.
    fn start_replica() -> (actix_web::dev::ServerHandle, String) {
        let config = Config::from_args(Args {
            socket_address: Some("127.0.0.1:1".into()),
            view: Some("127.0.0.1:1".into()),
            listen_address: Some("127.0.0.1:0".into()),
            causal_wait_ms: 300,
            max_body_bytes: 1 << 20,
            heartbeat_interval_ms: 100,
            failure_timeout_ms: 1000,
            suspect_timeout_ms: 60_000,
            handover_timeout_ms: 1000,
            view_dns_interval_ms: 5000,
            workers: Some(1),
            ..Args::default()
        })
        .unwrap();
        let running = crate::server::start(config, &crate::incarnation::fresh()).unwrap();
        let handle = running.server.handle();
        actix_rt::spawn(running.server);
        (handle, running.local_addr.to_string())
    }

    fn runner(hosts: &[&str], session: Option<SessionFile>) -> Runner {
        let hosts: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
        Runner::new(Client::with_timeout(hosts, Duration::from_secs(5)), session)
    }

    fn put(key: &str, text: &str) -> Action {
        Action::Put {
            key: key.into(),
            value: parse_value(text, false).unwrap(),
            condition: None,
        }
    }

    fn put_if(key: &str, text: &str, condition: Precondition) -> Action {
        Action::Put {
            key: key.into(),
            value: parse_value(text, false).unwrap(),
            condition: Some(condition),
        }
    }

    fn get(key: &str) -> Action {
        Action::Get {
            key: key.into(),
            etag: false,
        }
    }

    fn get_etag(key: &str) -> Action {
        Action::Get {
            key: key.into(),
            etag: true,
        }
    }

    /// The etag at the end of `OK (..., etag "<tag>")`.
    fn etag_of(outcome: &Outcome) -> String {
        let line = outcome
            .stdout
            .first()
            .unwrap_or_else(|| panic!("{outcome:?}"));
        let (_, tag) = line
            .rsplit_once("etag ")
            .unwrap_or_else(|| panic!("no etag: {outcome:?}"));
        tag.trim_end_matches(')').to_string()
    }

    /// Whether `tag` is a quoted 16-hex-digit entity tag.
    fn is_tag(tag: &str) -> bool {
        let bare = tag.strip_prefix('"').and_then(|t| t.strip_suffix('"'));
        bare.is_some_and(|b| b.len() == 16 && b.bytes().all(|c| c.is_ascii_hexdigit()))
    }

    /// A port nobody listens on.
    fn dead_host() -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().to_string()
    }

    #[actix_rt::test]
    async fn commands_print_what_the_issue_says_and_share_the_session() {
        let (server, host) = start_replica();
        let dir = tempfile::tempdir().unwrap();
        let session = SessionFile::new(dir.path().join("s.json"));
        let dead = dead_host();
        // The first host is dead: every request fails over to the live one.
        let mut first = runner(&[&dead, &host], Some(session.clone()));

        let added = first.run(&put("doc", r#"{"a": [1, "x"]}"#), false).await;
        let tag = etag_of(&added);
        assert!(is_tag(&tag), "{added:?}");
        assert_eq!(added, Outcome::ok([format!("OK (added, etag {tag})")]));
        let updated = first.run(&put("doc", r#"{"a": 2}"#), false).await;
        let tag = etag_of(&updated);
        assert_eq!(updated.stdout, [format!("OK (updated, etag {tag})")]);
        first.run(&put("text", "hello world"), false).await;

        // A second runner (another process) starts from the session file.
        let mut second = runner(&[&host], Some(session.clone()));
        assert_eq!(second.run(&get("doc"), false).await.stdout, [r#"{"a":2}"#]);
        assert_eq!(
            second.run(&get("text"), false).await.stdout,
            ["hello world"]
        );
        assert_eq!(second.client().context(), &session.load().unwrap());
        let raw = second.run(&get("text"), true).await;
        let body: Value = serde_json::from_str(&raw.stdout[0]).unwrap();
        assert_eq!(body["value"], "hello world");
        assert_eq!(body["causal-metadata"], session.load().unwrap());

        let delete = Action::Delete {
            key: "doc".into(),
            condition: None,
        };
        let deleted = second.run(&delete, false).await;
        assert_eq!(deleted.stdout, ["OK (deleted)"]);
        let missing = first.run(&get("doc"), false).await;
        assert_eq!(missing.code, EXIT_NOT_FOUND);
        assert_eq!(missing.stderr, [r#"kvctl: key "doc" not found"#]);

        let view = first.run(&Action::View, false).await;
        assert_eq!(view.stdout, ["127.0.0.1:1"]);
        let health = first.run(&Action::Health, false).await;
        assert!(
            health.stdout.contains(&"synced     yes".to_string()),
            "{health:?}"
        );
        let status = first.run(&Action::Status, false).await;
        assert_eq!(status.code, EXIT_OK);
        let header: Vec<&str> = status.stdout[0].split_whitespace().collect();
        assert_eq!(header, ["REPLICA", "STATUS", "READY", "KEYS", "VIEW"]);
        let live: Vec<&str> = status
            .stdout
            .iter()
            .find(|l| l.starts_with(&host))
            .unwrap_or_else(|| panic!("{status:?}"))
            .split_whitespace()
            .collect();
        assert_eq!(live[1..3], ["ok", "yes"], "{status:?}");
        // The dead first host is listed, marked as outside the view.
        assert!(
            status
                .stdout
                .iter()
                .any(|l| l.starts_with(&format!("{dead}*")) && l.contains("down")),
            "{status:?}"
        );

        let too_long = first.run(&put(&"k".repeat(51), "1"), false).await;
        assert_eq!(too_long.code, EXIT_USAGE);
        assert!(too_long.stderr[0].starts_with("kvctl: key is too long"));
        server.stop(true).await;
    }

    #[actix_rt::test]
    async fn unreachable_and_unsatisfiable_contexts_exit_3() {
        let (server, host) = start_replica();
        let mut nobody = runner(&[&dead_host(), &dead_host()], None);
        let outcome = nobody.run(&get("k"), false).await;
        assert_eq!(outcome.code, EXIT_UNAVAILABLE);
        assert_eq!(outcome.stderr.len(), 1);
        assert!(outcome.stderr[0].starts_with("kvctl: no replica reachable"));

        // A session naming writes this replica never saw (an old cluster's).
        let dir = tempfile::tempdir().unwrap();
        let session = SessionFile::new(dir.path().join("old.json"));
        session.merge(&json!({"127.0.0.1:9#dead": 4})).unwrap();
        let mut stale = runner(&[&host], Some(session.clone()));
        let outcome = stale.run(&get("k"), false).await;
        assert_eq!(outcome.code, EXIT_UNAVAILABLE);
        assert!(outcome.stderr[0].contains("session reset"), "{outcome:?}");
        assert_eq!(
            stale.run(&Action::SessionReset, false).await.stdout,
            ["OK (session reset)"]
        );
        assert_eq!(stale.run(&get("k"), false).await.code, EXIT_NOT_FOUND);
        server.stop(true).await;
    }

    #[actix_rt::test]
    async fn an_unsharded_replica_is_one_shard_and_refuses_resharding() {
        let (server, host) = start_replica();
        let mut runner = runner(&[&dead_host(), &host], None);
        let added = runner.run(&put("k", "1"), false).await;
        assert_eq!(
            added.stdout,
            [format!("OK (added, etag {})", etag_of(&added))],
            "no shard named in an unsharded store"
        );
        let shards = runner.run(&Action::Shards, false).await;
        assert_eq!(
            shards.stdout,
            [
                "SHARD  KEYS  MEMBERS".to_string(),
                "1      1     127.0.0.1:1".into(),
                format!("{host} is in shard 1"),
            ],
            "{shards:?}"
        );
        let raw = runner.run(&Action::Shards, true).await;
        let body: Value = serde_json::from_str(&raw.stdout[0]).unwrap();
        assert_eq!(body["node-shard-id"], 1);
        assert_eq!(body["shards"][0]["shard-id-key-count"], 1);
        // The typed client says the same.
        let client = runner.client();
        assert_eq!(client.shard_ids().await.unwrap(), [1]);
        assert_eq!(client.node_shard_id().await.unwrap(), Some(1));
        assert_eq!(client.shard_members(1).await.unwrap(), ["127.0.0.1:1"]);
        assert_eq!(client.shard_key_count(1).await.unwrap(), 1);
        let unknown = client.shard_members(7).await.unwrap_err();
        assert!(
            matches!(&unknown, crate::client::ClientError::Answer(r) if r.status == 404),
            "{unknown}"
        );
        let refused = runner.run(&Action::Reshard { count: 2 }, false).await;
        assert_eq!(refused.code, EXIT_USAGE);
        assert!(refused.stderr[0].contains("not sharded"), "{refused:?}");
        let add = Action::AddMember {
            id: 1,
            addr: "127.0.0.1:2".into(),
        };
        assert_eq!(runner.run(&add, false).await.code, EXIT_USAGE);
        server.stop(true).await;
    }

    #[actix_rt::test]
    async fn a_script_runs_line_by_line_in_one_session() {
        let (server, host) = start_replica();
        let mut shell = runner(&[&host], None);
        let script =
            "put k 'a b'\nget k\n\n# comment\nget nothing\nbogus\nsession show\nexit\nget k\n";
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = run_script(&mut shell, false, script.as_bytes(), &mut out, &mut err).await;
        let out = String::from_utf8(out).unwrap();
        let err = String::from_utf8(err).unwrap();
        assert_eq!(code, EXIT_OK, "the last command run was `session show`");
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].starts_with("OK (added, etag \""), "{out}");
        assert_eq!(lines[1], "a b");
        assert_eq!(lines[2], "session  none (--no-session)");
        assert!(lines[3].starts_with("context  {\"127.0.0.1:1#"), "{out}");
        assert_eq!(lines.len(), 4, "nothing runs after exit: {out}");
        let errors: Vec<&str> = err.lines().collect();
        assert_eq!(errors.len(), 2, "{err}");
        assert!(errors[0].contains("not found") && errors[1].contains("bogus"));
        server.stop(true).await;
    }

    #[actix_rt::test]
    async fn conditional_writes_fail_with_exit_4_and_keep_the_context() {
        let (server, host) = start_replica();
        let dir = tempfile::tempdir().unwrap();
        let session = SessionFile::new(dir.path().join("s.json"));
        let mut runner = runner(&[&host], Some(session.clone()));

        let created = runner
            .run(&put_if("k", "1", Precondition::Absent), false)
            .await;
        let v1 = etag_of(&created);
        assert_eq!(created.stdout, [format!("OK (added, etag {v1})")]);
        assert_eq!(
            runner.run(&get_etag("k"), false).await.stdout,
            [v1.as_str()]
        );

        // Another writer (no session) moves the key on; this runner's
        // session does not know of it yet.
        let mut other = self::runner(&[&host], None);
        let v2 = etag_of(&other.run(&put("k", "2"), false).await);
        let before = session.load().unwrap();
        let again = runner
            .run(&put_if("k", "3", Precondition::Absent), false)
            .await;
        assert_eq!(again.code, EXIT_CONDITION_FAILED, "{again:?}");
        assert_eq!(
            again.stderr,
            [format!(
                "kvctl: condition failed: key \"k\" exists (etag {v2}); nothing written"
            )]
        );
        // The 412's context (naming the other writer's version) is the
        // session's now.
        let after = session.load().unwrap();
        assert_ne!(after, before, "the session learned from the 412");
        assert_eq!(runner.client().context(), &after);
        let stale = Precondition::matching(&v1).unwrap();
        let refused = runner.run(&put_if("k", "3", stale.clone()), false).await;
        assert_eq!(refused.code, EXIT_CONDITION_FAILED);
        assert!(
            refused.stderr[0].contains(&format!("has etag {v2}, not {v1}")),
            "{refused:?}"
        );
        assert_eq!(runner.run(&get("k"), false).await.stdout, ["2"]);
        // The tag as `get --etag` printed it, quotes and all.
        let current = Precondition::matching(&v2).unwrap();
        let updated = runner.run(&put_if("k", "3", current.clone()), false).await;
        let v3 = etag_of(&updated);
        assert_eq!(updated.stdout, [format!("OK (updated, etag {v3})")]);
        let delete = |condition| Action::Delete {
            key: "k".into(),
            condition: Some(condition),
        };
        assert_eq!(
            runner.run(&delete(current), false).await.code,
            EXIT_CONDITION_FAILED
        );
        let bare = Precondition::matching(v3.trim_matches('"')).unwrap();
        assert_eq!(
            runner.run(&delete(bare.clone()), false).await.stdout,
            ["OK (deleted)"]
        );
        let gone = runner.run(&delete(bare), false).await;
        assert_eq!(gone.code, EXIT_CONDITION_FAILED);
        assert_eq!(
            gone.stderr,
            ["kvctl: condition failed: key \"k\" does not exist; nothing deleted"]
        );

        // The typed client: the tag of every answer, and a GET that names
        // the current version answers 304 with no body.
        let mut client = Client::new([host.as_str()]);
        let put = client.put("t", json!("x")).await.unwrap();
        let tag = put.etag().unwrap().to_string();
        let got = client.get("t").await.unwrap();
        assert_eq!(got.etag(), Some(tag.as_str()));
        let context = client.context().clone();
        let same = client.get_if_none_match("t", &tag).await.unwrap();
        assert_eq!((same.status, &same.body), (304, &Value::Null));
        assert_eq!(same.etag(), Some(tag.as_str()));
        assert_eq!(client.context(), &context);
        let changed = client
            .get_if_none_match("t", "0000000000000000")
            .await
            .unwrap();
        assert_eq!(changed.status, 200);
        assert!(matches!(
            client.get_if_none_match("t", "a b").await,
            Err(crate::client::ClientError::Invalid(_))
        ));
        let unmet = client
            .put_if("t", json!("y"), &Precondition::Absent)
            .await
            .unwrap();
        assert!(unmet.precondition_failed());
        assert_eq!(unmet.etag(), Some(tag.as_str()));
        assert_eq!(client.context(), unmet.metadata().unwrap());
        server.stop(true).await;
    }
}
