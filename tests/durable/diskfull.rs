//! A full disk: a replica whose `DATA_DIR` is on a small tmpfs the test
//! mounts (root only) and then fills. Writes are refused with a JSON 503,
//! reads go on, writes resume once space is back, and nothing acknowledged
//! is lost across a SIGKILL and restart.
//!
//! A write meets a full disk in two ways, each tested on its own (so that
//! neither depends on timing): the file system has less than the reserve
//! (8 MiB) free, and the replica refuses the write up front; or the reserve
//! is free but the write is bigger, and writing it fails (ENOSPC).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use libtest_mimic::Trial;
use serde_json::{json, Value};

use crate::client;
use crate::common::{Reply, DEADLINE};
use crate::harness::{Cluster, Data};

/// The size of the file system the replica writes to.
const SIZE: &str = "48m";

const MIB: u64 = 1 << 20;

/// The free space below which the replica refuses writes (the contract's
/// RESERVE).
const RESERVE: u64 = 8 * MIB;

/// The size of a write bigger than what is free above the reserve.
const BIG: usize = 12 << 20;

/// How long writes may take to resume once space is back (the contract
/// says a couple of seconds; generous for a loaded machine).
const RESUME: Duration = Duration::from_secs(15);

/// The root-only tests: each runs, or is reported as ignored with the
/// reason where a tmpfs cannot be mounted, or fails there under `CI=true`
/// (or `1`).
pub fn trials() -> Vec<Trial> {
    let tests: [(&'static str, fn()); 3] = [
        (
            "diskfull::a_nearly_full_disk_refuses_writes_keeps_reads_and_resumes_without_losing_a_write",
            a_nearly_full_disk_refuses_writes_keeps_reads_and_resumes,
        ),
        (
            "diskfull::a_write_bigger_than_the_free_space_is_refused_before_it_is_made_and_smaller_ones_go_on",
            a_write_bigger_than_the_free_space_is_refused,
        ),
        (
            "diskfull::a_write_that_failed_for_lack_of_space_leaves_no_event_id_to_reissue_after_a_crash",
            a_write_that_failed_leaves_no_event_id_to_reissue,
        ),
    ];
    let why = unavailable();
    tests
        .into_iter()
        .map(|(name, test)| match &why {
            None => Trial::test(name, move || {
                test();
                Ok(())
            }),
            Some(why) if under_ci() => {
                let why = why.clone();
                Trial::test(name, move || {
                    Err(format!(
                        "cannot run here: {why}. CI is set, so a test that checks nothing \
                         fails; run it as root (it mounts a tmpfs)"
                    )
                    .into())
                })
            }
            Some(why) => {
                eprintln!("\n!!! {name} is ignored, nothing is checked: {why} !!!\n");
                Trial::test(name, || Ok(())).with_ignored_flag(true)
            }
        })
        .collect()
}

fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

/// Why a tmpfs cannot be mounted here, if it cannot.
fn unavailable() -> Option<String> {
    match Command::new("id").arg("-u").output() {
        Ok(out) if String::from_utf8_lossy(&out.stdout).trim() == "0" => {}
        Ok(_) => return Some("not running as root: cannot mount a small file system".into()),
        Err(e) => {
            return Some(format!(
                "cannot tell whether this runs as root (`id -u`: {e})"
            ))
        }
    }
    match Tmpfs::mount("1m") {
        Ok(probe) => {
            drop(probe);
            None
        }
        Err(e) => Some(format!("cannot mount a tmpfs: {e}")),
    }
}

/// A tmpfs mounted on a temporary directory; unmounted when dropped (after
/// the processes using it are gone: declare it before the cluster).
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Result<Tmpfs, String> {
        let dir = tempfile::Builder::new()
            .prefix("causalkv-tmpfs-")
            .tempdir()
            .map_err(|e| format!("temporary directory: {e}"))?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs: {} {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount")
            .arg(self.dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            eprintln!(
                "umount {} failed; detaching it (umount -l)",
                self.dir.path().display()
            );
            let _ = Command::new("umount")
                .arg("-l")
                .arg(self.dir.path())
                .status();
        }
    }
}

/// A file filling the file system.
struct Filler {
    path: PathBuf,
    file: std::fs::File,
}

impl Filler {
    /// Writes zeros to `dir/filler` until the file system is full
    /// (bounded: the file system is small).
    fn fill(dir: &Path) -> Filler {
        let path = dir.join("filler");
        let mut file = std::fs::File::create(&path).expect("create the filler");
        let mut total = 0u64;
        for chunk in [1 << 20, 4096, 512] {
            let buf = vec![0u8; chunk];
            for _ in 0..1024 {
                match file.write(&buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => total += n as u64,
                }
            }
        }
        let _ = file.sync_all();
        eprintln!("filled the file system with {total} bytes");
        Filler { path, file }
    }

    /// Gives `bytes` back to the file system.
    fn leave_free(&self, bytes: u64) {
        let len = self.file.metadata().expect("filler").len();
        self.file
            .set_len(len.saturating_sub(bytes))
            .expect("shorten the filler");
    }

    fn remove(self) {
        std::fs::remove_file(&self.path).expect("remove the filler");
    }
}

/// Waits until the free space replica 0 reports (`/health`) satisfies
/// `ok`; returns it.
fn wait_free(cluster: &Cluster, what: &str, ok: impl Fn(u64) -> bool) -> u64 {
    client::poll(DEADLINE, what, || {
        let health = cluster.health(0);
        match health["durability"]["free-bytes"].as_u64() {
            Some(free) if ok(free) => Ok(free),
            _ => Err(health.to_string()),
        }
    })
}

fn is_disk_unavailable(r: &Reply, method: &str) -> bool {
    r.status == 503
        && r.body["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("Disk unavailable"))
        && r.body["message"] == json!(format!("Error in {method}"))
}

fn assert_disk_unavailable(r: &Reply, method: &str, what: &str) {
    r.assert_json();
    assert!(
        is_disk_unavailable(r, method),
        "{what} must get 503 `Disk unavailable`, message `Error in {method}`: {r:?}"
    );
}

/// A value of `len` characters that does not compress.
fn incompressible(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ALPHABET[(state >> 58) as usize] as char
        })
        .collect()
}

