//! After the faults: let the healed cluster settle, read every key at every
//! member, then check what must hold in a store that lives for months.
//!
//! [`settle`] polls until every member holds the same value for every key
//! and every view lists exactly the members; its last reads are the
//! history's final reads.
//!
//! [`lifetime_checks`] then polls, within deadlines, the two properties
//! a long-lived store must keep, each reported as a failure of its
//! own:
//!
//! * **Tombstones are collected.** Once nothing is deleted any more, every
//!   member's `/health` `"tombstones"` falls to zero within the suspect
//!   timeout plus a few collection rounds, even after a replica was removed
//!   for good (the survivors must forget it, or they wait for it forever).
//! * **Metadata is bounded.** Every member's `/health` `"clock"` (entries in
//!   its applied vector clock), and the causal metadata of a fresh session
//!   that reads every key across the members, stay within [`Bounds`],
//!   however many incarnations the run's restarts created: unsharded, live
//!   members + 2 entries for both; sharded, a node's clock counts only its
//!   own shard's group (that shard's members + 2), while a context spans
//!   every shard (live nodes + 2 per shard).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use awc::http::Method;
use serde_json::{json, Value};

use super::checker::FinalRead;
use super::harness::{sleep_ms, Stage, COLLECTION_ROUND, SUSPECT_TIMEOUT};
use super::workload;

/// How long the cluster may take to converge once healed.
const SETTLE_DEADLINE: Duration = Duration::from_secs(90);
/// How long after settling tombstones may take to go, and clocks and
/// contexts to shrink within the bound: a forgotten suspect, then rounds.
const LIFETIME_DEADLINE: Duration =
    Duration::from_secs(SUSPECT_TIMEOUT.as_secs() + 4 * COLLECTION_ROUND.as_secs());
/// Entries a clock or context may hold beyond one per live member.
const METADATA_SLACK: usize = 2;

/// Polls until every member holds the same value for every key and every
/// view lists exactly the members (or the deadline passes); returns the
/// last reads taken, whether the views agreed, and what they were.
pub async fn settle(stage: &Stage<'_>, keys: &[String]) -> (Vec<FinalRead>, bool, String) {
    let deadline = Instant::now() + SETTLE_DEADLINE;
    let mut expected: Vec<String> = stage
        .members
        .iter()
        .map(|&m| stage.cluster.address(m))
        .collect();
    expected.sort_by_key(|a| {
        a.split(':')
            .next()
            .unwrap()
            .split('.')
            .map(|o| o.parse::<u32>().unwrap())
            .collect::<Vec<_>>()
    });
    let expected = expected.join(",");
    loop {
        let mut reads = Vec::new();
        let mut views = Vec::new();
        for &m in &stage.members {
            let host = stage.cluster.address(m);
            stage.cluster.check_target(&host);
            views.push(stage.view_of(m).await);
            for key in keys {
                let path = format!("/key-value-store/{key}");
                let at_us = stage.now_us();
                let answer =
                    causalkv::client::raw(&stage.http, &host, Method::GET, &path, None).await;
                let value = match answer {
                    Ok(r) if r.status == 200 => {
                        Some(Some(workload::value_text(r.body.get("value"))))
                    }
                    Ok(r) if r.status == 404 => Some(None),
                    _ => None,
                };
                if let Some(value) = value {
                    reads.push(FinalRead {
                        replica: m,
                        key: key.clone(),
                        value,
                        at_us,
                    });
                }
            }
        }
        let complete = reads.len() == stage.members.len() * keys.len();
        let agree = complete
            && keys.iter().all(|k| {
                let mut values = reads.iter().filter(|r| &r.key == k).map(|r| &r.value);
                let first = values.next();
                values.all(|v| Some(v) == first)
            });
        let views_ok = views
            .iter()
            .all(|v| v.as_deref() == Some(expected.as_str()));
        if (agree && views_ok) || Instant::now() > deadline {
            let report = format!("expected view {expected}; views seen: {views:?}");
            return (reads, views_ok, report);
        }
        sleep_ms(500).await;
    }
}

/// The outcome of one lifetime check.
pub struct Verdict {
    /// Whether it held within its deadline.
    pub ok: bool,
    /// A line for the run's summary.
    pub line: String,
}

/// How many entries clocks and contexts may hold once a run has settled.
pub struct Bounds {
    /// Per member (slot): most entries its applied vector clock may hold.
    pub clock: BTreeMap<usize, usize>,
    /// Most entries the context of a session that read every key may hold.
    pub context: usize,
    /// What the bounds count, for the summary.
    pub why: String,
}

impl Bounds {
    /// An unsharded store: every replica holds every key, so a clock and a
    /// context name at most one incarnation per live member, plus slack.
    pub fn unsharded(members: &[usize]) -> Bounds {
        let bound = members.len() + METADATA_SLACK;
        Bounds {
            clock: members.iter().map(|&m| (m, bound)).collect(),
            context: bound,
            why: format!("{} live members + {METADATA_SLACK}", members.len()),
        }
    }

    /// A sharded store whose shards have the members (slots) of `shards`:
    /// a node's clock counts only its own shard's group, so at most one
    /// entry per member of its shard plus slack; a context spans every
    /// shard, so at most one entry per live node plus slack for each shard.
    /// A node placed in no shard replicates with no one: its clock holds
    /// at most its own entry plus slack.
    pub fn sharded(members: &[usize], shards: &BTreeMap<u64, Vec<usize>>) -> Bounds {
        let clock = members
            .iter()
            .map(|m| {
                let group = shards.values().find(|s| s.contains(m)).map_or(1, Vec::len);
                (*m, group + METADATA_SLACK)
            })
            .collect();
        let sizes: Vec<String> = shards.values().map(|s| s.len().to_string()).collect();
        Bounds {
            clock,
            // One more: the version of the shard map the context went
            // through, which is not a replica's.
            context: members.len() + METADATA_SLACK * shards.len().max(1) + 1,
            why: format!(
                "clocks: members of the node's shard ({}) + {METADATA_SLACK}; context: {} live nodes + {METADATA_SLACK} per shard + the shard map's version",
                sizes.join("/"),
                members.len()
            ),
        }
    }

