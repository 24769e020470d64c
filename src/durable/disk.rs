//! The disk of a running replica: the mirror of its state, kept by one
//! thread that owns every write to the journal.
//!
//! After each step of the replica, [`Disk::save`] (under the replica's
//! lock, so batches are numbered in the order the steps ran) turns what
//! changed into one batch: the new version of every key changed and, when
//! it changed, the [`Saved`](crate::replica::saved::Saved) state. The
//! disk thread commits batches in that order and then, in `fsync` mode,
//! makes them durable with one fsync for every batch that arrived while
//! the last one ran (group commit). The number of the last durable batch
//! is published; answers and writes to peers wait until it covers the
//! step that produced them ([`Disk::settled`]).
//!
//! A write or fsync that fails is never reported durable: the batches stay
//! with the thread, waiters are told, and the thread tries again (reopening
//! the database, which drops a batch torn by the failure) every half
//! second until it succeeds. While the disk failed, or the file system has
//! less than [`RESERVE`] bytes free, [`Disk::refusal`] says why new writes
//! are refused.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use tokio::sync::watch;

use super::codec::encode;
use super::layout::{Durability, Run, DATA, DB, META, REPLICA, RUN};
use crate::replica::Replica;

/// Free space below which writes are refused, so that the journal, the
/// flushes of the tree and compaction never meet a full disk mid-write.
pub const RESERVE: u64 = 8 << 20;

/// How many keys one batch of a full copy of the store holds.
const DUMP_BATCH: usize = 65_536;

/// How often a failed disk is tried again.
const RETRY: Duration = Duration::from_millis(500);

/// What the disk thread publishes.
#[derive(Clone, Debug, Default)]
pub struct Status {
    /// The last batch that is durable (see the module doc).
    pub durable: u64,
    /// Why the disk failed, while it does.
    pub failed: Option<Arc<str>>,
    /// Free bytes on the data directory's file system, when last looked.
    pub free: u64,
}

/// A key and its new version's bytes, or `None` once it is removed.
type Item = (Box<[u8]>, Option<Vec<u8>>);

/// Called with the number of the last durable batch when it grows.
type OnDurable = Arc<OnceLock<Box<dyn Fn(u64) + Send + Sync>>>;

/// One step's changes.
struct Batch {
    seq: u64,
    /// Keys with their new version's bytes, or `None` once removed.
    items: Vec<Item>,
    meta: Option<Vec<u8>>,
}

enum Message {
    Batch(Batch),
    /// Make everything durable, mark the shutdown clean, and stop.
    Close(mpsc::Sender<()>),
}

/// What [`Disk::save`] keeps between steps (under the replica's lock).
struct Mirror {
    /// Whether the disk holds the replica's whole store (so only changes
    /// need writing).
    established: bool,
    /// The last saved state written, to skip writing it unchanged.
    last_meta: Vec<u8>,
    next: u64,
}

/// The handle a node keeps on its disk.
pub struct Disk {
    dir: PathBuf,
    mode: Durability,
    mirror: Mutex<Mirror>,
    sender: Mutex<mpsc::Sender<Message>>,
    status: watch::Receiver<Status>,
    committed: AtomicU64,
    on_durable: OnDurable,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// The database, for sizes (the thread owns the writes).
    db: Database,
}

/// The database and its keyspaces.
pub(super) struct Handles {
    pub(super) db: Database,
    pub(super) data: Keyspace,
    pub(super) meta: Keyspace,
}

impl Handles {
    pub(super) fn open(path: &std::path::Path, mode: Durability) -> fjall::Result<Handles> {
        let db = Database::builder(path)
            // In fsync mode a batch waits in the journal's buffer until
            // the group's `persist` writes and syncs it; in os mode each
            // commit is written to the OS at once.
            .manual_journal_persist(mode == Durability::Fsync)
            .open()?;
        let data = db.keyspace(DATA, KeyspaceCreateOptions::default)?;
        let meta = db.keyspace(META, KeyspaceCreateOptions::default)?;
        Ok(Handles { db, data, meta })
    }
}

