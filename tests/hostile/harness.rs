//! The known contents checked after every batch, and proptest's runner driven by hand in seeded batches.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use awc::http::Method;
use proptest::prelude::*;
use proptest::test_runner::{
    Config as ProptestConfig, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner,
};
use serde_json::{json, Value};

use crate::common::{request_with_timeout, timed, Body, TestCluster};
use crate::{BATCHES, PROMPT};

/// Keys stored before the hostile traffic, with their values and the
/// context their writes returned, and the view every replica printed.
pub(crate) struct Known {
    pub(crate) keys: Vec<(String, Value, Value)>,
    pub(crate) view: String,
    pub(crate) replicas: usize,
}

/// Stores the known keys at replica 0 (every key name starts with
/// `known`, which no fuzzed key does), waits until every replica has them
/// and records the view.
pub(crate) async fn store_known(c: &TestCluster, replicas: usize) -> Known {
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
pub(crate) async fn assert_intact(c: &TestCluster, known: &Known, after: &str) {
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
pub(crate) async fn probe(c: &TestCluster, i: usize, after: &str) {
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
pub(crate) struct Tally(std::cell::RefCell<BTreeMap<u16, u32>>);

impl Tally {
    /// Counts an answer.
    pub(crate) fn note(&self, status: u16) {
        *self.0.borrow_mut().entry(status).or_default() += 1;
    }

    /// How many answers had a status in `range`.
    pub(crate) fn count(&self, range: std::ops::RangeInclusive<u16>) -> u32 {
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
pub(crate) async fn fuzz<S: Strategy>(
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
