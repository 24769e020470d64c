//! Client sessions for the fault suite: each hops between replicas at
//! random, always passing back its latest causal metadata, and records
//! every operation (invocation, completion, replica, key, result) for the
//! checker.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use awc::http::Method;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::{json, Value};

use super::checker::{Clock, Condition, Dot, Op, OpKind, OpResult};
use super::tables::{self, Role, Tags};

/// Keys written by many sessions: conflicts happen here.
pub const HOT_KEYS: usize = 4;
/// Keys spread thin: state transfer matters for them.
pub const COLD_KEYS: usize = 150;

/// Every key the workload may touch.
pub fn all_keys() -> Vec<String> {
    (0..HOT_KEYS)
        .map(|i| format!("hot{i}"))
        .chain((0..COLD_KEYS).map(|i| format!("cold{i}")))
        .collect()
}

/// What the sessions share with the nemesis and the recorder.
pub struct Shared {
    /// When the run started (op times are microseconds since then).
    pub start: Instant,
    /// Addresses of the slots clients may talk to, by slot index.
    pub targets: Vec<(usize, String)>,
    /// Every address of the test cluster (the only ones ever addressed).
    pub allowed: Vec<String>,
    /// Every operation so far.
    pub ops: Vec<Op>,
    /// Sessions started so far (a stuck session restarts under a new id).
    pub sessions: usize,
    /// The store is sharded and relays requests to the key's shard: each
    /// acknowledged write records the replica that issued it.
    pub relayed: bool,
}

impl Shared {
    /// Microseconds since the start of the run.
    pub fn now_us(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }
}

