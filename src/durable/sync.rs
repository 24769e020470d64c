//! The sync thread: group commit under `fsync`, and free space.
//!
//! Under `fsync` it waits for batches committed since the last sync, reads
//! the number of the last one, and `fdatasync`s the journal through a file
//! of its own: not through the database, whose own sync holds the journal
//! while it waits for the device, which would stall every commit (and the
//! replica with it) for that long. Syncing the newest journal file is
//! enough: the database syncs a journal file when it starts the next one,
//! and the number is read before the directory is listed, so every batch
//! up to it is in a file synced by then. Journal files are preallocated,
//! so syncing their data is enough (`fdatasync`).

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fjall::PersistMode;

use super::disk::{fail_stop, Shared};
use super::layout::{free_space, Durability, Run, DB, RUN, SYNCED};

/// How often free space is looked at when nothing happens.
const IDLE: Duration = Duration::from_millis(500);

pub(super) fn spawn(shared: Arc<Shared>) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name("disk-sync".into())
        .spawn(move || Syncer::new(shared).run())
        .expect("the disk's sync thread starts")
}

struct Syncer {
    shared: Arc<Shared>,
    /// Journal files opened for syncing, by path.
    journals: BTreeMap<PathBuf, File>,
    /// Where the last batch known durable is noted, and the number noted.
    note: Option<File>,
    noted: u64,
    last_free: Instant,
}

impl Syncer {
    fn new(shared: Arc<Shared>) -> Syncer {
        let note = File::options()
            .write(true)
            .create(true)
            .truncate(false)
            .open(shared.dir.join(SYNCED))
            .ok();
        Syncer {
            shared,
            note,
            journals: BTreeMap::new(),
            noted: 0,
            last_free: Instant::now(),
        }
    }

    fn run(mut self) {
        loop {
            let stop = self.wait();
            if self.last_free.elapsed() >= Duration::from_millis(100) || stop {
                self.look_at_free_space();
            }
            if self.shared.mode == Durability::Fsync {
                self.sync();
            }
            self.note_durable();
            if stop {
                self.close();
                return;
            }
        }
    }

    /// Waits for work (or the retry interval); whether to stop.
    fn wait(&self) -> bool {
        let mut work = self.shared.work.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            match *work {
                None => return true,
                Some(true) => {
                    *work = Some(false);
                    return false;
                }
                Some(false) => {
                    let (next, timeout) = self
                        .shared
                        .wake
                        .wait_timeout(work, IDLE)
                        .unwrap_or_else(|p| p.into_inner());
                    work = next;
                    if timeout.timed_out() {
                        return work.is_none();
                    }
                }
            }
        }
    }

    fn look_at_free_space(&mut self) {
        self.last_free = Instant::now();
        let free = free_space(&self.shared.dir);
        self.shared.publish.send_if_modified(|s| {
            let changed = s.free != free;
            s.free = free;
            changed
        });
    }

    /// Makes every batch committed so far durable.
    fn sync(&mut self) {
        let target = self.shared.committed.load(Ordering::Acquire);
        if target <= self.shared.publish.borrow().durable {
            return;
        }
        let written = self.shared.db.persist(PersistMode::Buffer);
        match written
            .map_err(std::io::Error::other)
            .and_then(|()| self.sync_journal())
        {
            Ok(()) => {
                self.shared.publish.send_modify(|s| s.syncs += 1);
                self.shared.durable(target);
            }
            Err(error) => fail_stop(&self.shared.dir, &error),
        }
    }

    /// Notes the last batch known durable beside the database (written to
    /// the OS, not synced: after a power cut the note may be older than
    /// the journal, never newer, as the journal was synced first).
    fn note_durable(&mut self) {
        use std::os::unix::fs::FileExt;
        let durable = self.shared.publish.borrow().durable;
        if durable == self.noted {
            return;
        }
        if let Some(note) = &self.note {
            if note.write_all_at(&durable.to_le_bytes(), 0).is_ok() {
                self.noted = durable;
            }
        }
    }

    /// `fdatasync`s the newest journal file (see the module doc).
    fn sync_journal(&mut self) -> std::io::Result<()> {
        let db = self.shared.dir.join(DB);
        let newest = std::fs::read_dir(&db)?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "jnl"))
            .max_by_key(|p| journal_number(p));
        let Some(newest) = newest else {
            return Ok(());
        };
        self.journals.retain(|path, _| *path == newest);
        if !self.journals.contains_key(&newest) {
            let file = File::options().read(true).open(&newest)?;
            self.journals.insert(newest.clone(), file);
        }
        self.journals[&newest].sync_data()
    }

    /// At shutdown: makes everything durable and marks the run clean.
    fn close(&mut self) {
        let inner = self.shared.lock();
        let handles = &inner.handles;
        let run = Run::current(true, self.shared.mode);
        let result = handles
            .meta
            .insert(RUN, run.to_bytes())
            .and_then(|()| handles.db.persist(PersistMode::SyncAll));
        if let Err(error) = result {
            fail_stop(&self.shared.dir, &error);
        }
    }
}

/// The number in a journal file's name (`<n>.jnl`).
fn journal_number(path: &Path) -> u64 {
    path.file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}
