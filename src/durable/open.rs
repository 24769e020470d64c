//! Opening `DATA_DIR` at start: recover the database, decide whether its
//! state can be trusted, and load it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use fjall::PersistMode;
use tracing::{info, warn};

use super::codec::Decoder;
use super::db::Handles;
use super::disk::Disk;
use super::layout::{clock_key, Durability, Run, BATCH, CLOCK, DB, REPLICA, RUN, SYNCED};
use crate::address::SocketAddress;
use crate::causal::{ReplicaId, VectorClock};
use crate::replica::saved::{Saved, SAVED_FORMAT};
use crate::replica::Rescued;
use crate::store::{Key, Store, Version};

/// A data directory opened.
pub struct Opened {
    /// The disk, its thread running.
    pub disk: Disk,
    /// The state it held, if there was one to trust.
    pub restored: Option<(Saved, Store)>,
    /// When it held one it could not trust (the last run crashed while
    /// merging a member's copy): what that run's incarnation wrote, which
    /// only it may hold, to take in again (see
    /// [`crate::replica::Replica::rescue_when_ready`]).
    pub rescued: Rescued,
}

/// Why a data directory cannot be used: the file (or directory) at fault
/// and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("{}: {problem}", path.display())]
pub struct OpenError {
    /// The file or directory at fault.
    pub path: PathBuf,
    /// What is wrong.
    pub problem: String,
}

/// What the start-up makes of the state it found.
enum Found {
    Restore(Box<(Saved, Store)>),
    /// Nothing to restore; the reason, when there was state and it is
    /// thrown away.
    Nothing(Option<String>),
    /// A state that is not whole (the last run was merging a copy): thrown
    /// away, but for the versions its incarnation wrote.
    Rescue(String, Rescued),
}

const DISCARD_HINT: &str =
    "start with --discard-corrupt-state to discard it and copy the state from the other replicas";

/// Opens (creating it if needed) the data directory `dir` of the replica
/// at `address`. Damage other than a torn journal tail is an error, unless
/// `discard_corrupt`: then the state is thrown away and the replica starts
/// as a new incarnation.
pub fn open(
    dir: &Path,
    mode: Durability,
    address: &SocketAddress,
    discard_corrupt: bool,
) -> Result<Opened, OpenError> {
    let fail = |path: &Path, problem: String| OpenError {
        path: path.to_path_buf(),
        problem,
    };
    std::fs::create_dir_all(dir).map_err(|e| fail(dir, format!("cannot create: {e}")))?;
    let path = dir.join(DB);
    let before = journal_sizes(&path);
    let started = std::time::Instant::now();
    let handles = match Handles::open(&path) {
        Ok(handles) => handles,
        Err(fjall::Error::Locked) => {
            return Err(fail(&path, "in use by another process".into()));
        }
        Err(error) => {
            let at = damaged_file(&path, &error);
            if !discard_corrupt {
                return Err(fail(
                    &at,
                    format!("cannot be read ({error}); {DISCARD_HINT}"),
                ));
            }
            warn!(file = %at.display(), %error, "the state cannot be read; discarding it (--discard-corrupt-state)");
            std::fs::remove_dir_all(&path)
                .map_err(|e| fail(&path, format!("cannot discard: {e}")))?;
            Handles::open(&path).map_err(|e| fail(&path, format!("cannot create: {e}")))?
        }
    };
    for (file, size) in journal_sizes(&path) {
        if let Some(&was) = before.get(&file) {
            if size < was {
                warn!(file = %file.display(), from = was, to = size, "journal tail truncated: the last write before a crash was incomplete");
            }
        }
    }
    let opened_in = started.elapsed();
    let noted = read_note(dir);
    let found = match read_state(&handles, mode, address, noted) {
        Ok(found) => found,
        Err(Damage::Config(problem)) => return Err(fail(dir, problem)),
        Err(Damage::Corrupt(problem)) if !discard_corrupt => {
            return Err(fail(&path, format!("{problem}; {DISCARD_HINT}")));
        }
        Err(Damage::Corrupt(problem)) => Found::Nothing(Some(format!(
            "{problem} (discarded: --discard-corrupt-state)"
        ))),
    };
    let mut last = 0;
    let mut rescued = Rescued::default();
    let found = match found {
        Found::Rescue(why, own) => {
            info!(versions = own.versions.len(), last = ?own.writer, "the former incarnation's own writes are kept, to write again once this one is ready");
            rescued = own;
            Found::Nothing(Some(why))
        }
        found => found,
    };
    let restored = match found {
        Found::Restore(restored) => {
            let (saved, store) = *restored;
            info!(id = %saved.id, keys = store.len(), dir = %dir.display(), recovered_ms = opened_in.as_millis() as u64, loaded_ms = (started.elapsed() - opened_in).as_millis() as u64, "restored the state from disk");
            last = last_batch(&handles);
            Some((saved, store))
        }
        Found::Rescue(..) => unreachable!("taken apart above"),
        Found::Nothing(why) => {
            if let Some(why) = why {
                warn!(why, "the state on disk is not used: starting as a new incarnation that copies the state of a member");
            }
            // Clear whatever a copy in progress had written.
            let cleared = handles.data.clear().and_then(|()| handles.meta.clear());
            cleared.map_err(|e| fail(&path, format!("cannot clear: {e}")))?;
            let note = dir.join(SYNCED);
            if let Err(e) = std::fs::remove_file(&note) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    return Err(fail(&note, format!("cannot remove: {e}")));
                }
            }
            None
        }
    };
    let run = Run::current(false, mode);
    handles
        .meta
        .insert(RUN, run.to_bytes())
        .and_then(|()| handles.db.persist(PersistMode::SyncAll))
        .map_err(|e| fail(&path, format!("cannot write: {e}")))?;
    let established = restored.is_some();
    Ok(Opened {
        disk: Disk::start(
            dir.to_path_buf(),
            mode,
            handles,
            established,
            last,
            super::sync::spawn,
        ),
        restored,
        rescued,
    })
}

