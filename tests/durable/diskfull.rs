//! A full disk: a replica whose `DATA_DIR` is on a small tmpfs the test
//! mounts (root only) and then fills. Writes are refused with a JSON 503,
//! reads go on, writes resume once space is back, and nothing acknowledged
//! is lost across a SIGKILL and restart.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use libtest_mimic::Trial;
use serde_json::{json, Value};

use crate::client;
use crate::common::DEADLINE;
use crate::harness::{Cluster, Data};

const NAME: &str =
    "diskfull::a_full_disk_refuses_writes_keeps_reads_and_recovers_without_losing_a_write";

/// The size of the file system the replica writes to.
const SIZE: &str = "48m";

/// The test, or why it cannot run here: reported as ignored, with the
/// reason, or failed under `CI=true` (or `1`).
pub fn trial() -> Trial {
    match unavailable() {
        None => Trial::test(NAME, || {
            a_full_disk_refuses_writes_keeps_reads_and_recovers();
            Ok(())
        }),
        Some(why) if under_ci() => Trial::test(NAME, move || {
            Err(format!(
                "cannot run here: {why}. CI is set, so a test that checks nothing fails; \
                 run it as root (mounting a tmpfs)"
            )
            .into())
        }),
        Some(why) => {
            eprintln!("\n!!! {NAME} is ignored, nothing is checked: {why} !!!\n");
            Trial::test(NAME, || Ok(())).with_ignored_flag(true)
        }
    }
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

/// Writes zeros to `path` until the file system is full (bounded: the
/// file system is small).
fn fill(path: &PathBuf) -> u64 {
    let mut file = std::fs::File::create(path).expect("create the filler");
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
    total
}

fn is_disk_unavailable(r: &crate::common::Reply, method: &str) -> bool {
    r.status == 503
        && r.body["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("Disk unavailable"))
        && r.body["message"] == json!(format!("Error in {method}"))
}

fn a_full_disk_refuses_writes_keeps_reads_and_recovers() {
    // Dropped in reverse order: the replica is killed before the unmount.
    let fs = Tmpfs::mount(SIZE).unwrap_or_else(|e| panic!("{e}"));
    let mut cluster = Cluster::start(1, Data::Under(fs.path().to_path_buf()));
    let addr = cluster.addr(0).to_string();
    let mut expected: Vec<(String, Option<Value>)> = Vec::new();
    let mut ctx = json!("");
    for j in 0..20 {
        let key = format!("before-full-{j}");
        let r = client::put(&addr, &key, &json!(j), &ctx).expect("PUT");
        assert_eq!(r.status, 201, "{r:?}");
        ctx = r.ctx();
        expected.push((key, Some(json!(j))));
    }

    let filler = fs.path().join("filler");
    let filled = fill(&filler);
    eprintln!("filled the file system with {filled} bytes");

    // Writes are refused (those acknowledged before the replica noticed
    // must be kept like any other).
    let mut n = 0;
    let refused = client::poll(DEADLINE, "a write refused with `Disk unavailable`", || {
        n += 1;
        let key = format!("while-full-{n}");
        let r = client::put(&addr, &key, &json!(n), &ctx)?;
        match r.status {
            200 | 201 => {
                ctx = r.ctx();
                expected.push((key, Some(json!(n))));
                Err("acknowledged".to_string())
            }
            _ => Ok((key, r)),
        }
    });
    let (refused_key, r) = refused;
    r.assert_json();
    assert!(
        is_disk_unavailable(&r, "PUT"),
        "a write to a full disk must get 503 `Disk unavailable`: {r:?}"
    );
    eprintln!("refused: {}", r.text);
    expected.push((refused_key, None));

    let (victim, value) = expected[0].clone();
    let r = client::delete(&addr, &victim, &ctx).expect("DELETE");
    r.assert_json();
    assert!(
        is_disk_unavailable(&r, "DELETE"),
        "a DELETE on a full disk must get 503 `Disk unavailable`: {r:?}"
    );
    // Reads go on, and the refused writes were not applied.
    let r = client::get(&addr, &victim, &ctx).expect("GET");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(Some(&r.body["value"]), value.as_ref(), "{r:?}");
    client::wait_contents(std::slice::from_ref(&addr), &expected);
    let health = cluster.health(0);
    assert_eq!(
        health["durability"]["disk"],
        json!("unavailable"),
        "{health}"
    );

    // Space returns: writes work again.
    std::fs::remove_file(&filler).expect("remove the filler");
    let freed = Instant::now();
    let mut n = 0;
    client::poll(DEADLINE, "a write accepted once space is back", || {
        n += 1;
        let key = format!("after-space-{n}");
        let r = client::put(&addr, &key, &json!(n), &ctx)?;
        match r.status {
            200 | 201 => {
                ctx = r.ctx();
                expected.push((key, Some(json!(n))));
                Ok(())
            }
            503 if is_disk_unavailable(&r, "PUT") => {
                expected.push((key, None));
                Err(r.text)
            }
            _ => panic!("unexpected answer while space returns: {r:?}"),
        }
    });
    eprintln!(
        "writes accepted again {:?} after the space was freed",
        freed.elapsed()
    );
    client::poll(Duration::from_secs(10), "/health disk ok", || {
        let health = cluster.health(0);
        if health["durability"]["disk"] == json!("ok") {
            Ok(())
        } else {
            Err(health.to_string())
        }
    });

    // Nothing acknowledged is lost.
    cluster.kill(0);
    cluster.restart(0);
    client::wait_contents(std::slice::from_ref(&addr), &expected);
    drop(cluster);
    drop(fs);
}
