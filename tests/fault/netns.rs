//! A cluster of real `causalkv` processes, each in its own Linux network
//! namespace with a veth into one bridge: the topology of docker containers
//! on one subnet. Faults are made the way an operator would make them:
//! iptables rules inside the namespaces (partitions, also one-way),
//! SIGKILL (crash), SIGTERM (a graceful stop, as `docker stop` sends it), a
//! fresh process at the same address (restart), SIGSTOP/SIGCONT (a replica
//! that hangs without dying), and a DNS name whose addresses are rewritten
//! in every namespace's `/etc/hosts` (`VIEW_DNS` without a DNS server).
//!
//! Replicas may keep their state on disk ([`NetnsCluster::keep_state`]):
//! each slot (each address) then has a `DATA_DIR` of its own in a
//! temporary directory, kept across its restarts until it is deleted
//! ([`NetnsCluster::wipe_state`]) or the cluster is dropped.
//!
//! The harness only ever addresses the replicas it created: every address
//! it hands out lies in the subnet of its own bridge, and
//! [`NetnsCluster::check_target`] refuses anything else.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};

/// Port every replica listens on, as in the kevinDB convention.
pub const PORT: u16 = 8085;

/// Why replicas in network namespaces cannot run here, if they cannot:
/// creating namespaces needs root, and the faults need iproute2 (`ip`,
/// `tc`) and iptables.
pub fn unavailable() -> Option<String> {
    match Command::new("id").arg("-u").output() {
        Ok(out) if String::from_utf8_lossy(&out.stdout).trim() == "0" => {}
        Ok(_) => return Some("not running as root: network namespaces cannot be created".into()),
        Err(e) => {
            return Some(format!(
                "cannot tell whether this runs as root (`id -u`: {e})"
            ))
        }
    }
    for tool in ["ip", "tc", "iptables"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !found {
            return Some(format!("`{tool}` is not installed"));
        }
    }
    None
}

/// Whether this runs in CI (`CI` set to `true` or `1`), where a test that
/// cannot run must fail rather than pass having checked nothing.
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

