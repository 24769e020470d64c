//! Damaged data directories: a torn journal tail is truncated and the
//! replica starts with what it acknowledged; a corrupt journal stops it
//! with one line naming the file, unless told to discard its state.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use crate::client;
use crate::harness::{Cluster, Data};
use crate::recovery::{assert_context_served, write_keys};

/// The journals (`<N>.jnl`) of the database under `data_dir`, oldest
/// (lowest N) first.
fn journals(data_dir: &Path) -> Vec<PathBuf> {
    let db = data_dir.join("db");
    let mut found: Vec<(u64, PathBuf)> = std::fs::read_dir(&db)
        .unwrap_or_else(|e| panic!("{}: {e}", db.display()))
        .flatten()
        .filter_map(|entry| {
            let path = entry.path();
            let n = path
                .file_name()?
                .to_str()?
                .strip_suffix(".jnl")?
                .parse()
                .ok()?;
            Some((n, path))
        })
        .collect();
    found.sort();
    assert!(!found.is_empty(), "no journal in {}", db.display());
    found.into_iter().map(|(_, path)| path).collect()
}

/// The bytes a journal holds before its preallocated (zero) space: fjall
/// preallocates a new journal, so the file is longer than what it holds.
fn written(bytes: &[u8]) -> &[u8] {
    let end = bytes
        .chunks(4096)
        .position(|chunk| chunk.iter().all(|&b| b == 0))
        .map_or(bytes.len(), |i| i * 4096);
    &bytes[..end]
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// What fjall writes when a batch is cut short by a crash: a batch start
/// (tag 1, two items, a sequence number), then an item (tag 2, a value,
/// uncompressed, keyspace 0, a 16-byte key, a 100-byte value) whose value
/// stops after 13 bytes. The key is a marker to look for afterwards.
const TORN_MARKER: &[u8] = b"TORN-TAIL-MARKER";

fn torn_batch() -> Vec<u8> {
    let mut bytes = vec![1u8];
    bytes.extend(2u32.to_le_bytes());
    bytes.extend((1u64 << 40).to_le_bytes());
    bytes.extend([2u8, 0, 0]);
    bytes.extend(0u64.to_le_bytes());
    bytes.extend((TORN_MARKER.len() as u16).to_le_bytes());
    bytes.extend(100u32.to_le_bytes());
    bytes.extend(100u32.to_le_bytes());
    bytes.extend(TORN_MARKER);
    bytes.extend(b"partial value");
    bytes
}

/// Appends a torn batch to the newest journal of `data_dir`; returns the
/// journal and its length before.
fn tear_tail(data_dir: &Path) -> (PathBuf, u64) {
    let journal = journals(data_dir).pop().expect("a journal");
    let before = std::fs::metadata(&journal).expect("journal").len();
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&journal)
        .expect("open the journal");
    file.write_all(&torn_batch()).expect("append");
    file.sync_all().expect("sync");
    (journal, before)
}

