//! Copying another replica's whole state, a page at a time.
//!
//! A starting replica copies the state of a member; a replica that lacks
//! what another forgot (see [`super::join`]) copies that one's. The copy
//! comes in pages of the giver's slots ([`Request::Snapshot`] with a
//! cursor), each asked for as soon as the previous one arrives, so that
//! it is on its way while that one is merged: neither side holds more than
//! two pages, and the giver serves clients in between.
//! The first page carries what the copy accounts for ([`Start`]): the
//! giver's clock, retirements and collected deletes as the copy began.
//!
//! Each page is merged by the store's rule (see [`crate::store`]'s copy
//! module): nothing either side deleted and forgot comes back. Once every
//! page is in, the slots the copy did not touch are swept, a batch per
//! tick, and the copy's clock and records are adopted only then, so that
//! no client is told a write is applied here while its effects are not.
//! Pages taken while the giver kept writing may carry versions newer than
//! the copy's clock; their writes arrive later like any other and change
//! nothing.
//!
//! A starting replica serves no client until its copy is merged. A running
//! one keeps serving during the copy, unless it lacks writes of an
//! incarnation the giver retired: contexts no longer name those writes, so
//! nothing else would make a client wait for them. A running replica sets
//! the versions of writes it does not count aside until the last page is
//! in: merged at once, they would be served before their writes count
//! here, and stay so for good if the copy were given up (the giver dead,
//! the writes perhaps nowhere else).

use std::collections::BTreeMap;

use tracing::{info, warn};

use crate::address::SocketAddress;
use crate::causal::ReplicaId;
use crate::store::{Key, Marks, Store, Version};

use super::message::{Member, Page, Refusal, Reply, Request, Start, Versions};
use super::outputs::Effect;
use super::state::{Replica, Sync, Transfer};
use super::timing::Millis;

/// Consecutive failed page requests after which a copy is given up.
const MAX_FAILURES: u32 = 5;

/// Text carried by one page, past its first key.
const PAGE_BYTES: usize = 8 << 20;

/// The most keys a copy makes room for at once (the count its first page
/// announces is the giver's word, not a promise).
const MAX_RESERVED_KEYS: usize = 1 << 27;

/// What a tick's batch of the sweep may spend once every page is in (see
/// [`Store::sweep`]): about 2M slots the copy touched (a few milliseconds),
/// or 64k it did not.
const SWEEP_BUDGET: u32 = 1 << 21;

impl Replica {
    /// Page `cursor` of this replica's state, for a replica copying it
    /// (what [`Request::Snapshot`] is answered with; `fresh` if that one
    /// is starting). Refused unless this replica is ready, but for one
    /// detail: a running replica that is itself copying what another
    /// forgot still gives its state to another running one. Replicas that
    /// each lack what another forgot (after a partition that split them
    /// three ways) would otherwise wait on each other for good; a running
    /// replica's state is whole, and the copier merges it by the same
    /// rule as any other.
    pub fn page(&self, cursor: u32, fresh: bool) -> Reply {
        let gives = match fresh {
            true => self.is_ready(),
            false => self.is_synced() && !self.is_removed(),
        };
        if !gives || self.draining {
            return Reply::Refused {
                from: self.me.clone(),
                reason: Refusal::NotReady,
            };
        }
        let (image, next) = self
            .store
            .image_page(cursor, self.timing.page_keys, PAGE_BYTES);
        let start = (cursor == 0).then(|| Start {
            clock: self.known.clock().clone(),
            retired: self.known.retired().collect(),
            collected: self.collected.clone(),
            collected_lamport: self.collected_lamport,
            lamport: self.lamport,
            pending: self.buffer.iter().cloned().collect(),
            foreign: self.known.foreign().clone(),
            handed_deletes: self.handed_deletes_to_copy(),
            keys: self.store.held(),
        });
        Reply::Snapshot {
            from: self.me.clone(),
            page: Page {
                versions: Versions::Image(image),
                next,
                start,
            },
        }
    }

    /// Starts copying the state of `from`, unless a copy is in progress.
    pub(super) fn start_transfer(&mut self, from: &SocketAddress, blocking: bool, now: Millis) {
        if let Some(transfer) = &mut self.transfer {
            transfer.blocking |= blocking && transfer.from == *from;
            return;
        }
        info!(peer = %from, "copying a member's state");
        self.transfer = Some(Transfer {
            from: from.clone(),
            giver: None,
            blocking,
            start: None,
            next: Some(0),
            sweep: None,
            marks: Marks::default(),
            aside: BTreeMap::new(),
            replays: Vec::new(),
            arrived: Vec::new(),
            in_flight: false,
            failures: 0,
            retry_at: now,
            pages: 0,
            keys: 0,
        });
        self.request_page(now);
    }

