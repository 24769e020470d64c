//! Docker mode end to end against a stand-in `docker`: the volumes it makes
//! and mounts, `kill`, `restart`, `stop` keeping the volumes and `stop
//! --purge` deleting them.
//!
//! No Docker engine is needed: a `docker` on PATH (a Python script) records
//! every command it is given and plays the engine's part, running each
//! "container" as a stand-in replica (the one of readiness.rs) on its host
//! port, so the script's waits and status work as against real containers.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::readiness::FAKE_REPLICA;
use crate::script::{real_python, write_executable, Run, Script};
use crate::support::{free_ports, listening, pid_running};
use crate::{EXIT_FAIL, EXIT_USAGE};

/// The stand-in engine. State lives under $FAKE_DOCKER_ROOT: `calls` (one
/// line per command, as the shell would write it), `volumes/`, `networks/`
/// and `containers/<name>.json` (the replica's pid and the `run` arguments).
const FAKE_DOCKER: &str = r#"
import json, os, shlex, signal, subprocess, sys, time

ROOT = os.environ["FAKE_DOCKER_ROOT"]
argv = sys.argv[1:]
with open(os.path.join(ROOT, "calls"), "a") as f:
    f.write(shlex.join(argv) + "\n")

def place(kind, name):
    os.makedirs(os.path.join(ROOT, kind), exist_ok=True)
    return os.path.join(ROOT, kind, name)

def fail(message, code=1):
    print(message, file=sys.stderr)
    sys.exit(code)

def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] not in "ZX"

def container(name):
    try:
        with open(place("containers", name + ".json")) as f:
            return json.load(f)
    except FileNotFoundError:
        return None

def end(c, sig):
    if alive(c["pid"]):
        os.killpg(c["pid"], sig)
    deadline = time.monotonic() + 10
    while alive(c["pid"]) and time.monotonic() < deadline:
        time.sleep(0.05)

command = argv[0] if argv else ""
name = argv[-1] if argv else ""
if command == "info":
    print("27.0-fake")
elif command == "image" and argv[1] == "inspect" and name.startswith("missing"):
    fail(f"Error response from daemon: No such image: {name}")
elif command in ("build", "image"):
    pass
elif command == "network":
    path = place("networks", name)
    if argv[1] == "inspect":
        if not os.path.exists(path):
            fail(f"Error response from daemon: network {name} not found")
        print(open(path).read())
    elif argv[1] == "create":
        open(path, "w").write(argv[argv.index("--subnet") + 1])
    elif argv[1] == "rm":
        if not os.path.exists(path):
            fail(f"Error response from daemon: network {name} not found")
        os.remove(path)
elif command == "volume":
    path = place("volumes", name)
    if argv[1] == "inspect":
        if not os.path.exists(path):
            fail(f"Error response from daemon: get {name}: no such volume")
        print(json.dumps([{"Name": name}]))
    elif argv[1] == "create":
        open(path, "w").write(" ".join(argv))
        print(name)
    elif argv[1] == "rm":
        if not os.path.exists(path):
            fail(f"Error response from daemon: get {name}: no such volume")
        users = [n for n in os.listdir(place("containers", "")) if n.endswith(".json")
                 and container(n[:-5]).get("volume") == name]
        if users:
            fail(f"Error response from daemon: remove {name}: volume is in use")
        os.remove(path)
        print(name)
elif command == "inspect":
    c = container(name)
    if c is None:
        fail(f"Error: No such container: {name}")
    print("running" if alive(c["pid"]) else "exited")