enum Damage {
    /// The directory belongs to another replica.
    Config(String),
    /// Its contents are damaged.
    Corrupt(String),
}

/// The applied clock's entry for `id` on disk (0 when it has none, or it
/// cannot be read).
fn read_count(handles: &Handles, id: &ReplicaId) -> u64 {
    let key = clock_key(id);
    match handles.meta.get(&*key) {
        Ok(Some(value)) => <[u8; 8]>::try_from(&*value).map_or(0, u64::from_le_bytes),
        _ => 0,
    }
}

fn read_state(
    handles: &Handles,
    mode: Durability,
    address: &SocketAddress,
    noted: u64,
) -> Result<Found, Damage> {
    let read = |key: &str| {
        handles
            .meta
            .get(key)
            .map_err(|e| Damage::Corrupt(format!("cannot read the {key} record: {e}")))
    };
    let Some(bytes) = read(REPLICA)? else {
        return Ok(Found::Nothing(None));
    };
    let mut saved: Saved = serde_json::from_slice(&bytes)
        .map_err(|e| Damage::Corrupt(format!("the saved replica state is damaged: {e}")))?;
    if saved.format != SAVED_FORMAT {
        return Err(Damage::Config(format!(
            "holds state of format {}, this version reads format {SAVED_FORMAT}",
            saved.format
        )));
    }
    // A replica that moved (a pod re-created with another IP) keeps what
    // its disk holds, as a new incarnation at its new address: like a
    // replica that copied the state of the one it was, it names no event
    // id of the old identity again.
    let moved = saved.id.address() != address.as_str();
    if !saved.whole {
        let why = "the last run was still copying a member's state".to_string();
        // Its own writes may be held nowhere else: they are written again.
        let store = load_store(handles).unwrap_or_default();
        // Its count of its own writes: none it made after was acknowledged
        // or sent (a step's effects wait until the step is on disk).
        let last = read_count(handles, &saved.id);
        return Ok(Found::Rescue(
            why,
            Rescued::of(&store, &saved.id, |_| 0, last),
        ));
    }
    let last: Option<Run> = read(RUN)?.and_then(|b| serde_json::from_slice(&b).ok());
    if let Some(last) = last {
        let now = Run::current(false, mode);
        if last.os && !last.clean && last.boot != now.boot {
            return Ok(Found::Nothing(Some(
                "the machine restarted after a run under DURABILITY=os that did not stop cleanly: writes it acknowledged may be lost".into(),
            )));
        }
    }
    // A torn tail loses only what was not durable yet; a journal missing
    // batches noted durable lost them to damage in its middle (its
    // recovery takes any broken batch for the torn last one).
    let last = last_batch(handles);
    if last < noted {
        return Err(Damage::Corrupt(format!(
            "the journal is damaged: it lost steps {}..={noted}, which were durable",
            last + 1
        )));
    }
    let mut clock = VectorClock::new();
    for item in handles.meta.prefix(CLOCK) {
        let (key, value) = item
            .into_inner()
            .map_err(|e| Damage::Corrupt(format!("cannot read the clock: {e}")))?;
        let id = std::str::from_utf8(&key[CLOCK.len()..])
            .ok()
            .and_then(|t| ReplicaId::parse(t).ok());
        let n = <[u8; 8]>::try_from(&*value).ok().map(u64::from_le_bytes);
        let (Some(id), Some(n)) = (id, n) else {
            return Err(Damage::Corrupt("a clock record is damaged".into()));
        };
        clock.set(id, n);
    }
    saved.known.merge(&clock);
    let store = load_store(handles)?;
    if moved {
        let id = ReplicaId::new(address.as_str(), &crate::incarnation::fresh());
        warn!(old = %saved.id, new = %id, "the state on disk was written at another address (SOCKET_ADDRESS changed): kept, under a new incarnation");
        saved.id = id;
    }
    Ok(Found::Restore(Box::new((saved, store))))
}

