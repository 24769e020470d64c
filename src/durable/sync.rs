//! The sync thread: group commit under `fsync`, and free space.
//!
//! Under `fsync` it waits for steps staged since the last sync, commits
//! them all as one batch and `fdatasync`s the journal (the database syncs
//! a journal file when it starts the next one, so syncing the newest is
//! enough). Steps staged meanwhile wait for the next round: however many
//! there are, they take one sync. The replica's steps only stage their
//! changes, so they never wait for the device.

use std::fs::File;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fjall::PersistMode;

use super::disk::{fail_stop, Shared};
use super::layout::{free_space, Durability, Run, RUN, SYNCED};

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
    /// Where the last step known durable is noted, and the number noted.
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
            noted: 0,
            last_free: Instant::now(),
        }
    }

    fn run(mut self) {
        loop {
            let stop = self.shared.wake.wait(IDLE);
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

    fn look_at_free_space(&mut self) {
        self.last_free = Instant::now();
        let free = free_space(&self.shared.dir);
        self.shared.free.store(free, Ordering::Release);
    }

    /// Commits every step staged so far and makes it durable.
    fn sync(&mut self) {
        let shared = &self.shared;
        if shared.saved() <= shared.durable() {
            return;
        }
        let handles = shared.committer();
        let last = shared.commit_staged(&handles);
        if let Err(error) = handles.db.persist(PersistMode::SyncData) {
            fail_stop(&shared.dir, &error);
        }
        drop(handles);
        shared.syncs.fetch_add(1, Ordering::AcqRel);
        shared.made_durable(last);
    }

    /// Notes the last step known durable beside the database (written to
    /// the OS, not synced: after a power cut the note may be older than
    /// the journal, never newer, as the journal was synced first).
    fn note_durable(&mut self) {
        use std::os::unix::fs::FileExt;
        let durable = self.shared.durable();
        if durable == self.noted {
            return;
        }
        if let Some(note) = &self.note {
            if note.write_all_at(&durable.to_le_bytes(), 0).is_ok() {
                self.noted = durable;
            }
        }
    }

    /// At shutdown: makes everything durable and marks the run clean.
    fn close(&mut self) {
        let shared = &self.shared;
        let handles = shared.committer();
        let last = shared.commit_staged(&handles);
        let run = Run::current(true, shared.mode);
        let result = handles
            .meta
            .insert(RUN, run.to_bytes())
            .and_then(|()| handles.db.persist(PersistMode::SyncAll));
        if let Err(error) = result {
            fail_stop(&shared.dir, &error);
        }
        drop(handles);
        shared.made_durable(last);
        self.note_durable();
    }
}
