//! Hostile clients at the HTTP edge: property-based fuzzing of bodies,
//! keys and causal metadata, truncated and oversized requests over raw
//! TCP, idle half-open connections, injected replica-to-replica messages
//! and forged contexts.
//!
//! Every answer must be a success, a 4xx whose body is JSON with an `error`
//! string (and `message` on the key-value and view routes), or, only for a
//! forged or unsatisfiable context, SPEC's 503. Never another 5xx, never a
//! hang (every request has a timeout), never a reset of a well-formed
//! request. After every batch the replica must still be up, still serve a
//! normal client promptly, and still hold exactly the keys and the view it
//! held before.
//!
//! The fuzzing tests drive proptest's `TestRunner` by hand (its macro does
//! not do async) with a fixed seed per batch, so a failure reproduces; the
//! cases talk to one cluster started once per test, over a small blocking
//! HTTP/1.1 client on `std::net::TcpStream` that sends the request target
//! and body bytes exactly as generated. Each test asserts its generators
//! reached every kind of answer it expects (successes, 400s, 404s, 503s).
//!
//! Requests that are not HTTP at all (garbage request lines, broken
//! chunked framing, heads over the HTTP layer's limits) are answered, if at
//! all, by the HTTP layer before the application sees them: for those only
//! "a 4xx or a close, never a 5xx, and the node is fine afterwards" is
//! required.
//!
//! Tests marked `#[ignore = "..."]` pin known contract violations
//! found here, with their minimal inputs first; the fuzzing tests leave
//! those input classes to them so that the rest stays green.

mod common;

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use awc::http::Method;
use futures_util::future::{join, join_all};
use proptest::prelude::*;
use proptest::sample::{select, Index};
use proptest::test_runner::{Config as ProptestConfig, RngAlgorithm, TestCaseError, TestRng};
use proptest::test_runner::{TestError, TestRunner};
use serde_json::{json, Value};

use common::{encode, kv_path, request_with_timeout, timed, Body, Options, TestCluster};

/// `CAUSAL_WAIT_MS` of the fuzzing clusters: fuzzed contexts that happen
/// to be well-formed but unsatisfiable get their 503 quickly.
const FUZZ_WAIT_MS: u64 = 200;

/// Time allowed for one request of a fuzzing case (far above the causal
/// wait: a request that takes this long is a hang).
const CASE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a normal client may wait, whatever else is going on. Not a
/// latency target (a loaded machine may take a second or more to answer):
/// the point is that nothing hangs or starves it, and a hang lasts until a
/// request timeout ([`CASE_TIMEOUT`] and above).
const PROMPT: Duration = Duration::from_secs(5);

/// Fuzzing batches per test, and cases per batch; the replica is checked
/// after every batch.
const BATCHES: u32 = 4;
const CASES_PER_BATCH: u32 = 50;

// ----- a raw HTTP/1.1 client -------------------------------------------------------

/// An answer read off a raw connection.
#[derive(Clone)]
struct RawReply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl RawReply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

impl std::fmt::Debug for RawReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {:?} {}",
            self.status,
            self.header("content-type"),
            Shown(&self.body)
        )
    }
}

/// Bytes printed escaped and cut short, for messages.
struct Shown<'a>(&'a [u8]);

impl std::fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const MAX: usize = 160;
        let cut = &self.0[..self.0.len().min(MAX)];
        write!(f, "b\"{}\"", cut.escape_ascii())?;
        if self.0.len() > MAX {
            write!(f, "...({} bytes)", self.0.len())?;
        }
        Ok(())
    }
}

/// Raw request bytes (a generated body or request), printed short.
#[derive(Clone)]
struct Bytes(Vec<u8>);

impl std::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", Shown(&self.0))
    }
}

/// A well-formed request: `Host`, `Content-Length` and `Connection: close`
/// are added; `headers` come on top.
fn http_request(
    addr: &str,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Vec<u8> {
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// Parses one complete response at the start of `buf`; `eof` says the
/// connection is closed (a body without length then ends there). Returns
/// the response and how many bytes it took, or `None` if incomplete.
fn parse_response(buf: &[u8], eof: bool) -> Result<Option<(RawReply, usize)>, String> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| "response head is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut reply = RawReply {
        status,
        headers,
        body: Vec::new(),
    };
    let rest = &buf[end + 4..];
    if reply
        .header("transfer-encoding")
        .is_some_and(|t| t.to_ascii_lowercase().contains("chunked"))
    {
        let mut at = 0;
        loop {
            let Some(line_end) = rest[at..].windows(2).position(|w| w == b"\r\n") else {
                return Ok(None);
            };
            let size_text = std::str::from_utf8(&rest[at..at + line_end]).unwrap_or("?");
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| format!("bad chunk size {size_text:?}"))?;
            at += line_end + 2;
            if size == 0 {
                // Trailers are not used by the server; the final CRLF ends it.
                if rest.len() < at + 2 {
                    return Ok(None);
                }
                return Ok(Some((reply, end + 4 + at + 2)));
            }
            if rest.len() < at + size + 2 {
                return Ok(None);
            }
            reply.body.extend_from_slice(&rest[at..at + size]);
            at += size + 2;
        }
    }
    let length = match reply.header("content-length") {
        Some(l) => Some(
            l.parse::<usize>()
                .map_err(|_| format!("bad Content-Length {l:?}"))?,
        ),
        None if status < 200 || status == 204 || status == 304 => Some(0),
        None => None,
    };
    match length {
        Some(n) if rest.len() >= n => {
            reply.body = rest[..n].to_vec();
            Ok(Some((reply, end + 4 + n)))
        }
        Some(_) => Ok(None),
        None if eof => {
            reply.body = rest.to_vec();
            Ok(Some((reply, buf.len())))
        }
        None => Ok(None),
    }
}

/// How a raw exchange ended without a complete answer.
#[derive(Debug, PartialEq)]
enum RawError {
    /// Nothing complete within the time allowed.
    Timeout,
    /// The connection was reset.
    Reset,
    /// The server closed the connection; what it had sent.
    Closed(String),
    /// Anything else.
    Other(String),
}

/// Connects to `addr`, with read and write timeouts.
fn connect(addr: &str, timeout: Duration) -> TcpStream {
    let sock: std::net::SocketAddr = addr.parse().expect("a loopback socket address");
    let stream = TcpStream::connect_timeout(&sock, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"));
    stream.set_nodelay(true).expect("nodelay");
    stream.set_read_timeout(Some(timeout)).expect("timeout");
    stream.set_write_timeout(Some(timeout)).expect("timeout");
    stream
}

/// Reads `count` complete responses off `stream`, until `deadline`.
fn read_responses(
    stream: &mut TcpStream,
    count: usize,
    deadline: Instant,
) -> Result<Vec<RawReply>, RawError> {
    let mut buf = Vec::new();
    let mut replies = Vec::new();
    let mut chunk = vec![0u8; 64 << 10];
    let mut eof = false;
    loop {
        while replies.len() < count {
            match parse_response(&buf, eof).map_err(RawError::Other)? {
                Some((reply, used)) => {
                    replies.push(reply);
                    buf.drain(..used);
                }
                None => break,
            }
        }
        if replies.len() == count {
            return Ok(replies);
        }
        if eof {
            return Err(RawError::Closed(format!(
                "after {} complete responses: {}",
                replies.len(),
                Shown(&buf)
            )));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(RawError::Timeout);
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(|e| RawError::Other(e.to_string()))?;
        match stream.read(&mut chunk) {
            Ok(0) => eof = true,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(RawError::Timeout)
            }
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return Err(RawError::Reset),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(RawError::Other(e.to_string())),
        }
    }
}

/// Sends `request` on a fresh connection (writing from another thread, so
/// that an answer sent before the body is all read is seen) and reads
/// `count` responses.
fn exchange_many(
    addr: &str,
    request: &[u8],
    count: usize,
    timeout: Duration,
) -> Result<Vec<RawReply>, RawError> {
    let deadline = Instant::now() + timeout;
    let mut stream = connect(addr, timeout);
    let mut writer = stream.try_clone().expect("clone the stream");
    std::thread::scope(|s| {
        // A write error (the server answered early and closed) is fine:
        // what matters is the answer.
        s.spawn(move || {
            let _ = writer.write_all(request);
            let _ = writer.flush();
        });
        let replies = read_responses(&mut stream, count, deadline);
        // Unblocks the writer if the server stopped reading.
        let _ = stream.shutdown(Shutdown::Both);
        replies
    })
}

/// One request, one answer.
fn exchange(addr: &str, request: &[u8], timeout: Duration) -> Result<RawReply, RawError> {
    exchange_many(addr, request, 1, timeout).map(|mut r| r.remove(0))
}

// ----- what every answer must look like ----------------------------------------------

/// Which kind of route a request went to.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Route {
    /// `/key-value-store/<key>`.
    Kv,
    /// `/key-value-store-view`.
    View,
    /// Anything else (internal endpoints, malformed targets).
    Other,
}

/// Whether a response body is JSON. A body nested deeper than serde_json
/// parses by default (a stored deep value) counts as JSON.
fn is_json(body: &[u8]) -> bool {
    match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
        Ok(_) => true,
        Err(e) => e.to_string().contains("recursion limit"),
    }
}

/// Checks one answer against the contract: a 2xx; a 4xx whose body is JSON
/// with an `error` string (and `message: "Error in <METHOD>"` on the
/// key-value and view routes); or, when `may_503`, SPEC's 503.
fn check_answer(
    status: u16,
    content_type: Option<&str>,
    body: &[u8],
    method: &str,
    route: Route,
    may_503: bool,
) -> Result<(), String> {
    let json_type = content_type.is_some_and(|t| t.starts_with("application/json"));
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    match status {
        200..=299 => {
            if route != Route::Other && !(json_type && is_json(body)) {
                return Err(format!("{status} without a JSON body"));
            }
        }
        400..=499 => {
            if !json_type {
                return Err(format!("{status} with Content-Type {content_type:?}"));
            }
            let parsed = parsed.ok_or_else(|| format!("{status} body is not JSON"))?;
            if !parsed["error"].is_string() {
                return Err(format!("{status} body has no `error` string"));
            }
            if route != Route::Other && parsed["message"] != json!(format!("Error in {method}")) {
                return Err(format!("{status} body has no `message: Error in {method}`"));
            }
        }
        503 if may_503 => {
            let parsed = parsed.ok_or("503 body is not JSON")?;
            if parsed["error"] != json!("Causal dependencies not satisfied")
                || parsed["message"] != json!(format!("Error in {method}"))
                || parsed.get("causal-metadata").is_none()
            {
                return Err("503 body is not SPEC's".to_string());
            }
        }
        503 => return Err("503 although the request carried no context".to_string()),
        _ => return Err(format!("forbidden status {status}")),
    }
    Ok(())
}

