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
//! A write or sync that fails is never reported durable: the batches not
//! known to be durable are kept, waiters are told, new batches wait behind
//! them, and the sync thread tries again (reopening the database, whose
//! recovery drops a batch the failure tore) until it works. While the
//! disk failed, or the file system has less than [`RESERVE`] bytes free,
//! [`Disk::refusal`] says why new writes are refused.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::JoinHandle;

use fjall::{Database, Keyspace, KeyspaceCreateOptions};
use tokio::sync::watch;

use super::codec::encode;
use super::layout::{clock_key, Durability, DATA, META, REPLICA};
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
    /// Why the disk failed, while it does.
    pub failed: Option<Arc<str>>,
    /// Free bytes on the data directory's file system, when last looked.
    pub free: u64,
}

/// A key and its new bytes, or `None` once it is removed.
pub(super) type Item = (Box<[u8]>, Option<Vec<u8>>);

/// Called with the number of the last durable batch when it grows.
pub(super) type OnDurable = OnceLock<Box<dyn Fn(u64) + Send + Sync>>;

/// One step's changes.
pub(super) struct Batch {
    pub(super) seq: u64,
    /// Keys with their new version's bytes.
    pub(super) data: Vec<Item>,
    /// Records of the replica's state: the saved state when it changed,
    /// and each clock entry that changed.
    pub(super) meta: Vec<Item>,
}

/// The database and its keyspaces.
pub(super) struct Handles {
    pub(super) db: Database,
    pub(super) data: Keyspace,
    pub(super) meta: Keyspace,
}

impl Handles {
    pub(super) fn open(path: &Path) -> fjall::Result<Handles> {
        // Each commit is written to the OS at once; under fsync the sync
        // thread makes the journal durable.
        let db = Database::builder(path)
            .manual_journal_persist(false)
            .max_journaling_size(JOURNALS)
            .open()?;
        let data = db.keyspace(DATA, KeyspaceCreateOptions::default)?;
        let meta = db.keyspace(META, KeyspaceCreateOptions::default)?;
        Ok(Handles { db, data, meta })
    }

