//! End-to-end tests of `kvctl`: a real cluster, the real binary, each run
//! with its own state directory (never the user's home).

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use serde_json::{json, Value};

use common::{free_ports, Options, TestCluster};

/// One finished `kvctl` run.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn from(output: Output) -> Run {
        Run {
            code: output.status.code().expect("kvctl exited by a signal"),
            stdout: String::from_utf8(output.stdout).expect("stdout is UTF-8"),
            stderr: String::from_utf8(output.stderr).expect("stderr is UTF-8"),
        }
    }

    /// Asserts success and returns stdout.
    fn ok(&self) -> &str {
        assert_eq!(self.code, 0, "{self:?}");
        assert!(self.stderr.is_empty(), "{self:?}");
        &self.stdout
    }

    /// Asserts exit `code` with exactly one line on stderr naming `what`.
    fn fails(&self, code: i32, what: &str) {
        assert_eq!(self.code, code, "{self:?}");
        assert!(self.stderr.starts_with("kvctl: "), "{self:?}");
        assert_eq!(self.stderr.lines().count(), 1, "one line: {self:?}");
        assert!(self.stderr.contains(what), "{self:?}");
    }
}

/// kvctl's environment for one test: a state directory of its own.
struct Kvctl {
    state: tempfile::TempDir,
}

impl Kvctl {
    fn new() -> Kvctl {
        Kvctl {
            state: tempfile::Builder::new()
                .prefix("kvctl-state-")
                .tempdir()
                .expect("temporary state directory"),
        }
    }

    fn state_dir(&self) -> &Path {
        self.state.path()
    }

    /// The default session's file.
    fn session_file(&self) -> PathBuf {
        self.state_dir().join("sessions").join("default.json")
    }

    /// The context stored in the default session.
    fn session_context(&self) -> Value {
        let text = std::fs::read_to_string(self.session_file()).expect("session file");
        let stored: Value = serde_json::from_str(&text).expect("session file is JSON");
        stored["causal-metadata"].clone()
    }