/// Keys and what they must hold; keys in doubt (a write refused: not
/// acknowledged, so it may or may not take effect) and what they may hold.
#[derive(Default)]
struct Expected {
    exact: Vec<(String, Option<Value>)>,
    in_doubt: Vec<(String, Vec<Option<Value>>)>,
}

impl Expected {
    fn check(&self, addr: &str) {
        client::wait_contents(&[addr.to_string()], &self.exact);
        for (key, allowed) in &self.in_doubt {
            let r = client::peek(addr, key).expect("GET");
            let seen = match r.status {
                200 => Some(r.body["value"].clone()),
                404 => None,
                _ => panic!("GET {key}: {r:?}"),
            };
            assert!(
                allowed.contains(&seen),
                "{key} holds {}, expected one of {} options",
                short(&format!("{seen:?}")),
                allowed.len()
            );
        }
    }
}

fn short(text: &str) -> String {
    if text.len() > 200 {
        format!("{}... ({} bytes)", &text[..200], text.len())
    } else {
        text.to_string()
    }
}

/// A replica on a fresh tmpfs of [`SIZE`], with 20 keys written through
/// it; returns them and the last context.
fn replica_on_tmpfs() -> (Tmpfs, Cluster, Expected, Value) {
    let fs = Tmpfs::mount(SIZE).unwrap_or_else(|e| panic!("{e}"));
    let limit = (2 * BIG).to_string();
    let cluster = Cluster::start_with(
        1,
        Data::Under(fs.path().to_path_buf()),
        &[("MAX_BODY_BYTES", &limit)],
    );
    let mut expected = Expected::default();
    let mut ctx = json!("");
    for j in 0..20 {
        let key = format!("before-full-{j}");
        let r = client::put(cluster.addr(0), &key, &json!(j), &ctx).expect("PUT");
        assert_eq!(r.status, 201, "{r:?}");
        ctx = r.ctx();
        expected.exact.push((key, Some(json!(j))));
    }
    (fs, cluster, expected, ctx)
}

/// Writes new keys until one is refused; those acknowledged meanwhile
/// must be kept like any other. Returns the refused answer.
fn write_until_refused(addr: &str, expected: &mut Expected, ctx: &mut Value) -> Reply {
    let mut n = 0;
    client::poll(DEADLINE, "a write refused with `Disk unavailable`", || {
        n += 1;
        let key = format!("while-full-{n}");
        let r = client::put(addr, &key, &json!(n), ctx)?;
        match r.status {
            200 | 201 => {
                *ctx = r.ctx();
                expected.exact.push((key, Some(json!(n))));
                Err("acknowledged".to_string())
            }
            _ => {
                expected.in_doubt.push((key, vec![None, Some(json!(n))]));
                Ok(r)
            }
        }
    })
}

