//! The disk of a running replica: the mirror of its state.
//!
//! After each step of the replica, [`Disk::save`] (under the replica's
//! lock, so batches are numbered and written in the order the steps ran)
//! turns what changed into one batch: the new version of every key
//! changed, each entry of the applied clock that changed, and the rest of
//! the replica's state ([`Saved`](crate::replica::saved::Saved)) when it
//! changed. It commits the batch to the journal at once, which writes it
//! to the OS: under `DURABILITY=os` the batch is then durable. Under
//! `fsync`, the sync thread ([`super::sync`]) makes every batch committed
//! so far durable with one `fdatasync` of the journal, however many
//! arrived while the last one ran (group commit). The number of the last
//! durable batch is published; answers and writes to peers wait until it
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

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::JoinHandle;

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use tokio::sync::watch;

use super::codec::encode;
use super::layout::{clock_key, free_space, Durability, BATCH, DATA, META, REPLICA};
use crate::causal::VectorClock;
use crate::replica::Replica;

/// Free space below which writes are refused, so that the journal, the
/// flushes of the tree and compaction never meet a full disk mid-write.
pub const RESERVE: u64 = 8 << 20;

/// How many keys one batch of a full copy of the store holds.
const DUMP_BATCH: usize = 65_536;

/// What the disk publishes.
#[derive(Clone, Debug, Default)]
pub struct Status {
    /// The last batch that is durable (see the module doc).
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

/// A key and its new bytes, or `None` once it is removed.
pub(super) type Item = (Box<[u8]>, Option<Vec<u8>>);

/// Called with the number of the last durable batch when it grows.
pub(super) type OnDurable = OnceLock<Box<dyn Fn(u64) + Send + Sync>>;

/// The database and its keyspaces.
pub(super) struct Handles {
    pub(super) db: Database,
    pub(super) data: Keyspace,
    pub(super) meta: Keyspace,
}

impl Handles {
    pub(super) fn open(path: &Path) -> fjall::Result<Handles> {
        // A commit only appends to the journal's buffer: the buffer is
        // written to the OS by [`Disk::flush`] (os) or the sync thread
        // (fsync), outside the replica's lock, once for all the commits
        // waiting.
        let db = Database::builder(path)
            .manual_journal_persist(true)
            .max_journaling_size(JOURNALS)
            .open()?;
        let data = db.keyspace(DATA, KeyspaceCreateOptions::default)?;
        let meta = db.keyspace(META, KeyspaceCreateOptions::default)?;
        Ok(Handles { db, data, meta })
    }

    /// Commits one step's changes as one atomic batch: `data`, keys with
    /// their new version's bytes, and `meta`, records of the replica's
    /// state. A crash keeps a prefix of the steps, never part of one.
    fn commit(&self, data: &[Item], meta: &[Item]) -> fjall::Result<()> {
        let mut write = self.db.batch();
        for (keyspace, items) in [(&self.data, data), (&self.meta, meta)] {
            for (key, value) in items {
                match value {
                    Some(bytes) => write.insert(keyspace, &**key, bytes.as_slice()),
                    None => write.remove(keyspace, &**key),
                }
            }
        }
        write.commit()
    }
}

/// Journal bytes kept before the tree must hold what they recorded: disk
/// use stays within this (plus the tree) whatever the write rate.
const JOURNALS: u64 = 64 << 20;

/// What the disk keeps under its lock.
pub(super) struct Inner {
    pub(super) handles: Handles,
    /// Whether the disk holds the replica's whole store (so only changes
    /// need writing).
    established: bool,
    /// The fingerprint of the saved state last written, to skip writing
    /// it unchanged.
    fingerprint: u64,
    /// The applied clock as last written, entry by entry.
    clock: VectorClock,
}

/// What the disk and its sync thread share.
pub(super) struct Shared {
    pub(super) dir: PathBuf,
    /// The database, to write its journal's buffer out.
    pub(super) db: Database,
    pub(super) mode: Durability,
    pub(super) inner: Mutex<Inner>,
    pub(super) publish: watch::Sender<Status>,
    /// The last batch committed (set under the lock of [`Inner`]).
    pub(super) committed: AtomicU64,
    /// Set when there is work for the sync thread; `None` asks it to stop.
    pub(super) work: Mutex<Option<bool>>,
    pub(super) wake: Condvar,
    pub(super) on_durable: OnDurable,
}

impl Shared {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wakes the sync thread.
    pub(super) fn nudge(&self) {
        let mut work = self.work.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(work) = work.as_mut() {
            *work = true;
        }
        self.wake.notify_one();
    }