/// [`check_answer`] for a raw reply, naming the reply on failure.
fn check_raw(r: &RawReply, method: &str, route: Route, may_503: bool) -> Result<(), String> {
    check_answer(
        r.status,
        r.header("content-type"),
        &r.body,
        method,
        route,
        may_503,
    )
    .map_err(|e| format!("{e}: {r:?}"))
}

/// [`check_answer`] for an awc reply.
fn check_reply(r: &common::Reply, method: &str, route: Route, may_503: bool) -> Result<(), String> {
    check_answer(
        r.status,
        r.content_type.as_deref(),
        r.text.as_bytes(),
        method,
        route,
        may_503,
    )
    .map_err(|e| format!("{e}: {} {:?} {}", r.status, r.content_type, r.text))
}

// ----- known contents, checked after every batch --------------------------------------

/// Keys stored before the hostile traffic, with their values and the
/// context their writes returned, and the view every replica printed.
struct Known {
    keys: Vec<(String, Value, Value)>,
    view: String,
    replicas: usize,
}

/// Stores the known keys at replica 0 (every key name starts with
/// `known`, which no fuzzed key does), waits until every replica has them
/// and records the view.
async fn store_known(c: &TestCluster, replicas: usize) -> Known {
    let values = [
        ("known-str", json!("plain string")),
        ("known-num", json!(12345678901234u64)),
        (
            "known-obj",
            json!({"a": [1, 2, {"b": null}], "c": "ü", "d": -1.5}),
        ),
        ("known-日本", json!("ユニコード ✓")),
        ("known/slash", json!([true, false, "x"])),
        ("known-empty", json!("")),
        ("known-updated", json!("first")),
        ("known-updated", json!({"second": true})),
    ];
    let fifty = format!("known-{}", "k".repeat(44));
    assert_eq!(fifty.chars().count(), 50);
    let mut ctx = json!("");
    let mut keys: Vec<(String, Value, Value)> = Vec::new();
    for (key, value) in values
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .chain([(fifty, json!(50))])
    {
        let r = c.put(0, &key, value.clone(), &ctx).await;
        assert!(r.status == 200 || r.status == 201, "storing {key}: {r:?}");
        ctx = r.ctx();
        keys.retain(|(k, _, _)| *k != key);
        keys.push((key, value, ctx.clone()));
    }
    let all: Vec<usize> = (0..replicas).collect();
    let expected: Vec<(String, Option<Value>)> = keys
        .iter()
        .map(|(k, v, _)| (k.clone(), Some(v.clone())))
        .collect();
    c.wait_contents(&all, &expected).await;
    let view = c.view(0).await;
    assert_eq!(view, c.expected_view(&all));
    Known {
        keys,
        view,
        replicas,
    }
}

/// Every replica is up, serves a normal client promptly, and holds exactly
/// the known keys and the view; `after` names what came before.
async fn assert_intact(c: &TestCluster, known: &Known, after: &str) {
    for i in 0..known.replicas {
        let (health, t) = timed(request_with_timeout(
            c.addr(i),
            Method::GET,
            "/health",
            &[],
            Body::None,
            Duration::from_secs(5),
        ))
        .await;
        let health = health.unwrap_or_else(|e| panic!("after {after}: /health of {i}: {e}"));
        assert_eq!(
            health.status, 200,
            "after {after}: health of {i}: {health:?}"
        );
        assert!(t < PROMPT, "after {after}: /health of {i} took {t:?}");
        probe(c, i, after).await;
        for (key, value, ctx) in &known.keys {
            let r = c.get(i, key, ctx).await;
            assert_eq!(
                r.status, 200,
                "after {after}: known key {key:?} at replica {i}: {r:?}"
            );
            assert_eq!(
                &r.body["value"], value,
                "after {after}: known key {key:?} changed at replica {i}: {r:?}"
            );
        }
        assert_eq!(
            c.view(i).await,
            known.view,
            "after {after}: the view of replica {i} changed"
        );
    }
}

/// A normal client writes a fresh key at replica `i` and reads it back;
/// each request is answered within [`PROMPT`].
async fn probe(c: &TestCluster, i: usize, after: &str) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let key = format!("probe-{n}");
    let (r, t) = timed(c.put(i, &key, json!(n), &json!(""))).await;
    assert_eq!(r.status, 201, "after {after}: probe PUT at {i}: {r:?}");
    assert!(t < PROMPT, "after {after}: probe PUT at {i} took {t:?}");
    let (r2, t) = timed(c.get(i, &key, &r.ctx())).await;
    assert_eq!(r2.status, 200, "after {after}: probe GET at {i}: {r2:?}");
    assert_eq!(r2.body["value"], json!(n), "after {after}: probe at {i}");
    assert!(t < PROMPT, "after {after}: probe GET at {i} took {t:?}");
}

// ----- running proptest by hand ---------------------------------------------------------

/// A runner for `cases` cases with a fixed seed for (`name`, `batch`), no
/// persistence files and bounded shrinking.
fn runner(name: &str, batch: u32, cases: u32) -> TestRunner {
    let config = ProptestConfig {
        cases,
        failure_persistence: None,
        max_shrink_iters: 200,
        max_shrink_time: 20_000,
        max_global_rejects: 10_000,
        ..ProptestConfig::default()
    };
    let mut seed = [0u8; 32];
    for (i, b) in name.bytes().enumerate() {
        seed[i % 28] ^= b;
    }
    seed[28..].copy_from_slice(&batch.to_le_bytes());
    TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &seed))
}

/// How many answers of each status the cases got (shrinking included).
#[derive(Default)]
struct Tally(std::cell::RefCell<BTreeMap<u16, u32>>);

impl Tally {
    /// Counts an answer.
    fn note(&self, status: u16) {
        *self.0.borrow_mut().entry(status).or_default() += 1;
    }

    /// How many answers had a status in `range`.
    fn count(&self, range: std::ops::RangeInclusive<u16>) -> u32 {
        self.0
            .borrow()
            .iter()
            .filter(|(s, _)| range.contains(s))
            .map(|(_, n)| n)
            .sum()
    }
}

impl std::fmt::Debug for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.0.borrow())
    }
}

/// Runs `BATCHES` batches of `cases` cases of `strategy` through `case`,
/// checking the cluster after each; panics with the minimal failing input.
/// Returns the statuses the cases saw (so that a test can assert its
/// generators reach every kind of answer).
async fn fuzz<S: Strategy>(
    c: &TestCluster,
    known: &Known,
    name: &str,
    strategy: S,
    cases: u32,
    case: impl Fn(&S::Value, &Tally) -> Result<(), TestCaseError>,
) -> Tally {
    let tally = Tally::default();
    for batch in 0..BATCHES {
        let started = Instant::now();
        let mut runner = runner(name, batch, cases);
        match runner.run(&strategy, |v| case(&v, &tally)) {
            Ok(()) => {}
            Err(TestError::Fail(why, input)) => {
                panic!("{name} batch {batch}: {why}\nminimal failing input: {input:?}")
            }
            Err(e) => panic!("{name} batch {batch}: {e}"),
        }
        eprintln!("{name}: batch {batch} took {:?}", started.elapsed());
        assert_intact(c, known, &format!("{name} batch {batch}")).await;
    }
    eprintln!("{name}: statuses {tally:?}");
    tally
}

// ----- generators ----------------------------------------------------------------------

/// Any JSON value, a few levels deep.
fn arb_json() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
            .map(Value::Number)),
        ".{0,24}".prop_map(Value::String),
        Just(json!("")),
        Just(json!({})),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(".{0,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
    .boxed()
}

/// A JSON object mixing the fields of every public route, with values of
/// any type.
fn arb_fields() -> BoxedStrategy<Value> {
    let field =
        |name: &'static str| prop::option::weighted(0.7, arb_json()).prop_map(move |v| (name, v));
    (
        field("value"),
        field("causal-metadata"),
        field("socket-address"),
        prop::collection::btree_map("[a-z-]{1,8}", arb_json(), 0..2),
    )
        .prop_map(|(a, b, c, extra)| {
            let mut map: serde_json::Map<String, Value> = extra.into_iter().collect();
            for (name, v) in [a, b, c] {
                if let Some(v) = v {
                    map.insert(name.to_string(), v);
                }
            }
            Value::Object(map)
        })
        .boxed()
}

