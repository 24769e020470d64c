//! Every replica killed with SIGKILL at the same instant while clients
//! write, three rounds in a row: acknowledged writes survive, contexts
//! issued before are still served, identities are kept.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::client;
use crate::common::DEADLINE;
use crate::harness::{Cluster, Data};

const REPLICAS: usize = 3;
const SESSIONS: usize = 4;
const KEYS_PER_SESSION: usize = 6;
const ROUNDS: usize = 3;
/// Writes each session has had acknowledged in a round before the kill.
const ACKS_BEFORE_KILL: usize = 12;
/// Bounds on one session's load in a round.
const MAX_OPS: usize = 5_000;
const LOAD_DEADLINE: Duration = Duration::from_secs(60);

/// A client that writes only its own keys, hops between replicas and
/// carries its causal context; it knows the last acknowledged state of
/// each of its keys.
struct Session {
    id: usize,
    keys: Vec<String>,
    ctx: Value,
    /// Last acknowledged state of each key: `Some(value)`, or `None`
    /// (deleted or never written).
    acked: BTreeMap<String, Option<Value>>,
    /// The write whose answer was lost when the replicas were killed: it
    /// may or may not have been applied.
    in_doubt: Option<(String, Option<Value>)>,
}

impl Session {
    fn new(id: usize) -> Session {
        let keys: Vec<String> = (0..KEYS_PER_SESSION)
            .map(|j| format!("s{id}-k{j}"))
            .collect();
        Session {
            id,
            acked: keys.iter().map(|k| (k.clone(), None)).collect(),
            keys,
            ctx: json!(""),
            in_doubt: None,
        }
    }

    /// The states `key` may be in: the last acknowledged one, or the one
    /// of the write in doubt.
    fn allowed(&self, key: &str) -> Vec<Option<Value>> {
        let mut allowed = vec![self.acked[key].clone()];
        if let Some((k, v)) = &self.in_doubt {
            if k == key {
                allowed.push(v.clone());
            }
        }
        allowed
    }

    /// Writes (PUT, and every fourth a DELETE) to its keys, hopping between
    /// replicas, until a request fails (the replicas were killed). `acks`
    /// counts the writes acknowledged this round.
    fn load(
        &mut self,
        addrs: &[String],
        round: usize,
        acks: &AtomicUsize,
        killed: &AtomicBool,
    ) -> Result<(), String> {
        let start = Instant::now();
        for n in 0..MAX_OPS {
            if start.elapsed() > LOAD_DEADLINE {
                return Err(format!(
                    "session {} round {round}: still writing after {LOAD_DEADLINE:?}",
                    self.id
                ));
            }
            let addr = &addrs[(n + self.id) % addrs.len()];
            let key = self.keys[(n / addrs.len() + n + self.id) % self.keys.len()].clone();
            let delete = n % 4 == 3;
            let value = json!({"session": self.id, "round": round, "n": n});
            let intended = (!delete).then(|| value.clone());
            let sent = if delete {
                client::delete(addr, &key, &self.ctx)
            } else {
                client::put(addr, &key, &value, &self.ctx)
            };
            let r = match sent {
                Ok(r) => r,
                Err(e) => {
                    self.in_doubt = Some((key, intended));
                    if killed.load(Ordering::SeqCst) {
                        return Ok(());
                    }
                    return Err(format!(
                        "session {} round {round}: a request failed before the kill: {e}",
                        self.id
                    ));
                }
            };
            let what = format!(
                "session {} round {round} op {n}: {} {key} at {addr} (acknowledged before: {:?})",
                self.id,
                if delete { "DELETE" } else { "PUT" },
                self.acked[&key]
            );
            let expected_status = match (delete, self.acked[&key].is_some()) {
                (false, false) => 201,
                (false, true) => 200,
                (true, true) => 200,
                (true, false) => 404,
            };
            if r.status != expected_status {
                return Err(format!(
                    "{what}: expected {expected_status}, got {} {}",
                    r.status, r.text
                ));
            }
            let ctx = r.ctx();
            if ctx.as_object().is_none_or(|o| o.is_empty()) {
                return Err(format!("{what}: no context in {}", r.text));
            }
            self.ctx = ctx;
            self.acked.insert(key, intended);
            acks.fetch_add(1, Ordering::SeqCst);
        }
        Err(format!(
            "session {} round {round}: {MAX_OPS} writes and the replicas were not killed",
            self.id
        ))
    }
}

pub fn all_replicas_killed_at_once_mid_load_three_rounds() {
    killed_at_once_mid_load_three_rounds(&[]);
}

/// The same under `DURABILITY=os`: a process killed keeps what it wrote
/// to the OS, and an answer waits until its write is (a commit shared with
/// the other requests its worker serves at the same time).
pub fn all_replicas_killed_at_once_mid_load_three_rounds_under_os() {
    killed_at_once_mid_load_three_rounds(&[("DURABILITY", "os")]);
}