pub fn a_torn_journal_tail_is_truncated_logged_and_data_kept() {
    let mut cluster = Cluster::start(1, Data::Durable);
    let id = cluster.replica_id(0);
    let mut expected = Vec::new();
    // Round 0: the journal as fjall created it (preallocated to 64 MiB of
    // zeros: the torn batch lands after them). Round 1: the journal as
    // recovery left it (cut to what it holds: the torn batch directly
    // follows the last batch). The truncation is checked in the files, not
    // only in the log: the torn batch's marker must be gone.
    for round in 0..2 {
        let (written_now, _) = write_keys(
            &cluster,
            &format!("torn{round}-"),
            25,
            |j| json!({"round": round, "j": j}),
        );
        expected.extend(written_now);
        cluster.kill(0);
        let (journal, before) = tear_tail(cluster.data_dir(0));
        eprintln!(
            "round {round}: appended {} bytes to {} ({before} bytes)",
            torn_batch().len(),
            journal.display()
        );
        cluster.restart(0);

        let log = cluster.log_text(0);
        assert!(
            log.lines().any(|l| l.contains("journal tail truncated")),
            "round {round}: no log line says `journal tail truncated`:\n{log}"
        );
        for journal in journals(cluster.data_dir(0)) {
            let bytes = std::fs::read(&journal).expect("read journal");
            assert!(
                find(&bytes, TORN_MARKER).is_none(),
                "round {round}: the torn batch is still in {}",
                journal.display()
            );
        }
        assert_eq!(cluster.replica_id(0), id, "round {round}: identity changed");
        client::wait_contents(&cluster.addrs(), &expected);
        // The journal takes writes again after the cut.
        let key = format!("after-torn{round}");
        let r = client::put(cluster.addr(0), &key, &json!(round), &json!("")).expect("PUT");
        assert_eq!(r.status, 201, "{r:?}");
        expected.push((key, Some(json!(round))));
    }
    cluster.kill(0);
    cluster.restart(0);
    assert_eq!(cluster.replica_id(0), id);
    client::wait_contents(&cluster.addrs(), &expected);
}

const PROBE: &str = "CORRUPTION-PROBE-";

pub fn a_corrupt_journal_is_refused_then_discarded_when_asked() {
    let mut cluster = Cluster::start(3, Data::Durable);
    let keys = 60;
    let (expected, ctx) = write_keys(&cluster, "corrupt-", keys, |j| {
        json!(format!(
            "{PROBE}{j:03}-abcdefghijklmnopqrstuvwxyz0123456789"
        ))
    });
    client::wait_contents(&cluster.addrs(), &expected);
    let before = cluster.replica_id(2);
    cluster.kill(2);

    // Flip a byte inside a value written halfway through, in a batch that
    // later batches follow (not the tail): its checksum no longer matches.
    let data_dir = cluster.data_dir(2).to_path_buf();
    let all = journals(&data_dir);
    let middle = format!("{PROBE}{:03}-", keys / 2);
    let last = format!("{PROBE}{:03}-", keys - 1);
    let mut corrupted = None;
    for (n, journal) in all.iter().enumerate() {
        let bytes = std::fs::read(journal).expect("read journal");
        let bytes = written(&bytes);
        let Some(at) = find(bytes, middle.as_bytes()) else {
            continue;
        };
        let followed = find(&bytes[at..], last.as_bytes()).is_some()
            || all[n + 1..]
                .iter()
                .any(|j| find(&std::fs::read(j).unwrap_or_default(), last.as_bytes()).is_some());
        assert!(
            followed,
            "the batch holding {middle} is the journal's tail in {}",
            journal.display()
        );
        let at = (at + middle.len() + 10) as u64;
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(journal)
            .expect("open journal");
        let mut byte = [0u8; 1];
        std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(at)).expect("seek");
        std::io::Read::read_exact(&mut file, &mut byte).expect("read");
        std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(at)).expect("seek");
        file.write_all(&[byte[0] ^ 0x01]).expect("write");
        file.sync_all().expect("sync");
        corrupted = Some((journal.clone(), at));
        break;
    }
    let (journal, at) = corrupted.unwrap_or_else(|| {
        panic!("no journal of replica 2 holds {middle}; journals: {all:?} (cannot corrupt a batch)")
    });
    eprintln!("flipped a bit at byte {at} of {}", journal.display());

    // Refused: exit status 1, one line naming a path under DATA_DIR.
    let (status, stderr) = cluster.run_to_exit(2, &[], &[], Duration::from_secs(20));
    assert_eq!(
        status.code(),
        Some(1),
        "a corrupt journal must stop the replica with status 1; stderr:\n{stderr}"
    );
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("causalkv: "))
        .collect();
    assert_eq!(
        errors.len(),
        1,
        "exactly one stderr line must start `causalkv: `; stderr:\n{stderr}"
    );
    assert!(
        errors[0].contains(&*data_dir.to_string_lossy()),
        "the error must name a path under {}: {}",
        data_dir.display(),
        errors[0]
    );
    eprintln!("refused: {}", errors[0]);

    // Discarded when asked: a new incarnation that copies every key.
    cluster.restart_with(2, &[], &["--discard-corrupt-state"]);
    let after = cluster.replica_id(2);
    assert_eq!(client::split_id(&after).0, cluster.addr(2), "{after}");
    assert_ne!(
        client::split_id(&after).1,
        client::split_id(&before).1,
        "a replica that discarded its state must take a new incarnation"
    );
    client::wait_contents(&[cluster.addr(2).to_string()], &expected);
    assert_context_served(cluster.addr(2), &ctx, &expected);
    cluster.wait_views();

    // The state it copied is durable: it restarts (without the flag) as
    // the same new incarnation.
    cluster.kill(2);
    cluster.restart(2);
    assert_eq!(cluster.replica_id(2), after);
    client::wait_contents(&[cluster.addr(2).to_string()], &expected);
}

