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

    assert_eq!(
        kv.run(&a, &["put", "greeting", "hello world"]).ok(),
        "OK (added)\n"
    );
    assert_eq!(kv.run(&b, &["get", "greeting"]).ok(), "hello world\n");
    assert_eq!(
        kv.run(&c, &["put", "greeting", "hi"]).ok(),
        "OK (updated)\n"
    );
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
    assert_eq!(run.ok(), "OK (added)\n");
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

    assert_eq!(kv.run(&list, &["put", "k", "v"]).ok(), "OK (added)\n");
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
    assert_eq!(
        kv.run(&host, &["--no-session", "put", "k", "1"]).ok(),
        "OK (added)\n"
    );
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
    assert_eq!(
        lines[..3],
        ["OK (added)", "good morning", "OK (added)"],
        "{run:?}"
    );
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
        assert_eq!(run.stdout, "OK (added)\n".repeat(PUTS), "{run:?}");
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
