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

impl Incoming {
    /// Whether these are the keys handed over for the reshard to `map`.
    fn is_for(&self, map: &ShardMap) -> bool {
        (self.epoch, self.by.as_str()) == (map.epoch, map.by.as_str())
    }
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
        let ends = pending
            .as_ref()
            .map(|p| (map.same_version(p), map.newer_than(p)));
        if let Some((committed, replaced)) = ends.filter(|(c, r)| *c || *r) {
            if replaced && !committed {
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
        if !incoming.is_for(&map) {
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
        if !map.reshard || !incoming.is_for(map) {
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