impl Disk {
    /// Starts the disk thread on opened `handles`. `established` says the
    /// database already mirrors the replica's store (a restored replica).
    pub(super) fn start(
        dir: PathBuf,
        mode: Durability,
        handles: Handles,
        established: bool,
    ) -> Disk {
        let (sender, receiver) = mpsc::channel();
        let free = free_space(&dir);
        let (publish, status) = watch::channel(Status {
            free,
            ..Status::default()
        });
        let on_durable: OnDurable = Arc::default();
        let db = handles.db.clone();
        let thread = {
            let dir = dir.clone();
            let on_durable = on_durable.clone();
            std::thread::Builder::new()
                .name("disk".into())
                .spawn(move || {
                    Writer {
                        dir,
                        mode,
                        handles: Some(handles),
                        publish,
                        on_durable,
                        pending: Vec::new(),
                        retry_at: Instant::now(),
                    }
                    .run(receiver)
                })
                .expect("the disk thread starts")
        };
        Disk {
            dir,
            mode,
            mirror: Mutex::new(Mirror {
                established,
                last_meta: Vec::new(),
                next: 1,
            }),
            sender: Mutex::new(sender),
            status,
            committed: AtomicU64::new(0),
            on_durable,
            thread: Mutex::new(Some(thread)),
            db,
        }
    }

    /// The data directory.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// The durability mode.
    pub fn mode(&self) -> Durability {
        self.mode
    }

    /// Calls `f` with the number of the last durable batch whenever it
    /// grows (from the disk thread). Set once.
    pub fn on_durable(&self, f: impl Fn(u64) + Send + Sync + 'static) {
        let _ = self.on_durable.set(Box::new(f));
    }

    /// Hands what the replica's last step changed to the disk thread, and
    /// returns the number of the batch that holds it (the last one, if the
    /// step changed nothing). Call under the replica's lock, after every
    /// step.
    pub fn save(&self, replica: &mut Replica) -> u64 {
        let mut mirror = self.mirror.lock().unwrap_or_else(|p| p.into_inner());
        if !mirror.established {
            if !replica.is_synced() {
                // Copying its first state: nothing worth keeping yet.
                return mirror.next - 1;
            }
            self.dump(&mut mirror, replica);
            return mirror.next - 1;
        }
        let changed = replica.take_changed();
        let meta = serde_json::to_vec(&replica.saved()).expect("the saved state prints");
        let meta = (meta != mirror.last_meta).then_some(meta);
        if changed.is_empty() && meta.is_none() {
            return mirror.next - 1;
        }
        let store = replica.store();
        let items = changed
            .into_iter()
            .map(|key| {
                let version = store.get_str(&key).map(|v| encode(&v));
                (Box::<[u8]>::from(key.as_bytes()), version)
            })
            .collect();
        if let Some(meta) = &meta {
            mirror.last_meta.clone_from(meta);
        }
        self.send(&mut mirror, items, meta)
    }

    /// Writes the whole store and state of a replica that just got one
    /// (copied from a member, or started a new store), then tracks its
    /// changes.
    fn dump(&self, mirror: &mut Mirror, replica: &mut Replica) {
        replica.track_changes();
        let _ = replica.take_changed();
        let mut items = Vec::with_capacity(DUMP_BATCH.min(replica.store().len()));
        for entry in replica.store().iter() {
            items.push((
                Box::<[u8]>::from(entry.key().as_bytes()),
                Some(encode(&entry.to_version())),
            ));
            if items.len() == DUMP_BATCH {
                self.send(mirror, std::mem::take(&mut items), None);
            }
        }
        let meta = serde_json::to_vec(&replica.saved()).expect("the saved state prints");
        mirror.last_meta.clone_from(&meta);
        self.send(mirror, items, Some(meta));
        mirror.established = true;
    }

    fn send(&self, mirror: &mut Mirror, items: Vec<Item>, meta: Option<Vec<u8>>) -> u64 {
        let seq = mirror.next;
        mirror.next += 1;
        self.committed.store(seq, Ordering::Release);
        let sender = self.sender.lock().unwrap_or_else(|p| p.into_inner());
        // The thread only stops at close, after which nothing is saved.
        let _ = sender.send(Message::Batch(Batch { seq, items, meta }));
        seq
    }

    /// The number of the last batch handed to the disk thread.
    pub fn committed(&self) -> u64 {
        self.committed.load(Ordering::Acquire)
    }

    /// The number of the last durable batch.
    pub fn durable(&self) -> u64 {
        self.status.borrow().durable
    }

    /// What the disk thread last published.
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
            .map(|s| s.failed.clone());
        match result {
            Ok(None) => Ok(()),
            Ok(Some(failed)) if self.durable() < seq => Err(failed),
            Ok(Some(_)) => Ok(()),
            Err(_) => Err("the disk is closed".into()),
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
                self.dir.display(),
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
    /// disk thread. Nothing is saved afterwards.
    pub fn close(&self) {
        let (done, wait) = mpsc::channel();
        {
            let sender = self.sender.lock().unwrap_or_else(|p| p.into_inner());
            let _ = sender.send(Message::Close(done));
        }
        let _ = wait.recv_timeout(Duration::from_secs(10));
        if let Some(thread) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = thread.join();
        }
    }
}

