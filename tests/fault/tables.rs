//! Tables and conditional writes in the fault runs.
//!
//! Sessions have a [`Role`]: most make plain requests in the default
//! table; some also make conditional puts there (`If-None-Match: *`, or
//! `If-Match` naming the entity tag they last saw of the key, which a
//! concurrent write may have made stale: both successes and 412s come);
//! and, in unsharded runs, some work in a table created with siblings
//! ([`SIBLING_TABLE`], made before the sessions start and present at every
//! member), where concurrent puts (made blind, or on both sides of a
//! partition) stay as siblings until a write whose context saw them
//! replaces them. The history records every request's table, condition,
//! context sent, an acknowledged write's dot and the entity tag answered;
//! a 300 is recorded as the set of values.
//!
//! After settling, every key of the table is read at every member until
//! they all answer the same set ([`final_sets`]); the checker judges those
//! sets (`checker/siblings.rs`).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use awc::http::Method;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::{json, Value};

use super::checker::{Condition, FinalSet, History, Op, OpKind, OpResult};
use super::harness::{sleep_ms, Stage};
use super::workload::{self, Answer};

/// The table with siblings the sibling sessions use.
pub const SIBLING_TABLE: &str = "sib";
/// Cold keys of the table with siblings (its hot keys are the default
/// table's hot key names).
pub const SIBLING_COLD_KEYS: usize = 20;
/// How long the table may take to reach every member once created.
const CREATE_DEADLINE: Duration = Duration::from_secs(15);
/// How long the final sets may take to agree (after the default table's
/// keys already did).
const SETS_DEADLINE: Duration = Duration::from_secs(60);

/// What a session does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Gets, puts and deletes in the default table.
    Plain,
    /// The same, half of its puts conditional.
    Conditional,
    /// Gets, puts and deletes in [`SIBLING_TABLE`].
    Siblings,
}

/// The sessions' roles: four plain and two conditional, and with
/// `siblings` two more in the table with siblings.
pub fn roles(siblings: bool) -> Vec<Role> {
    let mut roles = vec![Role::Plain; 4];
    roles.extend([Role::Conditional; 2]);
    if siblings {
        roles.extend([Role::Siblings; 2]);
    }
    roles
}

/// A seed for each session of `roles`: drawn from the run's `rng` for
/// the sessions of the default table, as before there were others, so
/// that a seed's fault schedule stays what it was; from a generator of
/// their own (seeded by `seed`) for those of the table with siblings.
pub fn session_seeds(rng: &mut StdRng, seed: u64, roles: &[Role]) -> Vec<u64> {
    let mut own = StdRng::seed_from_u64(seed ^ 0x5151_b1e5);
    roles
        .iter()
        .map(|&role| match role {
            Role::Siblings => own.random(),
            _ => rng.random(),
        })
        .collect()
}

/// Every key of the table with siblings the sessions may touch.
pub fn sibling_keys() -> Vec<String> {
    (0..workload::HOT_KEYS)
        .map(|i| format!("hot{i}"))
        .chain((0..SIBLING_COLD_KEYS).map(|i| format!("cold{i}")))
        .collect()
}

/// The entity tag a session last saw of each key.
#[derive(Default)]
pub struct Tags(HashMap<String, String>);

impl Tags {
    /// A put's condition: none half of the time; else `If-Match` naming
    /// the tag last seen (mostly), or `If-None-Match: *`.
    pub fn draw(&self, rng: &mut StdRng, key: &str) -> Option<Condition> {
        if rng.random_bool(0.5) {
            return None;
        }
        match self.0.get(key) {
            Some(tag) if rng.random_bool(0.7) => Some(Condition::IfMatch(tag.clone())),
            _ => Some(Condition::IfNoneMatch),
        }
    }

    /// What `answer` taught about `key`'s version.
    pub fn learn(&mut self, key: &str, answer: &Answer) {
        let tag = match &answer.result {
            OpResult::Read(Some(_)) | OpResult::Written | OpResult::Unmet => answer.etag.clone(),
            OpResult::Read(None) | OpResult::Deleted | OpResult::DeleteAbsent => None,
            OpResult::Siblings(_) | OpResult::Failed(_) => return,
        };
        match tag {
            Some(tag) => self.0.insert(key.to_string(), tag),
            None => self.0.remove(key),
        };
    }
}

/// Creates [`SIBLING_TABLE`] with siblings at a member and waits until
/// every member lists it; returns a line for the schedule.
pub async fn create_sibling_table(stage: &Stage<'_>) -> Result<String, String> {
    let via = stage.members[0];
    let host = stage.cluster.address(via);
    stage.cluster.check_target(&host);
    let path = format!("/tables/{SIBLING_TABLE}");
    let body = json!({"siblings": true});
    let answer = causalkv::client::raw(&stage.http, &host, Method::PUT, &path, Some(&body))
        .await
        .map_err(|e| format!("creating table {SIBLING_TABLE} at replica {via}: {e}"))?;
    if !matches!(answer.status, 200 | 201) {
        return Err(format!(
            "creating table {SIBLING_TABLE} at replica {via}: {} {}",
            answer.status, answer.body
        ));
    }
    let deadline = Instant::now() + CREATE_DEADLINE;
    for m in stage.members.clone() {
        while !lists_table(stage, m).await {
            if Instant::now() > deadline {
                return Err(format!(
                    "table {SIBLING_TABLE} did not reach replica {m} within {CREATE_DEADLINE:?}"
                ));
            }
            sleep_ms(100).await;
        }
    }
    Ok(format!(
        "(before the sessions) table {SIBLING_TABLE} created with siblings at replica {via}, listed by every member"
    ))
}