/// The journal files under the database and how much of each was
/// written: up to its last byte that is not zero (journal files are made
/// longer than what they hold, and recovery trims that room away, which
/// is no loss).
fn journal_sizes(path: &Path) -> BTreeMap<PathBuf, u64> {
    let mut found = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(path) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "jnl") {
            if let Ok(written) = written_length(&path) {
                found.insert(path, written);
            }
        }
    }
    found
}

/// The length of `path` without the zeros at its end. The room a journal
/// file is made with is a hole in a sparse file, skipped at once where the
/// file system says where data ends.
fn written_length(path: &Path) -> std::io::Result<u64> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    let mut end = data_end(&file).unwrap_or(len).min(len);
    let mut chunk = vec![0u8; 1 << 16];
    while end > 0 {
        let start = end.saturating_sub(chunk.len() as u64);
        let len = (end - start) as usize;
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut chunk[..len])?;
        if let Some(i) = chunk[..len].iter().rposition(|&b| b != 0) {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// Where the last stretch of data of `file` ends: past it there are only
/// holes (`None` where the file system cannot tell).
fn data_end(file: &std::fs::File) -> Option<u64> {
    use rustix::fs::{seek, SeekFrom};
    let mut at = 0;
    // A journal has a few stretches at most; the bound only guards against
    // a file system answering oddly.
    for _ in 0..1024 {
        let hole = seek(file, SeekFrom::Hole(at)).ok()?;
        match seek(file, SeekFrom::Data(hole)) {
            Ok(data) if data > hole => at = data,
            _ => return Some(hole),
        }
    }
    None
}

/// The file an error opening the database is most likely about: the
/// newest journal for a journal error, else the database directory.
fn damaged_file(path: &Path, error: &fjall::Error) -> PathBuf {
    if matches!(error, fjall::Error::JournalRecovery(_)) {
        if let Some((file, _)) = journal_sizes(path).into_iter().next_back() {
            return file;
        }
    }
    path.to_path_buf()
}

/// The number of the last step in the database (0 if none).
fn last_batch(handles: &Handles) -> u64 {
    let bytes = handles.meta.get(BATCH).ok().flatten();
    bytes
        .and_then(|b| <[u8; 8]>::try_from(&*b).ok())
        .map_or(0, u64::from_le_bytes)
}

/// The number of the last step noted durable beside the database (0 if
/// none).
fn read_note(dir: &Path) -> u64 {
    std::fs::read(dir.join(SYNCED))
        .ok()
        .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
        .map_or(0, u64::from_le_bytes)
}

/// Reads every stored version into a store: one thread reads and decodes
/// the database while this one fills the store.
fn load_store(handles: &Handles) -> Result<Store, Damage> {
    const CHUNK: usize = 16_384;
    let mut store = Store::new();
    store.reserve_keys(handles.data.approximate_len());
    let data = handles.data.clone();
    let (send, receive) = std::sync::mpsc::sync_channel::<Result<Vec<(Key, Version)>, Damage>>(4);
    let reader = std::thread::spawn(move || {
        let mut decoder = Decoder::default();
        let mut chunk = Vec::with_capacity(CHUNK);
        for item in data.iter() {
            let decoded = item
                .into_inner()
                .map_err(|e| Damage::Corrupt(format!("cannot read the data: {e}")))
                .and_then(|(key, value)| decode(&mut decoder, &key, &value));
            match decoded {
                Ok(pair) => chunk.push(pair),
                Err(damage) => {
                    let _ = send.send(Err(damage));
                    return;
                }
            }
            if chunk.len() == CHUNK && send.send(Ok(std::mem::take(&mut chunk))).is_err() {
                return;
            }
        }
        let _ = send.send(Ok(chunk));
    });
    for chunk in receive {
        for (key, version) in chunk? {
            store.insert_absent(key, &version);
        }
    }
    let _ = reader.join();
    Ok(store)
}

fn decode(decoder: &mut Decoder, key: &[u8], value: &[u8]) -> Result<(Key, Version), Damage> {
    let text = std::str::from_utf8(key)
        .map_err(|_| Damage::Corrupt("a stored key is not UTF-8".into()))?;
    let key = Key::stored(text)
        .map_err(|_| Damage::Corrupt(format!("the stored key {text:?} is invalid")))?;
    let version = decoder
        .decode(value)
        .map_err(|e| Damage::Corrupt(format!("the record of key {text:?} is damaged: {e}")))?;
    Ok((key, version))
}