    /// Marks batches up to `durable` durable and tells who waits.
    pub(super) fn durable(&self, durable: u64) {
        self.publish
            .send_modify(|s| s.durable = s.durable.max(durable));
        if let Some(f) = self.on_durable.get() {
            f(durable);
        }
    }
}

/// The handle a node keeps on its disk.
pub struct Disk {
    shared: Arc<Shared>,
    status: watch::Receiver<Status>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Disk {
    /// Starts the sync thread (with `spawn`) on opened `handles`. `established` says the
    /// database already mirrors the replica's store (a restored replica);
    /// `last` is the number of the last batch on disk: numbers go on from
    /// there.
    pub(super) fn start(
        dir: PathBuf,
        mode: Durability,
        handles: Handles,
        established: bool,
        last: u64,
        spawn: impl FnOnce(Arc<Shared>) -> JoinHandle<()>,
    ) -> Disk {
        let free = free_space(&dir);
        let (publish, status) = watch::channel(Status {
            free,
            durable: last,
            syncs: 0,
        });
        let shared = Arc::new(Shared {
            dir,
            db: handles.db.clone(),
            mode,
            inner: Mutex::new(Inner {
                handles,
                established,
                fingerprint: 0,
                clock: VectorClock::new(),
            }),
            publish,
            committed: AtomicU64::new(last),
            work: Mutex::new(Some(false)),
            wake: Condvar::new(),
            on_durable: OnceLock::new(),
        });
        let thread = spawn(shared.clone());
        Disk {
            shared,
            status,
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

    /// Calls `f` (from the sync thread) with the number of the last
    /// durable batch whenever it grows past one a step had to wait for.
    /// Set once.
    pub fn on_durable(&self, f: impl Fn(u64) + Send + Sync + 'static) {
        let _ = self.shared.on_durable.set(Box::new(f));
    }

    /// Writes what the replica's last step changed, and returns the number
    /// of the batch that holds it (the last one, if the step changed
    /// nothing). Call under the replica's lock, after every step.
    pub fn save(&self, replica: &mut Replica) -> u64 {
        let mut inner = self.shared.lock();
        if inner.established {
            // Already so, but for a replica just restored: the disk held
            // its store before it did.
            replica.track_changes();
        }
        if !inner.established {
            if !replica.is_synced() {
                // Copying its first state: nothing worth keeping yet.
                return self.committed();
            }
            self.dump(&mut inner, replica);
            return self.committed();
        }
        let changed = replica.take_changed();
        let meta = state_records(&mut inner, replica);
        if changed.is_empty() && meta.is_empty() {
            return self.committed();
        }
        let store = replica.store();
        let data = changed
            .into_iter()
            .map(|key| {
                let version = store.get_str(&key).map(|v| encode(&v));
                (Box::<[u8]>::from(key.as_bytes()), version)
            })
            .collect();
        self.write(&mut inner, data, meta)
    }

    /// Writes the whole store and state of a replica that just got one
    /// (copied from a member, or started a new store), then tracks its
    /// changes.
    fn dump(&self, inner: &mut Inner, replica: &mut Replica) {
        replica.track_changes();
        let mut data = Vec::with_capacity(DUMP_BATCH.min(replica.store().len()));
        for entry in replica.store().iter() {
            data.push((
                Box::<[u8]>::from(entry.key().as_bytes()),
                Some(encode(&entry.to_version())),
            ));
            if data.len() == DUMP_BATCH {
                self.write(inner, std::mem::take(&mut data), Vec::new());
            }
        }
        let meta = state_records(inner, replica);
        self.write(inner, data, meta);
        inner.established = true;
    }

    /// Commits one batch and returns its number.
    fn write(&self, inner: &mut Inner, data: Vec<Item>, meta: Vec<Item>) -> u64 {
        let shared = &self.shared;
        let seq = shared.committed.load(Ordering::Acquire) + 1;
        let mut meta = meta;
        meta.push((BATCH.as_bytes().into(), Some(seq.to_le_bytes().to_vec())));
        let bytes: usize = (data.iter().chain(&meta))
            .map(|(k, v)| k.len() + v.as_ref().map_or(0, Vec::len))
            .sum();
        if let Err(error) = inner.handles.commit(&data, &meta) {
            fail_stop(&shared.dir, &error);
        }
        shared.committed.store(seq, Ordering::Release);
        shared
            .publish
            .send_modify(|s| s.free = s.free.saturating_sub(bytes as u64));
        if shared.mode == Durability::Fsync {
            shared.nudge();
        }
        seq
    }

    /// Under `os`: writes the journal's buffer to the OS, making every
    /// batch committed so far durable. Call after a step, once its lock
    /// is released (under `fsync` the sync thread does it).
    pub fn flush(&self) {
        let shared = &self.shared;
        if shared.mode != Durability::Os {
            return;
        }
        let target = shared.committed.load(Ordering::Acquire);
        if self.status.borrow().durable >= target {
            return;
        }
        if let Err(error) = shared.db.persist(PersistMode::Buffer) {
            fail_stop(&shared.dir, &error);
        }
        shared.publish.send_if_modified(|s| {
            let grew = s.durable < target;
            s.durable = s.durable.max(target);
            grew
        });
    }

    /// The number of the last batch written (every step's batch is
    /// written before its lock is released).
    pub fn committed(&self) -> u64 {
        self.shared.committed.load(Ordering::Acquire)
    }

    /// The number of the last durable batch.
    pub fn durable(&self) -> u64 {
        self.status.borrow().durable
    }

    /// What the disk last published.
    pub fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    /// Waits until batch `seq` is durable (an error only once the disk
    /// is closed, at shutdown).
    pub async fn settled(&self, seq: u64) -> Result<(), Arc<str>> {
        if self.status.borrow().durable >= seq {
            return Ok(());
        }
        let mut status = self.status.clone();
        let result = status.wait_for(|s| s.durable >= seq).await.map(|_| ());
        result.map_err(|_| "the disk is closed".into())
    }

    /// Why a write bringing `incoming` bytes is refused now: the file
    /// system is (nearly) full.
    pub fn refusal(&self, incoming: usize) -> Option<String> {
        let free = self.status.borrow().free;
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
        self.shared.lock().handles.db.disk_space().unwrap_or(0)
    }

    /// Makes everything durable, marks the shutdown clean, and stops the
    /// sync thread. Nothing is saved afterwards.
    pub fn close(&self) {
        {
            let mut work = self.shared.work.lock().unwrap_or_else(|p| p.into_inner());
            *work = None;
            self.shared.wake.notify_one();
        }
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

/// The records of the replica's state that changed since the last step:
/// each entry of its applied clock (a write changes only its writer's),
/// and the saved state when its fingerprint changed.
fn state_records(inner: &mut Inner, replica: &Replica) -> Vec<Item> {
    let mut records = Vec::new();
    let clock = replica.applied();
    for (id, n) in clock.iter() {
        if inner.clock.get(id) != n {
            records.push((clock_key(id), Some(n.to_le_bytes().to_vec())));
        }
    }
    for (id, _) in inner.clock.iter() {
        if clock.get(id) == 0 {
            records.push((clock_key(id), None));
        }
    }
    if !records.is_empty() {
        inner.clock = clock.clone();
    }
    let fingerprint = replica.saved_fingerprint();
    if fingerprint != inner.fingerprint {
        inner.fingerprint = fingerprint;
        let saved = serde_json::to_vec(&replica.saved()).expect("the saved state prints");
        records.push((REPLICA.as_bytes().into(), Some(saved)));
    }
    records
}