elif command == "run":
    name = argv[argv.index("--name") + 1]
    if container(name) is not None:
        fail(f"docker: Error response from daemon: Conflict. The container name \"/{name}\" is already in use.", 125)
    host, port, _ = argv[argv.index("--publish") + 1].split(":")
    env, volume = {}, None
    for i, arg in enumerate(argv):
        if arg == "--env":
            key, sep, value = argv[i + 1].partition("=")
            env[key] = value if sep else os.environ.get(key, "")
        elif arg == "--volume":
            volume = argv[i + 1].split(":")[0]
    if volume and not os.path.exists(place("volumes", volume)):
        open(place("volumes", volume), "w").write("made by run")
    workdir = place("containers", name + ".d")
    os.makedirs(workdir, exist_ok=True)
    env["LISTEN_ADDRESS"] = f"{host}:{port}"
    with open(place("containers", name + ".log"), "ab") as log:
        child = subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "replica.py")], env=env, cwd=workdir,
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    with open(place("containers", name + ".json"), "w") as f:
        json.dump({"pid": child.pid, "volume": volume, "env": env}, f)
    print("0123456789ab")
elif command in ("stop", "kill", "rm"):
    c = container(name)
    if c is None:
        fail(f"Error response from daemon: No such container: {name}")
    if command == "kill" and not alive(c["pid"]):
        fail(f"Error response from daemon: container {name} is not running")
    end(c, signal.SIGTERM if command == "stop" else signal.SIGKILL)
    if command == "rm":
        os.remove(place("containers", name + ".json"))
    print(name)
elif command == "logs":
    print(open(place("containers", name + ".log")).read(), end="")
else:
    fail(f"fake docker: unknown command {argv}", 2)
"#;

/// The stand-in engine and a state directory; whatever it still runs is
/// stopped when dropped.
struct FakeDocker {
    dir: tempfile::TempDir,
}

impl FakeDocker {
    fn new() -> FakeDocker {
        let dir = tempfile::Builder::new()
            .prefix("dockerrun-fake-docker-")
            .tempdir()
            .expect("temporary directory");
        let python = real_python();
        fs::create_dir(dir.path().join("bin")).unwrap();
        write_executable(
            &dir.path().join("bin").join("docker"),
            &format!("#!{}\n{FAKE_DOCKER}", python.display()),
        );
        fs::write(dir.path().join("replica.py"), FAKE_REPLICA).unwrap();
        FakeDocker { dir }
    }

    fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// `dockerRun.py --state-dir STATE ARGS` with only the stand-in on PATH.
    fn run(&self, args: &[&str]) -> Run {
        let state = self.state_dir();
        let mut all = vec!["--state-dir", state.to_str().unwrap()];
        all.extend_from_slice(args);
        Script::with_path(&self.dir.path().join("bin"))
            .env("FAKE_DOCKER_ROOT", self.dir.path().to_str().unwrap())
            .run(&all)
    }

