//! kvctl sessions: the latest causal context, kept in a file so that
//! separate runs of `kvctl` stay causally ordered.
//!
//! A session file holds `{"causal-metadata": M}`, where `M` is the merge
//! of every context the session's commands got back. Each command starts
//! from it and merges its answer's context in, so `kvctl put a 1` then
//! `kvctl get a` at another replica reads the write.
//!
//! Several processes may share a session. A writer takes an exclusive lock
//! on a sibling lock file (`<file>.lock`; never the data file itself, which
//! is replaced by a rename and so changes inode), reads the file, merges
//! its context in (pointwise maximum, so nothing any process learned is
//! lost), writes a temporary file in the same directory and renames it
//! over the old one. Readers take no lock: a rename is atomic, so they see
//! the old contents or the new, never half of either.
//!
//! Files live in `<state dir>/sessions/<name>.json`; the state directory
//! is `$KVCTL_STATE_DIR`, else `$XDG_STATE_HOME/kvctl`, else
//! `~/.local/state/kvctl` (the XDG base-directory convention).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{json, Value};

use crate::causal::{context, CausalContext};
use crate::client::merge_contexts;

/// The session used when none is named.
pub const DEFAULT_SESSION: &str = "default";

/// Why a session could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The session name is not a plain file name.
    #[error("invalid session name {0:?}: use letters, digits, '-', '_' and '.'")]
    BadName(String),
    /// No state directory could be found for the session files.
    #[error(
        "no state directory: set KVCTL_STATE_DIR or HOME, or pass --session-file or --no-session"
    )]
    NoStateDir,
    /// The file holds something that is not a session.
    #[error("session file {path} is corrupt ({reason}); `kvctl session reset` starts a new one")]
    Corrupt {
        /// The session file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Reading, locking or writing failed.
    #[error("session file {path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The failure.
        source: io::Error,
    },
}