/// Polls small writes until one is accepted (within [`RESUME`]).
fn wait_writes_resume(addr: &str, expected: &mut Expected, ctx: &mut Value) {
    let freed = Instant::now();
    let mut n = 0;
    client::poll(RESUME, "writes accepted again once space is back", || {
        n += 1;
        let key = format!("after-space-{n}");
        let r = client::put(addr, &key, &json!(n), ctx)?;
        match r.status {
            200 | 201 => {
                *ctx = r.ctx();
                expected.exact.push((key, Some(json!(n))));
                Ok(())
            }
            503 if is_disk_unavailable(&r, "PUT") => {
                expected.in_doubt.push((key, vec![None, Some(json!(n))]));
                Err(r.text)
            }
            _ => panic!("unexpected answer while space returns: {r:?}"),
        }
    });
    eprintln!(
        "writes accepted again {:?} after the space was freed",
        freed.elapsed()
    );
}

fn wait_disk_ok(cluster: &Cluster) {
    client::poll(RESUME, "/health durability.disk ok", || {
        let health = cluster.health(0);
        if health["durability"]["disk"] == json!("ok") {
            Ok(())
        } else {
            Err(health.to_string())
        }
    });
}

/// Less than the reserve free: writes refused up front.
fn a_nearly_full_disk_refuses_writes_keeps_reads_and_resumes() {
    // Dropped in reverse order: the replica is killed before the unmount.
    let (fs, mut cluster, mut expected, mut ctx) = replica_on_tmpfs();
    let addr = cluster.addr(0).to_string();
    let filler = Filler::fill(fs.path());
    filler.leave_free(2 * MIB);
    wait_free(&cluster, "free space below the reserve", |f| f < RESERVE);

    let r = write_until_refused(&addr, &mut expected, &mut ctx);
    assert_disk_unavailable(&r, "PUT", "a write to a nearly full disk");
    eprintln!("refused: {}", r.text);
    let (victim, value) = expected.exact.remove(0);
    let r = client::delete(&addr, &victim, &ctx).expect("DELETE");
    assert_disk_unavailable(&r, "DELETE", "a DELETE on a nearly full disk");
    expected.in_doubt.push((victim, vec![value, None]));

    // Reads go on (200 and 404).
    expected.check(&addr);
    let r = client::get(&addr, "never-written", &ctx).expect("GET");
    assert_eq!(r.status, 404, "{r:?}");
    let health = cluster.health(0);
    assert_eq!(
        health["durability"]["disk"],
        json!("unavailable"),
        "{health}"
    );

    filler.remove();
    wait_writes_resume(&addr, &mut expected, &mut ctx);
    wait_disk_ok(&cluster);

    // Nothing acknowledged is lost.
    cluster.kill(0);
    cluster.restart(0);
    expected.check(&addr);
    drop(cluster);
    drop(fs);
}

/// The reserve is free but a write is bigger: writing it fails. Returns
/// the big key and value.
fn fail_a_big_write(
    fs: &Tmpfs,
    cluster: &Cluster,
    expected: &mut Expected,
    ctx: &Value,
) -> (Filler, String, Value) {
    let filler = Filler::fill(fs.path());
    filler.leave_free(RESERVE + 2 * MIB);
    // Once the replica has seen the filler: the reserve is free, so the
    // write is not refused up front, but it does not fit.
    let free = wait_free(
        cluster,
        "free space above the reserve and below the write",
        |f| (RESERVE..BIG as u64).contains(&f),
    );
    let key = "too-big".to_string();
    let value = json!(incompressible(BIG));
    let r = client::put(cluster.addr(0), &key, &value, ctx).expect("PUT");
    assert!(
        r.status != 200 && r.status != 201,
        "a {BIG}-byte write with {free} bytes free was acknowledged: {}",
        short(&r.text)
    );
    assert_disk_unavailable(&r, "PUT", "a write bigger than the free space");
    eprintln!("refused ({free} bytes free): {}", r.text);
    expected
        .in_doubt
        .push((key.clone(), vec![None, Some(value.clone())]));
    (filler, key, value)
}