/// Free bytes on the file system of `dir` (`u64::MAX` if it cannot tell).
fn free_space(dir: &std::path::Path) -> u64 {
    match rustix::fs::statvfs(dir) {
        Ok(s) => s.f_bavail.saturating_mul(s.f_frsize),
        Err(_) => u64::MAX,
    }
}

/// The disk thread.
struct Writer {
    dir: PathBuf,
    mode: Durability,
    handles: Option<Handles>,
    publish: watch::Sender<Status>,
    on_durable: OnDurable,
    /// Batches received and not durable yet, oldest first.
    pending: Vec<Batch>,
    retry_at: Instant,
}

impl Writer {
    fn run(mut self, receiver: mpsc::Receiver<Message>) {
        loop {
            let failed = self.publish.borrow().failed.is_some();
            let wait = if failed {
                RETRY
            } else {
                Duration::from_secs(1)
            };
            let mut close = None;
            match receiver.recv_timeout(wait) {
                Ok(Message::Batch(batch)) => self.pending.push(batch),
                Ok(Message::Close(done)) => close = Some(done),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
            while close.is_none() {
                match receiver.try_recv() {
                    Ok(Message::Batch(batch)) => self.pending.push(batch),
                    Ok(Message::Close(done)) => close = Some(done),
                    Err(_) => break,
                }
            }
            let free = free_space(&self.dir);
            self.publish.send_if_modified(|s| {
                let changed = s.free != free;
                s.free = free;
                changed
            });
            if !self.pending.is_empty() && (!failed || Instant::now() >= self.retry_at) {
                self.write_pending();
            }
            if let Some(done) = close {
                self.close();
                let _ = done.send(());
                return;
            }
        }
    }

    /// Commits every pending batch in order and makes them durable.
    fn write_pending(&mut self) {
        let result = self.try_write();
        match result {
            Ok(()) => {
                let durable = self.pending.last().map_or(0, |b| b.seq);
                self.pending.clear();
                let recovered = self.publish.borrow().failed.is_some();
                if recovered {
                    tracing::warn!(dir = %self.dir.display(), "the disk works again; writes resume");
                }
                self.publish.send_modify(|s| {
                    s.durable = s.durable.max(durable);
                    s.failed = None;
                });
                if let Some(f) = self.on_durable.get() {
                    f(durable);
                }
            }
            Err(error) => {
                let reason: Arc<str> =
                    format!("cannot write to {}: {error}", self.dir.display()).into();
                if self.publish.borrow().failed.is_none() {
                    tracing::error!(%reason, "a disk write failed; writes are refused until it works again");
                }
                self.publish.send_modify(|s| s.failed = Some(reason));
                self.retry_at = Instant::now() + RETRY;
            }
        }
    }

    fn try_write(&mut self) -> Result<(), String> {
        let failed = self.publish.borrow().failed.is_some();
        if failed || self.handles.is_none() {
            // A failed write leaves the database refusing writes: open it
            // again (its recovery drops a batch the failure tore).
            self.handles = None;
            let path = self.dir.join(DB);
            self.handles = Some(Handles::open(&path, self.mode).map_err(|e| e.to_string())?);
        }
        let handles = self.handles.as_ref().expect("opened above");
        for batch in &self.pending {
            let mut write = handles.db.batch();
            for (key, value) in &batch.items {
                match value {
                    Some(bytes) => write.insert(&handles.data, &**key, bytes.as_slice()),
                    None => write.remove(&handles.data, &**key),
                }
            }
            if let Some(meta) = &batch.meta {
                write.insert(&handles.meta, REPLICA, meta.as_slice());
            }
            write.commit().map_err(|e| e.to_string())?;
        }
        if self.mode == Durability::Fsync {
            handles
                .db
                .persist(PersistMode::SyncAll)
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    fn close(&mut self) {
        if !self.pending.is_empty() {
            self.write_pending();
        }
        let Some(handles) = &self.handles else {
            return;
        };
        if !self.pending.is_empty() {
            tracing::error!("stopping with writes the disk did not take");
            return;
        }
        let run = Run::current(true, self.mode);
        let result = handles
            .meta
            .insert(RUN, run.to_bytes())
            .and_then(|()| handles.db.persist(PersistMode::SyncAll));
        if let Err(error) = result {
            tracing::error!(%error, "could not mark the shutdown clean");
        }
    }
}