/// Deeply nested JSON: `depth` openers, somewhere in a body.
fn nested_body() -> BoxedStrategy<Vec<u8>> {
    (
        select(vec![127usize, 128, 129, 1000, 100_000]),
        select(vec![("[", "]"), ("{\"a\":", "}"), ("[{\"v\":", "}]")]),
        select(vec![
            "top",
            "value",
            "metadata",
            "metadata-string",
            "address",
        ]),
        any::<bool>(),
    )
        .prop_map(|(depth, (open, close), place, closed)| {
            let mut inner = open.repeat(depth);
            inner.push('1');
            if closed {
                inner.push_str(&close.repeat(depth));
            }
            let text = match place {
                "top" => inner,
                "value" => format!(r#"{{"value":{inner},"causal-metadata":""}}"#),
                "metadata" => format!(r#"{{"value":1,"causal-metadata":{inner}}}"#),
                "metadata-string" => format!(
                    r#"{{"value":1,"causal-metadata":{}}}"#,
                    Value::String(inner)
                ),
                _ => format!(r#"{{"socket-address":{inner}}}"#),
            };
            text.into_bytes()
        })
        .boxed()
}

/// A huge string in some field (the body may or may not exceed the 1 MiB
/// default limit).
fn huge_body() -> BoxedStrategy<Vec<u8>> {
    (
        select(vec![100_000usize, (1 << 20) - 100, (1 << 20) + 1, 3 << 20]),
        select(vec!["value", "causal-metadata", "socket-address", "extra"]),
        select(vec!['x', 'é', '"', '\\']),
    )
        .prop_map(|(len, field, ch)| {
            let s: String = std::iter::repeat_n(ch, len).collect();
            let mut map = serde_json::Map::new();
            map.insert("value".into(), json!(1));
            map.insert("causal-metadata".into(), json!(""));
            map.insert(field.into(), Value::String(s));
            serde_json::to_vec(&Value::Object(map)).expect("serialize")
        })
        .boxed()
}

/// Bodies naming a field twice.
fn duplicate_body() -> BoxedStrategy<Vec<u8>> {
    select(vec![
        r#"{"value":1,"value":2,"causal-metadata":""}"#,
        r#"{"value":1,"causal-metadata":"","causal-metadata":{}}"#,
        r#"{"value":null,"value":"x"}"#,
        r#"{"causal-metadata":"","causal-metadata":""}"#,
        r#"{"socket-address":"nonsense","socket-address":"also nonsense"}"#,
        r#"{"socket-address":null,"socket-address":""}"#,
        r#"{"value":1,"causal-metadata":{"a#1":0,"a#1":0}}"#,
        r#"{"value":1,"causal-metadata":{"127.0.0.1:1#x":1,"127.0.0.1:1#x":0}}"#,
    ])
    .prop_map(|s| s.as_bytes().to_vec())
    .boxed()
}

/// Byte sequences that are not UTF-8 (or escapes that are no code point,
/// or a NUL byte).
fn bad_utf8() -> Vec<&'static [u8]> {
    vec![
        &b"\xff"[..],
        b"\xc3\x28",
        b"\xc0\x80",
        b"\xed\xa0\x80",
        b"\xf4\x90\x80\x80",
        b"\xe2\x82",
        b"\\ud800",
        b"\\udc00\\ud800",
        b"\x00",
    ]
}

/// A JSON body with invalid UTF-8 (or an invalid escape) inside a string.
/// The fields of a body a route reads (`name` is a field name of the
/// body); invalid UTF-8 in a field the route skips is fuzzed by
/// `bodies_with_invalid_utf8_are_400_and_never_applied`.
fn non_utf8_body(route: Route) -> BoxedStrategy<Vec<u8>> {
    let places = if route == Route::View {
        vec!["socket-address", "name"]
    } else {
        vec!["value", "causal-metadata", "name"]
    };
    (select(bad_utf8()), select(places))
        .prop_map(|(bad, place)| {
            let mut body = Vec::new();
            let string = |body: &mut Vec<u8>| {
                body.extend_from_slice(b"\"ab");
                body.extend_from_slice(bad);
                body.extend_from_slice(b"cd\"");
            };
            body.extend_from_slice(b"{");
            if place == "name" {
                string(&mut body);
                body.extend_from_slice(b":1,");
            }
            body.extend_from_slice(b"\"value\":");
            if place == "value" {
                string(&mut body);
            } else {
                body.extend_from_slice(b"1");
            }
            body.extend_from_slice(b",\"causal-metadata\":");
            if place == "causal-metadata" {
                string(&mut body);
            } else {
                body.extend_from_slice(b"\"\"");
            }
            if place == "socket-address" {
                body.extend_from_slice(b",\"socket-address\":");
                string(&mut body);
            }
            body.extend_from_slice(b"}");
            body
        })
        .boxed()
}

/// Every kind of hostile body.
fn hostile_body(route: Route) -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        3 => prop::collection::vec(any::<u8>(), 0..300),
        3 => (arb_fields(), any::<Index>()).prop_map(|(v, cut)| {
            let text = serde_json::to_vec(&v).expect("serialize");
            // Strictly shorter than the whole: truncated.
            text[..cut.index(text.len())].to_vec()
        }),
        2 => nested_body(),
        4 => arb_fields().prop_map(|v| serde_json::to_vec(&v).expect("serialize")),
        1 => huge_body(),
        1 => duplicate_body(),
        2 => non_utf8_body(route),
        1 => select(vec!["", " ", "\n\t ", "null", "{}", "0", "\"\"", "true", "{\"value\":"])
            .prop_map(|s| s.as_bytes().to_vec()),
    ]
    .prop_filter(
        "valid top-level arrays are fuzzed by non_object_json_bodies_are_400_and_never_applied",
        |b| !matches!(serde_json::from_slice::<Value>(b), Ok(Value::Array(_))),
    )
    .boxed()
}

/// The first byte of `body` that is not JSON whitespace.
fn first_byte(body: &[u8]) -> Option<u8> {
    body.iter()
        .copied()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
}

/// Parses a body as JSON: `Ok(None)` when it is nested deeper than
/// serde_json parses by default.
fn parse_deep(body: &[u8]) -> Result<Option<Value>, String> {
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.to_string().contains("recursion limit") => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// One fuzzed body sent to a public route.
#[derive(Clone, Debug)]
struct BodyCase {
    method: &'static str,
    /// `Some(n)`: `/key-value-store/fz-body-<n>`; `None`: the view.
    key: Option<usize>,
    content_type: Option<&'static str>,
    body: Bytes,
}

fn body_case() -> impl Strategy<Value = BodyCase> {
    let target = prop_oneof![
        4 => (select(vec!["PUT", "GET", "DELETE"]), 0..4usize).prop_map(|(m, k)| (m, Some(k))),
        1 => select(vec!["PUT", "DELETE"]).prop_map(|m| (m, None)),
    ];
    target
        .prop_flat_map(|(method, key)| {
            let route = if key.is_some() {
                Route::Kv
            } else {
                Route::View
            };
            (
                Just((method, key)),
                select(vec![
                    Some("application/json"),
                    Some("application/json; charset=utf-16"),
                    Some("text/plain"),
                    Some("application/x-www-form-urlencoded"),
                    None,
                ]),
                hostile_body(route),
            )
        })
        .prop_map(|((method, key), content_type, body)| BodyCase {
            method,
            key,
            content_type,
            body: Bytes(body),
        })
}

// ----- fuzzing bodies ------------------------------------------------------------------

#[actix_web::test]
async fn fuzzed_bodies_get_json_answers_and_change_nothing_stored() {
    let c = Options::default()
        .causal_wait_ms(FUZZ_WAIT_MS)
        .start(2)
        .await;
    let known = store_known(&c, 2).await;
    let addr = c.addr(0).to_string();
    let tally = fuzz(
        &c,
        &known,
        "fuzzed_bodies",
        body_case(),
        CASES_PER_BATCH,
        |case, tally| {
            let body = &case.body.0;
            let mut headers = Vec::new();
            if let Some(t) = case.content_type {
                headers.push(("Content-Type", t));
            }
            let (target, route) = match case.key {
                Some(n) => (kv_path(&format!("fz-body-{n}")), Route::Kv),
                None => ("/key-value-store-view".to_string(), Route::View),
            };
            let request = http_request(&addr, case.method, &target, &headers, body);
            let r = exchange(&addr, &request, CASE_TIMEOUT)
                .map_err(|e| TestCaseError::fail(format!("no answer: {e:?}")))?;
            let may_503 = route == Route::Kv && body.windows(15).any(|w| w == b"causal-metadata");
            tally.note(r.status);
            check_raw(&r, case.method, route, may_503).map_err(TestCaseError::fail)?;
            if route == Route::View && (200..300).contains(&r.status) {
                return Err(TestCaseError::fail(format!(
                    "a fuzzed body changed the view: {r:?}"
                )));
            }
            if !(200..300).contains(&r.status) {
                return Ok(());
            }
            // Only a blank body or a JSON object (in UTF-8) may be served;
            // escapes of lone surrogates are JSON text serde_json refuses
            // to decode, but not malformed.
            let object = first_byte(body) == Some(b'{') && std::str::from_utf8(body).is_ok();
            let sent = match parse_deep(body) {
                _ if first_byte(body).is_none() => None,
                Ok(Some(v)) if v.is_object() => Some(v),
                Ok(None) if object => None,
                Err(e) if object && e.contains("surrogate") => None,
                _ => {
                    return Err(TestCaseError::fail(format!(
                        "a body that is not a JSON object was served: {r:?}"
                    )))
                }
            };
            // A value accepted is returned exactly as sent.
            if let (Some(sent), "PUT") = (sent, case.method) {
                let get = http_request(&addr, "GET", &target, &[], b"");
                let g = exchange(&addr, &get, CASE_TIMEOUT)
                    .map_err(|e| TestCaseError::fail(format!("no answer to GET: {e:?}")))?;
                let stored = g.json().map(|b| b["value"].clone());
                if g.status != 200 || stored.as_ref() != Some(&sent["value"]) {
                    return Err(TestCaseError::fail(format!(
                        "stored value differs from the one sent: {g:?}"
                    )));
                }
            }
            Ok(())
        },
    )
    .await;
    assert!(
        tally.count(200..=299) > 0 && tally.count(400..=400) > 0,
        "the fuzzed bodies must reach both successes and 400s: {tally:?}"
    );
}

/// Top-level JSON arrays (and their nestings): what serde's derived
/// `Deserialize` takes as the positional form of a struct.
fn array_body() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        3 => prop::collection::vec(arb_json(), 0..3).prop_map(Value::Array),
        2 => (arb_json(), prop::option::of(arb_json())).prop_map(|(v, m)| {
            let mut a = vec![v];
            a.extend(m);
            Value::Array(a)
        }),
        1 => select(vec![
            json!([]),
            json!(["x"]),
            json!(["x", ""]),
            json!([null, ""]),
            json!([{"k": 1}, {}]),
            json!(["127.0.0.1:9"]),
            json!(["127.0.0.1:9", "127.0.0.1:10"]),
        ]),
    ]
    .prop_map(|v| serde_json::to_vec(&v).expect("serialize"))
    .boxed()
}