/// A write bigger than the free space (but with the reserve free) is
/// refused before it is made, so the disk never fails under it; smaller
/// writes that fit go on meanwhile, and the big one is taken once space
/// is back. Nothing acknowledged is lost.
fn a_write_bigger_than_the_free_space_is_refused() {
    let (fs, mut cluster, mut expected, mut ctx) = replica_on_tmpfs();
    let addr = cluster.addr(0).to_string();
    let (filler, key, value) = fail_a_big_write(&fs, &cluster, &mut expected, &ctx);
    // Refused up front: not made, at this replica or anywhere.
    expected.in_doubt.retain(|(k, _)| *k != key);
    expected.exact.push((key.clone(), None));
    let r = client::peek(&addr, &key).expect("GET");
    assert_eq!(
        r.status,
        404,
        "the refused write was made: {}",
        short(&r.text)
    );

    // A small write fits: taken, and kept.
    let r = client::put(&addr, "small-while-full", &json!("fits"), &ctx).expect("PUT");
    assert!(r.status == 200 || r.status == 201, "{r:?}");
    ctx = r.ctx();
    expected
        .exact
        .push(("small-while-full".into(), Some(json!("fits"))));
    expected.check(&addr);

    filler.remove();
    wait_disk_ok(&cluster);
    let big = client::poll(RESUME, "the big write taken once space is back", || {
        let r = client::put(&addr, &key, &value, &ctx)?;
        match r.status {
            200 | 201 => Ok(r),
            503 if is_disk_unavailable(&r, "PUT") => Err(short(&r.text)),
            _ => panic!("unexpected answer while space returns: {}", short(&r.text)),
        }
    });
    ctx = big.ctx();
    expected.exact.retain(|(k, _)| *k != key);
    expected.exact.push((key.clone(), Some(value.clone())));
    wait_writes_resume(&addr, &mut expected, &mut ctx);

    cluster.kill(0);
    cluster.restart(0);
    expected.check(&addr);
    drop(cluster);
    drop(fs);
}

/// The count a context gives replica `id` (0 if it does not name it).
fn count(ctx: &Value, id: &str) -> u64 {
    ctx.get(id).and_then(Value::as_u64).unwrap_or(0)
}

/// SPEC: a replica never issues an event id another write already has,
/// and a client passing back its context reads monotonically. A write
/// that failed for lack of space, if readers are nevertheless shown it
/// (with its event id in their context), must not vanish in a crash with
/// its id issued again.
fn a_write_that_failed_leaves_no_event_id_to_reissue() {
    let (fs, mut cluster, mut expected, ctx) = replica_on_tmpfs();
    let addr = cluster.addr(0).to_string();
    let id = cluster.replica_id(0);
    let (filler, key, value) = fail_a_big_write(&fs, &cluster, &mut expected, &ctx);

    // What a client reading the refused key is told.
    let read = client::get(&addr, &key, &json!("")).expect("GET");
    let seen = match read.status {
        200 => Some(read.body["value"].clone()),
        404 => None,
        _ => panic!("GET {key} on a full disk: {}", short(&read.text)),
    };
    assert!(seen.is_none() || seen == Some(value.clone()));
    let highest = count(&ctx, &id).max(count(&read.ctx(), &id));
    eprintln!(
        "the refused write of {key} is {} to readers; the read's context: {}",
        if seen.is_some() {
            "visible"
        } else {
            "not visible"
        },
        read.ctx()
    );

    // A crash while the disk is full; space back; a restart on the disk.
    cluster.kill(0);
    filler.remove();
    cluster.restart(0);
    assert_eq!(
        cluster.replica_id(0),
        id,
        "the replica came back as another incarnation"
    );
    expected.check(&addr);

    let r = client::put(&addr, "after-the-crash", &json!(1), &json!("")).expect("PUT");
    assert!(r.status == 200 || r.status == 201, "{r:?}");
    let issued = count(&r.ctx(), &id);
    assert!(
        issued > highest,
        "event id {id}:{issued} issued twice: before the crash, GET {key} (a write refused \
         with 503 `Disk unavailable`) answered {} with causal-metadata {} (the refused write, \
         served with that id); after a SIGKILL and restart, a new PUT answered {}",
        read.status,
        read.ctx(),
        r.text
    );
    if let Some(v) = seen {
        let again = client::get(&addr, &key, &read.ctx()).expect("GET");
        assert!(
            again.status == 200 && again.body["value"] == v,
            "monotonic reads: {key} was read with context {}, after the crash the same \
             context reads {} {}",
            read.ctx(),
            again.status,
            short(&again.text)
        );
    }
    drop(cluster);
    drop(fs);
}