/// Runs one client until `until`; `seed` drives its choices, `role` what
/// it does (plain requests in the default table, conditional writes there
/// too, or requests in the table with siblings).
pub async fn session(
    shared: Rc<RefCell<Shared>>,
    seed: u64,
    until: Instant,
    request_timeout: Duration,
    role: Role,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let http = awc::Client::builder()
        .connector(awc::Connector::new().timeout(Duration::from_millis(1000)))
        .timeout(request_timeout)
        .finish();
    let mut id = new_session(&shared);
    let mut context = Value::String(String::new());
    let mut counter = 0u64;
    let mut unavailable_in_a_row = 0;
    // The entity tags this session last saw, per key (conditional writes).
    let mut tags = Tags::default();
    while Instant::now() < until {
        let target = {
            let s = shared.borrow();
            if s.targets.is_empty() {
                None
            } else {
                Some(s.targets[rng.random_range(..s.targets.len())].clone())
            }
        };
        let Some((replica, host)) = target else {
            actix_rt::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let cold = if role == Role::Siblings {
            tables::SIBLING_COLD_KEYS
        } else {
            COLD_KEYS
        };
        let key = if rng.random_bool(0.6) {
            format!("hot{}", rng.random_range(..HOT_KEYS))
        } else {
            format!("cold{}", rng.random_range(..cold))
        };
        let roll = rng.random_range(0..100);
        let kind = if roll < 45 {
            OpKind::Get
        } else if roll < 88 {
            counter += 1;
            OpKind::Put {
                value: format!("s{id}-{counter}"),
            }
        } else {
            OpKind::Delete
        };
        let condition = match (&kind, role) {
            (OpKind::Put { .. }, Role::Conditional) => tags.draw(&mut rng, &key),
            _ => None,
        };
        let request = Request {
            table: (role == Role::Siblings).then(|| tables::SIBLING_TABLE.to_string()),
            key: key.clone(),
            kind,
            condition,
        };
        let target = (replica, host.as_str());
        let answer = request_in(&shared, &http, id, target, request, &mut context).await;
        tags.learn(&key, &answer);
        let (result, answered) = (answer.result, answer.answered);
        // A session whose context names writes nobody can deliver (lost in
        // a crash) would wait forever: after a few refusals it starts over
        // as a new session. Requests nobody answered (the replica is down,
        // every replica is, or it hangs) are no refusal: the session keeps
        // its context, to check after the replicas are back, and waits a
        // little before it tries again.
        let refused = answered && matches!(result, OpResult::Failed(_));
        unavailable_in_a_row = if refused { unavailable_in_a_row + 1 } else { 0 };
        if unavailable_in_a_row >= 4 {
            id = new_session(&shared);
            context = Value::String(String::new());
            tags = Tags::default();
            unavailable_in_a_row = 0;
        }
        if !answered {
            actix_rt::time::sleep(Duration::from_millis(rng.random_range(50..150))).await;
        }
        actix_rt::time::sleep(Duration::from_millis(rng.random_range(2..20))).await;
    }
}

/// One request of a session: a key of the default table (`table` `None`)
/// or of another, what is asked, and a write's condition.
pub struct Request {
    pub table: Option<String>,
    pub key: String,
    pub kind: OpKind,
    pub condition: Option<Condition>,
}

/// What a request got: its result as recorded, whether anyone answered,
/// and the entity tag answered (of the version read or made, or of the
/// one that failed a 412's condition).
pub struct Answer {
    pub result: OpResult,
    pub answered: bool,
    pub etag: Option<String>,
}

/// Sends one request of session `session` to slot `replica` at `host`,
/// passing `context` and taking the one answered back (kept when the
/// request failed), and records it in the history; returns its result and
/// whether there was an answer at all. A plain request in the default table.
pub async fn request(
    shared: &Rc<RefCell<Shared>>,
    http: &awc::Client,
    session: usize,
    target: (usize, &str),
    key: String,
    kind: OpKind,
    context: &mut Value,
) -> (OpResult, bool) {
    let request = Request {
        table: None,
        key,
        kind,
        condition: None,
    };
    let answer = request_in(shared, http, session, target, request, context).await;
    (answer.result, answer.answered)
}

/// [`request`] for any table and condition; the history records the
/// table, the condition, the context sent, an acknowledged write's dot
/// (the one entry its answer's context grew) and the entity tag answered.
pub async fn request_in(
    shared: &Rc<RefCell<Shared>>,
    http: &awc::Client,
    session: usize,
    (replica, host): (usize, &str),
    request: Request,
    context: &mut Value,
) -> Answer {
    // Only the cluster's own replicas are ever addressed.
    assert!(
        shared.borrow().allowed.iter().any(|a| a == host),
        "refusing to send traffic to {host}: not a replica of this test cluster"
    );
    let Request {
        table,
        key,
        kind,
        condition,
    } = request;
    let (method, body) = match &kind {
        OpKind::Get => (Method::GET, json!({"causal-metadata": context})),
        OpKind::Put { value } => (
            Method::PUT,
            json!({"value": value, "causal-metadata": context}),
        ),
        OpKind::Delete => (Method::DELETE, json!({"causal-metadata": context})),
    };
    let header = match &condition {
        Some(Condition::IfNoneMatch) => Some(("if-none-match", "*".to_string())),
        Some(Condition::IfMatch(tag)) => Some(("if-match", tag.clone())),
        None => None,
    };
    let headers: Vec<(&str, &str)> = header.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let sent = clock_of(context);
    let invoked_us = shared.borrow().now_us();
    let path = match &table {
        Some(table) => format!("/tables/{table}/key-value-store/{key}"),
        None => format!("/key-value-store/{key}"),
    };
    let answer =
        causalkv::client::raw_with_headers(http, host, method, &path, Some(&body), &headers).await;
    let completed_us = shared.borrow().now_us();
    let relayed = shared.borrow().relayed;
    let mut incarnation = None;
    let mut dot = None;
    let mut etag = None;
    let (result, completed) = match answer {
        Ok(response) => {
            let result = interpret(&kind, response.status, &response.body);
            if !matches!(result, OpResult::Failed(_)) {
                etag = response.etag_header.clone().or_else(|| {
                    let tag = response.body.get("etag")?.as_str()?;
                    Some(tag.to_string())
                });
                if let Some(m) = response.body.get("causal-metadata") {
                    if matches!(result, OpResult::Written | OpResult::Deleted) {
                        dot = grown(context, m);
                        if relayed {
                            incarnation = dot.as_ref().map(|d| d.id.clone());
                        }
                    }
                    *context = m.clone();
                }
            }
            (result, Some(completed_us))
        }
        Err(e) => (OpResult::Failed(e), None),
    };
    let mut s = shared.borrow_mut();
    let served_by = incarnation.as_deref().and_then(|id| {
        let address = id.rsplit_once('#').map_or(id, |(address, _)| address);
        s.allowed.iter().position(|a| a == address)
    });
    let id = s.ops.len();
    s.ops.push(Op {
        id,
        session,
        replica,
        served_by,
        incarnation,
        key,
        kind,
        invoked_us,
        completed_us: completed,
        result: result.clone(),
        table,
        condition,
        etag: etag.clone(),
        sent,
        dot,
    });
    Answer {
        result,
        answered: completed.is_some(),
        etag,
    }
}

/// A new session id (the sessions' own, and the nemesis's probes).
pub fn new_session(shared: &Rc<RefCell<Shared>>) -> usize {
    let mut s = shared.borrow_mut();
    s.sessions += 1;
    s.sessions - 1
}

fn interpret(kind: &OpKind, status: u16, body: &Value) -> OpResult {
    // A 404 naming the table, not the key: nothing was read or written.
    let no_table =
        status == 404 && body.get("error").and_then(Value::as_str) == Some("Table does not exist");
    match (kind, status) {
        _ if no_table => OpResult::Failed(format!("status 404: {body}")),
        (OpKind::Put { .. } | OpKind::Delete, 412) => OpResult::Unmet,
        (OpKind::Get, 300) => OpResult::Siblings(match body.get("values") {
            Some(Value::Array(values)) => values.iter().map(|v| value_text(Some(v))).collect(),
            _ => vec![value_text(None)],
        }),
        (OpKind::Put { .. }, 200 | 201) => OpResult::Written,
        (OpKind::Delete, 200) => OpResult::Deleted,
        (OpKind::Delete, 404) => OpResult::DeleteAbsent,
        (OpKind::Get, 200) => OpResult::Read(Some(value_text(body.get("value")))),
        (OpKind::Get, 404) => OpResult::Read(None),
        (_, status) => OpResult::Failed(format!("status {status}: {body}")),
    }
}

/// The value as the string that was written (or its JSON text, which the
/// checker will not recognise as written).
pub fn value_text(value: Option<&Value>) -> String {
    match value {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => "<missing>".into(),
    }
}

/// A write's dot, from the context sent and the one answered: a write's
/// answer is the context sent (less retired incarnations) with the write's
/// own dot merged in, so the one entry that grew is the writer's
/// (`address#incarnation`, which issued it) and its count the write's.
/// `None` if no single entry grew.
pub fn grown(sent: &Value, answered: &Value) -> Option<Dot> {
    let sent = clock_of(sent).unwrap_or_default();
    let answered = clock_of(answered)?;
    // A sharded store's answers may also name a newer shard map: not a
    // write.
    let map = causalkv::causal::ReplicaId::shard_map();
    let mut grown = answered
        .into_iter()
        .filter(|(id, _)| id != map.as_str())
        .filter(|(id, n)| sent.get(id).is_none_or(|m| m < n));
    let (id, n) = grown.next()?;
    grown.next().is_none().then_some(Dot { id, n })
}

/// The entries of a `causal-metadata` value (an object, or a string
/// holding one; empty for `""` and `null`).
fn clock_of(metadata: &Value) -> Option<Clock> {
    let object = match metadata {
        Value::Null => return Some(Default::default()),
        Value::String(text) if text.is_empty() => return Some(Default::default()),
        Value::String(text) => serde_json::from_str::<Value>(text).ok()?,
        other => other.clone(),
    };
    object
        .as_object()?
        .iter()
        .map(|(id, n)| Some((id.clone(), n.as_u64()?)))
        .collect()
}
