//! Free ports, process checks, polling, and HTTP to the replicas the script starts.

use std::collections::BTreeSet;
use std::fs;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::POLL;

/// A base port with `n` consecutive free loopback ports, outside the
/// ephemeral range (so outgoing connections do not grab them meanwhile).
pub(crate) fn free_ports(n: u16) -> u16 {
    use rand::RngExt;
    let mut rng = rand::rng();
    for _ in 0..200 {
        let base = rng.random_range(20_000..32_000);
        let listeners: Vec<_> = (0..n)
            .map_while(|i| TcpListener::bind(("127.0.0.1", base + i)).ok())
            .collect();
        if listeners.len() == n as usize {
            return base;
        }
    }
    panic!("no {n} consecutive free ports found");
}

/// Whether something accepts connections at `addr`.
pub(crate) fn listening(addr: &str) -> bool {
    let addr: SocketAddr = addr.parse().expect("socket address");
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}

/// Whether `pid` is a live process (a zombie waiting to be reaped is not).
pub(crate) fn pid_running(pid: u64) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rfind(')')
                .and_then(|i| stat[i + 1..].split_whitespace().next())
                .unwrap_or("?");
            state != "Z" && state != "X"
        }
        Err(_) => {
            if Path::new("/proc/self").exists() {
                false
            } else {
                Command::new("kill")
                    .args(["-0", &pid.to_string()])
                    .status()
                    .map(|s| s.success())
                    .unwrap_or(false)
            }
        }
    }
}

/// The argv[0] of a live process.
pub(crate) fn pid_argv0(pid: u64) -> Option<String> {
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let first = cmdline.split(|b| *b == 0).next()?;
    (!first.is_empty()).then(|| String::from_utf8_lossy(first).into_owned())
}

/// Polls `probe` until it returns `Some`, or panics naming `what`.
pub(crate) fn wait_for<T>(
    what: &str,
    deadline: Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> T {
    let end = Instant::now() + deadline;
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(
            Instant::now() < end,
            "timed out after {deadline:?} waiting for {what}"
        );
        std::thread::sleep(POLL);
    }
}

// ----- HTTP ----------------------------------------------------------------

/// One HTTP request to `host` (`ip:port`); `None` if it did not answer.
fn http(method: &str, host: &str, path: &str, body: Option<&Value>) -> Option<(u16, Value)> {
    thread_local! {
        static AGENT: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_connect(Some(Duration::from_secs(2)))
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
    }
    let request = ureq::http::Request::builder()
        .method(method)
        .uri(format!("http://{host}{path}"));
    let sent = AGENT.with(|agent| {
        match body {
            Some(body) => agent.run(
                request
                    .header("content-type", "application/json")
                    .body(body.to_string())
                    .ok()?,
            ),
            None => agent.run(request.body(()).ok()?),
        }
        .ok()
    });
    let mut response = sent?;
    let status = response.status().as_u16();
    let bytes = response.body_mut().read_to_vec().ok()?;
    Some((
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
}

pub(crate) fn health(host: &str) -> Option<Value> {
    match http("GET", host, "/health", None) {
        Some((200, body)) => Some(body),
        _ => None,
    }
}

pub(crate) fn view_of(host: &str) -> Option<BTreeSet<String>> {
    let body = health(host)?;
    Some(
        body["view"]
            .as_str()?
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
    )
}

pub(crate) fn put(host: &str, key: &str, value: Value, ctx: &Value) -> Value {
    let (status, body) = http(
        "PUT",
        host,
        &format!("/key-value-store/{key}"),
        Some(&json!({"value": value, "causal-metadata": ctx})),
    )
    .unwrap_or_else(|| panic!("PUT {key} at {host}: no answer"));
    assert!(
        matches!(status, 200 | 201),
        "PUT {key} at {host}: {status} {body}"
    );
    body["causal-metadata"].clone()
}

pub(crate) fn get(host: &str, key: &str, ctx: &Value) -> Option<(u16, Value)> {
    http(
        "GET",
        host,
        &format!("/key-value-store/{key}"),
        Some(&json!({"causal-metadata": ctx})),
    )
}

/// `GET path` at `host` (`ip:port`) without a body; `None` if it did not answer.
pub(crate) fn get_json(host: &str, path: &str) -> Option<(u16, Value)> {
    http("GET", host, path, None)
}

/// `PUT path` at `host` with a JSON body; `None` if it did not answer.
pub(crate) fn put_json(host: &str, path: &str, body: &Value) -> Option<(u16, Value)> {
    http("PUT", host, path, Some(body))
}

/// The environment of a live process, as `NAME=value` strings.
pub(crate) fn pid_environ(pid: u64) -> Vec<String> {
    fs::read(format!("/proc/{pid}/environ"))
        .map(|bytes| {
            bytes
                .split(|b| *b == 0)
                .filter(|s| !s.is_empty())
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect()
        })
        .unwrap_or_default()
}