/// SPEC: bodies are JSON objects; anything else is malformed (400). A
/// top-level array must not be taken as `[value, causal-metadata]` or
/// `[socket-address]`.
#[actix_web::test]
async fn non_object_json_bodies_are_400_and_never_applied() {
    let c = Options::default()
        .causal_wait_ms(FUZZ_WAIT_MS)
        .start(1)
        .await;
    let known = store_known(&c, 1).await;
    let addr = c.addr(0).to_string();
    let send = |method: &str, target: &str, body: &[u8]| {
        let request = http_request(
            &addr,
            method,
            target,
            &[("Content-Type", "application/json")],
            body,
        );
        exchange(&addr, &request, CASE_TIMEOUT)
    };
    // The minimal inputs first.
    let view = "/key-value-store-view";
    for (method, target, body) in [
        ("PUT", kv_path("fz-array"), &br#"["x"]"#[..]),
        ("DELETE", kv_path("known-str"), b"[]"),
        ("GET", kv_path("known-str"), b"[]"),
        ("PUT", view.to_string(), br#"["127.0.0.1:9"]"#),
    ] {
        let r = send(method, &target, body)
            .unwrap_or_else(|e| panic!("{method} {target} {}: {e:?}", Shown(body)));
        assert_eq!(
            r.status,
            400,
            "{method} {target} with body {}: {r:?}",
            Shown(body)
        );
        check_raw(&r, method, Route::Kv, false).unwrap_or_else(|e| panic!("{e}"));
    }
    assert_intact(&c, &known, "minimal array bodies").await;
    let strategy = (
        prop_oneof![
            4 => (select(vec!["PUT", "GET", "DELETE"]), 0..4usize)
                .prop_map(|(m, k)| (m, Some(k))),
            1 => select(vec!["PUT", "DELETE"]).prop_map(|m| (m, None)),
        ],
        array_body().prop_map(Bytes),
    );
    fuzz(
        &c,
        &known,
        "non_object_bodies",
        strategy,
        CASES_PER_BATCH,
        |((method, key), body), tally| {
            let (target, route) = match key {
                Some(n) => (kv_path(&format!("fz-array-{n}")), Route::Kv),
                None => (view.to_string(), Route::View),
            };
            let r = send(method, &target, &body.0)
                .map_err(|e| TestCaseError::fail(format!("no answer: {e:?}")))?;
            tally.note(r.status);
            check_raw(&r, method, route, false).map_err(TestCaseError::fail)?;
            if r.status != 400 {
                return Err(TestCaseError::fail(format!(
                    "a JSON array body was not refused: {r:?}"
                )));
            }
            Ok(())
        },
    )
    .await;
}

/// SPEC: malformed JSON gets a 400. A body that is not UTF-8 is not JSON,
/// also when the bytes sit in a field the route does not read.
#[actix_web::test]
async fn bodies_with_invalid_utf8_are_400_and_never_applied() {
    let c = Options::default()
        .failure_timeout_ms(120_000)
        .start(1)
        .await;
    let known = store_known(&c, 1).await;
    let addr = c.addr(0).to_string();
    let send = |method: &str, target: &str, body: &[u8]| {
        let request = http_request(
            &addr,
            method,
            target,
            &[("Content-Type", "application/json")],
            body,
        );
        exchange(&addr, &request, CASE_TIMEOUT)
    };
    let view = "/key-value-store-view";
    // The minimal inputs first.
    for (method, target, body) in [
        (
            "PUT",
            kv_path("fz-utf8"),
            &b"{\"value\":1,\"x\":\"\xff\"}"[..],
        ),
        (
            "PUT",
            view.to_string(),
            b"{\"socket-address\":\"127.0.0.1:9\",\"x\":\"\xff\"}",
        ),
    ] {
        let r = send(method, &target, body)
            .unwrap_or_else(|e| panic!("{method} {target} {}: {e:?}", Shown(body)));
        assert_eq!(
            r.status,
            400,
            "{method} {target} with body {}: {r:?}",
            Shown(body)
        );
    }
    assert_intact(&c, &known, "minimal invalid UTF-8 bodies").await;
    // Every non-UTF-8 sequence (not mere escapes), in a skipped field's
    // value or name, or deeper, of a request that would otherwise succeed.
    let raw_bad: Vec<&[u8]> = bad_utf8()
        .into_iter()
        .filter(|b| std::str::from_utf8(b).is_err())
        .collect();
    let strategy = (
        select(vec!["PUT", "GET", "DELETE", "VIEW-PUT"]),
        select(raw_bad),
        select(vec!["value", "name", "nested"]),
    );
    fuzz(
        &c,
        &known,
        "invalid_utf8_bodies",
        strategy,
        CASES_PER_BATCH / 5,
        |(method, bad, place), tally| {
            let mut extra = Vec::new();
            match *place {
                "value" => {
                    extra.extend_from_slice(b"\"x\":\"a");
                    extra.extend_from_slice(bad);
                    extra.extend_from_slice(b"\"");
                }
                "name" => {
                    extra.extend_from_slice(b"\"x");
                    extra.extend_from_slice(bad);
                    extra.extend_from_slice(b"\":1");
                }
                _ => {
                    extra.extend_from_slice(b"\"x\":[{\"y\":\"");
                    extra.extend_from_slice(bad);
                    extra.extend_from_slice(b"\"}]");
                }
            }
            let (http_method, target, route, fields): (&str, String, Route, &[u8]) = match *method {
                "PUT" => (
                    "PUT",
                    kv_path("fz-utf8"),
                    Route::Kv,
                    br#""value":1,"causal-metadata":"","#,
                ),
                "VIEW-PUT" => (
                    "PUT",
                    view.to_string(),
                    Route::View,
                    br#""socket-address":"127.0.0.1:9","#,
                ),
                m => (
                    m,
                    kv_path("fz-utf8"),
                    Route::Kv,
                    br#""causal-metadata":"","#,
                ),
            };
            let mut body = b"{".to_vec();
            body.extend_from_slice(fields);
            body.extend_from_slice(&extra);
            body.extend_from_slice(b"}");
            let r = send(http_method, &target, &body)
                .map_err(|e| TestCaseError::fail(format!("no answer: {e:?}")))?;
            tally.note(r.status);
            check_raw(&r, http_method, route, false).map_err(TestCaseError::fail)?;
            if r.status != 400 {
                return Err(TestCaseError::fail(format!(
                    "a body with invalid UTF-8 was served: {r:?}"
                )));
            }
            Ok(())
        },
    )
    .await;
}

// ----- fuzzing keys ---------------------------------------------------------------------

/// What a fuzzed key path is.
#[derive(Clone, Debug)]
enum KeyPath {
    /// A key, percent-encoded as one segment: the decoded key is known.
    Plain(String),
    /// A raw request target after `/key-value-store/`, sent verbatim.
    Trick(String),
}

fn key_path() -> impl Strategy<Value = KeyPath> {
    let repeated = (
        select(vec!['a', 'é', '日', '🎉', '%', '/']),
        select(vec![1usize, 49, 50, 51, 10_000]),
    )
        .prop_map(|(ch, n)| std::iter::repeat_n(ch, n).collect::<String>())
        .prop_filter(
            "targets over 64 KiB are tested by keys_in_targets_over_64_kib_get_json_400",
            |key| kv_path(key).len() < MAX_TARGET,
        );
    let plain = prop_oneof![
        Just(String::new()),
        "fz[a-z0-9]{0,10}",
        "fz.{0,60}",
        repeated,
        select(vec![
            "fz ", "fz+", "fz?x=1", "fz#f", "fz/..", "fz/../..", "fz%zz"
        ])
        .prop_map(str::to_string),
    ];
    let fragment = select(vec![
        "fz",
        "x",
        "..",
        ".",
        "%2e%2e",
        "%2E%2E",
        "%2e",
        "/",
        "//",
        "a/b",
        "%2F",
        "%2f",
        "?",
        "?causal-metadata=%7B%7D",
        "%3F",
        "%3f",
        "%23",
        "%zz",
        "%ff",
        "%FF",
        "%",
        "%%",
        "%2",
        "%c3%28",
        "%e2%82",
        "%ed%a0%80",
        "%00",
        "%0a",
        "%0d%0a",
        "%20",
        "+",
        ";",
        "=",
        "&",
        "~",
        "%C3%A9",
        "%E6%97%A5",
        "%F0%9F%8E%89",
        "%22",
        "%3C",
        "%5C",
        "%252F",
        "@",
        ":",
        "!",
        "$",
        "'",
        "(",
        ")",
        "*",
        ",",
    ]);
    let trick = prop_oneof![
        3 => prop::collection::vec(fragment, 1..7).prop_map(|f| format!("fz{}", f.concat())),
        2 => prop::collection::vec(
            select(vec!["..", "%2e%2e", ".", "", "fz"]), 1..4
        ).prop_map(|f| format!("{}/", f.join("/"))),
        1 => select(vec![
            "../key-value-store/known-str",
            "%2e%2e/key-value-store/known-str",
            "%2E%2E%2Fkey-value-store%2Fknown-str",
            "./known-str",
            "/known-str",
            "known-str/",
            "known-str%2F",
            "known-str/.",
            "known-str%3F",
            "known-str%23",
            "known-str%00",
            "known%2Fslash%2F..",
            "known/slash/../known-str",
        ])
        .prop_map(str::to_string),
    ];
    prop_oneof![
        3 => plain.prop_map(KeyPath::Plain),
        3 => trick.prop_map(KeyPath::Trick),
    ]
}

#[actix_web::test]
async fn fuzzed_keys_are_decoded_safely_and_change_nothing_stored() {
    let c = Options::default()
        .causal_wait_ms(FUZZ_WAIT_MS)
        .start(1)
        .await;
    let known = store_known(&c, 1).await;
    let addr = c.addr(0).to_string();
    let strategy = (
        select(vec!["PUT", "GET", "DELETE"]),
        key_path(),
        any::<u32>(),
    );
    let tally = fuzz(
        &c,
        &known,
        "fuzzed_keys",
        strategy,
        CASES_PER_BATCH,
        |(method, path, n), tally| {
            let target = match path {
                KeyPath::Plain(key) => kv_path(key),
                KeyPath::Trick(rest) => format!("/key-value-store/{rest}"),
            };
            let body = if *method == "PUT" {
                format!(r#"{{"value":"v{n}","causal-metadata":""}}"#)
            } else {
                r#"{"causal-metadata":""}"#.to_string()
            };
            let request = http_request(
                &addr,
                method,
                &target,
                &[("Content-Type", "application/json")],
                body.as_bytes(),
            );
            let r = exchange(&addr, &request, CASE_TIMEOUT)
                .map_err(|e| TestCaseError::fail(format!("no answer: {e:?}")))?;
            // A query string may carry a context (the GET extension).
            let may_503 = *method == "GET" && target.contains("causal-metadata");
            tally.note(r.status);
            check_raw(&r, method, Route::Kv, may_503).map_err(TestCaseError::fail)?;
            if let KeyPath::Plain(key) = path {
                let chars = key.chars().count();
                let expected: &[u16] = match (*method, chars) {
                    (_, 0) => &[400],
                    (_, 51..) => &[400],
                    ("PUT", _) => &[200, 201],
                    _ => &[200, 404],
                };
                if !expected.contains(&r.status) {
                    return Err(TestCaseError::fail(format!(
                        "key of {chars} characters: expected {expected:?}: {r:?}"
                    )));
                }
                if chars > 50 && r.json().is_some_and(|b| b["error"] != "Key is too long") {
                    return Err(TestCaseError::fail(format!("not 'Key is too long': {r:?}")));
                }
            }
            // Whatever key the path named, it round-trips.
            if (200..300).contains(&r.status) && *method != "GET" {
                let get = http_request(&addr, "GET", &target, &[], b"");
                let g = exchange(&addr, &get, CASE_TIMEOUT)
                    .map_err(|e| TestCaseError::fail(format!("no answer to GET: {e:?}")))?;
                check_raw(&g, "GET", Route::Kv, false).map_err(TestCaseError::fail)?;
                let want = if *method == "PUT" {
                    (200, json!(format!("v{n}")))
                } else {
                    (404, Value::Null)
                };
                let got = (
                    g.status,
                    g.json().map(|b| b["value"].clone()).unwrap_or_default(),
                );
                if got != want {
                    return Err(TestCaseError::fail(format!(
                        "{method} {target} then GET: want {want:?}, got {g:?}"
                    )));
                }
            }
            Ok(())
        },
    )
    .await;
    assert!(
        tally.count(200..=299) > 0 && tally.count(400..=400) > 0 && tally.count(404..=404) > 0,
        "the fuzzed keys must reach successes, 400s and 404s: {tally:?}"
    );
}

/// Longest request target the fuzzed keys use (the HTTP layer refuses
/// longer ones before the application sees them).
const MAX_TARGET: usize = 65_000;

/// SPEC: a key longer than 50 characters gets `{"error":"Key is too
/// long","message":"Error in <METHOD>"}`, also when its percent-encoded
/// path is long (10,000 × '日' is 90 KB of request target).
#[actix_web::test]
#[ignore = "known limitation: actix-http answers a request head it cannot parse within its buffer (a target over ~64 KiB) with a bare 400 before the application sees it"]
async fn keys_in_targets_over_64_kib_get_json_400() {
    let c = TestCluster::start(1).await;
    let known = store_known(&c, 1).await;
    let addr = c.addr(0).to_string();
    for (ch, n) in [('日', 10_000usize), ('🎉', 10_000), ('a', 70_000)] {
        let key: String = std::iter::repeat_n(ch, n).collect();
        let target = kv_path(&key);
        assert!(target.len() > MAX_TARGET);
        for method in ["PUT", "GET", "DELETE"] {
            let body = br#"{"value":1,"causal-metadata":""}"#;
            let request = http_request(
                &addr,
                method,
                &target,
                &[("Content-Type", "application/json")],
                body,
            );
            let what = format!("{method} of a key of {n} x {ch:?} ({} bytes)", target.len());
            let r =
                exchange(&addr, &request, CASE_TIMEOUT).unwrap_or_else(|e| panic!("{what}: {e:?}"));
            check_raw(&r, method, Route::Kv, false).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(r.status, 400, "{what}: {r:?}");
            assert_eq!(
                r.json().map(|b| b["error"].clone()),
                Some(json!("Key is too long")),
                "{what}: {r:?}"
            );
        }
    }
    assert_intact(&c, &known, "keys in long targets").await;
}

// ----- fuzzing causal metadata -------------------------------------------------------

/// A fuzzed counter: a non-negative integer, or JSON text that is not one.
#[derive(Clone, Debug)]
enum Counter {
    Valid(u64),
    Invalid(&'static str),
}

fn counter() -> impl Strategy<Value = Counter> {
    prop_oneof![
        3 => select(vec![0u64, 1, 2, 7, 1000, u32::MAX as u64, u64::MAX - 1, u64::MAX])
            .prop_map(Counter::Valid),
        1 => any::<u64>().prop_map(Counter::Valid),
        2 => select(vec![
            "-1", "1e300", "-1e300", "1.5", "1.0", "1e3", "18446744073709551616",
            "99999999999999999999999", "-9223372036854775808", "0.0", "\"3\"", "null",
            "true", "[1]", "{}", "\"\"",
        ])
        .prop_map(Counter::Invalid),
    ]
}

/// A replica id in a context: one of the cluster's (by index), or any text.
#[derive(Clone, Debug)]
enum Id {
    Real(usize),
    Text(String),
}

fn replica_id(replicas: usize) -> impl Strategy<Value = Id> {
    prop_oneof![
        2 => (0..replicas).prop_map(Id::Real),
        2 => "[ -~]{1,40}".prop_map(Id::Text),
        1 => "\\PC{1,30}".prop_map(Id::Text),
        1 => Just(Id::Text("127.0.0.1:1#forged".into())),
        1 => select(vec![
            String::new(),
            "x".repeat(128),
            "x".repeat(129),
            "é".repeat(64),
            "é".repeat(65),
            "a\nb".into(),
            "a\u{0}".into(),
            "\u{7f}".into(),
            "\u{85}".into(),
            " ".into(),
        ])
        .prop_map(Id::Text),
    ]
}

/// The shape of a fuzzed `causal-metadata`.
#[derive(Clone, Debug)]
enum Meta {
    /// An object of entries.
    Clock(Vec<(Id, Counter)>),
    /// The same, stringified (clients that stringify the metadata).
    Stringified(Vec<(Id, Counter)>),
    /// `n` distinct unknown replicas, each with counter 1.
    Thousands(usize),
    /// Any JSON value (wrong types, empty forms).
    Other(Value),
    /// Text that is not JSON.
    Garbage(&'static str),
}

/// Where the metadata goes.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Placement {
    Body,
    Query,
    Header,
}

#[derive(Clone, Debug)]
struct MetaCase {
    method: &'static str,
    key: usize,
    placement: Placement,
    meta: Meta,
}

fn meta_case(replicas: usize) -> impl Strategy<Value = MetaCase> {
    let entries = || prop::collection::vec((replica_id(replicas), counter()), 1..5);
    let meta = prop_oneof![
        6 => entries().prop_map(Meta::Clock),
        2 => entries().prop_map(Meta::Stringified),
        1 => select(vec![1024usize, 1025, 2000, 5000]).prop_map(Meta::Thousands),
        3 => arb_json().prop_map(Meta::Other),
        1 => select(vec!["not json", "{", "{\"a\":", "[1,", "nul", "{}}"]).prop_map(Meta::Garbage),
    ];
    (
        select(vec!["PUT", "GET", "DELETE"]),
        0..4usize,
        select(vec![
            Placement::Body,
            Placement::Body,
            Placement::Query,
            Placement::Header,
        ]),
        meta,
    )
        .prop_map(|(method, key, placement, meta)| {
            // Only a GET may carry its context outside the body, and
            // thousands of entries only fit in a body.
            let placement = match (&meta, method) {
                (_, "PUT" | "DELETE") | (Meta::Thousands(_), _) => Placement::Body,
                _ => placement,
            };
            MetaCase {
                method,
                key,
                placement,
                meta,
            }
        })
}

/// What the replica may answer to a fuzzed context.
#[derive(Clone, Copy, Debug, Default)]
struct Allowed {
    /// 400 (malformed).
    bad: bool,
    /// 503 (unsatisfiable).
    unsatisfied: bool,
    /// Served (2xx, or 404 for an absent key).
    served: bool,
}

/// The metadata's JSON text and what may be answered to it.
fn render(meta: &Meta, ids: &[String]) -> (String, Allowed) {
    let entries = |list: &[(Id, Counter)]| {
        let mut map: BTreeMap<String, String> = BTreeMap::new();
        for (id, counter) in list {
            let name = match id {
                Id::Real(i) => ids[*i].clone(),
                Id::Text(t) => t.clone(),
            };
            let text = match counter {
                Counter::Valid(n) => n.to_string(),
                Counter::Invalid(t) => t.to_string(),
            };
            map.insert(name, text);
        }
        let mut allowed = Allowed::default();
        let mut malformed = false;
        let mut maybe_malformed = false;
        let mut unsatisfied = false;
        let mut maybe_unsatisfied = false;
        for (name, text) in &map {
            let counter: Option<u64> = text.parse().ok();
            let id_bad = name.is_empty() || name.len() > 128;
            if id_bad || counter.is_none() {
                malformed = true;
                continue;
            }
            // Control characters may or may not be refused.
            maybe_malformed |= name.chars().any(char::is_control);
            let n = counter.unwrap_or_default();
            if ids.contains(name) {
                if n >= 1 << 32 {
                    unsatisfied = true;
                } else if n > 0 {
                    maybe_unsatisfied = true;
                }
            } else if n > 0 {
                unsatisfied = true;
            }
        }
        if malformed {
            allowed.bad = true;
        } else {
            allowed.bad = maybe_malformed;
            allowed.unsatisfied = unsatisfied || maybe_unsatisfied;
            allowed.served = !unsatisfied;
        }
        let text = format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!("{}:{v}", Value::String(k.clone())))
                .collect::<Vec<_>>()
                .join(",")
        );
        (text, allowed)
    };
    match meta {
        Meta::Clock(list) => entries(list),
        Meta::Stringified(list) => {
            let (text, allowed) = entries(list);
            (Value::String(text).to_string(), allowed)
        }
        Meta::Thousands(n) => {
            let map: serde_json::Map<String, Value> = (0..*n)
                .map(|i| (format!("127.0.0.{}:{}#forged", i % 250, 1 + i), json!(1)))
                .collect();
            let allowed = if *n > 1024 {
                Allowed {
                    bad: true,
                    ..Allowed::default()
                }
            } else {
                Allowed {
                    unsatisfied: true,
                    ..Allowed::default()
                }
            };
            (Value::Object(map).to_string(), allowed)
        }
        Meta::Other(v) => {
            let empty = match v {
                Value::Null => true,
                Value::String(s) => s.trim().is_empty(),
                Value::Object(m) => m.is_empty(),
                _ => false,
            };
            let allowed = match v {
                _ if empty => Allowed {
                    served: true,
                    ..Allowed::default()
                },
                // A string holding an object, an object of entries: may
                // be anything; the invariants still hold.
                Value::String(_) | Value::Object(_) => Allowed {
                    bad: true,
                    unsatisfied: true,
                    served: true,
                },
                _ => Allowed {
                    bad: true,
                    ..Allowed::default()
                },
            };
            (v.to_string(), allowed)
        }
        Meta::Garbage(g) => (
            g.to_string(),
            Allowed {
                bad: true,
                ..Allowed::default()
            },
        ),
    }
}

#[actix_web::test]
async fn fuzzed_metadata_is_400_or_503_never_worse() {
    let c = Options::default()
        .causal_wait_ms(FUZZ_WAIT_MS)
        .start(2)
        .await;
    let known = store_known(&c, 2).await;
    let mut ids = Vec::new();
    for i in 0..2 {
        let health = c.health(i).await;
        ids.push(
            health["replica"]
                .as_str()
                .expect("/health names the replica id")
                .to_string(),
        );
    }
    let addr = c.addr(0).to_string();
    let tally = fuzz(
        &c,
        &known,
        "fuzzed_metadata",
        meta_case(ids.len()),
        CASES_PER_BATCH,
        |case, tally| {
            let (text, allowed) = render(&case.meta, &ids);
            let path = kv_path(&format!("fz-meta-{}", case.key));
            let mut headers = vec![("Content-Type", "application/json")];
            let mut target = path.clone();
            let mut placement = case.placement;
            if placement == Placement::Header && !text.bytes().all(|b| (b' '..=b'~').contains(&b)) {
                // Header values must be visible ASCII; use the query.
                placement = Placement::Query;
            }
            let body = match placement {
                Placement::Body => {
                    let value = if case.method == "PUT" {
                        r#""value":1,"#
                    } else {
                        ""
                    };
                    format!(r#"{{{value}"causal-metadata":{text}}}"#)
                }
                Placement::Query => {
                    target = format!("{path}?causal-metadata={}", encode(&text));
                    String::new()
                }
                Placement::Header => {
                    headers.push(("X-Causal-Metadata", text.as_str()));
                    String::new()
                }
            };
            let request = http_request(&addr, case.method, &target, &headers, body.as_bytes());
            let started = Instant::now();
            let r = exchange(&addr, &request, CASE_TIMEOUT)
                .map_err(|e| TestCaseError::fail(format!("no answer: {e:?}")))?;
            tally.note(r.status);
            check_raw(&r, case.method, Route::Kv, true).map_err(TestCaseError::fail)?;
            let ok = match r.status {
                400 => allowed.bad,
                503 => allowed.unsatisfied,
                200 | 201 => allowed.served,
                404 => allowed.served && case.method != "PUT",
                _ => false,
            };
            if !ok {
                return Err(TestCaseError::fail(format!(
                    "metadata {} answered {r:?}; allowed {allowed:?}",
                    Shown(text.as_bytes())
                )));
            }
            if r.status == 503 {
                if started.elapsed() < Duration::from_millis(FUZZ_WAIT_MS - 20) {
                    return Err(TestCaseError::fail(format!(
                        "503 after {:?}, before CAUSAL_WAIT_MS",
                        started.elapsed()
                    )));
                }
                // SPEC: the 503 carries the context sent.
                if placement == Placement::Body {
                    let sent: Value = serde_json::from_str(&text).expect("rendered JSON");
                    if r.json().map(|b| b["causal-metadata"].clone()) != Some(sent) {
                        return Err(TestCaseError::fail(format!(
                            "503 does not echo the context sent: {r:?}"
                        )));
                    }
                }
            }
            Ok(())
        },
    )
    .await;
    for (what, range) in [
        ("successes", 200..=299),
        ("400s", 400..=400),
        ("404s", 404..=404),
        ("503s", 503..=503),
    ] {
        assert!(
            tally.count(range) > 0,
            "the fuzzed metadata must reach {what}: {tally:?}"
        );
    }
}

// ----- raw TCP: truncated, oversized, malformed -----------------------------------------

/// The public routes as (method, target, route).
fn public_routes() -> Vec<(&'static str, String, Route)> {
    vec![
        ("PUT", kv_path("raw"), Route::Kv),
        ("GET", kv_path("raw"), Route::Kv),
        ("DELETE", kv_path("raw"), Route::Kv),
        ("PUT", "/key-value-store-view".to_string(), Route::View),
        ("DELETE", "/key-value-store-view".to_string(), Route::View),
    ]
}

/// Sends `bytes` (not a well-formed request, or one cut short), then
/// either closes the connection at once, or half-closes it and reads
/// whatever comes back. The replica may answer or close; an answer must be
/// a 4xx, and, when `check` names the route, follow the contract.
fn send_malformed(
    addr: &str,
    what: &str,
    bytes: &[u8],
    half_close: bool,
    check: Option<(&str, Route)>,
) {
    send_odd(addr, what, bytes, half_close, check, false)
}

/// [`send_malformed`], where `tolerated` says the request may also be
/// served (a leniency RFC 9112 allows, e.g. bare LF line ends).
fn send_odd(
    addr: &str,
    what: &str,
    bytes: &[u8],
    half_close: bool,
    check: Option<(&str, Route)>,
    tolerated: bool,
) {
    let timeout = Duration::from_secs(10);
    let mut stream = connect(addr, timeout);
    let _ = stream.write_all(bytes);
    if !half_close {
        // Gone without a word.
        drop(stream);
        return;
    }
    let _ = stream.shutdown(Shutdown::Write);
    match read_responses(&mut stream, 1, Instant::now() + timeout) {
        Ok(replies) => {
            let r = &replies[0];
            assert!(
                (400..500).contains(&r.status) || (tolerated && (200..300).contains(&r.status)),
                "{what}: answered {r:?} to {}",
                Shown(bytes)
            );
            if let Some((method, route)) = check {
                if let Err(e) = check_raw(r, method, route, false) {
                    panic!("{what}: {e} (request {})", Shown(bytes));
                }
            }
        }
        // Closing a connection that sent a broken request is fine.
        Err(RawError::Closed(_)) | Err(RawError::Reset) => {}
        Err(e) => panic!("{what}: {e:?} (request {})", Shown(bytes)),
    }
}

#[actix_web::test]
async fn truncated_oversized_and_malformed_requests_are_contained() {
    const LIMIT: usize = 4096;
    let c = Options::default().max_body_bytes(LIMIT).start(1).await;
    let known = store_known(&c, 1).await;
    let addr = c.addr(0).to_string();
    let head = |method: &str, target: &str, extra: &str| {
        format!(
            "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n{extra}\r\n"
        )
        .into_bytes()
    };
    let body = br#"{"value":"raw","causal-metadata":""}"#;

    // Content-Length larger than the body, then a half-close, or a close.
    for (method, target, route) in public_routes() {
        for half_close in [true, false] {
            let mut bytes = head(method, &target, "Content-Length: 1000\r\n");
            bytes.extend_from_slice(&body[..10]);
            send_malformed(
                &addr,
                "Content-Length larger than the body",
                &bytes,
                half_close,
                Some((method, route)),
            );
        }
        // Cut inside the head.
        let bytes = head(method, &target, "Content-Length: 36\r\n");
        send_malformed(
            &addr,
            "cut in the head",
            &bytes[..bytes.len() / 2],
            true,
            None,
        );
        // Cut inside a chunked body.
        let mut bytes = head(method, &target, "Transfer-Encoding: chunked\r\n");
        bytes.extend_from_slice(b"24\r\n{\"value\":");
        send_malformed(
            &addr,
            "cut in a chunked body",
            &bytes,
            true,
            Some((method, route)),
        );
    }
    assert_intact(&c, &known, "truncated requests").await;

    // Bodies over MAX_BODY_BYTES, well-formed: a 400 JSON answer, no reset.
    for (method, target, route) in public_routes() {
        for size in [LIMIT + 1, 64 << 10, 2 << 20] {
            let fill = "x".repeat(size - 33);
            let big = format!(r#"{{"value":"{fill}","causal-metadata":""}}"#);
            assert_eq!(big.len(), size);
            let request = http_request(&addr, method, &target, &[], big.as_bytes());
            let r = exchange(&addr, &request, CASE_TIMEOUT)
                .unwrap_or_else(|e| panic!("{method} {target} with a body of {size} bytes: {e:?}"));
            assert_eq!(r.status, 400, "{method} {target}, {size} bytes: {r:?}");
            check_raw(&r, method, route, false)
                .unwrap_or_else(|e| panic!("{method} {target}, {size} bytes: {e}"));
            // The same over the limit, chunked.
            let mut chunked = head(
                method,
                &target,
                "Transfer-Encoding: chunked\r\nConnection: close\r\n",
            );
            for piece in big.as_bytes().chunks(1000) {
                chunked.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
                chunked.extend_from_slice(piece);
                chunked.extend_from_slice(b"\r\n");
            }
            chunked.extend_from_slice(b"0\r\n\r\n");
            let r = exchange(&addr, &chunked, CASE_TIMEOUT).unwrap_or_else(|e| {
                panic!("{method} {target} with a chunked body of {size} bytes: {e:?}")
            });
            assert_eq!(r.status, 400, "{method} {target}, chunked {size}: {r:?}");
            check_raw(&r, method, route, false)
                .unwrap_or_else(|e| panic!("{method} {target}, chunked {size}: {e}"));
        }
        // A Content-Length far beyond the limit: refused once the limit
        // is passed, without waiting for the rest.
        let mut bytes = head(
            method,
            &target,
            "Content-Length: 1000000000000\r\nConnection: close\r\n",
        );
        bytes.extend_from_slice(&vec![b' '; 2 * LIMIT]);
        let r = exchange(&addr, &bytes, CASE_TIMEOUT)
            .unwrap_or_else(|e| panic!("{method} {target}, Content-Length 10^12: {e:?}"));
        assert_eq!(
            r.status, 400,
            "{method} {target}, Content-Length 10^12: {r:?}"
        );
        check_raw(&r, method, route, false)
            .unwrap_or_else(|e| panic!("{method} {target}, Content-Length 10^12: {e}"));
    }
    assert_intact(&c, &known, "oversized requests").await;

    // Chunked garbage and malformed framing.
    let target = kv_path("raw");
    for (what, extra, rest) in [
        (
            "chunk size not hex",
            "Transfer-Encoding: chunked\r\n",
            &b"zz\r\nhello\r\n0\r\n\r\n"[..],
        ),
        (
            "chunk size overflowing",
            "Transfer-Encoding: chunked\r\n",
            b"ffffffffffffffffffffff\r\nx\r\n0\r\n\r\n",
        ),
        (
            "negative chunk size",
            "Transfer-Encoding: chunked\r\n",
            b"-5\r\nhello\r\n0\r\n\r\n",
        ),
        (
            "chunk longer than its size",
            "Transfer-Encoding: chunked\r\n",
            b"2\r\nhello world\r\n0\r\n\r\n",
        ),
        (
            "no chunk terminator",
            "Transfer-Encoding: chunked\r\n",
            b"5\r\nhelloXX5\r\nhello\r\n",
        ),
        (
            "unknown transfer coding",
            "Transfer-Encoding: gzip, chunked\r\n",
            b"5\r\nhello\r\n0\r\n\r\n",
        ),
        (
            "both framings",
            "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
            b"0\r\n\r\nGET /health HTTP/1.1\r\n\r\n",
        ),
        (
            "two Content-Lengths",
            "Content-Length: 5\r\nContent-Length: 7\r\n",
            b"hello!!",
        ),
        (
            "negative Content-Length",
            "Content-Length: -5\r\n",
            b"hello",
        ),
        (
            "Content-Length not a number",
            "Content-Length: five\r\n",
            b"hello",
        ),
        (
            "Content-Length overflowing",
            "Content-Length: 99999999999999999999999\r\n",
            b"hello",
        ),
    ] {
        for method in ["PUT", "GET", "DELETE"] {
            let mut bytes = head(method, &target, extra);
            bytes.extend_from_slice(rest);
            send_malformed(&addr, what, &bytes, true, None);
        }
    }
    for (what, bytes) in [
        ("garbage request line", b"GARBAGE\r\n\r\n".to_vec()),
        (
            "binary noise",
            (0u8..=255).cycle().take(4096).collect::<Vec<u8>>(),
        ),
        (
            "header without a colon",
            format!("GET /health HTTP/1.1\r\nHost: {addr}\r\nnocolon\r\n\r\n").into_bytes(),
        ),
        (
            "unknown HTTP version",
            format!("GET /health HTTP/9.9\r\nHost: {addr}\r\n\r\n").into_bytes(),
        ),
        (
            "bare LF line ends",
            format!("GET /health HTTP/1.1\nHost: {addr}\n\n").into_bytes(),
        ),
        ("200 headers", {
            let mut s = format!("GET /health HTTP/1.1\r\nHost: {addr}\r\n");
            for i in 0..200 {
                s.push_str(&format!("X-H{i}: {i}\r\n"));
            }
            s.push_str("\r\n");
            s.into_bytes()
        }),
        (
            "a 200 KiB header",
            format!(
                "GET /health HTTP/1.1\r\nHost: {addr}\r\nX-Big: {}\r\n\r\n",
                "b".repeat(200 << 10)
            )
            .into_bytes(),
        ),
    ] {
        send_odd(&addr, what, &bytes, true, None, what == "bare LF line ends");
    }
    assert_intact(&c, &known, "malformed framing").await;

    // Well-formed pipelined requests on one connection: all answered, in
    // order.
    let mut pipelined = Vec::new();
    for (method, body) in [
        ("PUT", &br#"{"value":"piped","causal-metadata":""}"#[..]),
        ("GET", b""),
        ("DELETE", br#"{"causal-metadata":""}"#),
        ("GET", b""),
    ] {
        pipelined.extend_from_slice(
            format!(
                "{method} {} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                kv_path("piped"),
                body.len()
            )
            .as_bytes(),
        );
        pipelined.extend_from_slice(body);
    }
    let replies = exchange_many(&addr, &pipelined, 4, CASE_TIMEOUT)
        .unwrap_or_else(|e| panic!("pipelined requests: {e:?}"));
    let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [201, 200, 200, 404], "pipelined: {replies:?}");
    assert_eq!(
        replies[1].json().map(|b| b["value"].clone()),
        Some(json!("piped"))
    );
    assert_intact(&c, &known, "pipelined requests").await;
}

// ----- idle half-open connections -----------------------------------------------------

#[actix_web::test]
async fn idle_half_open_connections_do_not_starve_clients() {
    const IDLE: usize = 200;
    let c = TestCluster::start(1).await;
    let known = store_known(&c, 1).await;
    let addr = c.addr(0).to_string();
    let target = kv_path("idle");
    let mut idle = Vec::with_capacity(IDLE);
    for n in 0..IDLE {
        let mut stream = connect(&addr, Duration::from_secs(5));
        let partial = match n % 5 {
            // Connected, nothing sent.
            0 => String::new(),
            // Half a request line.
            1 => "PUT /key-value-sto".to_string(),
            // A head without its end.
            2 => format!("PUT {target} HTTP/1.1\r\nHost: {addr}\r\nContent-Len"),
            // A head promising more body than sent (then, for every
            // other one, half-closed: no more is coming).
            _ => format!(
                "PUT {target} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"value\":"
            ),
        };
        stream
            .write_all(partial.as_bytes())
            .expect("write a partial request");
        if n % 5 == 4 {
            let _ = stream.shutdown(Shutdown::Write);
        }
        idle.push(stream);
    }
    // Normal clients keep being answered promptly, for a while (an
    // observation window, not a synchronisation).
    let started = Instant::now();
    let mut rounds = 0;
    while started.elapsed() < Duration::from_secs(3) || rounds < 5 {
        probe(&c, 0, &format!("{IDLE} idle connections")).await;
        let (view, t) = timed(c.view(0)).await;
        assert_eq!(view, known.view);
        assert!(t < PROMPT, "view GET took {t:?} with idle connections open");
        rounds += 1;
    }
    // The idle connections were not answered with anything but a 4xx (or
    // left alone, or closed).
    for mut stream in idle.drain(..) {
        let _ = stream.set_nonblocking(true);
        let mut buf = [0u8; 4096];
        if let Ok(n) = stream.read(&mut buf) {
            if n > 0 {
                if let Ok(Some((r, _))) = parse_response(&buf[..n], true) {
                    assert!(
                        (400..500).contains(&r.status),
                        "an idle connection was answered {r:?}"
                    );
                }
            }
        }
        let _ = stream.shutdown(Shutdown::Both);
    }
    assert_intact(&c, &known, "idle connections").await;
    let r = c.get(0, "idle", &json!("")).await;
    assert_eq!(r.status, 404, "a partial request was applied: {r:?}");
}

// ----- the cluster token ----------------------------------------------------------------

#[actix_web::test]
async fn internal_messages_without_the_cluster_token_are_401_and_change_nothing() {
    use causalkv::address::SocketAddress;
    use causalkv::causal::{Dot, ReplicaId, VectorClock};
    use causalkv::replica::{Decision, Member, Request, ViewChange, Write};
    use causalkv::store::{Key, Value as Stored};
    const TOKEN: &str = "s3cret";
    const N: usize = 3;
    let c = Options::default().token(TOKEN).start(N).await;
    let known = store_known(&c, N).await;
    let header = causalkv::transport::TOKEN_HEADER;
    let prefix = causalkv::transport::INTERNAL_PREFIX;

    let mut real = Vec::new();
    for i in 0..N {
        let id = c.health(i).await["replica"]
            .as_str()
            .expect("/health names the replica id")
            .to_string();
        real.push(Member {
            address: SocketAddress::parse(c.addr(i)).expect("address"),
            id: ReplicaId::parse(&id).expect("replica id"),
        });
    }
    let forged = Member {
        address: SocketAddress::parse("127.0.0.1:1").expect("address"),
        id: ReplicaId::new("127.0.0.1:1", "forged"),
    };
    let write = |from: &Member, key: &str, counter: u64| Write {
        key: Key::parse(key).expect("key"),
        value: Stored::from_json("\"planted\"").expect("value"),
        dot: Dot::new(from.id.clone(), counter),
        deps: VectorClock::new(),
        lamport: counter,
    };
    let clock = |from: &Member, n: u64| {
        let mut clock = VectorClock::new();
        clock.set(from.id.clone(), n);
        clock
    };
    let requests = vec![
        Request::Replicate {
            from: forged.clone(),
            writes: vec![write(&forged, "planted", 1), write(&forged, "known-str", 2)],
        },
        // Impersonating a member.
        Request::Replicate {
            from: real[0].clone(),
            writes: vec![write(&real[0], "planted", 1000)],
        },
        Request::Heartbeat {
            from: forged.clone(),
            clock: clock(&forged, 5),
            retired: Vec::new(),
            decided: 0,
        },
        Request::Heartbeat {
            from: real[0].clone(),
            clock: clock(&real[0], u64::MAX),
            retired: Vec::new(),
            decided: 0,
        },
        Request::Pull {
            from: forged.clone(),
            clock: VectorClock::new(),
        },
        Request::Join {
            from: forged.clone(),
            clock: VectorClock::new(),
            retired: Vec::new(),
            collected: VectorClock::new(),
            fresh: true,
            decisions: Vec::new(),
        },
        Request::Snapshot {
            from: forged.clone(),
            cursor: 0,
            fresh: false,
        },
        Request::ViewChange {
            from: real[0].clone(),
            decision: Decision {
                change: ViewChange::Remove(real[N - 1].address.clone()),
                stamp: 1000,
                by: real[0].id.clone(),
            },
        },
        Request::ViewChange {
            from: real[0].clone(),
            decision: Decision {
                change: ViewChange::Add(forged.address.clone()),
                stamp: 1001,
                by: real[0].id.clone(),
            },
        },
    ];
    let wrong_tokens: Vec<Vec<(&str, &str)>> = vec![
        vec![],
        vec![(header, "")],
        vec![(header, "wrong")],
        vec![(header, "S3CRET")],
        vec![(header, "s3cre")],
        vec![(header, "s3cret2")],
        vec![("authorization", "Bearer s3cret")],
        vec![("x-causalkv-tokens", TOKEN)],
    ];
    let mut sent = 0;
    for request in &requests {
        let kind = request.kind().as_str();
        let body = serde_json::to_value(request).expect("serialize");
        for i in 0..N {
            for headers in &wrong_tokens {
                for path in [
                    format!("{prefix}/{kind}"),
                    format!("{prefix}/{kind}?token={TOKEN}"),
                ] {
                    let r = c
                        .request(i, Method::POST, &path, headers, Body::Json(body.clone()))
                        .await;
                    assert_eq!(r.status, 401, "{kind} at {i} with {headers:?}: {r:?}");
                    check_reply(&r, "POST", Route::Other, false)
                        .unwrap_or_else(|e| panic!("{kind} at {i} with {headers:?}: {e}"));
                    sent += 1;
                }
            }
        }
    }
    // Garbage bodies without the token: refused before being read.
    for i in 0..N {
        for kind in [
            "replicate",
            "heartbeat",
            "pull",
            "join",
            "snapshot",
            "view-change",
        ] {
            let r = c
                .request(
                    i,
                    Method::POST,
                    &format!("{prefix}/{kind}"),
                    &[],
                    Body::Raw(b"\xff{garbage".to_vec()),
                )
                .await;
            assert_eq!(r.status, 401, "garbage {kind} at {i}: {r:?}");
            sent += 1;
        }
    }
    eprintln!("{sent} unauthorized internal requests refused");
    // Anything wrongly accepted (a planted write, a relayed view change)
    // has taken effect everywhere once writes made after it at every
    // replica are visible at every replica: a fence, not a pause.
    let mut fence = Vec::new();
    for i in 0..N {
        let key = format!("fence-{i}");
        let r = c.put(i, &key, json!(i), &json!("")).await;
        assert_eq!(r.status, 201, "fence write at {i}: {r:?}");
        fence.push((key, Some(json!(i))));
    }
    c.wait_contents(&(0..N).collect::<Vec<_>>(), &fence).await;
    for i in 0..N {
        let r = c.get(i, "planted", &json!("")).await;
        assert_eq!(r.status, 404, "an unauthorized write landed at {i}: {r:?}");
    }
    assert_intact(&c, &known, "unauthorized internal requests").await;

    // Control: the same endpoints do answer with the token (a read-only
    // snapshot request from a real member).
    let body = serde_json::to_value(Request::Snapshot {
        from: real[0].clone(),
        cursor: 0,
        fresh: false,
    })
    .expect("serialize");
    let r = c
        .request(
            1,
            Method::POST,
            &format!("{prefix}/snapshot"),
            &[(header, TOKEN)],
            Body::Json(body),
        )
        .await;
    assert_eq!(r.status, 200, "with the token: {r:?}");
}

// ----- forged contexts against a 3-replica cluster -------------------------------------

#[actix_web::test]
async fn forged_contexts_do_not_wedge_a_replica_or_its_peers() {
    const WAIT_MS: u64 = 1500;
    const FORGED: usize = 20;
    let c = Options::default().causal_wait_ms(WAIT_MS).start(3).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(
            c.health(i).await["replica"]
                .as_str()
                .expect("/health names the replica id")
                .to_string(),
        );
    }
    let thousand: serde_json::Map<String, Value> = (0..1000)
        .map(|i| {
            (
                format!("10.0.{}.{}:8085#forged", i / 250, i % 250),
                json!(i + 1),
            )
        })
        .collect();
    let contexts = [
        json!({"127.0.0.1:1#forged": 1}),
        json!({ids[1].clone(): u64::MAX}),
        json!({ids[2].clone(): 1_000_000}),
        json!({ids[0].clone(): u64::MAX}),
        json!({ids[0].clone(): 0, ids[1].clone(): 0, "nobody#0": 3}),
        Value::String(json!({"127.0.0.1:2#forged": 7}).to_string()),
        Value::Object(thousand),
    ];
    let limit = Duration::from_millis(WAIT_MS) + Duration::from_secs(3);
    let c = &c;
    // How many forged requests have been answered (or given up on).
    let forged_answered = &std::cell::Cell::new(0usize);
    let forged = (0..FORGED).map(|n| {
        let ctx = contexts[n % contexts.len()].clone();
        let (method, body) = match n % 3 {
            0 => (Method::GET, json!({"causal-metadata": ctx})),
            1 => (Method::PUT, json!({"value": n, "causal-metadata": ctx})),
            _ => (Method::DELETE, json!({"causal-metadata": ctx})),
        };
        let path = kv_path(&format!("forged-{}", n % 4));
        async move {
            let (r, t) = timed(request_with_timeout(
                c.addr(0),
                method.clone(),
                &path,
                &[],
                Body::Json(body),
                limit,
            ))
            .await;
            forged_answered.set(forged_answered.get() + 1);
            (method, ctx, r, t)
        }
    });
    // Normal clients at every replica, for as long as the forged requests
    // wait: each must get whole rounds done while every forged request is
    // still waiting (so waiting requests hold no worker and no lock), and
    // no request of theirs may hang (PROMPT).
    let normal = |at: usize, read_at: usize| async move {
        let mut ctx = json!("");
        let mut n = 0u64;
        let mut while_all_waited = 0u64;
        let mut slowest = Duration::ZERO;
        while forged_answered.get() < FORGED {
            let key = format!("normal-{at}-{read_at}");
            let (r, t) = timed(c.put(at, &key, json!(n), &ctx)).await;
            assert!(
                r.status == 200 || r.status == 201,
                "normal PUT at {at}: {r:?}"
            );
            ctx = r.ctx();
            slowest = slowest.max(t);
            let (r, t) = timed(c.get(read_at, &key, &ctx)).await;
            assert_eq!(r.status, 200, "normal GET at {read_at}: {r:?}");
            assert_eq!(r.body["value"], json!(n), "normal GET at {read_at}");
            ctx = r.ctx();
            slowest = slowest.max(t);
            n += 1;
            if forged_answered.get() == 0 {
                while_all_waited += 1;
            }
            // Pacing, so that the normal clients do not flood the replicas.
            actix_rt::time::sleep(Duration::from_millis(50)).await;
        }
        (at, read_at, slowest, n, while_all_waited)
    };
    let normals = join_all([normal(0, 0), normal(1, 1), normal(2, 2), normal(1, 2)]);
    let (results, normals) = join(join_all(forged), normals).await;
    for (at, read_at, slowest, rounds, while_all_waited) in normals {
        assert!(
            slowest < PROMPT,
            "a normal client (write at {at}, read at {read_at}) waited {slowest:?}"
        );
        assert!(rounds > 0);
        assert!(
            while_all_waited > 0,
            "a normal client (write at {at}, read at {read_at}) got no round done \
             while the forged requests waited ({rounds} rounds in all)"
        );
    }
    for (method, ctx, r, t) in results {
        let r =
            r.unwrap_or_else(|e| panic!("forged {method} with {ctx}: no answer in {limit:?}: {e}"));
        check_reply(&r, method.as_str(), Route::Kv, true)
            .unwrap_or_else(|e| panic!("forged {method} with {ctx}: {e}"));
        assert_eq!(r.status, 503, "forged {method} with {ctx}: {r:?}");
        assert_eq!(
            r.body,
            json!({
                "error": "Causal dependencies not satisfied",
                "message": format!("Error in {method}"),
                "causal-metadata": ctx,
            }),
            "forged {method}"
        );
        assert!(
            t >= Duration::from_millis(WAIT_MS - 50),
            "forged {method} answered after {t:?}, before CAUSAL_WAIT_MS"
        );
    }
    // The forged writes wrote nothing; the cluster still replicates.
    for i in 0..3 {
        for n in 0..4 {
            let r = c.get(i, &format!("forged-{n}"), &json!("")).await;
            assert_eq!(r.status, 404, "a forged request wrote at {i}: {r:?}");
        }
    }
    let r = c
        .put(1, "after-forged", json!("still fine"), &json!(""))
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let ctx = r.ctx();
    // A 200 (not a 503) shows the write reached `i` within CAUSAL_WAIT_MS.
    for i in [0, 2] {
        let r = c.get(i, "after-forged", &ctx).await;
        assert_eq!(r.status, 200, "a write at 1, read at {i}: {r:?}");
        assert_eq!(r.body["value"], json!("still fine"));
    }
    for i in 0..3 {
        assert_eq!(c.health(i).await["synced"], json!(true));
    }
}
