//! The simulated clients: sessions that pass back the `causal-metadata` of
//! their last reply, and the checks each answer must pass (read-your-writes,
//! monotonic reads, no value its session saw deleted, a context echoed
//! when nothing is new).

use super::trace::{self, Event};

use crate::causal::CausalContext;
use crate::store::{Value, Version};

use super::super::{single, Condition, Millis, Outcome, Wait};

use super::cluster::*;
use super::session::*;
use super::trace::trace_at;

impl Sim {
    /// Stops the clients: no new operations, none waiting.
    pub(in crate::replica) fn quiet(&mut self) {
        self.client_rate = 0;
        self.sessions.iter_mut().for_each(|s| s.pending = None);
    }

    /// A new session with no context; returns its number.
    pub(in crate::replica) fn session(&mut self) -> usize {
        self.sessions.push(Session::default());
        self.sessions.len() - 1
    }

    pub(in crate::replica) fn with_sessions(mut self, count: usize, rate: u64) -> Sim {
        self.sessions = (0..count).map(|_| Session::default()).collect();
        self.client_rate = rate;
        self
    }

    /// Session `s` runs `op` at replica `i`, waiting (as the network runs)
    /// until it is served; panics after the client's wait.
    pub(in crate::replica) fn until_served(&mut self, s: usize, i: usize, op: Op) -> Option<Value> {
        let value = self.value_for(&op);
        self.served_within(s, i, &op, value, CLIENT_WAIT)
            .unwrap_or_else(|wait| {
                let known: Vec<String> = self
                    .live()
                    .into_iter()
                    .map(|j| format!("{}: {:?}", self.addrs[j], self.replica(j).known()))
                    .collect();
                panic!("{op:?} at {i} not served: {wait:?}\n{}", known.join("\n"));
            })
            .value
    }

    /// Session `s` runs `op` (writing `value`) at replica `i`, and while
    /// the replica lacks its context, asks it to catch up and lets the
    /// network run, for at most `wait`.
    pub(super) fn served_within(
        &mut self,
        s: usize,
        i: usize,
        op: &Op,
        value: Option<Value>,
        wait: Millis,
    ) -> Result<Served, Wait> {
        let since = self.now;
        loop {
            match self.serve(s, i, op, value.clone()) {
                Ok(served) => return Ok(served),
                Err(why) if self.now - since >= wait => return Err(why),
                Err(why) => {
                    if let Wait::Missing(missing) = why {
                        let now = self.now;
                        self.replica_mut(i).catch_up(&missing, now);
                        self.flush(i);
                    }
                    self.step();
                }
            }
        }
    }

    /// Idle sessions may start an operation at a random replica; waiting
    /// ones retry, sometimes elsewhere.
    pub(super) fn clients(&mut self) {
        let live = self.live();
        for s in 0..self.sessions.len() {
            let (op, mut at, since) = match self.sessions[s].pending.take() {
                Some(pending) => pending,
                None if self.rng.chance(self.client_rate) => {
                    let shared = key(&format!("k{}", self.rng.below(4)));
                    let op = match self.rng.below(100) {
                        0..=14 => Op::Put(key(&format!("u{}", self.fresh()))),
                        15..=49 => Op::Put(shared),
                        50..=59 => Op::Delete(shared),
                        60..=64 => Op::PutIf(shared, Condition::Absent),
                        65..=69 => {
                            // Over the version this session last saw.
                            let seen = self.sessions[s].seen.get(&shared);
                            let tags = seen.map(|v| vec![v.etag()]).unwrap_or_default();
                            Op::PutIf(shared, Condition::Matches(tags))
                        }
                        _ => Op::Get(shared),
                    };
                    (op, usize::MAX, self.now)
                }
                None => continue,
            };
            if !live.contains(&at) || self.rng.chance(300) {
                at = self.rng.pick(&live);
            }
            let Err(wait) = self.client(s, at, &op) else {
                continue;
            };
            if self.now - since > CLIENT_WAIT {
                self.sessions[s] = Session::default();
            } else {
                if let Wait::Missing(missing) = wait {
                    let now = self.now;
                    self.replica_mut(at).catch_up(&missing, now);
                    self.flush(at);
                }
                self.sessions[s].pending = Some((op, at, since));
            }
        }
    }

    /// A fresh value for a put, nothing for the rest.
    fn value_for(&mut self, op: &Op) -> Option<Value> {
        match op {
            Op::Put(_) | Op::PutIf(..) => {
                Value::from_json(&self.fresh().to_string()).expect("json")
            }
            _ => None,
        }
    }

    /// Session `s` performs `op` at replica `i` with its latest context:
    /// the value read or written, or why the replica cannot serve it.
    pub(in crate::replica) fn client(
        &mut self,
        s: usize,
        i: usize,
        op: &Op,
    ) -> Result<Option<Value>, Wait> {
        let value = self.value_for(op);
        self.serve(s, i, op, value).map(|served| served.value)
    }

    /// [`Sim::client`] writing `value` (ignored by a get or a delete), and
    /// telling what a write did.
    pub(in crate::replica) fn serve(
        &mut self,
        s: usize,
        i: usize,
        op: &Op,
        value: Option<Value>,
    ) -> Result<Served, Wait> {
        let result = self.checked(s, i, op, value);
        let got = match &result {
            Ok(Served { value, outcome }) => {
                let what = match (outcome, value) {
                    (Some(outcome), _) => format!("{outcome:?}"),
                    (None, Some(v)) => format!("value {}", v.as_json()),
                    (None, None) => "not found".into(),
                };
                format!("{what}, context {}", trace::context(&self.sessions[s].ctx))
            }
            Err(Wait::Missing(missing)) => format!("WAITS for {}", trace::clock(missing)),
            Err(wait) => format!("WAITS: {wait:?}"),
        };
        // A session waiting retries every step: its wait is traced once.
        let waits = result.is_err().then(|| format!("r{i} {got}"));
        let repeated = waits.is_some() && waits == self.sessions[s].waits;
        self.sessions[s].waits = waits;
        if !repeated {
            let op = op.clone();
            let event = Event::Client {
                session: s,
                at: i,
                op,
                got,
            };
            self.trace.push(self.now, event);
        }
        result
    }