/// SPEC: a torn tail is truncated, other corruption stops the replica. A
/// batch in the middle of the journal whose end marker is damaged (its
/// trailer no longer reads `FJL`) is not a torn tail: batches follow it.
/// The replica must refuse to start, or start with every acknowledged
/// write, never start without the writes recorded after the damage.
pub fn a_damaged_batch_in_the_middle_of_the_journal_is_not_taken_for_a_torn_tail() {
    let mut cluster = Cluster::start(1, Data::Durable);
    let (expected, _) = write_keys(&cluster, "mid-", 40, |j| json!({"j": j}));
    cluster.kill(0);

    let data_dir = cluster.data_dir(0).to_path_buf();
    let journal = journals(&data_dir).pop().expect("a journal");
    let bytes = std::fs::read(&journal).expect("read journal");
    let used = written(&bytes);
    // An end marker: tag 3, an 8-byte checksum, then the trailer `FJL`.
    let trailers: Vec<usize> = (9..used.len().saturating_sub(2))
        .filter(|&p| &used[p..p + 3] == b"FJL" && used[p - 9] == 3)
        .collect();
    assert!(
        trailers.len() >= 10,
        "found {} batch end markers in {}",
        trailers.len(),
        journal.display()
    );
    let at = (trailers[trailers.len() / 2] + 2) as u64;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(&journal)
        .expect("open journal");
    std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(at)).expect("seek");
    file.write_all(b"X").expect("write");
    file.sync_all().expect("sync");
    eprintln!(
        "damaged the end marker of batch {} of {} at byte {at} of {}",
        trailers.len() / 2 + 1,
        trailers.len(),
        journal.display()
    );

    match cluster.try_restart(0) {
        Err((status, stderr)) => {
            assert_eq!(status.code(), Some(1), "stderr:\n{stderr}");
            let errors: Vec<&str> = stderr
                .lines()
                .filter(|l| l.starts_with("causalkv: "))
                .collect();
            assert_eq!(errors.len(), 1, "stderr:\n{stderr}");
            assert!(
                errors[0].contains(&*data_dir.to_string_lossy()),
                "{}",
                errors[0]
            );
        }
        Ok(()) => {
            let mut lost = Vec::new();
            for (key, want) in &expected {
                let r = client::peek(cluster.addr(0), key).expect("GET");
                let seen = (r.status == 200).then(|| r.body["value"].clone());
                if &seen != want {
                    lost.push(format!("{key}: {} (acknowledged {want:?})", r.status));
                }
            }
            let log = cluster.log_text(0);
            let said: Vec<&str> = log
                .lines()
                .filter(|l| l.contains("journal tail truncated"))
                .collect();
            assert!(
                lost.is_empty(),
                "the replica started (same identity: {}) without {} of {} acknowledged writes: \
                 {lost:?}; its log says: {said:?}",
                cluster.replica_id(0),
                lost.len(),
                expected.len()
            );
        }
    }
}
