//! The disk of a running replica: the mirror of its state.
//!
//! After each step of the replica, [`Disk::save`] (under the replica's
//! lock, so steps are numbered in the order they ran) stages what the step
//! changed: the new version of every key changed, each entry of the
//! applied clock that changed, and the rest of the replica's state
//! ([`Saved`](crate::replica::saved::Saved)) when it changed. Staging only
//! encodes them into memory; a key changed again before its stage is
//! committed is written once, in its last version.
//!
//! The committer takes everything staged and commits it to the journal as
//! one atomic batch, in step order, and writes the journal to the OS. Under
//! `DURABILITY=os` a step's commit is left to a task queued on the HTTP
//! worker that ran it ([`Disk::flush_soon`]), behind the requests that
//! worker has ready: one commit then takes the steps of all of them
//! (group commit, one write to the OS for many steps), and the batch is
//! durable once written. Under `fsync` the sync thread
//! ([`super::sync`]) commits and `fdatasync`s the journal, however many
//! steps were staged while the last sync ran (group commit), so the
//! replica never waits for the device under its lock. A crash therefore
//! keeps a prefix of the steps, never part of one. The number of the last
//! durable step is published; answers and writes to peers wait until it
//! covers the step that produced them ([`Disk::settled`]).
//!
//! A full disk is met before it fails a write: while the file system has
//! less than [`RESERVE`] bytes free (besides twice what the write brings),
//! [`Disk::refusal`] says why writes are refused, before they are applied;
//! they resume once there is room. A write or sync that fails all the same
//! (an I/O error, the space taken by something else meanwhile) stops the
//! replica at once ([`fail_stop`]): the step it belonged to was applied in
//! memory but is not on disk, so carrying on would either acknowledge
//! what may not be kept or, after a crash, issue its event id again for
//! another write. Nothing the step produced has left the replica (its
//! answers and writes for peers wait until it is durable), and a restart
//! recovers the state on disk.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use fjall::PersistMode;

use super::codec::encode;
use super::db::{item, Handles, Item};
use super::durable_step::Durable;
use super::layout::{clock_key, free_space, Durability, BATCH, REPLICA};
use crate::causal::VectorClock;
use crate::replica::Replica;

/// Free space below which writes are refused, so that the journal, the
/// flushes of the tree and compaction never meet a full disk mid-write.
pub const RESERVE: u64 = 8 << 20;

/// How many keys one batch of a full copy of the store holds.
const DUMP_BATCH: usize = 65_536;

/// What the disk reports.
#[derive(Clone, Debug, Default)]
pub struct Status {
    /// The last step that is durable (see the module doc).
    pub durable: u64,
    /// Free bytes on the data directory's file system, when last looked
    /// (less what was written since).
    pub free: u64,
    /// Journal syncs made (under `fsync`).
    pub syncs: u64,
}

/// Stops the process: a write to the data directory failed (see the
/// module doc).
pub(super) fn fail_stop(dir: &Path, error: &dyn std::fmt::Display) -> ! {
    tracing::error!(dir = %dir.display(), %error, "a write to the data directory failed; stopping rather than acknowledge what may not be kept");
    eprintln!(
        "causalkv: DATA_DIR: {}: a write failed ({error}); stopped so that nothing unkept is acknowledged",
        dir.display()
    );
    std::process::exit(1)
}

/// Called with the number of the last durable step when it grows.
pub(super) type OnDurable = OnceLock<Box<dyn Fn(u64) + Send + Sync>>;

/// Changes by key: the last one staged for each.
type Changes = HashMap<Box<[u8]>, Option<Vec<u8>>>;

/// What [`Disk::save`] keeps, under the lock of the replica's steps.
pub(super) struct Staged {
    /// Whether the database holds the replica's whole store (so only
    /// changes need writing).
    established: bool,
    /// The fingerprint of the saved state last staged, to skip writing
    /// it unchanged.
    fingerprint: u64,
    /// The applied clock as last staged, entry by entry.
    clock: VectorClock,
    /// Changes of steps not committed yet.
    data: Changes,
    meta: Changes,
    /// The number of the last step staged.
    last: u64,
}

/// Wakes the sync thread: cheap when it is awake already.
#[derive(Default)]
pub(super) struct Wake {
    work: AtomicBool,
    stop: AtomicBool,
    lock: Mutex<()>,
    cond: Condvar,
}

impl Wake {
    fn notify(&self) {
        let _lock = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        self.cond.notify_one();
    }

