//! A test cluster: starting it, its replicas' addresses and logs, and
//! cleaning up when it is dropped.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::Mutex;
use std::time::Instant;

use super::process::tail;
use super::{Options, REQUEST_TIMEOUT};

/// One replica process of a cluster.
pub(super) struct Replica {
    /// `127.0.0.1:<port>`.
    pub(super) addr: String,
    /// The `VIEW` it was (last) started with.
    pub(super) view: String,
    /// The running process, if any.
    pub(super) child: Option<Child>,
    /// Whether it is stopped with SIGSTOP.
    pub(super) paused: bool,
    /// The log of each process started at this address, oldest first.
    pub(super) logs: Vec<PathBuf>,
}

/// Why a replica did not come up.
pub(super) enum SpawnError {
    /// Its port was taken (the only failure worth retrying).
    PortTaken,
    /// Anything else.
    Other(String),
}

/// A set of replica processes forming one store.
pub struct TestCluster {
    pub(super) options: Options,
    pub(super) dir: Option<tempfile::TempDir>,
    pub(super) replicas: Vec<Replica>,
}

impl TestCluster {
    /// Starts `n` replicas with the default test options.
    pub async fn start(n: usize) -> TestCluster {
        Options::default().start(n).await
    }

    /// Starts `n` replicas whose `VIEW` lists all of them, and waits until
    /// each is synced and every view lists all of them.
    pub async fn start_with(n: usize, options: Options) -> TestCluster {
        assert!(n > 0, "a cluster needs a replica");
        let mut cluster = TestCluster::empty(options);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let addrs: Vec<String> = free_ports(n)
                .into_iter()
                .map(|p| format!("127.0.0.1:{p}"))
                .collect();
            let view = addrs.join(",");
            cluster.replicas = addrs
                .iter()
                .map(|addr| Replica {
                    addr: addr.clone(),
                    view: view.clone(),
                    child: None,
                    paused: false,
                    logs: Vec::new(),
                })
                .collect();
            for i in 0..n {
                cluster.spawn_process(i);
            }
            let mut port_taken = false;
            for i in 0..n {
                match cluster.await_ready(i).await {
                    Ok(()) => {}
                    Err(SpawnError::PortTaken) => port_taken = true,
                    Err(SpawnError::Other(e)) => panic!("replica {i} did not start: {e}"),
                }
            }
            if !port_taken {
                break;
            }
            assert!(attempt < 5, "could not find free ports for {n} replicas");
            eprintln!("a port was taken; starting the cluster again on other ports");
            for i in 0..n {
                cluster.stop_process(i);
            }
        }
        let expected = cluster.expected_view(&(0..n).collect::<Vec<_>>());
        cluster
            .wait_views(&(0..n).collect::<Vec<_>>(), &expected)
            .await;
        cluster
    }

    /// A cluster with no replica yet, and its log directory.
    fn empty(options: Options) -> TestCluster {
        let dir = tempfile::Builder::new()
            .prefix("causalkv-e2e-")
            .tempdir()
            .expect("cannot create a temporary directory");
        TestCluster {
            options,
            dir: Some(dir),
            replicas: Vec::new(),
        }
    }

    /// Starts one replica whose `VIEW` also names `others` (addresses that
    /// may not answer), and returns as soon as it answers HTTP at all,
    /// without waiting for it to hold the state (so that the test sees it
    /// while it is still starting).
    pub async fn start_lone_with_seeds(options: Options, others: &[String]) -> TestCluster {
        let mut cluster = TestCluster::empty(options);
        for _ in 0..5 {
            let addr = format!("127.0.0.1:{}", free_ports(1)[0]);
            let mut view = vec![addr.clone()];
            view.extend(others.iter().cloned());
            cluster.replicas = vec![Replica {
                addr,
                view: view.join(","),
                child: None,
                paused: false,
                logs: Vec::new(),
            }];
            let spawned = Instant::now();
            cluster.spawn_process(0);
            match cluster.await_answer(0).await {
                Ok(()) => {
                    eprintln!(
                        "a lone replica answered {:?} after it was spawned",
                        spawned.elapsed()
                    );
                    return cluster;
                }
                Err(SpawnError::PortTaken) => {}
                Err(SpawnError::Other(e)) => panic!("replica did not start: {e}"),
            }
        }
        panic!("could not find a free port for a lone replica");
    }

    /// The options the replicas were started with.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// Number of replicas ever started (killed ones included).
    pub fn len(&self) -> usize {
        self.replicas.len()
    }

    /// `127.0.0.1:<port>` of replica `i`.
    pub fn addr(&self, i: usize) -> &str {
        &self.replicas[i].addr
    }

    /// The directory holding the logs.
    pub fn log_dir(&self) -> &Path {
        self.dir.as_ref().expect("log directory").path()
    }

    /// The log of the current (or last) process of replica `i`.
    pub fn log(&self, i: usize) -> &Path {
        self.replicas[i].logs.last().expect("replica was started")
    }

    /// The process id of replica `i`.
    pub fn pid(&self, i: usize) -> u32 {
        self.replicas[i]
            .child
            .as_ref()
            .unwrap_or_else(|| panic!("replica {i} is not running"))
            .id()
    }

    /// The view string SPEC prints for the replicas `members`: addresses
    /// ordered by IP numerically, then port.
    pub fn expected_view(&self, members: &[usize]) -> String {
        let mut addrs: Vec<std::net::SocketAddr> = members
            .iter()
            .map(|&i| self.addr(i).parse().expect("socket address"))
            .collect();
        addrs.sort_by_key(|a| (a.ip(), a.port()));
        addrs
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// A typed client talking to replica `i` only.
    pub fn client(&self, i: usize) -> causalkv::client::Client {
        causalkv::client::Client::with_timeout([self.addr(i).to_string()], REQUEST_TIMEOUT)
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for i in 0..self.replicas.len() {
            self.stop_process(i);
        }
        if std::thread::panicking() {
            if let Some(dir) = self.dir.take() {
                let path = dir.keep();
                eprintln!("\n=== replica logs kept in {} ===", path.display());
                for (i, replica) in self.replicas.iter().enumerate() {
                    for log in &replica.logs {
                        eprintln!(
                            "--- replica {i} ({}) log {} (last lines) ---",
                            replica.addr,
                            log.display()
                        );
                        eprintln!("{}", tail(log, 60));
                    }
                }
            }
        }
    }
}

/// `n` distinct ports that were free a moment ago and were never handed
/// out before in this test process (so that a replica killed by one test,
/// and still probed by its cluster, never shares an address with a
/// replica of another test running in parallel).
pub fn free_ports(n: usize) -> Vec<u16> {
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|p| p.into_inner());
    let mut listeners = Vec::new();
    let mut ports = Vec::new();
    while ports.len() < n {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local addr").port();
        // Keep every listener open until all ports are chosen, so that
        // the same port is not returned twice.
        listeners.push(listener);
        if handed_out.insert(port) {
            ports.push(port);
        }
    }
    ports
}