fn killed_at_once_mid_load_three_rounds(env: &[(&str, &str)]) {
    let mut cluster = Cluster::start_with(REPLICAS, Data::Durable, env);
    let addrs = cluster.addrs();
    let ids: Vec<String> = (0..REPLICAS).map(|i| cluster.replica_id(i)).collect();
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(client::split_id(id).0, cluster.addr(i), "id {id}");
    }
    let id_set: BTreeSet<&str> = ids.iter().map(String::as_str).collect();
    let mut sessions: Vec<Session> = (0..SESSIONS).map(Session::new).collect();

    for round in 0..ROUNDS {
        let acks: Vec<AtomicUsize> = (0..SESSIONS).map(|_| AtomicUsize::new(0)).collect();
        let finished = AtomicUsize::new(0);
        let killed = AtomicBool::new(false);
        let mut results = Vec::new();
        let mut progress_ok = false;
        std::thread::scope(|scope| {
            let handles: Vec<_> = sessions
                .iter_mut()
                .zip(&acks)
                .map(|(session, acks)| {
                    let (addrs, killed, finished) = (&addrs, &killed, &finished);
                    scope.spawn(move || {
                        let result = session.load(addrs, round, acks, killed);
                        finished.fetch_add(1, Ordering::SeqCst);
                        result
                    })
                })
                .collect();
            // Mid-load: every session has had writes acknowledged and is
            // still writing.
            let start = Instant::now();
            let max_polls = (DEADLINE.as_millis() / 10) as usize;
            for _ in 0..max_polls {
                if acks
                    .iter()
                    .all(|a| a.load(Ordering::SeqCst) >= ACKS_BEFORE_KILL)
                {
                    progress_ok = true;
                    break;
                }
                if finished.load(Ordering::SeqCst) > 0 || start.elapsed() > DEADLINE {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            killed.store(true, Ordering::SeqCst);
            cluster.kill_all();
            for handle in handles {
                results.push(handle.join().expect("a session thread panicked"));
            }
        });
        for result in results {
            result.unwrap_or_else(|e| panic!("{e}"));
        }
        let counts: Vec<usize> = acks.iter().map(|a| a.load(Ordering::SeqCst)).collect();
        assert!(
            progress_ok,
            "round {round}: the sessions did not get {ACKS_BEFORE_KILL} writes each acknowledged \
             within {DEADLINE:?}: {counts:?}"
        );
        eprintln!("round {round}: killed all replicas after {counts:?} acknowledged writes");

        cluster.restart_all();

        // The same identities.
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(
                &cluster.replica_id(i),
                id,
                "round {round}: replica {i} came back with another identity"
            );
        }
        for s in &sessions {
            let names: Vec<&String> = s.ctx.as_object().expect("a context").keys().collect();
            for name in names {
                assert!(
                    id_set.contains(name.as_str()),
                    "round {round}: session {} holds a context naming {name}, not one of {ids:?}",
                    s.id
                );
            }
        }

        // Every session's last context is served by every replica, and a
        // read with it sees the session's acknowledged writes.
        for s in &sessions {
            for addr in &addrs {
                for key in &s.keys {
                    let r = client::get(addr, key, &s.ctx)
                        .unwrap_or_else(|e| panic!("round {round}: GET {key} at {addr}: {e}"));
                    let seen = match r.status {
                        200 => Some(r.body["value"].clone()),
                        404 => None,
                        _ => panic!(
                            "round {round}: session {} context not served at {addr} \
                             (GET {key}): {} {}",
                            s.id, r.status, r.text
                        ),
                    };
                    assert!(
                        s.allowed(key).contains(&seen),
                        "round {round}: session {} reads {key} at {addr} with its context: \
                         {seen:?}, expected one of {:?}",
                        s.id,
                        s.allowed(key)
                    );
                }
            }
        }

        // Every acknowledged write reaches every replica (read without a
        // context), and they agree on the writes in doubt.
        client::poll(
            DEADLINE,
            &format!("round {round}: every replica to hold every acknowledged write"),
            || {
                for s in &sessions {
                    for key in &s.keys {
                        let mut seen = Vec::new();
                        for addr in &addrs {
                            let r = client::peek(addr, key)?;
                            seen.push(match r.status {
                                200 => Some(r.body["value"].clone()),
                                404 => None,
                                _ => return Err(format!("{addr} {key}: {} {}", r.status, r.text)),
                            });
                        }
                        let allowed = s.allowed(key);
                        if !seen.iter().all(|v| allowed.contains(v) && *v == seen[0]) {
                            return Err(format!(
                                "{key}: replicas hold {seen:?}, allowed {allowed:?}"
                            ));
                        }
                    }
                }
                Ok(())
            },
        );

        // Settle the writes in doubt: what the replicas agree on.
        for s in &mut sessions {
            if let Some((key, _)) = s.in_doubt.take() {
                let r = client::get(&addrs[0], &key, &s.ctx).expect("GET");
                assert!(r.status == 200 || r.status == 404, "{r:?}");
                s.acked
                    .insert(key, (r.status == 200).then(|| r.body["value"].clone()));
                s.ctx = r.ctx();
            }
        }
        cluster.wait_views();
    }

    for i in 0..REPLICAS {
        let health = cluster.health(i);
        let durability = &health["durability"];
        let mode = (env.iter().find(|(k, _)| *k == "DURABILITY")).map_or("fsync", |(_, v)| *v);
        assert_eq!(durability["mode"], json!(mode), "{health}");
        assert_eq!(
            durability["data-dir"].as_str().map(std::path::Path::new),
            Some(cluster.data_dir(i)),
            "{health}"
        );
    }
}