    /// Says there is work.
    pub(super) fn nudge(&self) {
        if !self.work.swap(true, Ordering::AcqRel) {
            self.notify();
        }
    }

    /// Asks the thread to stop.
    fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        self.notify();
    }

    /// Waits for work or a stop, at most `timeout`; whether to stop.
    pub(super) fn wait(&self, timeout: Duration) -> bool {
        loop {
            if self.stop.load(Ordering::Acquire) {
                return true;
            }
            if self.work.swap(false, Ordering::AcqRel) {
                return false;
            }
            let lock = self.lock.lock().unwrap_or_else(|p| p.into_inner());
            // A nudge between the look above and this lock finds the
            // thread waiting below (it notifies under the lock).
            if self.work.load(Ordering::Acquire) || self.stop.load(Ordering::Acquire) {
                continue;
            }
            let (_lock, waited) = self
                .cond
                .wait_timeout(lock, timeout)
                .unwrap_or_else(|p| p.into_inner());
            if waited.timed_out() {
                return self.stop.load(Ordering::Acquire);
            }
        }
    }
}

/// What the disk and its sync thread share.
pub(super) struct Shared {
    pub(super) dir: PathBuf,
    pub(super) mode: Durability,
    staged: Mutex<Staged>,
    /// The database, behind the lock that keeps commits in step order.
    committer: Mutex<Handles>,
    /// The number of the last step staged.
    saved: AtomicU64,
    /// The number of the last durable step, and who waits on it.
    durable: Durable,
    /// See [`Status`].
    pub(super) free: AtomicU64,
    pub(super) syncs: AtomicU64,
    pub(super) wake: Wake,
    on_durable: OnDurable,
    /// Under `os`: a commit of what is staged is scheduled on a worker
    /// ([`Disk::flush_soon`]).
    flush_scheduled: AtomicBool,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    /// The database, once nobody else commits.
    pub(super) fn committer(&self) -> MutexGuard<'_, Handles> {
        lock(&self.committer)
    }

    /// The number of the last step staged.
    pub(super) fn saved(&self) -> u64 {
        self.saved.load(Ordering::Acquire)
    }

    /// The number of the last durable step.
    pub(super) fn durable(&self) -> u64 {
        self.durable.last()
    }

    /// Commits every step staged so far as one batch, with the committer
    /// held; returns the number of the last step committed. The caller
    /// then writes the journal out (and syncs it) before calling
    /// [`Shared::made_durable`] with that number.
    pub(super) fn commit_staged(&self, handles: &Handles) -> u64 {
        let (data, mut meta, last) = {
            let mut staged = lock(&self.staged);
            let last = staged.last;
            if staged.data.is_empty() && staged.meta.is_empty() {
                return last;
            }
            (
                std::mem::take(&mut staged.data),
                std::mem::take(&mut staged.meta),
                last,
            )
        };
        meta.insert(BATCH.as_bytes().into(), Some(last.to_le_bytes().to_vec()));
        if let Err(error) = handles.commit(
            data.iter().map(|(k, v)| (&**k, v.as_deref())),
            meta.iter().map(|(k, v)| (&**k, v.as_deref())),
        ) {
            fail_stop(&self.dir, &error);
        }
        last
    }

    /// Marks steps up to `durable` durable and tells who waits.
    pub(super) fn made_durable(&self, durable: u64) {
        if self.durable.raise(durable) {
            if let Some(f) = self.on_durable.get() {
                f(durable);
            }
        }
    }
}

