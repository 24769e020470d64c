//! What a node of a sharded store knows of the others: the shard map it
//! holds, which nodes answered lately, a reshard it prepared, and the keys
//! other shards handed it for that reshard. No I/O: `crate::sharding`
//! does the talking.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use xxhash_rust::xxh3::xxh3_64;

use crate::address::SocketAddress;
use crate::causal::VectorClock;
use crate::store::{Key, Version};

use super::map::{Change, ShardId, ShardMap};
use super::placement::Layout;

/// Keys handed to this node for the reshard to map version `epoch`.
#[derive(Debug, Default)]
pub struct Incoming {
    /// The map version they are for, and its coordinator.
    pub epoch: u64,
    pub by: String,
    /// The versions, by key (the conflict rule's winner of those received).
    pub versions: HashMap<Key, Version>,
    /// What they may depend on.
    pub depends: VectorClock,
}

/// How many of the last map changes asked of a node it remembers, to make
/// again those that lose to another map (see [`Cluster::lost_changes`]).
const MADE_KEPT: usize = 16;

/// A node's view of the sharded store.
#[derive(Debug)]
pub struct Cluster {
    me: SocketAddress,
    map: RwLock<ShardMap>,
    /// The map's placement, looked up once per map rather than per request.
    layout: RwLock<Arc<Layout>>,
    seen: Mutex<HashMap<SocketAddress, Instant>>,
    /// This run of the node (see `sharding::wire::Runner`), and the
    /// newest run heard from each other node.
    run: u64,
    runs: Mutex<HashMap<SocketAddress, u64>>,
    pending: Mutex<Option<ShardMap>>,
    /// When the reshard pending was prepared.
    prepared_at: Mutex<Option<Instant>>,
    incoming: Mutex<Incoming>,
    /// The map version (and its coordinator) this node last handed its
    /// versions off for, and how many of its own writes it had then.
    handed_off: Mutex<Option<(u64, String, u64)>>,
    /// The last changes asked of this node, with the map version each made.
    made: Mutex<VecDeque<(u64, Change)>>,
    /// Changes asked of this node whose map was lost, to make again.
    redo: Mutex<Vec<Change>>,
    failure_timeout: Duration,
    /// Held by the node while it coordinates a reshard: one at a time.
    pub resharding: tokio::sync::Mutex<()>,
}