fn run(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn run_quiet(args: &[&str]) {
    let _ = Command::new(args[0])
        .args(&args[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// One replica slot: a namespace, an address, maybe a running process.
pub struct Slot {
    /// Namespace name.
    pub netns: String,
    /// `ip:port` of the replica.
    pub address: String,
    /// The running process, if any.
    pub child: Option<Child>,
    /// How many processes have run in this slot.
    pub starts: usize,
    /// Whether the process is stopped with SIGSTOP.
    pub paused: bool,
}

/// The namespaced cluster.
pub struct NetnsCluster {
    tag: String,
    subnet: u8,
    bridge: String,
    binary: PathBuf,
    /// Per-run directory holding every replica's log.
    pub log_dir: PathBuf,
    /// The replica slots, by index.
    pub slots: Vec<Slot>,
    env: Vec<(String, String)>,
    blocked: BTreeSet<(usize, usize)>,
    slowed: BTreeSet<usize>,
    /// Where each slot's `DATA_DIR` lives, once replicas keep their state
    /// (deleted with the cluster, after its processes).
    data: Option<tempfile::TempDir>,
}

impl NetnsCluster {
    /// Creates the bridge and `capacity` namespaces (replicas are started
    /// separately). `tag` must be short: it prefixes interface names.
    pub fn create(
        tag: &str,
        subnet: u8,
        capacity: usize,
        binary: &Path,
        log_dir: &Path,
        env: Vec<(String, String)>,
    ) -> Result<Self, String> {
        std::fs::create_dir_all(log_dir).map_err(|e| e.to_string())?;
        let bridge = format!("{tag}br");
        let mut cluster = NetnsCluster {
            tag: tag.to_string(),
            subnet,
            bridge: bridge.clone(),
            binary: binary.to_path_buf(),
            log_dir: log_dir.to_path_buf(),
            slots: Vec::new(),
            env,
            blocked: BTreeSet::new(),
            slowed: BTreeSet::new(),
            data: None,
        };
        cluster.teardown_network();
        run(&["ip", "link", "add", &bridge, "type", "bridge"])?;
        run(&[
            "ip",
            "addr",
            "add",
            &format!("10.{subnet}.0.1/24"),
            "dev",
            &bridge,
        ])?;
        run(&["ip", "link", "set", &bridge, "up"])?;
        for i in 0..capacity {
            let netns = format!("{tag}n{i}");
            let veth = format!("{tag}v{i}");
            let ip = format!("10.{subnet}.0.{}", i + 2);
            run(&["ip", "netns", "add", &netns])?;
            run(&[
                "ip", "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &netns,
            ])?;
            run(&["ip", "link", "set", &veth, "master", &bridge, "up"])?;
            run(&[
                "ip",
                "-n",
                &netns,
                "addr",
                "add",
                &format!("{ip}/24"),
                "dev",
                "eth0",
            ])?;
            run(&["ip", "-n", &netns, "link", "set", "eth0", "up"])?;
            run(&["ip", "-n", &netns, "link", "set", "lo", "up"])?;
            cluster.slots.push(Slot {
                netns,
                address: format!("{ip}:{PORT}"),
                child: None,
                starts: 0,
                paused: false,
            });
        }
        Ok(cluster)
    }

    fn teardown_network(&self) {
        for i in 0..32 {
            // Deleting the host end removes the pair at once; a namespace
            // is torn down lazily by the kernel.
            run_quiet(&["ip", "link", "del", &format!("{}v{i}", self.tag)]);
            run_quiet(&["ip", "netns", "del", &format!("{}n{i}", self.tag)]);
            let _ = std::fs::remove_dir_all(format!("/etc/netns/{}n{i}", self.tag));
        }
        run_quiet(&["ip", "link", "del", &self.bridge]);
    }

    /// Panics unless `host` is the address of one of this cluster's slots.
    pub fn check_target(&self, host: &str) {
        assert!(
            self.slots.iter().any(|s| s.address == host),
            "refusing to send traffic to {host}: not a replica of this test cluster"
        );
    }

    /// The address of slot `i`.
    pub fn address(&self, i: usize) -> String {
        self.slots[i].address.clone()
    }

    /// Whether slot `i` has a live (possibly paused) process.
    pub fn is_running(&self, i: usize) -> bool {
        self.slots[i].child.is_some()
    }

    /// From now on every replica started keeps its state in a `DATA_DIR`
    /// of its own slot (address), under a new temporary directory, which
    /// is returned.
    pub fn keep_state(&mut self) -> Result<PathBuf, String> {
        let root = tempfile::Builder::new()
            .prefix(&format!("causalkv-{}-data-", self.tag))
            .tempdir()
            .map_err(|e| format!("a temporary directory for DATA_DIRs: {e}"))?;
        let path = root.path().to_path_buf();
        self.data = Some(root);
        Ok(path)
    }

    /// Slot `i`'s `DATA_DIR`, when replicas keep their state: named after
    /// its address, the same for every process started in the slot.
    pub fn data_dir(&self, i: usize) -> Option<PathBuf> {
        let name = self.slots[i].address.replace([':', '.'], "_");
        Some(self.data.as_ref()?.path().join(name))
    }

    /// Deletes slot `i`'s `DATA_DIR` (its replica must not run): the next
    /// replica started there has no state (a lost disk).
    pub fn wipe_state(&mut self, i: usize) -> Result<(), String> {
        assert!(self.slots[i].child.is_none(), "slot {i} still runs");
        let Some(dir) = self.data_dir(i) else {
            return Ok(());
        };
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(format!("deleting {}: {e}", dir.display()))
            }
            _ => Ok(()),
        }
    }

    /// Keeps the `DATA_DIR`s after the cluster is dropped (to look at after
    /// a failed run); returns where they are.
    pub fn keep_state_dirs(&mut self) -> Option<PathBuf> {
        Some(self.data.take()?.keep())
    }

    /// Starts a replica in slot `i` whose `VIEW` lists `view` (slot indices).
    pub fn start(&mut self, i: usize, view: &[usize]) -> Result<(), String> {
        self.start_with_env(i, view, &[])
    }

    /// Like [`NetnsCluster::start`], with extra environment variables.
    pub fn start_with_env(
        &mut self,
        i: usize,
        view: &[usize],
        extra: &[(&str, &str)],
    ) -> Result<(), String> {
        assert!(self.slots[i].child.is_none(), "slot {i} already runs");
        let view: Vec<String> = view.iter().map(|&j| self.address(j)).collect();
        let data_dir = self.data_dir(i);
        let slot = &mut self.slots[i];
        slot.starts += 1;
        let log_path = self.log_dir.join(format!("replica{i}.{}.log", slot.starts));
        let log = File::create(&log_path).map_err(|e| e.to_string())?;
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &slot.netns])
            .arg(&self.binary)
            .env("SOCKET_ADDRESS", &slot.address)
            .env("VIEW", view.join(","))
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(data_dir.map(|dir| ("DATA_DIR", dir)))
            .envs(extra.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log);
        let child = command.spawn().map_err(|e| format!("spawn: {e}"))?;
        slot.child = Some(child);
        slot.paused = false;
        Ok(())
    }

    /// Writes the `/etc/hosts` that processes of slot `i` see (`ip netns
    /// exec` bind-mounts `/etc/netns/<namespace>/hosts` over it). Rewriting
    /// it later changes what the running process resolves.
    /// What slot `i`'s replica has logged since it was last started.
    pub fn current_log(&self, i: usize) -> String {
        let starts = self.slots[i].starts;
        let path = self.log_dir.join(format!("replica{i}.{starts}.log"));
        std::fs::read_to_string(path).unwrap_or_default()
    }

    pub fn write_hosts(&self, i: usize, content: &str) -> Result<(), String> {
        let dir = PathBuf::from("/etc/netns").join(&self.slots[i].netns);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        std::fs::write(dir.join("hosts"), content).map_err(|e| e.to_string())
    }

    /// Points `name` at the replicas of `listed` (slot indices) in every
    /// slot's `/etc/hosts`, as a headless service's DNS would. Write it
    /// before starting a replica that resolves the name: `ip netns exec`
    /// only mounts a hosts file that already exists.
    pub fn publish_name(&self, name: &str, listed: &[usize]) -> Result<(), String> {
        let mut content = String::from("127.0.0.1 localhost\n");
        for &i in listed {
            let ip = self
                .address(i)
                .split(':')
                .next()
                .unwrap_or_default()
                .to_string();
            content.push_str(&format!("{ip} {name}\n"));
        }
        for i in 0..self.slots.len() {
            self.write_hosts(i, &content)?;
        }
        Ok(())
    }

    fn signal(&self, i: usize, signal: &str) {
        if let Some(child) = &self.slots[i].child {
            run_quiet(&["kill", signal, &child.id().to_string()]);
        }
    }

    /// SIGKILL: the replica and its in-memory state are gone.
    pub fn crash(&mut self, i: usize) {
        if self.slots[i].paused {
            self.signal(i, "-CONT");
        }
        if let Some(mut child) = self.slots[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.slots[i].paused = false;
    }

    /// SIGKILL to every running replica of `slots` at one instant (paused
    /// ones are continued first, so that none is stopped any later than
    /// the others), then waits until each is gone.
    pub fn crash_all(&mut self, slots: &[usize]) {
        for &i in slots {
            self.resume(i);
        }
        let mut killed = Vec::new();
        for &i in slots {
            if let Some(mut child) = self.slots[i].child.take() {
                let _ = child.kill();
                killed.push(child);
            }
        }
        for mut child in killed {
            let _ = child.wait();
        }
    }

    /// SIGTERM: asks the replica to stop gracefully; [`NetnsCluster::reap`]
    /// says when it has.
    pub fn terminate(&mut self, i: usize) {
        self.resume(i);
        self.signal(i, "-TERM");
    }

    /// If slot `i`'s process has exited, forgets it and returns how it
    /// ended; `None` while it runs (or when there is none).
    pub fn reap(&mut self, i: usize) -> Option<ExitStatus> {
        let status = self.slots[i].child.as_mut()?.try_wait().ok()??;
        self.slots[i].child = None;
        self.slots[i].paused = false;
        Some(status)
    }

    /// SIGSTOP: the replica hangs without dying.
    pub fn pause(&mut self, i: usize) {
        if self.slots[i].child.is_some() && !self.slots[i].paused {
            self.signal(i, "-STOP");
            self.slots[i].paused = true;
        }
    }

    /// SIGCONT.
    pub fn resume(&mut self, i: usize) {
        if self.slots[i].paused {
            self.signal(i, "-CONT");
            self.slots[i].paused = false;
        }
    }

    /// Drops every packet from `from` to `to` (inside `to`'s namespace).
    pub fn block(&mut self, from: usize, to: usize) -> Result<(), String> {
        if from == to || !self.blocked.insert((from, to)) {
            return Ok(());
        }
        let source = format!("10.{}.0.{}", self.subnet, from + 2);
        run(&[
            "ip",
            "netns",
            "exec",
            &self.slots[to].netns,
            "iptables",
            "-A",
            "INPUT",
            "-s",
            &source,
            "-j",
            "DROP",
        ])
    }

    /// Splits the slots into groups that cannot reach each other.
    pub fn partition(&mut self, groups: &[Vec<usize>]) -> Result<(), String> {
        for (a, ga) in groups.iter().enumerate() {
            for (b, gb) in groups.iter().enumerate() {
                if a != b {
                    for &x in ga {
                        for &y in gb {
                            self.block(x, y)?;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Makes slot `i`'s link slow and lossy in both directions: a token
    /// bucket (`tc tbf`) limits it to `kbit` kbit/s and drops what waits
    /// longer than 200 ms, so messages to and from it lag, and some are lost
    /// and retransmitted. (`tc netem` is not available on every kernel.)
    pub fn slow(&mut self, i: usize, kbit: u32) -> Result<(), String> {
        if !self.slowed.insert(i) {
            return Ok(());
        }
        let rate = format!("{kbit}kbit");
        let shape = ["tbf", "rate", &rate, "burst", "8kbit", "latency", "200ms"];
        let host_side = format!("{}v{i}", self.tag);
        let mut outside = vec!["tc", "qdisc", "add", "dev", &host_side, "root"];
        outside.extend(shape);
        run(&outside)?;
        let netns = self.slots[i].netns.clone();
        let mut inside = vec![
            "ip", "netns", "exec", &netns, "tc", "qdisc", "add", "dev", "eth0", "root",
        ];
        inside.extend(shape);
        run(&inside)
    }

    /// Removes every packet filter and every slow link: all links work
    /// normally again.
    pub fn heal(&mut self) -> Result<(), String> {
        for i in std::mem::take(&mut self.slowed) {
            let host_side = format!("{}v{i}", self.tag);
            run(&["tc", "qdisc", "del", "dev", &host_side, "root"])?;
            let netns = self.slots[i].netns.clone();
            run(&[
                "ip", "netns", "exec", &netns, "tc", "qdisc", "del", "dev", "eth0", "root",
            ])?;
        }
        let targets: BTreeSet<usize> = self.blocked.iter().map(|&(_, to)| to).collect();
        for to in targets {
            run(&[
                "ip",
                "netns",
                "exec",
                &self.slots[to].netns,
                "iptables",
                "-F",
                "INPUT",
            ])?;
        }
        self.blocked.clear();
        Ok(())
    }
}

impl Drop for NetnsCluster {
    fn drop(&mut self) {
        for i in 0..self.slots.len() {
            self.crash(i);
        }
        self.teardown_network();
    }
}