    fn request_page(&mut self, now: Millis) {
        let Some(transfer) = &mut self.transfer else {
            return;
        };
        let Some(cursor) = transfer.next else {
            return;
        };
        if transfer.in_flight || now < transfer.retry_at {
            return;
        }
        transfer.in_flight = true;
        let to = transfer.from.clone();
        let request = Request::Snapshot {
            from: self.me.clone(),
            cursor,
            fresh: !self.is_synced(),
        };
        self.send(&to, request);
    }

    /// A page arrived: keep it for [`Replica::merge_pages`] and ask for the
    /// next at once, so that the giver prepares that one while this one is
    /// merged.
    pub(super) fn accept_page(&mut self, from: &Member, page: Page, now: Millis) {
        let Some(transfer) = &mut self.transfer else {
            return;
        };
        if transfer.from != from.address || transfer.next.is_none() {
            return;
        }
        transfer.in_flight = false;
        transfer.failures = 0;
        if transfer.giver.as_ref().is_some_and(|id| *id != from.id) {
            // The giver restarted: what it sends now is another state.
            return self.abandon_transfer(&from.address);
        }
        if transfer.start.is_none() {
            let Some(start) = page.start else {
                warn!(peer = %from.address, "a copy began without its first page; given up");
                self.transfer = None;
                return;
            };
            let keys = start.keys.min(MAX_RESERVED_KEYS);
            self.store
                .reserve_keys(keys.saturating_sub(self.store.held()));
            transfer.start = Some(start);
            transfer.giver = Some(from.id.clone());
        }
        transfer.pages += 1;
        transfer.keys += page.versions.len();
        transfer.next = page.next;
        transfer.arrived.push(page.versions);
        self.request_page(now);
    }

    /// Merges the pages that arrived since the last call; once the last
    /// one is merged, starts the sweep. Whoever hands this replica a page
    /// calls it next (the node on its blocking pool, so that the next page
    /// is on its way meanwhile); each tick calls it too.
    pub fn merge_pages(&mut self, now: Millis) {
        let Some(mut transfer) = self.transfer.take() else {
            return;
        };
        for versions in std::mem::take(&mut transfer.arrived) {
            self.merge_page(&mut transfer, versions);
        }
        if transfer.next.is_none() && transfer.sweep.is_none() {
            let aside: Vec<(Key, Version)> =
                std::mem::take(&mut transfer.aside).into_iter().collect();
            let horizon = self.collected_lamport;
            let known = &self.known;
            let seen = |dot: &crate::causal::Dot| known.applied_here(dot);
            let met = self
                .store
                .merge_page(aside, seen, &mut transfer.marks, horizon);
            transfer.replays.extend(met);
            transfer.sweep = Some(0);
            self.transfer = Some(transfer);
            // The last page starts the sweep at once, not at the next tick.
            return self.step_transfer(now);
        }
        self.transfer = Some(transfer);
    }

    /// Merges one page of the copy in progress, `transfer`.
    fn merge_page(&mut self, transfer: &mut Transfer, versions: Versions) {
        let known = &self.known;
        // Another group's write is never seen here, even if that group
        // retired its writer: its version, handed over by a reshard, is
        // not one this replica deleted.
        let seen = |dot: &crate::causal::Dot| known.applied_here(dot);
        if let (Versions::Image(image), Sync::Joining { .. }) = (&versions, &self.sync) {
            self.lamport = self.lamport.max(image.max_lamport());
            self.store.merge_image(image, seen, &mut transfer.marks, 0);
            return;
        }
        let versions = versions.into_list();
        for (_, version) in &versions {
            self.lamport = self.lamport.max(version.lamport);
        }
        let versions = match self.sync {
            Sync::Synced => {
                let (counted, new): (Vec<_>, Vec<_>) = versions
                    .into_iter()
                    .partition(|(_, v)| known.contains(&v.dot));
                for (key, version) in new {
                    self.store.mark(&key, &mut transfer.marks);
                    match transfer.aside.get(&key) {
                        Some(held) if !version.supersedes(held) => {}
                        _ => _ = transfer.aside.insert(key, version),
                    }
                }
                counted
            }
            Sync::Joining { .. } => versions,
        };
        self.store
            .merge_page(versions, seen, &mut transfer.marks, 0);
    }