    fn clock_of(&self, m: usize) -> usize {
        self.clock.get(&m).copied().unwrap_or(0)
    }
}

/// After settling: polls until tombstones are collected and metadata is
/// within `bounds` at every member, or the deadline passes.
pub async fn lifetime_checks(
    stage: &Stage<'_>,
    keys: &[String],
    bounds: &Bounds,
) -> (Verdict, Verdict) {
    let start = Instant::now();
    let bound = bounds.context;
    let mut collected_after = None;
    let mut bounded_after = None;
    let mut tombstones = Vec::new();
    let mut clocks = Vec::new();
    let mut context: Result<Vec<String>, String> =
        Err("not read: a clock is missing or over the bound".into());
    loop {
        if collected_after.is_none() {
            tombstones = figure(stage, "tombstones").await;
            if tombstones.iter().all(|&(_, n)| n == Some(0)) {
                collected_after = Some(start.elapsed());
            }
        }
        if bounded_after.is_none() {
            clocks = figure(stage, "clock").await;
            if clocks
                .iter()
                .all(|&(m, n)| n.is_some_and(|n| n <= bounds.clock_of(m) as u64))
            {
                context = session_context(stage, keys).await;
                if context.as_ref().is_ok_and(|c| c.len() <= bound) {
                    bounded_after = Some(start.elapsed());
                }
            }
        }
        let done = collected_after.is_some() && bounded_after.is_some();
        if done || start.elapsed() > LIFETIME_DEADLINE {
            break;
        }
        sleep_ms(500).await;
    }
    let collection = match collected_after {
        Some(after) => Verdict {
            ok: true,
            line: format!(
                "tombstones: collected at every member {:.1} s after settling",
                after.as_secs_f64()
            ),
        },
        None => Verdict {
            ok: false,
            line: format!(
                "TOMBSTONES NOT COLLECTED within {LIFETIME_DEADLINE:?} of settling (per replica: {})",
                show(&tombstones)
            ),
        },
    };
    let metadata = match bounded_after {
        Some(after) => Verdict {
            ok: true,
            line: format!(
                "metadata: clocks ({}) and a session's context after reading every key ({} entries) within the bounds ({}), {:.1} s after settling",
                show(&clocks),
                context.as_ref().map_or(0, Vec::len),
                bounds.why,
                after.as_secs_f64()
            ),
        },
        None => Verdict {
            ok: false,
            line: format!(
                "METADATA OVER THE BOUND ({}: {} for a context) within {LIFETIME_DEADLINE:?}: clock entries per replica: {}; a session's context after reading every key: {}",
                bounds.why,
                bounds.context,
                show(&clocks),
                match &context {
                    Ok(ids) => format!("{} entries: {}", ids.len(), ids.join(", ")),
                    Err(e) => e.clone(),
                }
            ),
        },
    };
    (collection, metadata)
}

/// A number every member's `/health` reports (`None` where it is missing).
async fn figure(stage: &Stage<'_>, field: &str) -> Vec<(usize, Option<u64>)> {
    let mut out = Vec::new();
    for &m in &stage.members {
        let health = stage.health(m).await;
        out.push((m, health.and_then(|h| h.get(field).and_then(Value::as_u64))));
    }
    out
}

/// `replica 0: 3, replica 1: missing`.
fn show(figures: &[(usize, Option<u64>)]) -> String {
    let parts: Vec<String> = figures
        .iter()
        .map(|(m, n)| match n {
            Some(n) => format!("replica {m}: {n}"),
            None => format!("replica {m}: missing"),
        })
        .collect();
    parts.join(", ")
}

/// A fresh session reads every key, hopping across the members and passing
/// back its metadata; returns the entries its metadata holds then.
async fn session_context(stage: &Stage<'_>, keys: &[String]) -> Result<Vec<String>, String> {
    let mut metadata = Value::String(String::new());
    for (j, key) in keys.iter().enumerate() {
        let m = stage.members[j % stage.members.len()];
        let host = stage.cluster.address(m);
        stage.cluster.check_target(&host);
        let path = format!("/key-value-store/{key}");
        let body = json!({"causal-metadata": metadata});
        let answer =
            causalkv::client::raw(&stage.http, &host, Method::GET, &path, Some(&body)).await;
        match answer {
            Ok(r) if r.status == 200 || r.status == 404 => {
                if let Some(m) = r.body.get("causal-metadata") {
                    metadata = m.clone();
                }
            }
            Ok(r) => return Err(format!("replica {m} answered {} for {key}", r.status)),
            Err(e) => return Err(format!("replica {m} did not answer for {key}: {e}")),
        }
    }
    entries(&metadata).ok_or_else(|| format!("unreadable causal-metadata {metadata}"))
}

/// Entries of a causal-metadata value: an object, or a string holding one.
fn entries(metadata: &Value) -> Option<Vec<String>> {
    match metadata {
        Value::Null => Some(Vec::new()),
        Value::Object(map) => Some(map.keys().cloned().collect()),
        Value::String(text) if text.is_empty() => Some(Vec::new()),
        Value::String(text) => serde_json::from_str::<Value>(text)
            .ok()?
            .as_object()
            .map(|map| map.keys().cloned().collect()),
        _ => None,
    }
}