    /// Commits `batches` as one atomic batch: a crash keeps a prefix of
    /// the steps, never part of one.
    pub(super) fn commit<'a>(
        &self,
        batches: impl IntoIterator<Item = &'a Batch>,
    ) -> fjall::Result<()> {
        let mut write = self.db.batch();
        for batch in batches {
            for (keyspace, items) in [(&self.data, &batch.data), (&self.meta, &batch.meta)] {
                for (key, value) in items {
                    match value {
                        Some(bytes) => write.insert(keyspace, &**key, bytes.as_slice()),
                        None => write.remove(keyspace, &**key),
                    }
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
    /// The database; `None` while a failed one is being reopened.
    pub(super) handles: Option<Handles>,
    /// Batches committed but not known durable (under fsync), then, once
    /// the disk failed, every batch not known durable: written again when
    /// it works.
    pub(super) unsure: Vec<Batch>,
    /// Whether the disk holds the replica's whole store (so only changes
    /// need writing).
    established: bool,
    /// The fingerprint of the saved state last written, to skip writing
    /// it unchanged.
    fingerprint: u64,
    /// The applied clock as last written, entry by entry.
    clock: VectorClock,
    next: u64,
}

/// What the disk and its sync thread share.
pub(super) struct Shared {
    pub(super) dir: PathBuf,
    pub(super) mode: Durability,
    pub(super) inner: Mutex<Inner>,
    pub(super) publish: watch::Sender<Status>,
    /// The last batch committed.
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
        self.publish.send_modify(|s| {
            s.durable = s.durable.max(durable);
            s.failed = None;
        });
        if let Some(f) = self.on_durable.get() {
            f(durable);
        }
    }

    /// Records that the disk failed, with `error`.
    pub(super) fn failed(&self, error: &dyn std::fmt::Display) {
        let reason: Arc<str> = format!("cannot write to {}: {error}", self.dir.display()).into();
        if self.publish.borrow().failed.is_none() {
            tracing::error!(%reason, "a disk write failed; writes are refused until it works again");
        }
        self.publish.send_modify(|s| s.failed = Some(reason));
        self.nudge();
    }
}

/// The handle a node keeps on its disk.
pub struct Disk {
    shared: Arc<Shared>,
    status: watch::Receiver<Status>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// The database, for sizes.
    db: Database,
}

impl Disk {
    /// Starts the sync thread on opened `handles`. `established` says the
    /// database already mirrors the replica's store (a restored replica).
    pub(super) fn start(
        dir: PathBuf,
        mode: Durability,
        handles: Handles,
        established: bool,
    ) -> Disk {
        let free = super::sync::free_space(&dir);
        let (publish, status) = watch::channel(Status {
            free,
            ..Status::default()
        });
        let db = handles.db.clone();
        let shared = Arc::new(Shared {
            dir,
            mode,
            inner: Mutex::new(Inner {
                handles: Some(handles),
                unsure: Vec::new(),
                established,
                fingerprint: 0,
                clock: VectorClock::new(),
                next: 1,
            }),
            publish,
            committed: AtomicU64::new(0),
            work: Mutex::new(Some(false)),
            wake: Condvar::new(),
            on_durable: OnceLock::new(),
        });
        let thread = super::sync::spawn(shared.clone());
        Disk {
            shared,
            status,
            thread: Mutex::new(Some(thread)),
            db,
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
        if !inner.established {
            if !replica.is_synced() {
                // Copying its first state: nothing worth keeping yet.
                return inner.next - 1;
            }
            self.dump(&mut inner, replica);
            return inner.next - 1;
        }
        let changed = replica.take_changed();
        let meta = state_records(&mut inner, replica);
        if changed.is_empty() && meta.is_empty() {
            return inner.next - 1;
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
        let _ = replica.take_changed();
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

    /// Commits one batch (unless the disk failed: then it waits with the
    /// others) and returns its number.
    fn write(&self, inner: &mut Inner, data: Vec<Item>, meta: Vec<Item>) -> u64 {
        let seq = inner.next;
        inner.next += 1;
        let batch = Batch { seq, data, meta };
        let shared = &self.shared;
        if shared.publish.borrow().failed.is_some() || inner.handles.is_none() {
            inner.unsure.push(batch);
            return seq;
        }
        let handles = inner.handles.as_ref().expect("checked above");
        if let Err(error) = handles.commit([&batch]) {
            inner.unsure.push(batch);
            shared.failed(&error);
            return seq;
        }
        shared.committed.store(seq, Ordering::Release);
        match shared.mode {
            Durability::Os => {
                shared
                    .publish
                    .send_modify(|s| s.durable = s.durable.max(seq));
            }
            Durability::Fsync => {
                inner.unsure.push(batch);
                shared.nudge();
            }
        }
        seq
    }

    /// The number of the last batch written.
    pub fn committed(&self) -> u64 {
        self.shared.lock().next - 1
    }

    /// The number of the last durable batch.
    pub fn durable(&self) -> u64 {
        self.status.borrow().durable
    }

    /// What the disk last published.
    pub fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    /// Waits until batch `seq` is durable; the reason, if the disk failed
    /// first.
    pub async fn settled(&self, seq: u64) -> Result<(), Arc<str>> {
        {
            let status = self.status.borrow();
            if status.durable >= seq {
                return Ok(());
            }
            if let Some(failed) = &status.failed {
                return Err(failed.clone());
            }
        }
        let mut status = self.status.clone();
        let result = status
            .wait_for(|s| s.durable >= seq || s.failed.is_some())
            .await
            .map(|s| (s.durable, s.failed.clone()));
        match result {
            Ok((durable, _)) if durable >= seq => Ok(()),
            Ok((_, Some(failed))) => Err(failed),
            _ => Err("the disk is closed".into()),
        }
    }

    /// Why new writes are refused now: the disk failed, or is (nearly)
    /// full.
    pub fn refusal(&self) -> Option<String> {
        let status = self.status.borrow();
        if let Some(failed) = &status.failed {
            return Some(format!("{failed}"));
        }
        (status.free < RESERVE).then(|| {
            format!(
                "no space left on the device of {} ({} bytes free, {} needed)",
                self.shared.dir.display(),
                status.free,
                RESERVE
            )
        })
    }

    /// Bytes the database takes on disk.
    pub fn disk_bytes(&self) -> u64 {
        self.db.disk_space().unwrap_or(0)
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
