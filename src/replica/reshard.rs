//! Keys moving between shards: what a replica hands to a key's new shard
//! when the store is resharded, what it takes in, and what it forgets.
//!
//! Versions cross shards as they are, with the dot of the write that made
//! them: a replica of the new shard counts no write of another shard
//! group, so the version is merged by the conflict rule alone and the dot
//! stays a foreign entry in the contexts of those who read it. What the
//! exporting replicas had applied (their clock and foreign frontier) joins
//! the importer's foreign frontier, so that every dependency a moved
//! version may have is still handed to its readers.

use crate::address::SocketAddress;
use crate::causal::{Dot, Retired, VectorClock};
use crate::store::tables::value_written_again;
use crate::store::{Key, Version};

use super::rescued::Rescued;
use super::state::Replica;
use super::timing::Millis;

/// How long the keys a reshard handed over deleted are remembered (see
/// [`Replica::note_handed_deletes`]): a node cut off during a reshard for
/// longer than this may bring back, when it returns, a value deleted
/// meanwhile.
pub const HANDED_DELETES_KEPT: Millis = 60 * 60 * 1000;

impl Replica {
    /// The versions (tombstones included) of every key `moving` names,
    /// with what they may depend on: this replica's applied clock and
    /// foreign frontier.
    pub fn export(&self, moving: impl Fn(&str) -> bool) -> (Vec<(Key, Version)>, VectorClock) {
        let versions = self
            .store
            .iter()
            .filter(|entry| moving(entry.key()))
            .map(|entry| (entry.to_key(), entry.to_version()))
            .collect();
        let mut depends = self.known.clock().clone();
        depends.merge(self.known.foreign());
        (versions, depends)
    }

    /// Merges versions another shard handed over by the conflict rule;
    /// `depends` (what they may depend on) joins the foreign frontier.
    pub fn import(&mut self, versions: Vec<(Key, Version)>, depends: &VectorClock) {
        self.known.note_foreign(depends);
        for (key, version) in versions {
            self.lamport = self.lamport.max(version.lamport);
            self.store.apply(key, version);
        }
        self.progress += 1;
    }

    /// The incarnations of this replica's group it retired, with the last
    /// write of each (for the other groups of a sharded store).
    pub fn own_retired(&self) -> Vec<Retired> {
        self.known
            .retired()
            .filter(|(id, _)| !self.known.is_foreign(id))
            .collect()
    }

    /// Takes another group's retirements: its incarnations' writes up to
    /// `last` are applied by every member there, so the entries naming
    /// them leave the foreign frontier and the contexts answered here.
    pub fn retire_foreign(&mut self, retired: &[Retired]) {
        for (id, retirement) in retired {
            if self.known.is_foreign(id) {
                self.known.retire_foreign(id, *retirement);
            }
        }
    }

    /// What this incarnation alone may hold, rescued when the node leaves
    /// its group without a reshard's hand-off (it was cut off while the
    /// store was resharded without it): the versions of the keys whose
    /// winner here is one of its own writes that no member of `staying`
    /// (the members that stay in its group) is known to have applied, and
    /// its last write. A write such a member applied is that group's: it
    /// holds it, or what replaced it (a delete this replica may not have
    /// applied yet, whose tombstone may be gone already).
    ///
    /// If this replica took part in the reshard, its first `handed_here`
    /// writes are not rescued either: it handed its versions of the keys
    /// that `moves` to their new shards, where the winner of each key was
    /// kept (a key deleted there is absent, and writing its value again
    /// would bring it back).
    pub fn rescued_on_leaving(
        &self,
        staying: &[SocketAddress],
        handed_here: u64,
        moves: impl Fn(&str) -> bool,
    ) -> Rescued {
        let me = &self.me.id;
        let kept = (self.view.peers().chain(self.view.suspects()))
            .filter(|(address, _)| staying.contains(address))
            .map(|(_, peer)| peer.applied(me))
            .max()
            .unwrap_or(0);
        let held = |key: &str| match moves(key) {
            true => kept.max(handed_here),
            false => kept,
        };
        Rescued::of(&self.store, me, held, self.known.count(me))
    }

    /// Remembers the keys a reshard handed over deleted, with their
    /// tombstones (not stored: see `Cluster::take_incoming`), for
    /// an hour (`HANDED_DELETES_KEPT`): a version of such a key, rescued from a
    /// node cut off during the reshard, is written again only if it beats
    /// the delete, which it does not if the delete saw it (see
    /// [`Replica::take_rescued`]).
    pub fn note_handed_deletes(&mut self, deleted: Vec<(Key, Version)>, now: Millis) {
        (self.handed_deletes).retain(|_, (_, until)| *until > now);
        for (key, version) in deleted {
            self.remember_handed_delete(key, version, now + HANDED_DELETES_KEPT);
        }
    }

    /// Keeps `version` as the handed-over delete of `key` until `until`,
    /// unless the one held already supersedes it.
    fn remember_handed_delete(&mut self, key: Key, version: Version, until: Millis) {
        match self.handed_deletes.get(&key) {
            Some((held, _)) if !version.supersedes(held) => {}
            _ => _ = self.handed_deletes.insert(key, (version, until)),
        }
    }