    /// A page request failed: ask again a little later, or give up.
    pub(super) fn on_page_failed(&mut self, to: &SocketAddress, now: Millis) {
        let retry = self.timing.join_retry;
        let Some(transfer) = self.transfer.as_mut().filter(|t| t.from == *to) else {
            return;
        };
        transfer.in_flight = false;
        transfer.failures += 1;
        transfer.retry_at = now + retry;
        if transfer.failures >= MAX_FAILURES {
            self.abandon_transfer(to);
        }
    }

    /// Gives up the copy from `from`, if one is in progress. A starting
    /// replica drops the pages it merged: it holds nothing until a copy is
    /// whole. A running one merged only versions of writes it counts: they
    /// stay, and what it had set aside goes.
    pub(super) fn abandon_transfer(&mut self, from: &SocketAddress) {
        if self
            .transfer
            .as_ref()
            .is_some_and(|t| t.from == *from && t.sweep.is_none())
        {
            warn!(peer = %from, "gave up copying a member's state");
            self.transfer = None;
            if !self.is_synced() {
                self.store = Store::new();
            }
        }
    }

    /// Advances the copy in progress: retries a page, or sweeps a batch of
    /// slots and, at the end, adopts what the copy accounts for.
    pub(super) fn step_transfer(&mut self, now: Millis) {
        if self
            .transfer
            .as_ref()
            .is_some_and(|t| !t.arrived.is_empty())
        {
            return self.merge_pages(now);
        }
        let Some(mut transfer) = self.transfer.take() else {
            return;
        };
        let (Some(cursor), Some(start)) = (transfer.sweep, transfer.start.as_ref()) else {
            self.transfer = Some(transfer);
            self.request_page(now);
            return;
        };
        let retired: BTreeMap<&ReplicaId, u64> =
            start.retired.iter().map(|(id, r)| (id, r.last)).collect();
        let count_there = |id: &ReplicaId| {
            start
                .clock
                .get(id)
                .max(retired.get(id).copied().unwrap_or(0))
        };
        // A starting replica's own versions met nothing: it had none.
        let horizon = if self.is_synced() {
            start.collected_lamport
        } else {
            0
        };
        let next = self.store.sweep(
            cursor,
            SWEEP_BUDGET,
            &transfer.marks,
            count_there,
            horizon,
            &mut transfer.replays,
        );
        match next {
            Some(cursor) => {
                transfer.sweep = Some(cursor);
                self.transfer = Some(transfer);
            }
            None => self.finish_transfer(transfer, now),
        }
    }

    /// Writes again, as this replica's own, the values a merge kept that
    /// may have met a delete forgotten on one side: above everything, they
    /// win everywhere, where the tombstone is still held too. A value
    /// overwritten since is left alone.
    fn replay(&mut self, replays: Vec<(Key, Version)>) {
        let replayed = self.write_again(replays);
        if replayed > 0 {
            info!(
                replayed,
                "values that may have met a forgotten delete written again"
            );
        }
    }

    /// Every page is merged and swept: count what the copy accounts for.
    fn finish_transfer(&mut self, transfer: Transfer, now: Millis) {
        let start = transfer.start.expect("a swept copy has begun");
        self.count_retired(&start.retired);
        self.known.note_foreign(&start.foreign);
        self.adopt_handed_deletes(start.handed_deletes, now);
        let grew = !start.collected.covered_by(&self.collected);
        self.collected.merge(&start.collected);
        self.collected_lamport = self.collected_lamport.max(start.collected_lamport);
        self.progress += 1;
        self.absorb(&start.clock, start.lamport, start.pending, now);
        self.replay(transfer.replays);
        info!(
            peer = %transfer.from,
            keys = transfer.keys,
            pages = transfer.pages,
            "copied a member's state"
        );
        if self.sync != Sync::Synced {
            info!("synced");
            self.sync = Sync::Synced;
        }
        // Join every member again: the giver (and any other that asked)
        // can now vet this replica. If what this replica forgot grew by
        // what the giver forgot, members vetted before may not hold it:
        // their answers vet them anew. Writes queued before the copy may
        // be ones the copy's merge replayed, or older than what the giver
        // forgot: the queues go, and peers pull what they lack instead.
        let request = self.join_request();
        let members: Vec<SocketAddress> = self.view.peers().map(|(a, _)| a.clone()).collect();
        for member in members {
            if let Some(peer) = self.view.peer_mut(&member).filter(|_| grew) {
                peer.vetted = false;
            }
            self.outbox.push(Effect::DropQueue {
                peer: member.clone(),
            });
            self.rejoined.insert(member.clone(), now);
            self.send(&member, request.clone());
        }
    }
}