/// The directory for kvctl's state when `KVCTL_STATE_DIR` is not set:
/// `$XDG_STATE_HOME/kvctl`, else `$HOME/.local/state/kvctl`.
pub fn default_state_dir() -> Option<PathBuf> {
    let absolute = |name: &str| {
        std::env::var_os(name)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    if let Some(state) = absolute("XDG_STATE_HOME") {
        return Some(state.join("kvctl"));
    }
    absolute("HOME").map(|home| home.join(".local").join("state").join("kvctl"))
}

/// The file of session `name` under `state_dir`.
pub fn session_path(state_dir: &Path, name: &str) -> Result<PathBuf, SessionError> {
    let valid = !name.is_empty()
        && name.len() <= 100
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !valid {
        return Err(SessionError::BadName(name.to_string()));
    }
    Ok(state_dir.join("sessions").join(format!("{name}.json")))
}

/// A session file: the causal context shared by the commands of one session.
#[derive(Clone, Debug)]
pub struct SessionFile {
    path: PathBuf,
}

impl SessionFile {
    /// The session stored at `path` (the file need not exist yet).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SessionFile { path: path.into() }
    }

    /// Where the session is stored.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stored context, canonically printed (`{}` if there is no file).
    pub fn load(&self) -> Result<Value, SessionError> {
        let text = match fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(json!({})),
            Err(source) => return Err(self.io(source)),
        };
        let corrupt = |reason: String| SessionError::Corrupt {
            path: self.path.clone(),
            reason,
        };
        let stored: Value = serde_json::from_str(&text).map_err(|e| corrupt(e.to_string()))?;
        let Some(metadata) = stored.get("causal-metadata") else {
            return Err(corrupt("no \"causal-metadata\" field".into()));
        };
        let parsed = CausalContext::parse(Some(metadata)).map_err(corrupt)?;
        Ok(context::print(parsed.clock()))
    }

    /// Merges `context` into the stored one, under the session's lock, and
    /// returns what is stored now: everything this and every other process
    /// sharing the session has learned.
    pub fn merge(&self, context: &Value) -> Result<Value, SessionError> {
        self.locked(|| {
            let stored = self.load()?;
            let merged =
                merge_contexts(&stored, context).map_err(|reason| SessionError::Corrupt {
                    path: self.path.clone(),
                    reason: format!("cannot merge the context {context}: {reason}"),
                })?;
            // Nothing new (a read, say): leave the file alone.
            if merged != stored || !self.path.exists() {
                self.write(&merged)?;
            }
            Ok(merged)
        })
    }

    /// Forgets the stored context (removes the file), under the lock.
    pub fn reset(&self) -> Result<(), SessionError> {
        if !self.path.exists() {
            return Ok(());
        }
        self.locked(|| match fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(self.io(source)),
        })
    }

    /// Runs `f` holding the exclusive lock on `<file>.lock`.
    fn locked<T>(&self, f: impl FnOnce() -> Result<T, SessionError>) -> Result<T, SessionError> {
        let lock_path = self.lock_path();
        if let Some(dir) = lock_path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(|source| SessionError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|source| SessionError::Io {
                path: lock_path.clone(),
                source,
            })?;
        let mut lock = fd_lock::RwLock::new(file);
        // Blocks until every other holder has released it; holders only
        // read, merge and rename, so the wait is short.
        let _guard = lock.write().map_err(|source| SessionError::Io {
            path: lock_path.clone(),
            source,
        })?;
        f()
    }

    /// Replaces the file with one holding `metadata`: a temporary file in
    /// the same directory, flushed to disk, renamed over the old one.
    fn write(&self, metadata: &Value) -> Result<(), SessionError> {
        static WRITES: AtomicU64 = AtomicU64::new(0);
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "session".into());
        let temp = self.path.with_file_name(format!(
            ".{name}.tmp-{}-{}",
            std::process::id(),
            WRITES.fetch_add(1, Ordering::Relaxed)
        ));
        let text = serde_json::to_string_pretty(&json!({"causal-metadata": metadata}))
            .expect("a JSON value prints");
        let written = File::create(&temp).and_then(|mut file| {
            file.write_all(text.as_bytes())?;
            file.write_all(b"\n")?;
            file.sync_all()
        });
        let renamed = written.and_then(|()| fs::rename(&temp, &self.path));
        renamed.map_err(|source| {
            let _ = fs::remove_file(&temp);
            self.io(source)
        })
    }

    fn lock_path(&self) -> PathBuf {
        let mut path = self.path.clone().into_os_string();
        path.push(".lock");
        PathBuf::from(path)
    }

    fn io(&self, source: io::Error) -> SessionError {
        SessionError::Io {
            path: self.path.clone(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_session() -> (tempfile::TempDir, SessionFile) {
        let dir = tempfile::tempdir().unwrap();
        let session = SessionFile::new(session_path(dir.path(), DEFAULT_SESSION).unwrap());
        (dir, session)
    }

    #[test]
    fn a_missing_session_is_the_empty_context() {
        let (_dir, session) = temp_session();
        assert_eq!(session.load().unwrap(), json!({}));
    }

    #[test]
    fn merge_keeps_the_pointwise_maximum_and_survives_a_reload() {
        let (_dir, session) = temp_session();
        let first = session.merge(&json!({"a#1": 3, "b#1": 1})).unwrap();
        assert_eq!(first, json!({"a#1": 3, "b#1": 1}));
        // A context that knows less of `a` and more of `b`, as another
        // process sharing the session would send.
        let second = session
            .merge(&json!({"a#1": 2, "b#1": 4, "c#1": 1}))
            .unwrap();
        assert_eq!(second, json!({"a#1": 3, "b#1": 4, "c#1": 1}));
        assert_eq!(session.load().unwrap(), second);
        // The empty forms change nothing.
        for empty in [json!(""), json!(null), json!({})] {
            assert_eq!(session.merge(&empty).unwrap(), second);
        }
    }

    #[test]
    fn merge_creates_the_directories_and_leaves_no_temporary_file() {
        let (dir, session) = temp_session();
        session.merge(&json!({"a#1": 1})).unwrap();
        let names: Vec<String> = fs::read_dir(dir.path().join("sessions"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        let mut names = names;
        names.sort();
        assert_eq!(names, ["default.json", "default.json.lock"]);
        let stored: Value =
            serde_json::from_str(&fs::read_to_string(session.path()).unwrap()).unwrap();
        assert_eq!(stored, json!({"causal-metadata": {"a#1": 1}}));
    }

    #[test]
    fn reset_forgets_the_context() {
        let (_dir, session) = temp_session();
        session.reset().unwrap();
        session.merge(&json!({"a#1": 1})).unwrap();
        session.reset().unwrap();
        assert_eq!(session.load().unwrap(), json!({}));
        assert!(!session.path().exists());
    }

    #[test]
    fn a_corrupt_file_is_reported_not_ignored() {
        let (_dir, session) = temp_session();
        session.merge(&json!({"a#1": 1})).unwrap();
        for bad in ["{not json", "[1]", r#"{"causal-metadata": 5}"#] {
            fs::write(session.path(), bad).unwrap();
            let err = session.load().unwrap_err();
            assert!(matches!(err, SessionError::Corrupt { .. }), "{bad}: {err}");
            assert!(err.to_string().contains("session reset"), "{err}");
            assert!(session.merge(&json!({"a#1": 2})).is_err());
        }
        session.reset().unwrap();
        assert_eq!(session.load().unwrap(), json!({}));
    }

    #[test]
    fn a_malformed_context_is_not_merged() {
        let (_dir, session) = temp_session();
        session.merge(&json!({"a#1": 1})).unwrap();
        assert!(session.merge(&json!([1, 2])).is_err());
        assert_eq!(session.load().unwrap(), json!({"a#1": 1}));
    }

    #[test]
    fn session_names_cannot_escape_the_directory() {
        let dir = Path::new("/state");
        assert_eq!(
            session_path(dir, "work-1.b_c").unwrap(),
            Path::new("/state/sessions/work-1.b_c.json")
        );
        for bad in ["", "../x", "a/b", ".hidden", "a b", "é"] {
            assert!(session_path(dir, bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn concurrent_writers_lose_no_update() {
        // Eight writers, each raising its own entry one step at a time and
        // always sending only what it knows itself: without the lock, a
        // read-merge-write race would drop another writer's latest entry.
        let (_dir, session) = temp_session();
        const WRITERS: usize = 8;
        const STEPS: u64 = 40;
        std::thread::scope(|scope| {
            for w in 0..WRITERS {
                let session = SessionFile::new(session.path());
                scope.spawn(move || {
                    for n in 1..=STEPS {
                        let merged = session.merge(&json!({format!("w#{w}"): n})).unwrap();
                        assert!(merged[format!("w#{w}")].as_u64().unwrap() >= n);
                        // A reader sees a whole file at every moment.
                        session.load().unwrap();
                    }
                });
            }
        });
        let stored = session.load().unwrap();
        for w in 0..WRITERS {
            assert_eq!(stored[format!("w#{w}")], json!(STEPS), "{stored}");
        }
    }
}