    /// `kvctl` with nothing of the caller's environment but the state dir.
    fn command(&self, hosts: &str, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_kvctl"));
        command
            .env_clear()
            .env("KVCTL_STATE_DIR", self.state_dir())
            .env("CAUSALKV_HOSTS", hosts)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    /// Runs `kvctl args` against `hosts` with no stdin.
    fn run(&self, hosts: &str, args: &[&str]) -> Run {
        let output = self
            .command(hosts, args)
            .stdin(Stdio::null())
            .output()
            .expect("run kvctl");
        Run::from(output)
    }

    /// Starts `kvctl args` against `hosts` with `input` on stdin.
    fn spawn_with_input(&self, hosts: &str, args: &[&str], input: &str) -> Child {
        let mut child = self
            .command(hosts, args)
            .stdin(Stdio::piped())
            .spawn()
            .expect("spawn kvctl");
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(input.as_bytes()).expect("write stdin");
        child
    }

    /// Runs `kvctl args` against `hosts` with `input` on stdin.
    fn run_with_input(&self, hosts: &str, args: &[&str], input: &str) -> Run {
        let child = self.spawn_with_input(hosts, args, input);
        Run::from(child.wait_with_output().expect("wait for kvctl"))
    }
}

/// What a put printed, `OK (WHAT[, shard N], etag "TAG")`: WHAT, N and
/// the quoted tag (16 hex digits); `None` if the line is not that.
fn put_line(line: &str) -> Option<(String, Option<u32>, String)> {
    let inner = line.strip_prefix("OK (")?.strip_suffix(')')?;
    let parts: Vec<&str> = inner.split(", ").collect();
    let (what, rest) = parts.split_first()?;
    let (last, middle) = rest.split_last()?;
    let tag = last.strip_prefix("etag ")?;
    let hex = tag.strip_prefix('"')?.strip_suffix('"')?;
    if hex.len() != 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let shard = match middle {
        [] => None,
        [shard] => Some(shard.strip_prefix("shard ")?.parse().ok()?),
        _ => return None,
    };
    Some((what.to_string(), shard, tag.to_string()))
}

/// Asserts that `run` is a successful put that printed `OK (WHAT, etag
/// "TAG")` (no shard) and nothing else; returns the tag, quoted.
fn put_ok(run: &Run, what: &str) -> String {
    let out = run.ok();
    let line = out.strip_suffix('\n').unwrap_or_default();
    match put_line(line) {
        Some((said, None, tag)) if said == what && !line.contains('\n') => tag,
        _ => panic!("not `OK ({what}, etag \"...\")`: {run:?}"),
    }
}

/// `a:port,b:port` of the replicas `at`.
fn hosts(cluster: &TestCluster, at: &[usize]) -> String {
    at.iter()
        .map(|&i| cluster.addr(i).to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// The replica id (incarnation) of replica `i`, as contexts name it.
async fn replica_id(cluster: &TestCluster, i: usize) -> String {
    cluster.health(i).await["replica"]
        .as_str()
        .expect("health names the replica")
        .to_string()
}

/// Two addresses nobody listens on.
fn dead_hosts() -> String {
    free_ports(2)
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[actix_web::test]
async fn a_put_at_one_replica_is_read_at_another_through_the_session() {
    let cluster = TestCluster::start(3).await;
    let kv = Kvctl::new();
    let (a, b, c) = (
        hosts(&cluster, &[0]),
        hosts(&cluster, &[1]),
        hosts(&cluster, &[2]),
    );

    put_ok(&kv.run(&a, &["put", "greeting", "hello world"]), "added");
    assert_eq!(kv.run(&b, &["get", "greeting"]).ok(), "hello world\n");
    put_ok(&kv.run(&c, &["put", "greeting", "hi"]), "updated");
    assert_eq!(kv.run(&a, &["get", "greeting"]).ok(), "hi\n");

    // The session holds the writes of both replicas written to, and --json
    // prints the raw response, whose context is the session's.
    let id_a = replica_id(&cluster, 0).await;
    let id_c = replica_id(&cluster, 2).await;
    assert_eq!(
        kv.session_context(),
        json!({id_a.clone(): 1, id_c.clone(): 1})
    );
    let raw: Value = serde_json::from_str(kv.run(&b, &["--json", "get", "greeting"]).ok()).unwrap();
    assert_eq!(raw["message"], "Retrieved successfully");
    assert_eq!(raw["value"], "hi");
    assert_eq!(raw["causal-metadata"], kv.session_context());

    assert_eq!(kv.run(&b, &["delete", "greeting"]).ok(), "OK (deleted)\n");
    kv.run(&a, &["get", "greeting"]).fails(1, "not found");

    // `session show` names the file and the context; `reset` forgets it.
    let shown = kv.run(&a, &["session", "show"]);
    let file = kv.session_file().display().to_string();
    assert!(shown.ok().contains(&file), "{shown:?}");
    assert!(shown.ok().contains(&id_a), "{shown:?}");
    let raw: Value = serde_json::from_str(kv.run(&a, &["session", "show", "--json"]).ok()).unwrap();
    assert_eq!(
        raw,
        json!({"session": file, "causal-metadata": kv.session_context()})
    );
    assert_eq!(
        kv.run(&a, &["session", "reset"]).ok(),
        "OK (session reset)\n"
    );
    assert!(!kv.session_file().exists());
    assert!(kv.run(&a, &["session"]).ok().contains("context  (empty)"));

    // A named session has a file of its own.
    kv.run(&a, &["--session", "other", "put", "x", "1"]).ok();
    assert!(kv.state_dir().join("sessions/other.json").exists());
    assert!(!kv.session_file().exists());
}

#[actix_web::test]
async fn values_are_json_when_they_parse_and_strings_otherwise() {
    let cluster = TestCluster::start(1).await;
    let kv = Kvctl::new();
    let host = hosts(&cluster, &[0]);
    let stored = |key: &str| -> Value {
        let raw: Value = serde_json::from_str(kv.run(&host, &["get", key, "--json"]).ok()).unwrap();
        raw["value"].clone()
    };

    kv.run(&host, &["put", "n", "42"]).ok();
    kv.run(&host, &["put", "neg", "-1.5"]).ok();
    kv.run(&host, &["put", "doc", r#"{"tags": ["a", "b"], "n": 1}"#])
        .ok();
    kv.run(&host, &["put", "word", "hello"]).ok();
    kv.run(&host, &["put", "--string", "s42", "42"]).ok();
    kv.run(&host, &["put", "quoted", r#""42""#]).ok();
    assert_eq!(stored("n"), json!(42));
    assert_eq!(stored("neg"), json!(-1.5));
    assert_eq!(stored("doc"), json!({"tags": ["a", "b"], "n": 1}));
    assert_eq!(stored("word"), json!("hello"));
    assert_eq!(stored("s42"), json!("42"));
    assert_eq!(stored("quoted"), json!("42"));

    // `get` prints strings raw and everything else as compact JSON.
    assert_eq!(
        kv.run(&host, &["get", "doc"]).ok(),
        "{\"n\":1,\"tags\":[\"a\",\"b\"]}\n"
    );
    assert_eq!(kv.run(&host, &["get", "s42"]).ok(), "42\n");
    assert_eq!(kv.run(&host, &["get", "word"]).ok(), "hello\n");

    // `-` reads the value from stdin (one trailing newline dropped).
    let run = kv.run_with_input(&host, &["put", "piped", "-"], "{\"from\": \"stdin\"}\n");
    put_ok(&run, "added");
    assert_eq!(stored("piped"), json!({"from": "stdin"}));
    let run = kv.run_with_input(
        &host,
        &["put", "--string", "text", "-"],
        "[1, 2]\nline two\n",
    );
    run.ok();
    assert_eq!(stored("text"), json!("[1, 2]\nline two"));

    // null cannot be stored, unless as the text.
    kv.run(&host, &["put", "nothing", "null"])
        .fails(2, "--string");
    kv.run(&host, &["put", "--string", "nothing", "null"]).ok();
    assert_eq!(stored("nothing"), json!("null"));
}

#[actix_web::test]
async fn a_dead_first_host_is_skipped() {
    let mut cluster = TestCluster::start(3).await;
    let kv = Kvctl::new();
    cluster.kill(0);
    let list = hosts(&cluster, &[0, 1, 2]);

    put_ok(&kv.run(&list, &["put", "k", "v"]), "added");
    assert_eq!(kv.run(&list, &["get", "k"]).ok(), "v\n");
    // The write went to the first live host.
    let id_b = replica_id(&cluster, 1).await;
    assert_eq!(kv.session_context(), json!({id_b: 1}));
    let other_order = hosts(&cluster, &[0, 2]);
    assert_eq!(kv.run(&other_order, &["get", "k"]).ok(), "v\n");
    kv.run(&list, &["health"]).ok();

    // `status` reports the dead replica (in the view or not) as down.
    let status = kv.run(&list, &["status"]);
    let dead_line = status
        .ok()
        .lines()
        .find(|l| l.starts_with(cluster.addr(0)))
        .unwrap_or_else(|| panic!("{status:?}"));
    assert!(dead_line.contains("down"), "{status:?}");
    let header: Vec<&str> = status
        .ok()
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["REPLICA", "STATUS", "READY", "KEYS", "VIEW"],
        "{status:?}"
    );
    for i in [1, 2] {
        let line = status.ok().lines().find(|l| l.starts_with(cluster.addr(i)));
        let cells: Vec<&str> = line.unwrap_or_default().split_whitespace().collect();
        assert_eq!(
            cells.get(1..3),
            Some(&["ok", "yes"][..]),
            "live and ready: {status:?}"
        );
    }
}

#[actix_web::test]
async fn exit_codes_say_what_went_wrong() {
    let cluster = TestCluster::start(2).await;
    let kv = Kvctl::new();
    let host = hosts(&cluster, &[0, 1]);

    // 1: not found.
    kv.run(&host, &["get", "absent"])
        .fails(1, "\"absent\" not found");
    kv.run(&host, &["delete", "absent"]).fails(1, "not found");
    kv.run(&host, &["view", "remove", "127.0.0.1:9"])
        .fails(1, "not in the view");

    // 2: usage errors, from the command line or from the replica's 400.
    kv.run(&host, &["frobnicate"]).fails(2, "frobnicate");
    kv.run(&host, &["put", "only-a-key"])
        .fails(2, "kvctl --help");
    kv.run(&host, &[]).fails(2, "no command");
    kv.run(&host, &["-i", "get", "k"]).fails(2, "-i");
    kv.run("not a host", &["get", "k"]).fails(2, "invalid host");
    kv.run(&host, &["--session", "../escape", "get", "k"])
        .fails(2, "session name");
    kv.run(&host, &["put", &"k".repeat(51), "1"])
        .fails(2, "too long");
    kv.run(&host, &["view", "add", "nonsense"]).fails(2, "");

    // 3: nobody answers.
    kv.run(&dead_hosts(), &["get", "k"])
        .fails(3, "no replica reachable");
    kv.run(&dead_hosts(), &["put", "k", "v"])
        .fails(3, "no replica reachable");
    kv.run(&dead_hosts(), &["status"])
        .fails(3, "no replica reachable");

    // --help and --version are not errors.
    assert!(kv.run(&host, &["--help"]).ok().contains("Exit codes"));
    assert!(kv.run(&host, &["--version"]).ok().starts_with("kvctl "));
}

#[actix_web::test]
async fn no_session_neither_reads_nor_writes_the_session_file() {
    let cluster = Options::default().causal_wait_ms(300).start(1).await;
    let kv = Kvctl::new();
    let host = hosts(&cluster, &[0]);
    put_ok(&kv.run(&host, &["--no-session", "put", "k", "1"]), "added");
    assert_eq!(kv.run(&host, &["--no-session", "get", "k"]).ok(), "1\n");
    assert!(!kv.state_dir().join("sessions").exists());

    // A session naming writes this cluster never had (an old cluster's):
    // with --no-session it is ignored; with it, 503s give up with exit 3.
    std::fs::create_dir_all(kv.session_file().parent().unwrap()).unwrap();
    std::fs::write(
        kv.session_file(),
        r#"{"causal-metadata": {"127.0.0.1:9#gone": 5}}"#,
    )
    .unwrap();
    assert_eq!(kv.run(&host, &["--no-session", "get", "k"]).ok(), "1\n");
    kv.run(&host, &["get", "k"]).fails(3, "session reset");
    kv.run(&host, &["session", "reset"]).ok();
    assert_eq!(kv.run(&host, &["get", "k"]).ok(), "1\n");
}

#[actix_web::test]
async fn the_interactive_shell_reads_commands_from_stdin() {
    let cluster = TestCluster::start(2).await;
    let kv = Kvctl::new();
    let (a, b) = (hosts(&cluster, &[0]), hosts(&cluster, &[1]));
    let script = "\
put greeting 'good morning'
get greeting
# a comment, then a blank line

put doc '{\"a\": [1, 2]}'
get doc --json
get missing
bogus
view
help
exit
get greeting
";
    let run = kv.run_with_input(&a, &["-i"], script);
    let lines: Vec<&str> = run.stdout.lines().collect();
    let added = |line: &str| {
        put_line(line).is_some_and(|(what, shard, _)| what == "added" && shard.is_none())
    };
    assert!(added(lines[0]) && added(lines[2]), "{run:?}");
    assert_eq!(lines[1], "good morning", "{run:?}");
    let raw: Value = serde_json::from_str(lines[3]).unwrap();
    assert_eq!(raw["value"], json!({"a": [1, 2]}));
    assert_eq!(
        lines[4],
        cluster.expected_view(&[0, 1]).split(',').next().unwrap()
    );
    assert!(
        run.stdout.contains("put KEY VALUE"),
        "help is printed: {run:?}"
    );
    // Nothing after `exit` ran: `good morning` is printed once.
    assert_eq!(run.stdout.matches("good morning").count(), 1, "{run:?}");
    let errors: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(errors.len(), 2, "{run:?}");
    assert!(errors[0].contains("\"missing\" not found"), "{run:?}");
    assert!(errors[1].contains("bogus"), "{run:?}");
    // The shell's exit code is the last command's (`help`).
    assert_eq!(run.code, 0, "{run:?}");

    // The shell shared the session: another replica reads its writes.
    assert_eq!(kv.run(&b, &["get", "doc"]).ok(), "{\"a\":[1,2]}\n");
    let run = kv.run_with_input(&b, &["-i"], "get greeting\nget missing\n");
    assert_eq!(run.stdout, "good morning\n");
    assert_eq!(run.code, 1, "the last command failed: {run:?}");
}

#[actix_web::test]
async fn concurrent_processes_sharing_a_session_lose_no_context() {
    const PUTS: usize = 15;
    let cluster = TestCluster::start(3).await;
    let kv = Kvctl::new();
    // Each shell writes only at its own replica, so each replica's counter
    // ends at PUTS, and the shared session must name both in full.
    let shells: Vec<Child> = [0, 1]
        .into_iter()
        .map(|i| {
            let script: String = (0..PUTS)
                .map(|n| format!("put key-{i}-{n} {n}\n"))
                .collect();
            kv.spawn_with_input(&hosts(&cluster, &[i]), &["-i"], &script)
        })
        .collect();
    for shell in shells {
        let run = Run::from(shell.wait_with_output().expect("wait for kvctl"));
        let lines: Vec<_> = run.stdout.lines().filter_map(put_line).collect();
        assert_eq!(lines.len(), PUTS, "{run:?}");
        assert!(
            lines
                .iter()
                .all(|(what, shard, _)| what == "added" && shard.is_none()),
            "{run:?}"
        );
        assert_eq!(run.stdout.lines().count(), PUTS, "{run:?}");
        assert!(run.stderr.is_empty(), "{run:?}");
    }
    let expected = json!({
        replica_id(&cluster, 0).await: PUTS,
        replica_id(&cluster, 1).await: PUTS,
    });
    assert_eq!(kv.session_context(), expected);

    // Every write of both is readable at the third replica through the
    // session (read-your-writes for the pair).
    let script: String = (0..PUTS)
        .flat_map(|n| [format!("get key-0-{n}\n"), format!("get key-1-{n}\n")])
        .collect();
    let run = kv.run_with_input(&hosts(&cluster, &[2]), &["-i"], &script);
    let expected: String = (0..PUTS).map(|n| format!("{n}\n{n}\n")).collect();
    assert_eq!(run.stdout, expected, "{run:?}");
    assert_eq!(run.code, 0, "{run:?}");
}

/// Runs `kvctl args` against `hosts` until `done` accepts the run (it
/// says why not), polling with [`common::DEADLINE`]; returns that run.
async fn run_until(
    kv: &Kvctl,
    hosts: &str,
    args: &[&str],
    what: &str,
    done: impl Fn(&Run) -> Result<(), String>,
) -> Run {
    let done = &done;
    common::wait_for(common::DEADLINE, what, || async move {
        let run = kv.run(hosts, args);
        done(&run).map_err(|e| format!("{e}: {run:?}"))?;
        Ok(run)
    })
    .await
}

/// One row of `kvctl shards`.
#[derive(Debug)]
struct ShardRow {
    id: u32,
    keys: String,
    members: Vec<String>,
}

/// The rows of `kvctl shards` and its last line (the shard of the node
/// asked), or why the run is not such a table.
fn shard_rows(run: &Run) -> Result<(Vec<ShardRow>, String), String> {
    let lines: Vec<&str> = run.stdout.lines().collect();
    let header: Vec<&str> = lines
        .first()
        .ok_or("no output")?
        .split_whitespace()
        .collect();
    if header != ["SHARD", "KEYS", "MEMBERS"] || run.code != 0 || lines.len() < 2 {
        return Err("not a shard table".into());
    }
    let mut rows = Vec::new();
    for line in &lines[1..lines.len() - 1] {
        let cells: Vec<&str> = line.split_whitespace().collect();
        let [id, keys, members] = cells[..] else {
            return Err(format!("a row of three cells: {line:?}"));
        };
        rows.push(ShardRow {
            id: id.parse().map_err(|_| format!("a shard id: {line:?}"))?,
            keys: keys.to_string(),
            members: members.split(',').map(str::to_string).collect(),
        });
    }
    Ok((rows, lines[lines.len() - 1].to_string()))
}

#[actix_web::test]
async fn a_sharded_store_names_shards_lists_them_and_reshards() {
    let cluster = Options::default().env("SHARD_COUNT", 2).start(4).await;
    let kv = Kvctl::new();
    let all = hosts(&cluster, &[0, 1, 2, 3]);
    let first = hosts(&cluster, &[0]);

    // Two shards of two nodes each, every node placed once.
    let shards = run_until(&kv, &first, &["shards"], "two shards of two", |run| {
        let (rows, _) = shard_rows(run)?;
        let ids: Vec<u32> = rows.iter().map(|r| r.id).collect();
        let sizes: Vec<usize> = rows.iter().map(|r| r.members.len()).collect();
        (ids == [1, 2] && sizes == [2, 2])
            .then_some(())
            .ok_or(format!("shards {ids:?} of {sizes:?}"))
    })
    .await;
    let (rows, footer) = shard_rows(&shards).unwrap();
    let mut placed: Vec<&String> = rows.iter().flat_map(|r| &r.members).collect();
    placed.sort();
    let mut expected: Vec<String> = (0..4).map(|i| cluster.addr(i).to_string()).collect();
    expected.sort();
    assert_eq!(placed, expected.iter().collect::<Vec<_>>(), "{shards:?}");
    let home = rows
        .iter()
        .find(|r| r.members.contains(&first))
        .expect("the first node is placed")
        .id;
    assert_eq!(footer, format!("{first} is in shard {home}"), "{shards:?}");
    // The typed client (kvctl's) agrees.
    let client = cluster.client(0);
    assert_eq!(client.shard_ids().await.unwrap(), [1, 2]);
    assert_eq!(client.node_shard_id().await.unwrap(), Some(home));
    let mut members = client.shard_members(home).await.unwrap();
    members.sort();
    let mut listed = rows[home as usize - 1].members.clone();
    listed.sort();
    assert_eq!(members, listed);

    // A put names the key's shard and its new etag, as its --json answer
    // does; get prints the value alone; a missing key names the shard it
    // would be in.
    let put = kv.run(&all, &["put", "greeting", "hello"]);
    let Some((what, Some(shard), _)) = put.ok().strip_suffix('\n').and_then(put_line) else {
        panic!("a shard and an etag named: {put:?}");
    };
    assert_eq!(what, "added", "{put:?}");
    assert!([1, 2].contains(&shard), "{put:?}");
    let put = kv.run(&all, &["put", "greeting", "hi"]);
    let Some((what, Some(again), tag)) = put.ok().strip_suffix('\n').and_then(put_line) else {
        panic!("a shard and an etag named: {put:?}");
    };
    assert_eq!((what.as_str(), again), ("updated", shard), "{put:?}");
    // The tag is the version's wherever it is read, and conditions hold
    // in a sharded store too (the request is relayed with its header).
    assert_eq!(
        kv.run(&all, &["get", "--etag", "greeting"]).ok(),
        format!("{tag}\n")
    );
    kv.run(&all, &["put", "--if-absent", "greeting", "x"])
        .fails(4, &format!("exists (etag {tag})"));
    for at in 0..4 {
        let one = hosts(&cluster, &[at]);
        assert_eq!(
            kv.run(&one, &["get", "--etag", "greeting"]).ok(),
            format!("{tag}\n")
        );
    }
    let raw: Value =
        serde_json::from_str(kv.run(&all, &["put", "other", "1", "--json"]).ok()).unwrap();
    assert!(raw["shard-id"].as_u64().is_some(), "{raw}");
    assert_eq!(kv.run(&all, &["get", "greeting"]).ok(), "hi\n");
    let raw: Value =
        serde_json::from_str(kv.run(&all, &["get", "greeting", "--json"]).ok()).unwrap();
    assert_eq!(raw["shard-id"], json!(shard), "{raw}");
    assert_eq!(raw["value"], json!("hi"));
    let missing = kv.run(&all, &["get", "absent"]);
    missing.fails(1, "\"absent\" not found (shard ");

    // Key counts: every key counted once, in the shard its put named.
    for n in 0..10 {
        kv.run(&all, &["put", &format!("key{n}"), &n.to_string()])
            .ok();
    }
    let shards = run_until(&kv, &first, &["shards"], "12 keys counted", |run| {
        let (rows, _) = shard_rows(run)?;
        let total: u64 = rows
            .iter()
            .map(|r| r.keys.parse::<u64>().unwrap_or(0))
            .sum();
        (total == 12)
            .then_some(())
            .ok_or(format!("{total} keys counted"))
    })
    .await;
    let (rows, _) = shard_rows(&shards).unwrap();
    let greeting_shard = rows.iter().find(|r| r.id == shard).unwrap();
    assert!(
        greeting_shard.keys.parse::<u64>().unwrap() >= 1,
        "{shards:?}"
    );
    let raw: Value = serde_json::from_str(kv.run(&first, &["shards", "--json"]).ok()).unwrap();
    assert_eq!(raw["node"], json!(first));
    assert_eq!(raw["node-shard-id"], json!(home));
    let listed: Vec<(u64, usize)> = raw["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let members = s["shard-id-members"].as_array().map_or(0, Vec::len);
            (s["shard-id"].as_u64().unwrap(), members)
        })
        .collect();
    assert_eq!(listed, [(1, 2), (2, 2)], "{raw}");

    // Three shards need six nodes: refused, exit 2, nothing changed.
    kv.run(&all, &["reshard", "3"]).fails(
        2,
        "not enough nodes to provide fault-tolerance with 3 shards",
    );
    let raw = kv.run(&all, &["reshard", "3", "--json"]);
    assert_eq!(raw.code, 2, "{raw:?}");
    let body: Value = serde_json::from_str(&raw.stdout).unwrap();
    assert_eq!(
        body,
        json!({"message": "Not enough nodes to provide fault-tolerance with the given shard count!"})
    );
    kv.run(&all, &["reshard", "0"]).fails(2, "kvctl --help");
    // Two shards on four nodes: done, and every key still there.
    assert_eq!(
        kv.run(&all, &["reshard", "2"]).ok(),
        "OK (resharded into 2 shards)\n"
    );
    let (rows, _) = shard_rows(&kv.run(&first, &["shards"])).unwrap();
    assert_eq!(rows.iter().map(|r| r.id).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(kv.run(&all, &["get", "greeting"]).ok(), "hi\n");
    assert_eq!(kv.run(&all, &["get", "key9"]).ok(), "9\n");

    // The same commands in the shell; its status is the last command's.
    let run = kv.run_with_input(&first, &["-i"], "shards\nhelp\nreshard 3\n");
    assert!(run.stdout.starts_with("SHARD  KEYS  MEMBERS\n"), "{run:?}");
    assert!(run.stdout.contains("add-member ID ADDR"), "{run:?}");
    assert!(run.stderr.contains("not enough nodes"), "{run:?}");
    assert_eq!(run.code, 2, "{run:?}");
}

#[actix_web::test]
async fn add_member_places_a_node_started_without_a_shard_count() {
    let mut cluster = Options::default().env("SHARD_COUNT", 2).start(4).await;
    let kv = Kvctl::new();
    let fifth = cluster.add_replica_without("SHARD_COUNT").await;
    let (new, all) = (hosts(&cluster, &[fifth]), hosts(&cluster, &[0, 1, 2, 3]));

    // The new node knows the shards but is in none of them.
    let shards = run_until(&kv, &new, &["shards"], "the new node unplaced", |run| {
        let (rows, footer) = shard_rows(run)?;
        let placed = rows.iter().filter(|r| r.members.contains(&new)).count();
        (rows.len() == 2 && placed == 0 && footer.contains("in no shard"))
            .then_some(())
            .ok_or("not yet".into())
    })
    .await;
    assert_eq!(
        shard_rows(&shards).unwrap().1,
        format!("{new} is in no shard yet (add-member places it)")
    );

    kv.run(&all, &["add-member", "9", &new])
        .fails(1, "shard 9 does not exist");
    kv.run(&all, &["add-member", "2", "nonsense"]).fails(2, "");
    kv.run(&all, &["add-member", "two", &new])
        .fails(2, "kvctl --help");
    assert_eq!(
        kv.run(&all, &["add-member", "2", &new]).ok(),
        format!("OK ({new} added to shard 2)\n")
    );
    // Every node, the new one included, lists it in shard 2.
    for at in [new.clone(), hosts(&cluster, &[3])] {
        run_until(&kv, &at, &["shards"], "the new node in shard 2", |run| {
            let (rows, _) = shard_rows(run)?;
            let two = rows.iter().find(|r| r.id == 2).ok_or("no shard 2")?;
            two.members
                .contains(&new)
                .then_some(())
                .ok_or("not in shard 2".into())
        })
        .await;
    }
    run_until(&kv, &new, &["shards"], "the new node says shard 2", |run| {
        let (_, footer) = shard_rows(run)?;
        (footer == format!("{new} is in shard 2"))
            .then_some(())
            .ok_or("not yet".into())
    })
    .await;
    // Through the shell too (already a member: nothing changes, 200).
    let run = kv.run_with_input(&all, &["-i"], &format!("add-member 2 {new}\n"));
    assert_eq!(
        run.stdout,
        format!("OK ({new} added to shard 2)\n"),
        "{run:?}"
    );
    assert_eq!(run.code, 0, "{run:?}");
}

#[actix_web::test]
async fn conditional_writes_use_the_etag_of_a_get_or_a_put() {
    let cluster = TestCluster::start(2).await;
    let kv = Kvctl::new();
    let (a, b) = (hosts(&cluster, &[0]), hosts(&cluster, &[1]));

    // --if-absent twice: the second fails with exit 4, naming the tag the
    // first made, at the other replica too (the session orders it after
    // the first), and the value is unchanged.
    let v1 = put_ok(&kv.run(&a, &["put", "--if-absent", "k", "one"]), "added");
    let second = kv.run(&b, &["put", "--if-absent", "k", "two"]);
    second.fails(4, &format!("key \"k\" exists (etag {v1}); nothing written"));
    assert!(second.stdout.is_empty(), "{second:?}");
    assert_eq!(kv.run(&b, &["get", "k"]).ok(), "one\n");

    // get --etag prints the tag a put printed, at either replica; --json
    // carries it as "etag".
    assert_eq!(kv.run(&b, &["get", "--etag", "k"]).ok(), format!("{v1}\n"));
    assert_eq!(kv.run(&a, &["get", "k", "--etag"]).ok(), format!("{v1}\n"));
    let raw: Value = serde_json::from_str(kv.run(&b, &["get", "k", "--json"]).ok()).unwrap();
    assert_eq!(raw["etag"], json!(v1), "{raw}");
    assert_eq!(raw["value"], json!("one"), "{raw}");

    // --if-match with the tag from get (quoted, as printed): written, a
    // new tag; with a bare tag (quotes are optional) likewise.
    let v2 = put_ok(
        &kv.run(&b, &["put", "--if-match", &v1, "k", "two"]),
        "updated",
    );
    assert_ne!(v1, v2);
    let bare = v2.trim_matches('"');
    let v3 = put_ok(
        &kv.run(&a, &["put", "k", "three", "--if-match", bare]),
        "updated",
    );
    assert_eq!(kv.run(&a, &["get", "--etag", "k"]).ok(), format!("{v3}\n"));
    // A stale tag: exit 4 naming the current one, nothing written.
    kv.run(&b, &["put", "--if-match", &v1, "k", "four"]).fails(
        4,
        &format!("key \"k\" has etag {v3}, not {v1}; nothing written"),
    );
    assert_eq!(kv.run(&b, &["get", "k"]).ok(), "three\n");
    // --json: the 412's body (with the current tag and the context), the
    // error line still on stderr, the same exit code.
    let raw = kv.run(&a, &["put", "--if-absent", "k", "five", "--json"]);
    assert_eq!(raw.code, 4, "{raw:?}");
    let body: Value = serde_json::from_str(&raw.stdout).unwrap();
    assert_eq!(body["etag"], json!(v3), "{raw:?}");
    assert!(body["error"]
        .as_str()
        .unwrap()
        .starts_with("Precondition failed"));
    assert_eq!(body["causal-metadata"], kv.session_context(), "{raw:?}");
    assert_eq!(raw.stderr.lines().count(), 1, "{raw:?}");

    // delete --if-match: a stale tag fails, the current one deletes.
    kv.run(&a, &["delete", "k", "--if-match", &v2]).fails(
        4,
        &format!("key \"k\" has etag {v3}, not {v2}; nothing deleted"),
    );
    assert_eq!(kv.run(&b, &["get", "k"]).ok(), "three\n");
    assert_eq!(
        kv.run(&b, &["delete", "k", "--if-match", &v3]).ok(),
        "OK (deleted)\n"
    );
    kv.run(&a, &["get", "k"]).fails(1, "\"k\" not found");
    kv.run(&a, &["get", "--etag", "k"])
        .fails(1, "\"k\" not found");
    // Absent now: --if-match (a tag or *) fails, --if-absent creates.
    kv.run(&a, &["delete", "k", "--if-match", &v3])
        .fails(4, "key \"k\" does not exist; nothing deleted");
    kv.run(&b, &["put", "k", "x", "--if-match", "*"])
        .fails(4, "key \"k\" does not exist; nothing written");
    let v4 = put_ok(&kv.run(&b, &["put", "k", "again", "--if-absent"]), "added");
    assert!(![&v1, &v2, &v3].contains(&&v4), "a new version, a new tag");
    put_ok(
        &kv.run(&a, &["put", "k", "any", "--if-match", "*"]),
        "updated",
    );

    // A failed condition's context is kept: a session that knew nothing
    // learns the write that failed it from the 412.
    let fresh = Kvctl::new();
    fresh
        .run(&a, &["put", "--if-absent", "k", "mine"])
        .fails(4, "exists");
    // (The version that failed it was written at the first replica.)
    let learned = fresh.session_context();
    let id_a = replica_id(&cluster, 0).await;
    assert!(learned[&id_a].as_u64().is_some_and(|n| n > 0), "{learned}");
    // ... so its next read at the other replica sees that write.
    assert_eq!(fresh.run(&b, &["get", "k"]).ok(), "any\n");

    // Usage errors: both conditions at once, a malformed tag, --if-absent
    // on delete.
    kv.run(&a, &["put", "k", "v", "--if-absent", "--if-match", &v4])
        .fails(2, "cannot be used with");
    kv.run(&a, &["put", "k", "v", "--if-match", "a b"])
        .fails(2, "--if-match");
    kv.run(&a, &["delete", "k", "--if-absent"])
        .fails(2, "--if-absent");
    assert!(kv
        .run(&a, &["put", "--help"])
        .ok()
        .contains("--if-match <ETAG>"));
    assert!(kv
        .run(&a, &["--help"])
        .ok()
        .contains("4 the condition of a write"));

    // The shell takes the same flags; its status is the last command's.
    let script =
        "put s 1 --if-absent\nput s 2 --if-absent\nget s --etag\nhelp\nput s 3 --if-absent\n";
    let run = kv.run_with_input(&b, &["-i"], script);
    let lines: Vec<&str> = run.stdout.lines().collect();
    let (what, _, tag) = put_line(lines[0]).unwrap_or_else(|| panic!("{run:?}"));
    assert_eq!(what, "added", "{run:?}");
    assert_eq!(lines[1], tag, "{run:?}");
    assert!(run.stdout.contains("--if-match ETAG"), "help: {run:?}");
    let errors: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(errors.len(), 2, "{run:?}");
    for error in errors {
        assert_eq!(
            error,
            format!("kvctl: condition failed: key \"s\" exists (etag {tag}); nothing written")
        );
    }
    assert_eq!(run.code, 4, "{run:?}");
    assert_eq!(kv.run(&a, &["get", "s"]).ok(), "1\n");
}

/// The rows of `kvctl tables` (name, siblings, keys), or why the run is
/// not such a table.
fn table_rows(run: &Run) -> Result<Vec<[String; 3]>, String> {
    let mut lines = run.stdout.lines();
    let header: Vec<&str> = lines
        .next()
        .ok_or("no output")?
        .split_whitespace()
        .collect();
    if header != ["TABLE", "SIBLINGS", "KEYS"] || run.code != 0 {
        return Err("not a table of tables".into());
    }
    lines
        .map(
            |line| match line.split_whitespace().collect::<Vec<_>>()[..] {
                [name, siblings, keys] => Ok([name.into(), siblings.into(), keys.into()]),
                _ => Err(format!("a row of three cells: {line:?}")),
            },
        )
        .collect()
}

/// `[name, siblings, keys]`, as [`table_rows`] gives them.
fn row(name: &str, siblings: &str, keys: u64) -> [String; 3] {
    [name.into(), siblings.into(), keys.to_string()]
}

#[actix_web::test]
async fn tables_are_created_listed_used_and_dropped() {
    let cluster = TestCluster::start(2).await;
    let kv = Kvctl::new();
    let (a, b) = (hosts(&cluster, &[0]), hosts(&cluster, &[1]));

    // None yet: the default table is not listed.
    assert!(kv.run(&a, &["tables"]).ok().starts_with("no tables"));
    assert_eq!(
        kv.run(&a, &["tables", "create", "carts"]).ok(),
        "OK (table \"carts\" created)\n"
    );
    // Created again, at the other replica (the session orders it after the
    // first): it exists, unchanged, and asking for other settings warns.
    assert_eq!(
        kv.run(&b, &["tables", "create", "carts"]).ok(),
        "OK (table \"carts\" already exists, 0 keys)\n"
    );
    let again = kv.run(&b, &["tables", "create", "carts", "--siblings"]);
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(
        again.stdout, "OK (table \"carts\" already exists, 0 keys)\n",
        "{again:?}"
    );
    assert!(
        again.stderr.contains("already exists without siblings"),
        "{again:?}"
    );
    assert_eq!(
        kv.run(&b, &["tables", "create", "--siblings", "orders"])
            .ok(),
        "OK (table \"orders\" created, with siblings)\n"
    );

    // Keys of a table are apart from the default table's, and read at
    // the other replica through the session.
    let v1 = put_ok(&kv.run(&a, &["--table", "carts", "put", "k", "1"]), "added");
    assert_eq!(kv.run(&b, &["get", "k", "--table", "carts"]).ok(), "1\n");
    kv.run(&b, &["get", "k"]).fails(1, "key \"k\" not found");
    put_ok(&kv.run(&b, &["put", "k", "default"]), "added");
    assert_eq!(kv.run(&a, &["--table", "carts", "get", "k"]).ok(), "1\n");
    assert_eq!(kv.run(&a, &["get", "k"]).ok(), "default\n");
    // Conditions work in a table, and their errors name it.
    assert_eq!(
        kv.run(&b, &["--table", "carts", "get", "--etag", "k"]).ok(),
        format!("{v1}\n")
    );
    kv.run(&b, &["--table", "carts", "put", "--if-absent", "k", "2"])
        .fails(
            4,
            &format!("key \"k\" in table \"carts\" exists (etag {v1}); nothing written"),
        );
    let v2 = put_ok(
        &kv.run(
            &a,
            &["--table", "carts", "put", "k", "2", "--if-match", &v1],
        ),
        "updated",
    );
    assert_ne!(v1, v2);
    let raw: Value =
        serde_json::from_str(kv.run(&b, &["--table", "carts", "get", "k", "--json"]).ok()).unwrap();
    assert_eq!(
        (&raw["value"], &raw["etag"]),
        (&json!(2), &json!(v2)),
        "{raw}"
    );
    put_ok(
        &kv.run(&a, &["--table", "orders", "put", "x", "y"]),
        "added",
    );
    assert_eq!(
        kv.run(&b, &["--table", "orders", "delete", "x"]).ok(),
        "OK (deleted)\n"
    );
    kv.run(&a, &["--table", "orders", "get", "x"])
        .fails(1, "key \"x\" in table \"orders\" not found");

    // The list, sorted by name, at either replica; --json is the store's
    // answer, whose context the session now holds.
    let rows = vec![row("carts", "no", 1), row("orders", "yes", 0)];
    for host in [&a, &b] {
        let run = kv.run(host, &["tables", "list"]);
        assert_eq!(table_rows(&run), Ok(rows.clone()), "{run:?}");
    }
    let raw: Value = serde_json::from_str(kv.run(&a, &["tables", "--json"]).ok()).unwrap();
    assert_eq!(raw["message"], "Retrieved successfully", "{raw}");
    assert_eq!(
        raw["tables"],
        json!([{"name": "carts", "siblings": false, "keys": 1},
               {"name": "orders", "siblings": true, "keys": 0}])
    );
    assert_eq!(raw["causal-metadata"], kv.session_context());

    // A table that does not exist: exit 1, naming the table, for every
    // command; a name the store would refuse is a usage error.
    for args in [
        &["--table", "nope", "get", "k"][..],
        &["--table", "nope", "put", "k", "1"],
        &["--table", "nope", "delete", "k"],
    ] {
        kv.run(&a, args).fails(
            1,
            "table \"nope\" does not exist (`kvctl tables create nope` creates it)",
        );
    }
    kv.run(&a, &["tables", "drop", "nope"])
        .fails(1, "table \"nope\" does not exist");
    kv.run(&a, &["--table", "a.b", "get", "k"])
        .fails(2, "invalid table name \"a.b\"");
    kv.run(&a, &["tables", "create", "a b"])
        .fails(2, "invalid table name \"a b\"");
    kv.run(&a, &["tables", "create", &"t".repeat(51)])
        .fails(2, "1 to 50 letters");
    kv.run(&a, &["tables", "create"]).fails(2, "kvctl --help");

    // Dropped: gone at the other replica too (the session orders it), its
    // keys with it; created again, it starts empty.
    assert_eq!(
        kv.run(&b, &["tables", "drop", "carts"]).ok(),
        "OK (table \"carts\" dropped)\n"
    );
    kv.run(&a, &["--table", "carts", "get", "k"])
        .fails(1, "table \"carts\" does not exist");
    assert_eq!(
        table_rows(&kv.run(&a, &["tables"])),
        Ok(vec![row("orders", "yes", 0)])
    );
    assert_eq!(
        kv.run(&a, &["tables", "create", "carts"]).ok(),
        "OK (table \"carts\" created)\n"
    );
    kv.run(&b, &["--table", "carts", "get", "k"])
        .fails(1, "key \"k\" in table \"carts\" not found");
    assert_eq!(kv.run(&b, &["get", "k"]).ok(), "default\n");

    // The shell: `kvctl --table NAME -i` sends every line's key commands
    // there, a line's own --table wins, and `tables` works as above.
    let script = "put s v\nget s\nget s --table carts\ntables create t2\nhelp\n";
    let run = kv.run_with_input(&a, &["--table", "orders", "-i"], script);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert!(
        put_line(lines[0]).is_some_and(|(what, _, _)| what == "added"),
        "{run:?}"
    );
    assert_eq!(lines[1..3], ["v", "OK (table \"t2\" created)"], "{run:?}");
    assert!(
        run.stdout.contains("tables create NAME [--siblings]"),
        "help: {run:?}"
    );
    assert_eq!(
        run.stderr, "kvctl: key \"s\" in table \"carts\" not found\n",
        "{run:?}"
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(kv.run(&b, &["--table", "orders", "get", "s"]).ok(), "v\n");
    kv.run(&b, &["get", "s"]).fails(1, "key \"s\" not found");
}

/// The values of a `get` that printed siblings (`N concurrent values
/// (siblings):` then one compact JSON value a line), sorted; `None` if it
/// printed a single value.
fn siblings_of(run: &Run) -> Option<Vec<Value>> {
    let mut lines = run.stdout.lines();
    let count: usize = lines
        .next()?
        .strip_suffix(" concurrent values (siblings):")?
        .parse()
        .ok()?;
    let mut values: Vec<Value> = lines
        .map(|line| {
            let value = line.strip_prefix("  ").expect("a value a line, indented");
            serde_json::from_str(value).expect("each value as JSON")
        })
        .collect();
    assert_eq!(values.len(), count, "{run:?}");
    values.sort_by_key(Value::to_string);
    Some(values)
}

#[actix_web::test]
async fn a_table_with_siblings_shows_every_concurrent_value() {
    let cluster = TestCluster::start(2).await;
    let (alice, bob) = (Kvctl::new(), Kvctl::new());
    let (a, b) = (hosts(&cluster, &[0]), hosts(&cluster, &[1]));
    assert_eq!(
        alice
            .run(&a, &["tables", "create", "carts", "--siblings"])
            .ok(),
        "OK (table \"carts\" created, with siblings)\n"
    );
    // Bob, who shares no session with Alice, writes at the other replica
    // once it has the table: his write does not follow Alice's.
    run_until(&bob, &b, &["--no-session", "tables"], "carts at b", |run| {
        let rows = table_rows(run)?;
        (rows == [row("carts", "yes", 0)] || rows == [row("carts", "yes", 1)])
            .then_some(())
            .ok_or("not yet".into())
    })
    .await;
    put_ok(
        &alice.run(&a, &["--table", "carts", "put", "cart", r#"["apple"]"#]),
        "added",
    );
    let bobs = bob.run(&b, &["--table", "carts", "put", "cart", r#"["pear"]"#]);
    assert!(
        put_line(bobs.ok().trim_end())
            .is_some_and(|(what, _, _)| what == "added" || what == "updated"),
        "{bobs:?}"
    );

    // Once Bob's write reaches Alice's replica, her get shows both, and
    // exits 0.
    let both = run_until(
        &alice,
        &a,
        &["--table", "carts", "get", "cart"],
        "siblings",
        |run| siblings_of(run).map(|_| ()).ok_or("one value".into()),
    )
    .await;
    assert_eq!(
        siblings_of(&both),
        Some(vec![json!(["apple"]), json!(["pear"])]),
        "{both:?}"
    );
    assert!(both.ok().starts_with("2 concurrent values (siblings):\n"));
    let raw = alice.run(&b, &["--table", "carts", "get", "cart", "--json"]);
    let body: Value = serde_json::from_str(raw.ok()).unwrap();
    let mut values = body["values"].as_array().cloned().unwrap_or_default();
    values.sort_by_key(Value::to_string);
    assert_eq!(values, [json!(["apple"]), json!(["pear"])], "{body}");
    assert_eq!(body["doesExist"], json!(true), "{body}");
    assert!(
        body.get("etag").is_none() && body.get("value").is_none(),
        "{body}"
    );
    alice
        .run(&a, &["--table", "carts", "get", "--etag", "cart"])
        .fails(2, "has 2 concurrent values (siblings), so no etag");

    // A put ordered after both (Alice's session has read them) replaces
    // them, at either replica.
    put_ok(
        &alice.run(
            &a,
            &["--table", "carts", "put", "cart", r#"["apple","pear"]"#],
        ),
        "updated",
    );
    for host in [&a, &b] {
        assert_eq!(
            alice.run(host, &["--table", "carts", "get", "cart"]).ok(),
            "[\"apple\",\"pear\"]\n"
        );
    }

    // Bob, who has not seen it, writes again: siblings again, which a
    // delete ordered after them removes.
    bob.run(&b, &["--table", "carts", "put", "cart", r#"["plum"]"#])
        .ok();
    let both = run_until(
        &alice,
        &a,
        &["--table", "carts", "get", "cart"],
        "siblings",
        |run| siblings_of(run).map(|_| ()).ok_or("one value".into()),
    )
    .await;
    assert_eq!(
        siblings_of(&both),
        Some(vec![json!(["apple", "pear"]), json!(["plum"])]),
        "{both:?}"
    );
    assert_eq!(
        alice.run(&a, &["--table", "carts", "delete", "cart"]).ok(),
        "OK (deleted)\n"
    );
    alice
        .run(&b, &["--table", "carts", "get", "cart"])
        .fails(1, "key \"cart\" in table \"carts\" not found");
}