/// The handle a node keeps on its disk.
pub struct Disk {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Disk {
    /// Starts the sync thread (with `spawn`) on opened `handles`.
    /// `established` says the database already mirrors the replica's store
    /// (a restored replica); `last` is the number of the last step on
    /// disk: numbers go on from there.
    pub(super) fn start(
        dir: PathBuf,
        mode: Durability,
        handles: Handles,
        established: bool,
        last: u64,
        spawn: impl FnOnce(Arc<Shared>) -> JoinHandle<()>,
    ) -> Disk {
        let free = free_space(&dir);
        let shared = Arc::new(Shared {
            dir,
            mode,
            staged: Mutex::new(Staged {
                established,
                fingerprint: 0,
                clock: VectorClock::new(),
                data: Changes::new(),
                meta: Changes::new(),
                last,
            }),
            committer: Mutex::new(handles),
            saved: AtomicU64::new(last),
            durable: Durable::new(last),
            free: AtomicU64::new(free),
            syncs: AtomicU64::new(0),
            wake: Wake::default(),
            on_durable: OnceLock::new(),
            flush_scheduled: AtomicBool::new(false),
        });
        let thread = spawn(shared.clone());
        Disk {
            shared,
            thread: Mutex::new(Some(thread)),
        }
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// The durability mode.
    pub fn mode(&self) -> Durability {
        self.shared.mode
    }

    /// Calls `f` with the number of the last durable step whenever it
    /// grows. Set once.
    pub fn on_durable(&self, f: impl Fn(u64) + Send + Sync + 'static) {
        let _ = self.shared.on_durable.set(Box::new(f));
    }

    /// Stages what the replica's last step changed, and returns the number
    /// of that step (the last one, if the step changed nothing). Call under
    /// the replica's lock, after every step.
    pub fn save(&self, replica: &mut Replica) -> u64 {
        let shared = &self.shared;
        let mut staged = lock(&shared.staged);
        if !staged.established {
            if !replica.is_synced() {
                // Copying its first state: nothing worth keeping yet.
                return staged.last;
            }
            drop(staged);
            return self.dump(replica);
        }
        // Already so, but for a replica just restored: the disk held its
        // store before it did.
        replica.track_changes();
        let changed = replica.take_changed();
        let mut bytes = stage_state(&mut staged, replica);
        if changed.is_empty() && bytes == 0 {
            return staged.last;
        }
        let store = replica.store();
        for key in changed {
            let version = store.get_str(&key).map(|v| encode(&v));
            bytes += key.len() + version.as_ref().map_or(0, Vec::len);
            staged
                .data
                .insert(Box::<[u8]>::from(key.as_bytes()), version);
        }
        staged.last += 1;
        let step = staged.last;
        shared.saved.store(step, Ordering::Release);
        drop(staged);
        self.wrote(bytes);
        if shared.mode == Durability::Fsync {
            shared.wake.nudge();
        }
        step
    }

    /// Counts `bytes` as taken from the free space.
    fn wrote(&self, bytes: usize) {
        let _ = (self.shared.free).fetch_update(Ordering::AcqRel, Ordering::Acquire, |free| {
            Some(free.saturating_sub(bytes as u64))
        });
    }

    /// Writes the whole store and state of a replica that just got one
    /// (copied from a member, or started a new store), then tracks its
    /// changes; returns the number of the last step written.
    fn dump(&self, replica: &mut Replica) -> u64 {
        let shared = &self.shared;
        let handles = shared.committer();
        // Nothing is staged before the first dump: every step so far is
        // committed.
        let mut last = shared.commit_staged(&handles);
        let mut commit = |data: &mut Vec<Item>, meta: &[Item]| {
            last += 1;
            let number = (BATCH.as_bytes().into(), Some(last.to_le_bytes().to_vec()));
            let meta = meta.iter().chain([&number]).map(item);
            if let Err(error) = handles.commit(data.iter().map(item), meta) {
                fail_stop(&shared.dir, &error);
            }
            let bytes: usize = data
                .iter()
                .map(|(k, v)| k.len() + v.as_ref().map_or(0, Vec::len))
                .sum();
            self.wrote(bytes);
            data.clear();
        };
        replica.track_changes();
        let mut data = Vec::with_capacity(DUMP_BATCH.min(replica.store().len()));
        for entry in replica.store().iter() {
            data.push((
                Box::<[u8]>::from(entry.key().as_bytes()),
                Some(encode(&entry.to_version())),
            ));
            if data.len() == DUMP_BATCH {
                commit(&mut data, &[]);
            }
        }
        let mut staged = lock(&shared.staged);
        stage_state(&mut staged, replica);
        let meta: Vec<Item> = staged.meta.drain().collect();
        commit(&mut data, &meta);
        staged.established = true;
        staged.last = last;
        shared.saved.store(last, Ordering::Release);
        drop(staged);
        drop(handles);
        self.flush();
        if shared.mode == Durability::Fsync {
            shared.wake.nudge();
        }
        last
    }

    /// Under `os`: commits every step staged so far and writes the journal
    /// to the OS, making them durable, unless another caller did. Call
    /// after a step, once the replica's lock is released (under `fsync`
    /// the sync thread does it).
    pub fn flush(&self) {
        flush(&self.shared);
    }

    /// Under `os`: has what is staged committed and written to the OS once
    /// the HTTP worker running this call has served the requests it has
    /// ready (a task queued behind them), so that the steps of all those
    /// requests go out in one write: group commit, as the sync thread does
    /// under `fsync`. Answers and writes for peers wait until their step is
    /// durable all the same. Outside a worker, commits at once.
    pub fn flush_soon(&self) {
        let shared = &self.shared;
        if shared.mode != Durability::Os || shared.durable() >= shared.saved() {
            return;
        }
        if actix_rt::Arbiter::try_current().is_none() {
            return self.flush();
        }
        // One scheduled commit takes every step staged before it starts:
        // the flag is cleared before it commits, so a step staged while
        // it is set is in that commit.
        if shared.flush_scheduled.swap(true, Ordering::AcqRel) {
            return;
        }
        let shared = shared.clone();
        actix_rt::spawn(async move {
            shared.flush_scheduled.store(false, Ordering::Release);
            flush(&shared);
        });
    }

    /// The number of the last step staged (every step is staged before its
    /// lock is released).
    pub fn staged(&self) -> u64 {
        self.shared.saved()
    }

    /// The number of the last durable step.
    pub fn durable(&self) -> u64 {
        self.shared.durable()
    }

    /// What the disk reports now.
    pub fn status(&self) -> Status {
        Status {
            durable: self.durable(),
            free: self.shared.free.load(Ordering::Acquire),
            syncs: self.shared.syncs.load(Ordering::Acquire),
        }
    }

    /// Waits until step `seq` is durable (an error only once the disk is
    /// closed, at shutdown).
    pub async fn settled(&self, seq: u64) -> Result<(), Arc<str>> {
        self.shared.durable.reached(seq).await
    }

    /// Why a write bringing `incoming` bytes is refused now: the file
    /// system is (nearly) full.
    pub fn refusal(&self, incoming: usize) -> Option<String> {
        let free = self.shared.free.load(Ordering::Acquire);
        let needed = RESERVE.saturating_add(2 * incoming as u64);
        (free < needed).then(|| {
            format!(
                "no space left on the device of {}: {free} bytes free, {needed} needed",
                self.shared.dir.display(),
            )
        })
    }

    /// Bytes the database takes on disk.
    pub fn disk_bytes(&self) -> u64 {
        self.shared.committer().db.disk_space().unwrap_or(0)
    }

    /// Makes everything durable, marks the shutdown clean, and stops the
    /// sync thread. Nothing is saved afterwards.
    pub fn close(&self) {
        self.shared.wake.stop();
        let thread = lock(&self.thread).take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

/// See [`Disk::flush`].
fn flush(shared: &Shared) {
    if shared.mode != Durability::Os {
        return;
    }
    let target = shared.saved();
    if shared.durable() >= target {
        return;
    }
    let handles = shared.committer();
    if shared.durable() >= target {
        return;
    }
    let last = shared.commit_staged(&handles);
    if let Err(error) = handles.db.persist(PersistMode::Buffer) {
        fail_stop(&shared.dir, &error);
    }
    shared.made_durable(last);
}

/// Stages the records of the replica's state that changed since the last
/// step: each entry of its applied clock (a write changes only its
/// writer's), and the saved state when its fingerprint changed. Returns
/// how many bytes they take.
fn stage_state(staged: &mut Staged, replica: &Replica) -> usize {
    let mut bytes = 0;
    let mut record = |staged: &mut Staged, key: Box<[u8]>, value: Option<Vec<u8>>| {
        bytes += key.len() + value.as_ref().map_or(0, Vec::len);
        staged.meta.insert(key, value);
    };
    let clock = replica.applied();
    for (id, n) in clock.iter() {
        if staged.clock.get(id) != n {
            record(staged, clock_key(id), Some(n.to_le_bytes().to_vec()));
            staged.clock.set(id.clone(), n);
        }
    }
    if staged.clock.len() > clock.len() {
        let gone: Vec<_> = (staged.clock.iter())
            .filter(|(id, _)| clock.get(id) == 0)
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            record(staged, clock_key(&id), None);
            staged.clock.set(id, 0);
        }
    }
    let fingerprint = replica.saved_fingerprint();
    if fingerprint != staged.fingerprint {
        staged.fingerprint = fingerprint;
        let saved = serde_json::to_vec(&replica.saved()).expect("the saved state prints");
        record(staged, REPLICA.as_bytes().into(), Some(saved));
    }
    bytes
}
