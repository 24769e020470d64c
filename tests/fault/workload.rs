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

use super::checker::{Op, OpKind, OpResult};

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

/// Runs one client until `until`; `seed` drives its choices.
pub async fn session(
    shared: Rc<RefCell<Shared>>,
    seed: u64,
    until: Instant,
    request_timeout: Duration,
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
        let key = if rng.random_bool(0.6) {
            format!("hot{}", rng.random_range(..HOT_KEYS))
        } else {
            format!("cold{}", rng.random_range(..COLD_KEYS))
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
        let target = (replica, host.as_str());
        let (result, answered) = request(&shared, &http, id, target, key, kind, &mut context).await;
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
            unavailable_in_a_row = 0;
        }
        if !answered {
            actix_rt::time::sleep(Duration::from_millis(rng.random_range(50..150))).await;
        }
        actix_rt::time::sleep(Duration::from_millis(rng.random_range(2..20))).await;
    }
}

/// Sends one request of session `session` to slot `replica` at `host`,
/// passing `context` and taking the one answered back (kept when the
/// request failed), and records it in the history; returns its result and
/// whether there was an answer at all.
pub async fn request(
    shared: &Rc<RefCell<Shared>>,
    http: &awc::Client,
    session: usize,
    (replica, host): (usize, &str),
    key: String,
    kind: OpKind,
    context: &mut Value,
) -> (OpResult, bool) {
    // Only the cluster's own replicas are ever addressed.
    assert!(
        shared.borrow().allowed.iter().any(|a| a == host),
        "refusing to send traffic to {host}: not a replica of this test cluster"
    );
    let (method, body) = match &kind {
        OpKind::Get => (Method::GET, json!({"causal-metadata": context})),
        OpKind::Put { value } => (
            Method::PUT,
            json!({"value": value, "causal-metadata": context}),
        ),
        OpKind::Delete => (Method::DELETE, json!({"causal-metadata": context})),
    };
    let invoked_us = shared.borrow().now_us();
    let path = format!("/key-value-store/{key}");
    let answer = causalkv::client::raw(http, host, method, &path, Some(&body)).await;
    let completed_us = shared.borrow().now_us();
    let relayed = shared.borrow().relayed;
    let mut incarnation = None;
    let (result, completed) = match answer {
        Ok(response) => {
            let result = interpret(&kind, response.status, &response.body);
            if !matches!(result, OpResult::Failed(_)) {
                if let Some(m) = response.body.get("causal-metadata") {
                    if relayed && matches!(result, OpResult::Written | OpResult::Deleted) {
                        incarnation = issued_by(context, m);
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
    });
    (result, completed.is_some())
}

/// A new session id (the sessions' own, and the nemesis's probes).
pub fn new_session(shared: &Rc<RefCell<Shared>>) -> usize {
    let mut s = shared.borrow_mut();
    s.sessions += 1;
    s.sessions - 1
}

fn interpret(kind: &OpKind, status: u16, body: &Value) -> OpResult {
    match (kind, status) {
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

/// The incarnation (`address#incarnation`) that issued a write, from the
/// context sent and the one answered: a write's answer is the context sent
/// (less retired incarnations) with the write's own dot merged in, so the
/// one entry that grew is the writer's. `None` if no single entry grew.
pub fn issued_by(sent: &Value, answered: &Value) -> Option<String> {
    let sent = clock_of(sent).unwrap_or_default();
    let answered = clock_of(answered)?;
    let mut grown = answered
        .into_iter()
        .filter(|(id, n)| sent.get(id).is_none_or(|m| m < n));
    let (id, _) = grown.next()?;
    grown.next().is_none().then_some(id)
}

/// The entries of a `causal-metadata` value (an object, or a string
/// holding one; empty for `""` and `null`).
fn clock_of(metadata: &Value) -> Option<std::collections::BTreeMap<String, u64>> {
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