/// Whether slot `m` lists [`SIBLING_TABLE`] with siblings.
async fn lists_table(stage: &Stage<'_>, m: usize) -> bool {
    let host = stage.cluster.address(m);
    stage.cluster.check_target(&host);
    let Ok(answer) = causalkv::client::raw(&stage.http, &host, Method::GET, "/tables", None).await
    else {
        return false;
    };
    let tables = answer.body.get("tables").and_then(Value::as_array);
    tables.is_some_and(|tables| {
        tables.iter().any(|t| {
            t.get("name").and_then(Value::as_str) == Some(SIBLING_TABLE)
                && t.get("siblings").and_then(Value::as_bool) == Some(true)
        })
    })
}

/// Reads every key of [`SIBLING_TABLE`] at every member until all answer
/// the same set for each (or the deadline passes); returns the last reads
/// and whether they agreed.
pub async fn final_sets(stage: &Stage<'_>) -> (Vec<FinalSet>, bool) {
    let keys = sibling_keys();
    let deadline = Instant::now() + SETS_DEADLINE;
    loop {
        let mut sets = Vec::new();
        for &m in &stage.members {
            let host = stage.cluster.address(m);
            stage.cluster.check_target(&host);
            for key in &keys {
                let path = format!("/tables/{SIBLING_TABLE}/key-value-store/{key}");
                let at_us = stage.now_us();
                let answer =
                    causalkv::client::raw(&stage.http, &host, Method::GET, &path, None).await;
                let values = match answer {
                    Ok(r) if r.status == 200 => {
                        Some(vec![workload::value_text(r.body.get("value"))])
                    }
                    Ok(r) if r.status == 300 => {
                        r.body
                            .get("values")
                            .and_then(Value::as_array)
                            .map(|values| {
                                values
                                    .iter()
                                    .map(|v| workload::value_text(Some(v)))
                                    .collect()
                            })
                    }
                    Ok(r) if r.status == 404 && r.body.get("doesExist").is_some() => {
                        Some(Vec::new())
                    }
                    _ => None,
                };
                if let Some(mut values) = values {
                    values.sort();
                    sets.push(FinalSet {
                        replica: m,
                        table: SIBLING_TABLE.to_string(),
                        key: key.clone(),
                        values,
                        at_us,
                    });
                }
            }
        }
        let complete = sets.len() == stage.members.len() * keys.len();
        let agree = complete
            && keys.iter().all(|k| {
                let mut of_key = sets.iter().filter(|s| &s.key == k).map(|s| &s.values);
                let first = of_key.next();
                of_key.all(|v| Some(v) == first)
            });
        if agree || Instant::now() > deadline {
            return (sets, agree);
        }
        sleep_ms(500).await;
    }
}

/// One line on what the conditional writes did in a run, and one on the
/// table with siblings if the run had it, so that a run shows they were
/// exercised.
pub fn summary(history: &History) -> String {
    let count = |f: &dyn Fn(&Op) -> bool| history.ops.iter().filter(|o| f(o)).count();
    // Puts with an If-None-Match (`inm`) or an If-Match condition; with
    // `result`, only those that succeeded (true) or answered 412 (false).
    let conditional = |o: &Op, inm: bool, result: Option<bool>| {
        let kind = matches!(
            (&o.condition, inm),
            (Some(Condition::IfNoneMatch), true) | (Some(Condition::IfMatch(_)), false)
        );
        kind && match result {
            None => true,
            Some(true) => o.result == OpResult::Written,
            Some(false) => o.result == OpResult::Unmet,
        }
    };
    let mut line = format!(
        "conditional puts: If-None-Match: * {} sent, {} succeeded, {} answered 412; If-Match {} sent, {} succeeded, {} answered 412",
        count(&|o| conditional(o, true, None)),
        count(&|o| conditional(o, true, Some(true))),
        count(&|o| conditional(o, true, Some(false))),
        count(&|o| conditional(o, false, None)),
        count(&|o| conditional(o, false, Some(true))),
        count(&|o| conditional(o, false, Some(false))),
    );
    if history.sibling_tables.is_empty() {
        return line;
    }
    let in_table = |o: &Op| o.table.is_some();
    let largest = history
        .ops
        .iter()
        .filter_map(|o| match &o.result {
            OpResult::Siblings(values) => Some(values.len()),
            _ => None,
        })
        .max()
        .unwrap_or(1);
    let mut final_keys: HashMap<&str, usize> = HashMap::new();
    for fs in &history.final_sets {
        let n = final_keys.entry(fs.key.as_str()).or_default();
        *n = (*n).max(fs.values.len());
    }
    let _ = write!(
        line,
        "\ntable {SIBLING_TABLE} (siblings): {} puts, {} deletes, {} gets ({} answered 300, up to {largest} values); after settling {} of {} keys hold siblings",
        count(&|o| in_table(o) && o.result == OpResult::Written),
        count(&|o| in_table(o) && o.result == OpResult::Deleted),
        count(&|o| in_table(o) && o.kind == OpKind::Get && !matches!(o.result, OpResult::Failed(_))),
        count(&|o| in_table(o) && matches!(o.result, OpResult::Siblings(_))),
        final_keys.values().filter(|&&n| n > 1).count(),
        final_keys.len(),
    );
    line
}
