//! The database under `DATA_DIR/db`: a fjall database opened with the
//! settings a replica's disk needs, and the atomic batches it commits
//! (see [`super::disk`] for what goes in them and when).

use std::path::Path;

use fjall::{Database, Keyspace, KeyspaceCreateOptions};

use super::layout::{DATA, META};

/// A key and its new bytes, or `None` once it is removed.
pub(super) type Item = (Box<[u8]>, Option<Vec<u8>>);

/// The database and its keyspaces.
pub(super) struct Handles {
    pub(super) db: Database,
    pub(super) data: Keyspace,
    pub(super) meta: Keyspace,
}

impl Handles {
    pub(super) fn open(path: &Path) -> fjall::Result<Handles> {
        // A commit only appends to the journal's buffer: the committer
        // writes the buffer to the OS (and syncs it, under `fsync`) once
        // for every step it commits.
        let db = Database::builder(path)
            .manual_journal_persist(true)
            .max_journaling_size(JOURNALS)
            .open()?;
        // A smaller write buffer than fjall's 64 MiB: what a restart
        // replays from the journal is at most this (plus `meta`'s).
        let data = db.keyspace(DATA, || {
            KeyspaceCreateOptions::default().max_memtable_size(MEMTABLE)
        })?;
        let meta = db.keyspace(META, KeyspaceCreateOptions::default)?;
        Ok(Handles { db, data, meta })
    }

    /// Commits changes as one atomic batch: `data`, keys with their new
    /// version's bytes, and `meta`, records of the replica's state.
    pub(super) fn commit<'a>(
        &self,
        data: impl IntoIterator<Item = (&'a [u8], Option<&'a [u8]>)>,
        meta: impl IntoIterator<Item = (&'a [u8], Option<&'a [u8]>)>,
    ) -> fjall::Result<()> {
        let mut write = self.db.batch();
        let mut add = |keyspace: &Keyspace, (key, value): (&[u8], Option<&[u8]>)| match value {
            Some(bytes) => write.insert(keyspace, key, bytes),
            None => write.remove(keyspace, key),
        };
        data.into_iter().for_each(|item| add(&self.data, item));
        meta.into_iter().for_each(|item| add(&self.meta, item));
        write.commit()
    }
}

/// An item as the batch takes it.
pub(super) fn item((key, value): &Item) -> (&[u8], Option<&[u8]>) {
    (key, value.as_deref())
}

/// The largest write buffer of the `data` keyspace.
const MEMTABLE: u64 = 16 << 20;

/// Journal bytes kept before the tree must hold what they recorded: disk
/// use stays within this (plus the tree) whatever the write rate.
const JOURNALS: u64 = 64 << 20;