    fn checked(
        &mut self,
        s: usize,
        i: usize,
        op: &Op,
        value: Option<Value>,
    ) -> Result<Served, Wait> {
        let sent = self.sessions[s].ctx.clone();
        let ctx = CausalContext::parse(Some(&sent)).expect("metadata round-trips");
        let (key, value, learned, outcome) = match op {
            Op::Get(key) => {
                let read = self.replica(i).read(key, &ctx)?;
                (key, read.value, read.learned, None)
            }
            Op::Put(key) | Op::Delete(key) | Op::PutIf(key, _) => {
                let value = value.filter(|_| !matches!(op, Op::Delete(_)));
                let condition = match op {
                    Op::PutIf(_, condition) => condition.clone(),
                    _ => Condition::Any,
                };
                let _span = trace_at(&self.addrs[i], self.now);
                tracing::debug!(session = s, ?op, context = %sent, "client write");
                let replica = self.replica_mut(i);
                let result = replica.write_if(key.clone(), value.clone(), &ctx, &condition)?;
                let version = replica.store().get(key);
                // A condition that failed wrote nothing: the client got the
                // version held, as a read would.
                let unmet = result.outcome == Outcome::Unmet;
                let value = if unmet {
                    version.as_ref().and_then(|v| v.value.clone())
                } else {
                    value
                };
                let wrote = !unmet && result.outcome != Outcome::NotFound;
                if let Some(version) = version.filter(|_| wrote) {
                    // It beats everything applied here.
                    assert_eq!(version.value, value, "a write lost at once");
                    self.issued.insert(version.dot.clone(), self.log.len());
                    let (key, deps) = (key.clone(), ctx.clock().clone());
                    self.log.push(Logged { key, version, deps });
                }
                self.flush(i);
                (key, value, result.learned, Some(result.outcome))
            }
        };
        // The client got, and learned the dot of, the version stored
        // (nothing, for a retired incarnation's write).
        let replica = self.replica(i);
        let version = replica.store().get(key);
        assert_eq!(value, version.as_ref().and_then(|v| v.value.clone()));
        let dot = version.as_ref().map(|v| single(&v.dot)).unwrap_or_default();
        let retired = version.as_ref().is_some_and(|v| {
            let record = replica.known().retirement(&v.dot.replica);
            let within = record.is_some_and(|r| r.last >= v.dot.counter);
            replica.applied().get(&v.dot.replica) == 0 && within
        });
        // Sharded, a read also hands over what the writes applied here
        // depended on in other shards (the replica's foreign frontier); a
        // writer's context holds its own dependencies already, and learns
        // only the version of the shard map held here.
        let foreign = match op {
            Op::Get(_) => replica.known().foreign().clone(),
            _ => {
                let mut map = crate::causal::VectorClock::new();
                if replica.map_version() > 0 {
                    map.set(crate::causal::ReplicaId::shard_map(), replica.map_version());
                }
                map
            }
        };
        let found = version.is_some();
        if retired {
            assert_eq!(
                learned.clock, foreign,
                "learned a retired incarnation's dot"
            );
        } else if found {
            let mut expected = dot;
            expected.merge(&foreign);
            assert_eq!(learned.clock, expected);
        } else {
            assert!(
                learned.clock.is_empty(),
                "learned something of an absent key"
            );
        }
        // A version written by a replica that crashed before passing it on
        // is lost: no read can be held to it.
        // So is one of a writer retired while replica `i` was cut off from
        // every replica that retired it (see `pruned_while_cut_off`).
        let lost: Vec<bool> = self.sessions[s]
            .seen
            .get(key)
            .map(|v| {
                self.is_lost(&v.dot.replica, v.dot.counter)
                    || self.pruned_while_cut_off(i, v, ctx.clock())
            })
            .into_iter()
            .collect();
        let session = &mut self.sessions[s];
        if let Some(seen) = session.seen.get(key).filter(|_| lost != [true]) {
            let newer = |v: &Version| v == seen || v.supersedes(seen);
            // Only a forgotten tombstone at least as new may hide what was
            // seen (an older tombstone may stand in its place, as in the
            // audit).
            let forgotten = || {
                let mut deletes = self.log.iter().filter(|w| w.version.value.is_none());
                deletes.any(|w| w.key == *key && newer(&w.version))
            };
            let ok = version.as_ref().map_or_else(forgotten, |v| {
                newer(v) || (v.value.is_none() && forgotten())
            });
            let at = &self.addrs[i];
            assert!(
                ok,
                "session {s}: {op:?} at {at} got {version:?} after {seen:?}"
            );
        }
        if let Some(v) = version {
            if session.seen.get(key).is_none_or(|seen| v.supersedes(seen)) {
                session.seen.insert(key.clone(), v);
            }
        }
        let reply = learned.metadata(&ctx).to_value();
        if learned.clock.covered_by(ctx.clock()) && learned.pruned.is_none() {
            assert_eq!(reply, sent, "the context is echoed when nothing is new");
        }
        session.ctx = reply;
        Ok(Served { value, outcome })
    }
}