/// A run number (see `sharding::wire::Runner`): the start time in ms
/// since the Unix epoch, then 16 random bits.
fn draw_run() -> u64 {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    (ms << 16) | u64::from(rand::random::<u16>())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Cluster {
    /// The state of node `me` holding `map`; a node silent for longer
    /// than `failure_timeout` counts as down.
    pub fn new(me: SocketAddress, map: ShardMap, failure_timeout: Duration) -> Cluster {
        Cluster {
            me,
            layout: RwLock::new(map.layout()),
            map: RwLock::new(map),
            seen: Mutex::new(HashMap::new()),
            run: draw_run(),
            runs: Mutex::new(HashMap::new()),
            pending: Mutex::new(None),
            prepared_at: Mutex::new(None),
            incoming: Mutex::new(Incoming::default()),
            handed_off: Mutex::new(None),
            made: Mutex::default(),
            redo: Mutex::default(),
            failure_timeout,
            resharding: tokio::sync::Mutex::new(()),
        }
    }

    /// This node.
    pub fn me(&self) -> &SocketAddress {
        &self.me
    }

    /// The map held now.
    pub fn map(&self) -> ShardMap {
        self.map.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Looks at the map held now without copying it.
    pub fn with_map<R>(&self, f: impl FnOnce(&ShardMap) -> R) -> R {
        f(&self.map.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Holds `map` if it is newer than the one held; returns whether it
    /// was. A pending reshard that `map` completes or supersedes is over.
    pub fn adopt(&self, map: ShardMap) -> bool {
        let mut held = self.map.write().unwrap_or_else(|p| p.into_inner());
        if !map.newer_than(&held) {
            return false;
        }
        // The reshard prepared here ends with its own map (committed), or
        // with a map that replaces it: another reshard's of its version,
        // or a later one. Then what was handed over for it is dropped: it
        // is placed by a map that will not be held. (A change of another
        // kind made meanwhile with the reshard's version does not end it:
        // the reshard's map wins that tie.)
        let mut pending = lock(&self.pending);
        if pending
            .as_ref()
            .is_some_and(|p| map.same_version(p) || map.newer_than(p))
        {
            if !pending.as_ref().is_some_and(|p| map.same_version(p)) {
                *lock(&self.incoming) = Incoming::default();
            }
            *pending = None;
            *lock(&self.prepared_at) = None;
        }
        *self.layout.write().unwrap_or_else(|p| p.into_inner()) = map.layout();
        *held = map;
        true
    }

    /// The shard this node is a member of, if any.
    pub fn my_shard(&self) -> Option<ShardId> {
        self.with_map(|m| m.shard_of_node(&self.me))
    }

    /// The shard of `key`, and whether this node is one of its members.
    pub fn place(&self, key: &str) -> (ShardId, bool) {
        self.serves(key, None)
    }

    /// The shard of `key`, and whether this node serves it: it is one of
    /// the shard's members and, if `group` is given, its replica is of
    /// the shard's group.
    pub fn serves(&self, key: &str, group: Option<Option<&str>>) -> (ShardId, bool) {
        let layout = self
            .layout
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let shard = layout.shard_of(key) + 1;
        self.with_map(|m| {
            let serves = m.shard(shard).is_some_and(|s| {
                s.members.contains(&self.me) && group.is_none_or(|g| g == Some(s.group.as_str()))
            });
            (shard, serves)
        })
    }

    /// Records an answer from `node`.
    pub fn heard(&self, node: &SocketAddress) {
        let now = Instant::now();
        let mut seen = lock(&self.seen);
        match seen.get_mut(node) {
            Some(at) => *at = now,
            None => _ = seen.insert(node.clone(), now),
        }
    }

    /// This run of the node: drawn when it started.
    pub fn run(&self) -> u64 {
        self.run
    }

    /// Notes that `node` sent a message from its run `run`; whether that
    /// run is newer than the newest heard from it before (it restarted
    /// since). A message of an older run (sent before the restart,
    /// answered late) says nothing.
    pub fn note_run(&self, node: &SocketAddress, run: u64) -> bool {
        let mut runs = lock(&self.runs);
        match runs.get_mut(node) {
            None => {
                runs.insert(node.clone(), run);
                false
            }
            Some(newest) if run > *newest => {
                *newest = run;
                true
            }
            Some(_) => false,
        }
    }

    /// Whether `node` answered within the failure timeout (this node
    /// always counts as up).
    pub fn is_live(&self, node: &SocketAddress) -> bool {
        *node == self.me
            || lock(&self.seen)
                .get(node)
                .is_some_and(|t| t.elapsed() < self.failure_timeout)
    }

    /// The nodes of the map that are up.
    pub fn live(&self) -> BTreeSet<SocketAddress> {
        let nodes = self.with_map(|m| {
            let mut all = m.nodes.clone();
            all.extend(m.shards.values().flat_map(|s| s.members.iter().cloned()));
            all
        });
        nodes.into_iter().filter(|n| self.is_live(n)).collect()
    }

    /// The members of shard `id` to try, live ones first, this node left
    /// out. Each node starts the live ones at a place of its own (drawn
    /// from its address), so that the nodes relaying to a shard spread
    /// their load over its members, while the requests one node relays go
    /// on reaching the same member, which already holds what they wrote
    /// before (no causal wait for writes still on their way).
    pub fn targets(&self, id: ShardId) -> Vec<SocketAddress> {
        let members = self.with_map(|m| m.shard(id).map(|s| s.members.clone()).unwrap_or_default());
        let (mut live, down): (Vec<_>, Vec<_>) = members
            .into_iter()
            .filter(|m| *m != self.me)
            .partition(|m| self.is_live(m));
        if !live.is_empty() {
            let start = xxh3_64(self.me.as_str().as_bytes()) % live.len() as u64;
            live.rotate_left(start as usize);
        }
        live.extend(down);
        live
    }

    /// Prepares the reshard to `map`: from now on writes to the keys it
    /// moves (every key, at a node that changes shard) wait for it.
    /// Refused if another reshard is prepared.
    pub fn prepare(&self, map: ShardMap) -> Result<(), String> {
        let mut pending = lock(&self.pending);
        match pending.as_ref() {
            Some(p) if p.epoch != map.epoch || p.by != map.by => {
                return Err(format!("a reshard to map version {} is under way", p.epoch));
            }
            _ => {}
        }
        let mut incoming = lock(&self.incoming);
        if incoming.epoch != map.epoch || incoming.by != map.by {
            *incoming = Incoming {
                epoch: map.epoch,
                by: map.by.clone(),
                ..Incoming::default()
            };
        }
        if pending.is_none() {
            *lock(&self.prepared_at) = Some(Instant::now());
        }
        *pending = Some(map);
        Ok(())
    }

    /// The reshard prepared, if any.
    pub fn pending(&self) -> Option<ShardMap> {
        lock(&self.pending).clone()
    }

    /// Gives up the reshard to `map`, if it is the one prepared (not
    /// another coordinator's of the same version).
    pub fn abort(&self, map: &ShardMap) {
        let mut pending = lock(&self.pending);
        if pending
            .as_ref()
            .is_some_and(|p| p.epoch == map.epoch && p.by == map.by)
        {
            *pending = None;
            *self.prepared_at.lock().unwrap_or_else(|p| p.into_inner()) = None;
            *lock(&self.incoming) = Incoming::default();
            // What it handed off was dropped where it went: a reshard to a
            // map of the same version (tried again) hands it off anew.
            *lock(&self.handed_off) = None;
        }
    }

    /// Gives up a reshard prepared longer than `timeout` ago (its
    /// coordinator died before committing or aborting it); returns it.
    pub fn expire_pending(&self, timeout: Duration) -> Option<ShardMap> {
        let since = *lock(&self.prepared_at);
        if since.is_none_or(|t| t.elapsed() < timeout) {
            return None;
        }
        let map = self.pending()?;
        self.abort(&map);
        Some(map)
    }

    /// Whether a write to `key` must wait for the reshard prepared: the
    /// key changes shard, or this node does.
    pub fn is_moving(&self, key: &str) -> bool {
        let pending = lock(&self.pending);
        let Some(next) = pending.as_ref() else {
            return false;
        };
        self.with_map(|now| {
            now.layout().moves(key, &next.layout())
                || now.shard_of_node(&self.me) != next.shard_of_node(&self.me)
        })
    }

    /// Keeps versions handed over for the reshard to map version `epoch`;
    /// refused if that reshard is not the one prepared here.
    pub fn receive(
        &self,
        epoch: u64,
        versions: Vec<(Key, Version)>,
        depends: &VectorClock,
    ) -> Result<(), String> {
        let mut incoming = lock(&self.incoming);
        if incoming.epoch != epoch || lock(&self.pending).is_none() {
            return Err(format!(
                "no reshard to map version {epoch} is prepared here"
            ));
        }
        for (key, version) in versions {
            match incoming.versions.get(&key) {
                Some(held) if !version.supersedes(held) => {}
                _ => {
                    incoming.versions.insert(key, version);
                }
            }
        }
        incoming.depends.merge(depends);
        Ok(())
    }

    /// Notes that `change`, asked of this node, makes map version `epoch`
    /// here (the last 16 are kept).
    pub fn note_made(&self, epoch: u64, change: Change) {
        let mut made = lock(&self.made);
        if made.len() == MADE_KEPT {
            made.pop_front();
        }
        made.push_back((epoch, change));
    }

    /// Forgets [`Cluster::note_made`]'s note: the map was not held.
    pub fn forget_made(&self, epoch: u64, change: &Change) {
        lock(&self.made).retain(|(e, c)| (*e, c) != (epoch, change));
    }

    /// The changes asked of this node that were lost when `held`, the map
    /// it made, was replaced by `by`: another map of the same version,
    /// made elsewhere at the same time without them (or a reshard's). They
    /// must be made again, on `by` (making one that holds already changes
    /// nothing).
    pub fn lost_changes(&self, held: &ShardMap, by: &ShardMap) -> Vec<Change> {
        let mine = held.by == self.me.to_string() && !held.reshard;
        if !mine || held.epoch != by.epoch || held.same_version(by) {
            return Vec::new();
        }
        let mut made = lock(&self.made);
        let (lost, kept) = made.drain(..).partition(|(e, _)| *e == held.epoch);
        *made = kept;
        lost.into_iter()
            .map(|(_, change)| change)
            .collect::<Vec<_>>()
    }

    /// Keeps `lost` changes (see [`Cluster::lost_changes`]) to be made
    /// again by [`Cluster::take_redo`]'s caller.
    pub fn redo_later(&self, lost: Vec<Change>) {
        lock(&self.redo).extend(lost);
    }

    /// The changes to make again, taken.
    pub fn take_redo(&self) -> Vec<Change> {
        std::mem::take(&mut *lock(&self.redo))
    }

    /// Notes that this node handed its versions of the keys that move off
    /// for the reshard to `map`, having made `own` writes.
    pub fn note_handed_off(&self, map: &ShardMap, own: u64) {
        *lock(&self.handed_off) = Some((map.epoch, map.by.clone(), own));
    }

    /// How many of its own writes this node handed off for the reshard to
    /// `map` (0 if it took no part in it).
    pub fn handed_off(&self, map: &ShardMap) -> u64 {
        match &*lock(&self.handed_off) {
            Some((epoch, by, own)) if *epoch == map.epoch && *by == map.by => *own,
            _ => 0,
        }
    }

    /// Takes the versions handed over for the reshard to `map`: the winner
    /// of each key, deleted keys left out (a key deleted in its old shard
    /// is absent in its new one; a tombstone of another group's write
    /// would never be collected here), with what they may depend on; and,
    /// apart, the tombstones of the deleted keys.
    pub fn take_incoming(&self, map: &ShardMap) -> Handed {
        let mut incoming = lock(&self.incoming);
        if !map.reshard || incoming.epoch != map.epoch || incoming.by != map.by {
            return Handed::default();
        }
        let taken = std::mem::take(&mut *incoming);
        let (deleted, live) = (taken.versions.into_iter()).partition(|(_, v)| v.is_tombstone());
        Handed {
            live,
            depends: taken.depends,
            deleted,
        }
    }
}

/// What a reshard handed a node over (see [`Cluster::take_incoming`]).
#[derive(Debug, Default)]
pub struct Handed {
    pub live: Vec<(Key, Version)>,
    pub depends: VectorClock,
    pub deleted: Vec<(Key, Version)>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::causal::{Dot, ReplicaId};
    use crate::store::Value;
    use std::collections::BTreeSet;

    fn nodes(n: usize) -> Vec<SocketAddress> {
        (0..n)
            .map(|i| SocketAddress::parse(&format!("10.10.0.{}:8085", i + 2)).unwrap())
            .collect()
    }

    #[test]
    fn only_a_newer_map_is_adopted_and_it_ends_the_reshard_it_completes() {
        let view = nodes(6);
        let map = ShardMap::initial(&view, 2);
        let cluster = Cluster::new(view[0].clone(), map.clone(), Duration::from_secs(3));
        assert!(!cluster.adopt(map.clone()));
        let live: BTreeSet<_> = view.iter().cloned().collect();
        let next = map.resharded(3, &live, &view[0]).unwrap();
        cluster.prepare(next.clone()).unwrap();
        // Another coordinator's reshard is refused meanwhile.
        let other = map.resharded(2, &live, &view[1]).unwrap();
        assert!(cluster.prepare(other).is_err());
        let moving: Vec<String> = (0..200)
            .map(|i| format!("k{i}"))
            .filter(|k| cluster.is_moving(k))
            .collect();
        assert!(!moving.is_empty() && moving.len() < 200);
        // Another coordinator's abort of the same version leaves it be.
        cluster.abort(&map.resharded(3, &live, &view[2]).unwrap());
        assert_eq!(cluster.pending(), Some(next.clone()));
        assert!(cluster.expire_pending(Duration::from_secs(60)).is_none());
        assert!(cluster.adopt(next.clone()));
        assert!(cluster.pending().is_none());
        assert!(!cluster.is_moving(&moving[0]));
        assert_eq!(cluster.map(), next);
    }

    /// A version of key `k` written by a member of shard 1.
    fn handed_version() -> (Key, Version) {
        let version = Version {
            value: Value::from_json("\"v\"").unwrap(),
            dot: Dot::new(ReplicaId::parse("a#s1e1.x").unwrap(), 1),
            lamport: 1,
        };
        (Key::parse("k").unwrap(), version)
    }

    #[test]
    fn another_change_of_the_reshards_version_loses_to_it_whoever_made_it() {
        // Two maps of one version: the reshard's, and one that adds a node,
        // made meanwhile by a node the reshard left out. Whichever address
        // sorts first, the reshard's wins: the other is held until the
        // reshard commits, and the keys handed over are taken in then.
        let view = nodes(12);
        let map = ShardMap::initial(&view[..6], 2);
        let live: BTreeSet<_> = view[..6].iter().cloned().collect();
        let next = map.resharded(3, &live, &view[1]).unwrap();
        let new = SocketAddress::parse("10.10.0.99:8085").unwrap();
        // 10.10.0.4 sorts after the reshard's 10.10.0.3, 10.10.0.10 before.
        for by in [&view[2], &view[8]] {
            let cluster = Cluster::new(view[0].clone(), map.clone(), Duration::from_secs(3));
            cluster.prepare(next.clone()).unwrap();
            let (key, version) = handed_version();
            (cluster.receive(next.epoch, vec![(key, version)], &VectorClock::new())).unwrap();
            let rival = map.with_node(&new, by).unwrap();
            assert_eq!(rival.epoch, next.epoch);
            assert!(
                next.newer_than(&rival) && !rival.newer_than(&next),
                "made by {by}"
            );
            assert!(cluster.adopt(rival.clone()), "newer than the map held");
            assert_eq!(cluster.pending(), Some(next.clone()), "made by {by}");
            assert!(cluster.adopt(next.clone()));
            assert!(!cluster.adopt(rival.clone()));
            assert!(cluster.pending().is_none());
            assert_eq!(cluster.take_incoming(&next).live.len(), 1, "made by {by}");
        }
    }

    #[test]
    fn a_change_made_here_is_lost_only_when_another_map_of_its_version_replaces_it() {
        let view = nodes(8);
        let map = ShardMap::initial(&view[..6], 2);
        let me = &view[0];
        let cluster = Cluster::new(me.clone(), map.clone(), Duration::from_secs(3));
        let added = Change::AddNode(view[6].clone());
        let mine = map.changed(&added, me).unwrap();
        assert!(cluster.adopt(mine.clone()));
        // A later map (built on this one) keeps the change.
        let later = mine
            .changed(&Change::AddNode(view[7].clone()), &view[1])
            .unwrap();
        assert_eq!(cluster.lost_changes(&mine, &later), []);
        // A map of the same version made elsewhere without it, by a larger
        // address or by a reshard, loses it: once.
        let live: BTreeSet<_> = view[..6].iter().cloned().collect();
        let rivals = [
            map.changed(&Change::RemoveNode(view[5].clone()), &view[3])
                .unwrap(),
            map.resharded(3, &live, &view[1]).unwrap(),
        ];
        for rival in rivals {
            assert!(rival.newer_than(&mine));
            cluster.note_made(mine.epoch, added.clone());
            assert_eq!(
                cluster.lost_changes(&mine, &rival),
                std::slice::from_ref(&added)
            );
            assert_eq!(cluster.lost_changes(&mine, &rival), [], "given once");
        }
        // A map made elsewhere loses nothing made here.
        cluster.note_made(mine.epoch, added.clone());
        let theirs = map.changed(&added, &view[2]).unwrap();
        let reshard = map.resharded(3, &live, &view[1]).unwrap();
        assert_eq!(cluster.lost_changes(&theirs, &reshard), []);
        assert_eq!(cluster.lost_changes(&mine, &mine), []);
        // A change whose map was not held is not made again.
        cluster.forget_made(mine.epoch, &added);
        let reshard = map.resharded(3, &live, &view[1]).unwrap();
        assert_eq!(cluster.lost_changes(&mine, &reshard), []);
    }

    #[test]
    fn a_map_that_replaces_the_reshard_drops_what_was_handed_over_for_it() {
        // Another coordinator's reshard of the same version, made by a
        // larger address, ends the one prepared here: the keys handed over
        // for it are placed by a map that will never be held.
        let view = nodes(6);
        let map = ShardMap::initial(&view, 2);
        let live: BTreeSet<_> = view.iter().cloned().collect();
        let next = map.resharded(3, &live, &view[1]).unwrap();
        let rival = map.resharded(1, &live, &view[4]).unwrap();
        assert!(rival.newer_than(&next));
        let cluster = Cluster::new(view[0].clone(), map.clone(), Duration::from_secs(3));
        cluster.prepare(next.clone()).unwrap();
        let (key, version) = handed_version();
        (cluster.receive(next.epoch, vec![(key, version)], &VectorClock::new())).unwrap();
        assert!(cluster.adopt(rival.clone()));
        assert!(cluster.pending().is_none());
        assert!(cluster.take_incoming(&rival).live.is_empty());
        assert!(cluster.take_incoming(&next).live.is_empty());
        assert_eq!(cluster.map(), rival);
    }

    #[test]
    fn a_node_heard_under_another_run_than_before_restarted() {
        let view = nodes(2);
        let cluster = Cluster::new(
            view[0].clone(),
            ShardMap::initial(&view, 1),
            Duration::from_secs(3),
        );
        let other = Cluster::new(
            view[1].clone(),
            ShardMap::initial(&view, 1),
            Duration::from_secs(3),
        );
        assert_ne!(cluster.run(), other.run(), "each start draws its run");
        assert!(
            other.run() >> 16 >= cluster.run() >> 16,
            "a later start, a larger run"
        );
        assert!(
            !cluster.note_run(&view[1], 7),
            "first heard: nothing to compare"
        );
        assert!(!cluster.note_run(&view[1], 7));
        assert!(cluster.note_run(&view[1], 8), "another run: a restart");
        assert!(!cluster.note_run(&view[1], 8));
        assert!(
            !cluster.note_run(&view[1], 7),
            "a late message of the run before"
        );
        assert!(!cluster.note_run(&view[1], 8));
        assert!(cluster.note_run(&view[1], 10), "a newer run again");
        assert!(
            !cluster.note_run(&view[1], 9),
            "an older run never heard: a late message too"
        );
        assert!(!cluster.note_run(&view[1], 10));
    }

    #[test]
    fn versions_handed_over_keep_the_winner_and_only_for_the_reshard_prepared() {
        let view = nodes(4);
        let map = ShardMap::initial(&view, 2);
        let cluster = Cluster::new(view[0].clone(), map.clone(), Duration::from_secs(3));
        let version = |lamport: u64, v: &str| Version {
            value: Value::from_json(&format!("\"{v}\"")).unwrap(),
            dot: Dot::new(ReplicaId::parse("a#s1e1.x").unwrap(), lamport),
            lamport,
        };
        let key = Key::parse("k").unwrap();
        let none = VectorClock::new();
        assert!(cluster
            .receive(2, vec![(key.clone(), version(1, "a"))], &none)
            .is_err());
        let live: BTreeSet<_> = view.iter().cloned().collect();
        let next = map.resharded(1, &live, &view[0]).unwrap();
        cluster.prepare(next.clone()).unwrap();
        cluster
            .receive(next.epoch, vec![(key.clone(), version(5, "new"))], &none)
            .unwrap();
        cluster
            .receive(next.epoch, vec![(key.clone(), version(3, "old"))], &none)
            .unwrap();
        // A key whose winner is a delete is not taken in at all.
        let gone = Key::parse("gone").unwrap();
        let deleted = Version {
            value: None,
            ..version(9, "x")
        };
        let handed = vec![(gone.clone(), version(2, "y")), (gone, deleted)];
        cluster.receive(next.epoch, handed, &none).unwrap();
        let versions = cluster.take_incoming(&next).live;
        assert_eq!(versions, vec![(key, version(5, "new"))]);
    }

    #[test]
    fn a_reshard_whose_coordinator_went_away_expires() {
        let view = nodes(4);
        let map = ShardMap::initial(&view, 1);
        let cluster = Cluster::new(view[0].clone(), map.clone(), Duration::from_secs(3));
        let live: BTreeSet<_> = view.iter().cloned().collect();
        let next = map.resharded(2, &live, &view[1]).unwrap();
        cluster.prepare(next.clone()).unwrap();
        assert!(cluster.is_moving("k1") || cluster.is_moving("k2") || cluster.is_moving("k3"));
        assert_eq!(cluster.expire_pending(Duration::ZERO), Some(next));
        assert!(cluster.pending().is_none());
        assert!(!cluster.is_moving("k1"));
    }

    #[test]
    fn relaying_nodes_spread_over_a_shards_members_and_each_keeps_to_one() {
        let view = nodes(12);
        let map = ShardMap::initial(&view, 2);
        let other = |me: &SocketAddress| {
            let mine = map.shard_of_node(me).expect("placed");
            *map.shards.keys().find(|&&s| s != mine).expect("two shards")
        };
        let mut firsts = BTreeSet::new();
        for me in &view {
            let cluster = Cluster::new(me.clone(), map.clone(), Duration::from_secs(3));
            for n in &view {
                cluster.heard(n);
            }
            let shard = other(me);
            let targets = cluster.targets(shard);
            assert_eq!(targets, cluster.targets(shard), "the same member each time");
            assert_eq!(targets.len(), 6, "every member of the shard, once");
            firsts.insert(targets[0].clone());
        }
        assert!(firsts.len() >= 3, "relays all went to {firsts:?}");
    }

    #[test]
    fn silent_nodes_are_not_live_and_are_tried_last() {
        let view = nodes(4);
        let map = ShardMap::initial(&view, 1);
        let cluster = Cluster::new(view[0].clone(), map, Duration::from_secs(3));
        cluster.heard(&view[2]);
        assert_eq!(
            cluster.live(),
            [view[0].clone(), view[2].clone()].into_iter().collect()
        );
        assert_eq!(
            cluster.targets(1),
            vec![view[2].clone(), view[1].clone(), view[3].clone()]
        );
    }

    #[test]
    fn a_hand_off_is_counted_only_for_the_map_it_was_made_for() {
        let view = nodes(6);
        let map = ShardMap::initial(&view, 2);
        let cluster = Cluster::new(view[0].clone(), map.clone(), Duration::from_secs(3));
        let live: BTreeSet<_> = view.iter().cloned().collect();
        let next = map.resharded(3, &live, &view[0]).unwrap();
        assert_eq!(cluster.handed_off(&next), 0, "no hand-off yet");
        cluster.note_handed_off(&next, 7);
        assert_eq!(cluster.handed_off(&next), 7);
        // Given up, the reshard's hand-off no longer counts.
        cluster.prepare(next.clone()).unwrap();
        cluster.abort(&next);
        assert_eq!(cluster.handed_off(&next), 0);
        cluster.note_handed_off(&next, 7);
        // The same version by another coordinator, or a later one: none.
        let rival = map.resharded(3, &live, &view[1]).unwrap();
        assert_eq!(cluster.handed_off(&rival), 0);
        let later = next.resharded(2, &live, &view[0]).unwrap();
        assert_eq!(cluster.handed_off(&later), 0);
    }
}
