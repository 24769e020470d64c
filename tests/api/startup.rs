//! Start-up configuration, health, help, the listen address and metrics.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use awc::http::Method;
use serde_json::json;

use crate::assert_write;
use crate::common::{durable_replicas, Body, Options, TestCluster};

/// Runs the binary with exactly `env`; it must exit non-zero at once.
fn run_misconfigured(env: &[(&str, &str)]) -> (i32, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_causalkv"));
    command
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command.spawn().expect("spawn causalkv");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("causalkv with {env:?} kept running instead of exiting");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().expect("output");
    let code = output.status.code().unwrap_or(-1);
    (code, String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn missing_or_malformed_required_variables_exit_at_once() {
    let port = crate::common::free_ports(1)[0];
    let me = format!("127.0.0.1:{port}");
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![], "SOCKET_ADDRESS"),
        (vec![("VIEW", &me)], "SOCKET_ADDRESS"),
        (
            vec![("SOCKET_ADDRESS", ""), ("VIEW", &me)],
            "SOCKET_ADDRESS",
        ),
        (
            vec![("SOCKET_ADDRESS", "nonsense"), ("VIEW", &me)],
            "SOCKET_ADDRESS",
        ),
        (
            vec![("SOCKET_ADDRESS", "127.0.0.1"), ("VIEW", &me)],
            "SOCKET_ADDRESS",
        ),
        (
            vec![("SOCKET_ADDRESS", "127.0.0.1:port"), ("VIEW", &me)],
            "SOCKET_ADDRESS",
        ),
        (
            vec![("SOCKET_ADDRESS", "127.0.0.1:70000"), ("VIEW", &me)],
            "SOCKET_ADDRESS",
        ),
        (vec![("SOCKET_ADDRESS", &me)], "VIEW"),
        (vec![("SOCKET_ADDRESS", &me), ("VIEW", "")], "VIEW"),
        (
            vec![("SOCKET_ADDRESS", &me), ("VIEW", "127.0.0.1:1,bad")],
            "VIEW",
        ),
        (
            vec![("SOCKET_ADDRESS", &me), ("VIEW", "127.0.0.1:99999")],
            "VIEW",
        ),
        (vec![("SOCKET_ADDRESS", &me), ("VIEW", "127.0.0.1")], "VIEW"),
        // Malformed optional variables are refused too.
        (
            vec![
                ("SOCKET_ADDRESS", &me),
                ("VIEW", &me),
                ("LISTEN_ADDRESS", "nonsense"),
            ],
            "LISTEN_ADDRESS",
        ),
        (
            vec![
                ("SOCKET_ADDRESS", &me),
                ("VIEW", &me),
                ("CAUSAL_WAIT_MS", "soon"),
            ],
            "CAUSAL_WAIT_MS",
        ),
        (
            vec![
                ("SOCKET_ADDRESS", &me),
                ("VIEW", &me),
                ("MAX_BODY_BYTES", "-5"),
            ],
            "MAX_BODY_BYTES",
        ),
    ];
    for (env, variable) in cases {
        let (code, stderr) = run_misconfigured(&env);
        assert_ne!(code, 0, "{env:?} exited successfully; stderr: {stderr}");
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(
            lines.len(),
            1,
            "{env:?}: stderr must be one line, got {stderr:?}"
        );
        assert!(
            lines[0].contains(variable),
            "{env:?}: stderr must name {variable}: {stderr:?}"
        );
    }
}

#[actix_web::test]
async fn a_single_replica_is_healthy_and_alone_in_its_view() {
    let c = TestCluster::start(1).await;
    let health = c.health(0).await;
    assert_eq!(health["synced"], json!(true), "{health}");
    // The suite runs on the replicas it says: on disks with
    // CAUSALKV_TEST_DATA_DIR=1, in memory otherwise.
    let mode = if durable_replicas() {
        "fsync"
    } else {
        "memory"
    };
    assert_eq!(health["durability"]["mode"], json!(mode), "{health}");
    assert_eq!(c.view(0).await, c.addr(0));
    // And it is reachable through the typed client too.
    let mut client = c.client(0);
    let r = client.put("typed", json!([1, 2])).await.expect("put");
    assert_eq!(r.status, 201, "{r:?}");
    let r = client.get("typed").await.expect("get");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.value(), Some(&json!([1, 2])));
}

#[test]
fn help_lists_the_variables() {
    let output = Command::new(env!("CARGO_BIN_EXE_causalkv"))
        .arg("--help")
        .env_clear()
        .output()
        .expect("run causalkv --help");
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8_lossy(&output.stdout);
    for variable in ["SOCKET_ADDRESS", "VIEW", "LISTEN_ADDRESS", "CLUSTER_TOKEN"] {
        assert!(
            text.contains(variable),
            "--help does not mention {variable}:\n{text}"
        );
    }
}

#[actix_web::test]
async fn listen_address_is_honoured() {
    let c = Options::default().listen_on_socket_address().start(2).await;
    let r = c.put(0, "la", json!("bound"), &json!("")).await;
    let ctx = assert_write(&r, 201, "Added successfully");
    let r = c.get(1, "la", &ctx).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["value"], json!("bound"));
}

/// SPEC (extension): `GET /metrics` serves Prometheus text.
#[actix_web::test]
async fn metrics_are_served_as_prometheus_text() {
    let c = TestCluster::start(1).await;
    let r = c.put(0, "m", json!(1), &json!("")).await;
    assert_eq!(r.status, 201, "{r:?}");
    let r = c.request(0, Method::GET, "/metrics", &[], Body::None).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        r.content_type
            .as_deref()
            .is_some_and(|t| t.starts_with("text/plain")),
        "{r:?}"
    );
    assert!(r.text.contains("# TYPE "), "{}", r.text);
    let put = r#"causalkv_http_requests_total{method="PUT",route="/key-value-store/{key}",status="201"} 1"#;
    assert!(r.text.contains(put), "{put} missing from {}", r.text);
    for line in r
        .text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let value = line.rsplit(' ').next().unwrap_or_default();
        assert!(
            value.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&value),
            "not a sample line: {line:?}"
        );
    }
}