    /// Every command the stand-in was given so far.
    fn calls(&self) -> Vec<String> {
        fs::read_to_string(self.dir.path().join("calls"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn volumes(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.dir.path().join("volumes"))
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// The pid of the stand-in replica running as container `name`.
    fn pid(&self, name: &str) -> u64 {
        let path = self
            .dir
            .path()
            .join("containers")
            .join(format!("{name}.json"));
        let text = fs::read_to_string(&path).unwrap_or_else(|_| panic!("no container {name}"));
        let record: serde_json::Value = serde_json::from_str(&text).expect("container record");
        record["pid"].as_u64().expect("pid")
    }
}

impl Drop for FakeDocker {
    fn drop(&mut self) {
        let _ = self.run(&["stop", "--grace", "2"]);
        // Whatever is left: stand-in replicas only (their command line names replica.py).
        let script = self.dir.path().join("replica.py");
        let containers = self.dir.path().join("containers");
        for entry in fs::read_dir(&containers).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            let pid = self.pid(&name);
            if runs_script(pid, &script) {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
    }
}

fn runs_script(pid: u64, script: &Path) -> bool {
    pid_running(pid)
        && fs::read(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|c| String::from_utf8_lossy(&c).contains(script.to_str().unwrap()))
}

/// The calls made since the first `from` of them.
fn since(calls: &[String], from: usize) -> Vec<&str> {
    calls[from..].iter().map(String::as_str).collect()
}

#[test]
fn docker_mode_keeps_each_replicas_volume_until_purged() {
    let docker = FakeDocker::new();
    let base = free_ports(2);
    let base_text = base.to_string();
    let hosts = [
        format!("127.0.0.1:{base}"),
        format!("127.0.0.1:{}", base + 1),
    ];
    let start = [
        "start",
        "--mode",
        "docker",
        "-n",
        "2",
        "--base-port",
        &base_text,
        "--durability",
        "os",
    ];

    // start: one volume per replica, made, then mounted at /data.
    let run = docker.run(&start).expect(0);
    let calls = docker.calls();
    let view = "10.10.0.2:8085,10.10.0.3:8085";
    for i in 1..=2 {
        let created = format!(
            "volume create --label causalkv.replica=causalkv-replica{i} causalkv-data-replica{i}"
        );
        let ran = format!(
            "run --detach --name causalkv-replica{i} --hostname causalkv-replica{i} \
             --network causalkv-net --ip 10.10.0.{ip} --publish 127.0.0.1:{port}:8085 \
             --volume causalkv-data-replica{i}:/data --env SOCKET_ADDRESS=10.10.0.{ip}:8085 \
             --env VIEW={view} --env DATA_DIR=/data --env DURABILITY=os causalkv:latest",
            ip = 1 + i,
            port = base + i - 1
        );
        let at = |call: &str| calls.iter().position(|c| c == call);
        assert!(
            at(&created).is_some() && at(&created) < at(&ran),
            "the volume is made before its container:\n{calls:#?}"
        );
        assert!(
            run.stdout
                .contains(&format!("data in volume causalkv-data-replica{i}")),
            "{}",
            run.stdout
        );
    }
    assert_eq!(
        docker.volumes(),
        ["causalkv-data-replica1", "causalkv-data-replica2"]
    );
    let record = docker.state_dir().join("data.json");
    assert!(record.exists(), "the volumes made are recorded");

    // status shows each replica's volume.
    let run = docker.run(&["status"]).expect(0);
    let header: Vec<&str> = run
        .stdout
        .lines()
        .find(|l| l.starts_with("NAME"))
        .expect("status header")
        .split_whitespace()
        .collect();
    assert!(header.contains(&"DATA"), "{header:?}");
    for i in 1..=2 {
        let row = run
            .stdout
            .lines()
            .find(|l| l.starts_with(&format!("causalkv-replica{i} ")))
            .expect("status row");
        assert!(row.contains(&format!("causalkv-data-replica{i}")), "{row}");
    }

    // kill: docker kill, nothing else; status shows it down.
    let pid2 = docker.pid("causalkv-replica2");
    let from = docker.calls().len();
    let run = docker.run(&["kill", "replica2"]).expect(0);
    assert!(
        run.stdout
            .contains("causalkv-replica2: killed (docker kill causalkv-replica2)"),
        "{}",
        run.stdout
    );
    let calls = docker.calls();
    let made = since(&calls, from);
    assert!(made.contains(&"kill causalkv-replica2"), "{made:#?}");
    assert!(
        !made
            .iter()
            .any(|c| c.starts_with("rm") || c.starts_with("run") || c.starts_with("volume")),
        "kill only kills: {made:#?}"
    );
    assert!(!pid_running(pid2) && !listening(&hosts[1]));
    let run = docker.run(&["status"]).expect(EXIT_FAIL);
    let row = run
        .stdout
        .lines()
        .find(|l| l.starts_with("causalkv-replica2 "))
        .expect("status row");
    assert_eq!(row.split_whitespace().nth(3), Some("down"), "{row}");

    // restart: the same container name, address, port and volume.
    let from = docker.calls().len();
    let run = docker.run(&["restart", "replica2"]).expect(0);
    assert!(
        run.stdout.contains("Restarted causalkv-replica2"),
        "{}",
        run.stdout
    );
    let calls = docker.calls();
    let made = since(&calls, from);
    assert!(made.contains(&"rm --force causalkv-replica2"), "{made:#?}");
    let ran = made
        .iter()
        .find(|c| c.starts_with("run "))
        .expect("a docker run");
    for part in [
        "--name causalkv-replica2",
        "--ip 10.10.0.3",
        &format!("--publish 127.0.0.1:{}:8085", base + 1),
        "--volume causalkv-data-replica2:/data",
        "--env DATA_DIR=/data",
        "--env DURABILITY=os",
    ] {
        assert!(ran.contains(part), "{ran} lacks {part}");
    }
    assert!(
        !made.iter().any(|c| c.starts_with("volume create")),
        "the volume is there already: {made:#?}"
    );
    assert!(listening(&hosts[1]));

    // stop keeps the volumes (and says so); start finds them again.
    let from = docker.calls().len();
    let run = docker.run(&["stop", "--grace", "2"]).expect(0);
    assert!(
        run.stdout.contains(
            "The data is kept in the volumes causalkv-data-replica1, causalkv-data-replica2"
        ),
        "{}",
        run.stdout
    );
    let calls = docker.calls();
    assert!(
        !since(&calls, from).iter().any(|c| c.starts_with("volume")),
        "{calls:#?}"
    );
    assert_eq!(docker.volumes().len(), 2);
    let from = docker.calls().len();
    let run = docker.run(&start).expect(0);
    assert!(
        run.stdout.contains(
            "Started on the data of an earlier run: causalkv-replica1, causalkv-replica2."
        ),
        "{}",
        run.stdout
    );
    let calls = docker.calls();
    assert!(
        !since(&calls, from)
            .iter()
            .any(|c| c.starts_with("volume create")),
        "{calls:#?}"
    );

    // stop --purge: containers gone first, then the volumes.
    let from = docker.calls().len();
    let run = docker.run(&["stop", "--grace", "2", "--purge"]).expect(0);
    let calls = docker.calls();
    let made = since(&calls, from);
    let at = |call: &str| {
        made.iter()
            .position(|c| *c == call)
            .unwrap_or_else(|| panic!("no `docker {call}` in {made:#?}"))
    };
    for i in 1..=2 {
        assert!(
            at(&format!("rm --force causalkv-replica{i}"))
                < at(&format!("volume rm causalkv-data-replica{i}")),
            "{made:#?}"
        );
        assert!(
            run.stdout
                .contains(&format!("volume causalkv-data-replica{i}: deleted")),
            "{}",
            run.stdout
        );
    }
    assert!(docker.volumes().is_empty(), "{:?}", docker.volumes());
    assert!(!record.exists(), "nothing left to purge");
    let run = docker.run(&["stop", "--purge"]).expect(0);
    assert!(run.stdout.contains("No data to delete"), "{}", run.stdout);
    for host in &hosts {
        assert!(!listening(host), "{host} still answers");
    }
}

#[test]
fn docker_mode_runs_a_given_image_as_is_and_refuses_one_that_is_not_there() {
    let docker = FakeDocker::new();
    let base = free_ports(2).to_string();
    let start = |image: &'static str| {
        [
            "start",
            "--mode",
            "docker",
            "-n",
            "1",
            "--base-port",
            &base,
            "--image",
            image,
        ]
        .map(str::to_string)
    };
    let args = start("missing/causalkv:none");
    let run = docker
        .run(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .expect(EXIT_USAGE);
    assert!(
        run.stderr
            .contains("--image: there is no image missing/causalkv:none"),
        "{}",
        run.stderr
    );
    assert!(
        !docker.calls().iter().any(|c| c.starts_with("run ")),
        "{:#?}",
        docker.calls()
    );

    let args = start("ci/causalkv:test");
    docker
        .run(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .expect(0);
    docker.run(&["add"]).expect(0);
    let calls = docker.calls();
    assert!(
        !calls.iter().any(|c| c.starts_with("build")),
        "no build with --image: {calls:#?}"
    );
    let runs: Vec<&String> = calls.iter().filter(|c| c.starts_with("run ")).collect();
    assert_eq!(runs.len(), 2, "{calls:#?}");
    for run in runs {
        assert!(run.ends_with(" ci/causalkv:test"), "{run}");
    }
    docker.run(&["stop", "--grace", "2", "--purge"]).expect(0);
}