    /// The handed-over delete of `key` still remembered, if any.
    fn handed_delete(&self, key: &Key) -> Option<Version> {
        let (version, until) = self.handed_deletes.get(key)?;
        (*until > self.last_tick).then(|| version.clone())
    }

    /// The keys reshards handed over deleted, with their tombstones and how
    /// much longer (ms) each is remembered, for a replica copying this
    /// one's state: a member that joins the group after the reshard (or
    /// restarts) takes a rescue as the others would.
    pub(super) fn handed_deletes_to_copy(&self) -> Vec<(Key, Version, Millis)> {
        let now = self.last_tick;
        (self.handed_deletes.iter())
            .filter(|(_, (_, until))| *until > now)
            .map(|(key, (version, until))| (key.clone(), version.clone(), until - now))
            .collect()
    }

    /// Takes the handed-over deletes of a copied state (see
    /// [`Replica::handed_deletes_to_copy`]), each remembered for as much
    /// longer as the giver said (measured from here, so a little longer
    /// than at the giver: by the time the copy took).
    pub(super) fn adopt_handed_deletes(
        &mut self,
        copied: Vec<(Key, Version, Millis)>,
        now: Millis,
    ) {
        for (key, version, left) in copied {
            let left = left.min(HANDED_DELETES_KEPT);
            self.remember_handed_delete(key, version, now + left);
        }
    }

    /// Takes in versions rescued from a node that left its group: each that
    /// beats the version held here by the conflict rule (it would have won
    /// had it arrived) is written again as this replica's own, so that it
    /// spreads like a new write; returns how many were. A key a reshard
    /// handed over deleted counts as holding its tombstone.
    ///
    /// `writer` names the node's last write in the group it left. Its
    /// writes up to there that did not reach this group are now written
    /// again or were overwritten, so they count as applied: here at once,
    /// and at every member with the last write taken in (or, if none was,
    /// this replica's next), so that a context naming them is met rather
    /// than waited for until it fails. That write depends on everything
    /// applied here (the node's writes this replica had, among them), so
    /// a member counts them only once it holds all this replica held.
    pub fn take_rescued(&mut self, versions: Vec<(Key, Version)>, writer: Option<Dot>) -> usize {
        let mut winners: Vec<(Key, Version)> = versions
            .into_iter()
            // One applied here is held, or was overwritten or deleted
            // since (its tombstone perhaps forgotten already): never
            // written again.
            .filter(|(_, version)| !self.known.applied_here(&version.dot))
            .filter(|(key, version)| {
                let handed = || self.handed_delete(key);
                let current = self.store.get(key).or_else(handed);
                let beats = current.as_ref().is_none_or(|c| version.supersedes(c));
                let deletes_nothing =
                    version.is_tombstone() && current.as_ref().is_none_or(Version::is_tombstone);
                beats && !deletes_nothing
            })
            .collect();
        let written = winners.len();
        // The last one written again (or the next write) carries the count.
        let last = winners.pop();
        for (key, version) in winners {
            self.write_rescued(key, version);
        }
        self.cover_with_next_write(writer);
        if let Some((key, version)) = last {
            self.write_rescued(key, version);
        }
        written
    }

    /// Writes `version` of `key` again as this replica's own.
    fn write_rescued(&mut self, key: Key, version: Version) {
        self.lamport = self.lamport.max(version.lamport);
        let value = value_written_again(&key, &version);
        self.issue(key, value, VectorClock::new());
    }

    /// Counts the writes up to `writer` as applied here, and has the next
    /// write issued carry them to the members.
    fn cover_with_next_write(&mut self, writer: Option<Dot>) {
        let Some(writer) = writer else {
            return;
        };
        if self.known.is_foreign(&writer.replica) {
            return;
        }
        self.to_cover.deps.merge(self.known.clock());
        self.known.cover(&writer);
        self.progress += 1;
        self.to_cover.dots.push(writer);
    }

    /// Keeps what a former incarnation of this replica wrote, read from a
    /// disk it could not trust (it crashed while merging a member's copy),
    /// to take in once this one is ready: the versions that would have won
    /// then spread as new writes, so that no write that incarnation
    /// acknowledged, and no member holds, is lost; and its writes up to
    /// its last count as applied, so that a context naming one the members
    /// never got is met (as for writes rescued from a node that left its
    /// group: see [`Replica::take_rescued`]).
    pub fn rescue_when_ready(&mut self, rescued: Rescued) {
        self.to_rescue = rescued;
    }

    /// Takes in what [`Replica::rescue_when_ready`] kept, once ready.
    pub(super) fn rescue_if_ready(&mut self) {
        if self.to_rescue.is_empty() || !self.is_ready() || self.draining {
            return;
        }
        let Rescued { versions, writer } = std::mem::take(&mut self.to_rescue);
        let kept = versions.len();
        let written = self.take_rescued(versions, writer);
        tracing::info!(
            kept,
            written,
            "a former incarnation's writes, kept on disk, written again"
        );
    }

    /// Forgets, without tombstones, the keys `keep` refuses (moved to
    /// another shard); returns how many.
    pub fn forget_keys(&mut self, keep: impl Fn(&str) -> bool) -> usize {
        let forgotten = self.store.retain_keys(keep);
        if forgotten > 0 {
            self.progress += 1;
        }
        forgotten
    }
}
