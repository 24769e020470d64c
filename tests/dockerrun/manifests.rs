//! docker-compose.yml and the Kubernetes manifests, line by line and parsed as YAML.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::repo;

/// Whether `python3` can import the `yaml` module.
fn python_has_yaml() -> bool {
    Command::new("python3")
        .args(["-c", "import yaml"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs `program args`, returning what went wrong if it did.
fn run_quietly(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {args:?} exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Makes Python's `yaml` module importable, installing PyYAML if it is
/// missing (`apt-get install python3-yaml` as root, else `pip install
/// --user`); panics, saying how to install it, if that fails. Never skips.
fn ensure_python_yaml() {
    static INSTALLED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    let outcome = INSTALLED.get_or_init(|| {
        if python_has_yaml() {
            return Ok(());
        }
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        let mut tried = Vec::new();
        // Debian's package serves Debian's python3; any other python3 (a
        // pyenv build, a venv) needs pip.
        let pip = (
            "python3",
            vec![
                "-m",
                "pip",
                "install",
                "--user",
                "--break-system-packages",
                "pyyaml",
            ],
        );
        let attempts: Vec<(&str, Vec<&str>)> = if root {
            vec![
                ("apt-get", vec!["install", "-y", "-q", "python3-yaml"]),
                ("apt-get", vec!["update", "-q"]),
                ("apt-get", vec!["install", "-y", "-q", "python3-yaml"]),
                pip,
            ]
        } else {
            vec![pip]
        };
        for (program, args) in attempts {
            eprintln!("note: Python's yaml module is missing; running {program} {args:?}");
            if let Err(e) = run_quietly(program, &args) {
                tried.push(e);
            }
            if python_has_yaml() {
                return Ok(());
            }
        }
        Err(format!(
            "Python's yaml module is needed to check the YAML files and could not be \
             installed (install python3-yaml or `pip install pyyaml`): {tried:?}"
        ))
    });
    if let Err(why) = outcome {
        panic!("{why}");
    }
}

/// The documents of a YAML file as JSON, parsed by Python's `yaml` module
/// (installed first if missing).
fn yaml_documents(path: &Path) -> Vec<Value> {
    ensure_python_yaml();
    let out = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml\n\
             print(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d is not None]))",
        ])
        .arg(path)
        .output()
        .expect("python3");
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        panic!("{} is not valid YAML:\n{err}", path.display());
    }
    serde_json::from_slice(&out.stdout).expect("JSON from python")
}

/// Asserts that `text` holds every line in `needles` (trimmed, exact).
fn assert_lines(file: &str, text: &str, needles: &[&str]) {
    let lines: BTreeSet<&str> = text.lines().map(str::trim).collect();
    for needle in needles {
        assert!(lines.contains(needle), "{file} lacks the line {needle:?}");
    }
}

#[test]
fn compose_file_runs_three_replicas_on_the_kevindb_subnet() {
    let path = repo().join("docker/docker-compose.yml");
    let text = fs::read_to_string(&path).expect("docker/docker-compose.yml");
    assert!(!text.contains('\t'), "YAML must not contain tabs");
    assert_lines(
        "docker-compose.yml",
        &text,
        &[
            "services:",
            "replica1:",
            "replica2:",
            "replica3:",
            "ipv4_address: 10.10.0.2",
            "ipv4_address: 10.10.0.3",
            "ipv4_address: 10.10.0.4",
            "- \"127.0.0.1:8082:8085\"",
            "- \"127.0.0.1:8083:8085\"",
            "- \"127.0.0.1:8084:8085\"",
            "SOCKET_ADDRESS: 10.10.0.2:8085",
            "SOCKET_ADDRESS: 10.10.0.3:8085",
            "SOCKET_ADDRESS: 10.10.0.4:8085",
            "- subnet: 10.10.0.0/16",
            "healthcheck:",
            "dockerfile: docker/Dockerfile",
            "SUSPECT_TIMEOUT_MS: ${SUSPECT_TIMEOUT_MS:-600000}",
            "HANDOVER_TIMEOUT_MS: ${HANDOVER_TIMEOUT_MS:-5000}",
            "stop_grace_period: 20s",
            "DATA_DIR: /data",
            "- replica1-data:/data",
            "- replica2-data:/data",
            "- replica3-data:/data",
            "volumes:",
        ],
    );
    assert!(
        text.contains("http://127.0.0.1:8085/ready"),
        "healthy means ready"
    );

    let docs = yaml_documents(&path);
    assert_eq!(docs.len(), 1);
    let compose = &docs[0];
    let services = compose["services"].as_object().expect("services");
    assert_eq!(services.len(), 3);
    let view = "10.10.0.2:8085,10.10.0.3:8085,10.10.0.4:8085";
    for i in 1..=3 {
        let s = &services[&format!("replica{i}")];
        let ip = format!("10.10.0.{}", 1 + i);
        assert_eq!(s["container_name"], json!(format!("causalkv-replica{i}")));
        assert_eq!(s["image"], json!("causalkv:latest"));
        assert_eq!(s["build"]["context"], json!(".."));
        assert_eq!(s["build"]["dockerfile"], json!("docker/Dockerfile"));
        assert_eq!(s["networks"]["causalkv-net"]["ipv4_address"], json!(ip));
        assert_eq!(s["ports"], json!([format!("127.0.0.1:{}:8085", 8081 + i)]));
        assert_eq!(
            s["environment"]["SOCKET_ADDRESS"],
            json!(format!("{ip}:8085"))
        );
        assert_eq!(s["environment"]["VIEW"], json!(view));
        let test = s["healthcheck"]["test"]
            .as_array()
            .expect("healthcheck test");
        assert_eq!(test[0], json!("CMD"));
        assert!(test
            .iter()
            .any(|a| a.as_str().is_some_and(|a| a.ends_with("/ready"))));
        for key in ["interval", "timeout", "retries", "start_period"] {
            assert!(!s["healthcheck"][key].is_null(), "healthcheck.{key}");
        }
        // Optional settings pass through from the shell; the two chosen
        // with stop_grace_period have a default there, overridable too.
        // Its own named volume at /data, the replica's DATA_DIR; the root
        // file system stays read-only.
        assert_eq!(s["volumes"], json!([format!("replica{i}-data:/data")]));
        assert_eq!(s["environment"]["DATA_DIR"], json!("/data"));
        assert_eq!(s["read_only"], json!(true));
        let env = s["environment"].as_object().unwrap();
        assert!(
            env.contains_key("DURABILITY") && env["DURABILITY"].is_null(),
            "DURABILITY is passed through from the shell"
        );
        let mut defaults = BTreeSet::new();
        for (key, value) in env {
            if ["SOCKET_ADDRESS", "VIEW", "DATA_DIR"].contains(&key.as_str()) {
                continue;
            }
            match value.as_str() {
                None => assert!(value.is_null(), "{key} is passed through, not set: {value}"),
                Some(text) => {
                    let default = text
                        .strip_prefix(&format!("${{{key}:-"))
                        .and_then(|t| t.strip_suffix('}'))
                        .unwrap_or_else(|| panic!("{key} is not ${{{key}:-default}}: {text}"));
                    defaults.insert((key.as_str(), default.parse::<u64>().expect("a number")));
                }
            }
        }
        let defaults: Vec<_> = defaults.into_iter().collect();
        assert_eq!(
            defaults,
            [
                ("HANDOVER_TIMEOUT_MS", 5000),
                ("SUSPECT_TIMEOUT_MS", 600_000)
            ]
        );
        // The hand-over and the 10 s to finish requests fit in the grace.
        let grace: u64 = s["stop_grace_period"]
            .as_str()
            .and_then(|g| g.strip_suffix('s'))
            .and_then(|g| g.parse().ok())
            .expect("stop_grace_period in seconds");
        assert!(5000 / 1000 + 10 < grace, "stop_grace_period {grace}s");
    }
    // The volumes are declared (named, local, kept by `down`).
    let volumes = compose["volumes"].as_object().expect("top-level volumes");
    assert_eq!(
        volumes.keys().map(String::as_str).collect::<Vec<_>>(),
        ["replica1-data", "replica2-data", "replica3-data"]
    );
    for (name, volume) in volumes {
        assert!(
            volume.is_null() || volume["external"].is_null(),
            "{name} is made by compose: {volume}"
        );
    }
    let net = &compose["networks"]["causalkv-net"];
    assert_eq!(net["name"], json!("causalkv-net"));
    assert_eq!(net["ipam"]["config"], json!([{"subnet": "10.10.0.0/16"}]));
}

#[test]
fn kubernetes_manifests_describe_a_three_replica_statefulset() {
    let dir = repo().join("docker/k8s");
    let read = |name: &str| {
        fs::read_to_string(dir.join(name)).unwrap_or_else(|_| panic!("docker/k8s/{name}"))
    };
    let (service, statefulset, pdb) = (
        read("service.yaml"),
        read("statefulset.yaml"),
        read("pdb.yaml"),
    );
    for (name, text) in [
        ("service.yaml", &service),
        ("statefulset.yaml", &statefulset),
        ("pdb.yaml", &pdb),
    ] {
        assert!(!text.contains('\t'), "{name} contains tabs");
    }
    assert_lines(
        "service.yaml",
        &service,
        &[
            "kind: Service",
            "name: causalkv-headless",
            "clusterIP: None",
            "publishNotReadyAddresses: true",
            "port: 8085",
        ],
    );
    assert_lines(
        "statefulset.yaml",
        &statefulset,
        &[
            "kind: StatefulSet",
            "replicas: 3",
            "serviceName: causalkv-headless",
            "fieldPath: status.podIP",
            "- name: SOCKET_ADDRESS",
            "value: \"$(POD_IP):8085\"",
            "- name: VIEW",
            "- name: VIEW_DNS",
            "value: \"causalkv-headless.$(POD_NAMESPACE).svc.cluster.local:8085\"",
            "readinessProbe:",
            "livenessProbe:",
            "path: /ready",
            "path: /health",
            "- name: SUSPECT_TIMEOUT_MS",
            "- name: HANDOVER_TIMEOUT_MS",
            "containerPort: 8085",
            "runAsNonRoot: true",
            "- name: DATA_DIR",
            "value: \"/data\"",
            "mountPath: /data",
            "volumeClaimTemplates:",
            "fsGroup: 10001",
        ],
    );
    assert_lines(
        "pdb.yaml",
        &pdb,
        &[
            "apiVersion: policy/v1",
            "kind: PodDisruptionBudget",
            "minAvailable: 2",
        ],
    );

    let (services, sets, pdbs) = (
        yaml_documents(&dir.join("service.yaml")),
        yaml_documents(&dir.join("statefulset.yaml")),
        yaml_documents(&dir.join("pdb.yaml")),
    );
    for doc in services.iter().chain(&sets).chain(&pdbs) {
        for key in ["apiVersion", "kind", "metadata"] {
            assert!(!doc[key].is_null(), "every object has {key}: {doc}");
        }
        assert!(doc["metadata"]["name"].is_string(), "named: {doc}");
        assert!(
            doc["metadata"]["namespace"].is_null(),
            "namespace comes from kubectl -n"
        );
    }

    assert_eq!(sets.len(), 1);
    let set = &sets[0];
    assert_eq!(
        (set["apiVersion"].as_str(), set["kind"].as_str()),
        (Some("apps/v1"), Some("StatefulSet"))
    );
    let spec = &set["spec"];
    assert_eq!(spec["replicas"], json!(3));
    assert_eq!(spec["serviceName"], json!("causalkv-headless"));
    let pod_labels = spec["template"]["metadata"]["labels"]
        .as_object()
        .expect("pod labels");
    let selects_pods = |selector: &Value| {
        let selector = selector.as_object().expect("selector");
        !selector.is_empty() && selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v))
    };
    assert!(selects_pods(&spec["selector"]["matchLabels"]));
    let containers = spec["template"]["spec"]["containers"]
        .as_array()
        .expect("containers");
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    assert_eq!(c["ports"][0]["containerPort"], json!(8085));
    let port_name = c["ports"][0]["name"].clone();
    // Traffic only to replicas that hold the state; restarts only when the
    // process stops serving.
    for (probe, path) in [("readinessProbe", "/ready"), ("livenessProbe", "/health")] {
        assert_eq!(c[probe]["httpGet"]["path"], json!(path), "{probe}");
        let port = &c[probe]["httpGet"]["port"];
        assert!(
            port == &json!(8085) || port == &port_name,
            "{probe} port {port}"
        );
    }
    let env: Vec<&Value> = c["env"].as_array().expect("env").iter().collect();
    let position = |name: &str| env.iter().position(|e| e["name"] == json!(name));
    let var = |name: &str| env[position(name).unwrap_or_else(|| panic!("env {name}"))];
    assert_eq!(
        var("POD_IP")["valueFrom"]["fieldRef"]["fieldPath"],
        json!("status.podIP")
    );
    assert_eq!(
        var("POD_NAMESPACE")["valueFrom"]["fieldRef"]["fieldPath"],
        json!("metadata.namespace")
    );
    assert_eq!(var("SOCKET_ADDRESS")["value"], json!("$(POD_IP):8085"));
    assert_eq!(var("VIEW")["value"], json!("$(POD_IP):8085"));
    assert_eq!(
        var("VIEW_DNS")["value"],
        json!("causalkv-headless.$(POD_NAMESPACE).svc.cluster.local:8085")
    );
    // $(VAR) only expands variables defined earlier in the list.
    for (user, used) in [
        ("SOCKET_ADDRESS", "POD_IP"),
        ("VIEW", "POD_IP"),
        ("VIEW_DNS", "POD_NAMESPACE"),
    ] {
        assert!(
            position(used) < position(user),
            "{used} must come before {user}"
        );
    }
    for e in &env {
        if let Some(value) = e["value"].as_str() {
            assert!(!value.is_empty(), "empty {e}");
        }
    }
    assert_eq!(
        spec["template"]["spec"]["securityContext"]["runAsNonRoot"],
        json!(true)
    );
    // Durable storage: a claim per pod from the template "data", mounted
    // at /data, the replica's DATA_DIR, writable by the image's group.
    let claims = spec["volumeClaimTemplates"]
        .as_array()
        .expect("volumeClaimTemplates");
    assert_eq!(claims.len(), 1);
    let claim = &claims[0];
    assert_eq!(claim["metadata"]["name"], json!("data"));
    assert_eq!(claim["spec"]["accessModes"], json!(["ReadWriteOnce"]));
    let storage = claim["spec"]["resources"]["requests"]["storage"]
        .as_str()
        .expect("a storage request");
    assert!(
        storage.ends_with("Gi") || storage.ends_with("Mi"),
        "storage {storage}"
    );
    let mounts = c["volumeMounts"].as_array().expect("volumeMounts");
    assert!(
        mounts.contains(&json!({"name": "data", "mountPath": "/data"})),
        "the claim is mounted at /data: {mounts:?}"
    );
    assert!(
        spec["template"]["spec"]["volumes"]
            .as_array()
            .is_none_or(|v| v.iter().all(|v| v["name"] != json!("data"))),
        "no pod volume shadows the claim"
    );
    assert_eq!(var("DATA_DIR")["value"], json!("/data"));
    assert!(
        ["fsync", "os"].contains(&var("DURABILITY")["value"].as_str().unwrap_or("")),
        "DURABILITY is fsync or os"
    );
    let pod_security = &spec["template"]["spec"]["securityContext"];
    assert_eq!(pod_security["fsGroup"], pod_security["runAsGroup"]);
    assert_eq!(
        c["securityContext"]["readOnlyRootFilesystem"],
        json!(true),
        "only the volume is writable"
    );
    let millis = |name: &str| -> u64 {
        var(name)["value"]
            .as_str()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} is a number of ms"))
    };
    assert!(
        millis("SUSPECT_TIMEOUT_MS") >= 300_000,
        "a suspect outlives Kubernetes' 300 s toleration of an unreachable node"
    );
    // The hand-over and the 10 s to finish requests fit in the grace.
    let grace = spec["template"]["spec"]["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("terminationGracePeriodSeconds");
    assert!(
        millis("HANDOVER_TIMEOUT_MS") / 1000 + 10 < grace,
        "terminationGracePeriodSeconds {grace}"
    );

    let headless = services
        .iter()
        .find(|s| s["metadata"]["name"] == json!("causalkv-headless"))
        .expect("the headless service");
    assert_eq!(headless["kind"], json!("Service"));
    assert_eq!(headless["spec"]["clusterIP"], json!("None"));
    assert_eq!(headless["spec"]["publishNotReadyAddresses"], json!(true));
    assert_eq!(headless["spec"]["ports"][0]["port"], json!(8085));
    for s in &services {
        assert!(
            selects_pods(&s["spec"]["selector"]),
            "service selects the pods: {s}"
        );
        let target = &s["spec"]["ports"][0]["targetPort"];
        assert!(
            target == &json!(8085) || target == &port_name,
            "targetPort {target}"
        );
    }

    assert_eq!(pdbs.len(), 1);
    let pdb = &pdbs[0];
    assert_eq!(pdb["apiVersion"], json!("policy/v1"));
    assert_eq!(pdb["kind"], json!("PodDisruptionBudget"));
    assert_eq!(pdb["spec"]["minAvailable"], json!(2));
    assert!(selects_pods(&pdb["spec"]["selector"]["matchLabels"]));
}

#[test]
fn sharded_compose_file_runs_six_memory_only_nodes_in_the_family_layout() {
    let path = repo().join("docker/docker-compose.shards.yml");
    let text = fs::read_to_string(&path).expect("docker/docker-compose.shards.yml");
    assert!(!text.contains('\t'), "YAML must not contain tabs");
    assert_lines(
        "docker-compose.shards.yml",
        &text,
        &[
            "SHARD_COUNT: \"2\"",
            "- \"127.0.0.1:8082:8085\"",
            "- \"127.0.0.1:8084:8085\"",
            "- \"127.0.0.1:8086:8085\"",
            "- \"127.0.0.1:8088:8085\"",
            "- subnet: 10.10.0.0/16",
            "stop_grace_period: 20s",
        ],
    );
    assert!(text.contains("NOT DURABLE"), "says so plainly");

    let docs = yaml_documents(&path);
    assert_eq!(docs.len(), 1);
    let compose = &docs[0];
    assert_eq!(compose["name"], json!("causalkv-shards"));
    let services = compose["services"].as_object().expect("services");
    assert_eq!(services.len(), 6);
    let view =
        "10.10.0.2:8085,10.10.0.3:8085,10.10.0.4:8085,10.10.0.5:8085,10.10.0.6:8085,10.10.0.7:8085";
    // 10.10.0.2-7 inside, host ports 8082-8084 and 8086-8088 (8085 skipped),
    // as `dockerRun.py --shards 2 -n 6` lays them out.
    for (i, port) in [
        (1, 8082),
        (2, 8083),
        (3, 8084),
        (4, 8086),
        (5, 8087),
        (6, 8088),
    ] {
        let s = &services[&format!("replica{i}")];
        let ip = format!("10.10.0.{}", 1 + i);
        assert_eq!(s["container_name"], json!(format!("causalkv-replica{i}")));
        assert_eq!(s["image"], json!("causalkv:latest"));
        assert_eq!(s["build"]["dockerfile"], json!("docker/Dockerfile"));
        assert_eq!(s["networks"]["causalkv-net"]["ipv4_address"], json!(ip));
        assert_eq!(s["ports"], json!([format!("127.0.0.1:{port}:8085")]));
        let env = s["environment"].as_object().expect("environment");
        assert_eq!(env["SOCKET_ADDRESS"], json!(format!("{ip}:8085")));
        assert_eq!(env["VIEW"], json!(view), "the same VIEW everywhere");
        assert_eq!(env["SHARD_COUNT"], json!("2"));
        // Memory only: the binary refuses SHARD_COUNT with DATA_DIR.
        for key in ["DATA_DIR", "DURABILITY"] {
            assert!(!env.contains_key(key), "replica{i} must not set {key}");
        }
        assert!(s["volumes"].is_null(), "replica{i} mounts no volume");
        let test = s["healthcheck"]["test"].as_array().expect("healthcheck");
        assert!(test
            .iter()
            .any(|a| a.as_str().is_some_and(|a| a.ends_with("/ready"))));
        assert_eq!(s["read_only"], json!(true));
    }
    assert!(compose["volumes"].is_null(), "no volumes at all");
    let net = &compose["networks"]["causalkv-net"];
    assert_eq!(net["name"], json!("causalkv-net"));
    assert_eq!(net["ipam"]["config"], json!([{"subnet": "10.10.0.0/16"}]));
}

#[test]
fn sharded_kubernetes_statefulset_names_every_pod_in_one_view() {
    let path = repo().join("docker/k8s/shards/statefulset-shards.yaml");
    let text = fs::read_to_string(&path).expect("docker/k8s/shards/statefulset-shards.yaml");
    assert!(!text.contains('\t'), "contains tabs");
    let docs = yaml_documents(&path);
    let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    assert_eq!(
        kinds,
        ["Service", "Service", "StatefulSet", "PodDisruptionBudget"]
    );
    for doc in &docs {
        assert!(
            doc["metadata"]["namespace"].is_null(),
            "namespace comes from kubectl -n"
        );
    }
    let set = &docs[2];
    let spec = &set["spec"];
    assert_eq!(spec["replicas"], json!(6));
    assert_eq!(spec["serviceName"], json!("causalkv-shards-headless"));
    assert_eq!(spec["podManagementPolicy"], json!("Parallel"));
    assert!(
        spec["volumeClaimTemplates"].is_null(),
        "memory only: no claims"
    );
    let pod_labels = spec["template"]["metadata"]["labels"].clone();
    assert_eq!(
        pod_labels,
        json!({"app.kubernetes.io/name": "causalkv-shards"})
    );
    // Not selected by the unsharded store's Services and PDB.
    assert_ne!(pod_labels, json!({"app.kubernetes.io/name": "causalkv"}));
    let headless = &docs[0];
    assert_eq!(
        headless["metadata"]["name"],
        json!("causalkv-shards-headless")
    );
    assert_eq!(headless["spec"]["clusterIP"], json!("None"));
    assert_eq!(headless["spec"]["publishNotReadyAddresses"], json!(true));
    for doc in [&docs[0], &docs[1]] {
        assert_eq!(doc["spec"]["selector"], pod_labels);
    }
    assert_eq!(docs[3]["spec"]["selector"]["matchLabels"], pod_labels);

    let c = &spec["template"]["spec"]["containers"][0];
    let env: Vec<&Value> = c["env"].as_array().expect("env").iter().collect();
    let position = |name: &str| env.iter().position(|e| e["name"] == json!(name));
    let var = |name: &str| {
        env[position(name).unwrap_or_else(|| panic!("env {name}"))]["value"]
            .as_str()
            .unwrap_or_else(|| panic!("env {name} has a value"))
            .to_string()
    };
    let name_of = |pod: &str| {
        format!("{pod}.causalkv-shards-headless.$(POD_NAMESPACE).svc.cluster.local:8085")
    };
    assert_eq!(var("SOCKET_ADDRESS"), name_of("$(POD_NAME)"));
    // Every pod of the set, in one VIEW, the same string in every pod.
    let view: Vec<String> = (0..6)
        .map(|i| name_of(&format!("causalkv-shards-{i}")))
        .collect();
    assert_eq!(var("VIEW"), view.join(","));
    assert_eq!(var("INITIAL_SHARD_COUNT"), "2");
    for (user, used) in [
        ("SOCKET_ADDRESS", "POD_NAME"),
        ("SOCKET_ADDRESS", "POD_NAMESPACE"),
        ("VIEW", "POD_NAMESPACE"),
    ] {
        assert!(
            position(used) < position(user),
            "{used} must come before {user}"
        );
    }
    // No VIEW_DNS (each pod's answer differs while they start), and memory
    // only: no DATA_DIR, no DURABILITY, no SHARD_COUNT set directly (the
    // command sets it for the pods named in VIEW).
    for name in ["VIEW_DNS", "DATA_DIR", "DURABILITY", "SHARD_COUNT"] {
        assert!(position(name).is_none(), "{name} must not be set");
    }
    assert_eq!(c["command"], json!(["/bin/sh", "-c"]));
    let script = c["args"][0].as_str().expect("the start script");
    assert!(
        script.contains("export SHARD_COUNT=\"$INITIAL_SHARD_COUNT\""),
        "{script}"
    );
    assert!(script.contains("exec /usr/local/bin/causalkv"), "{script}");
    assert!(
        !script.contains("$("),
        "Kubernetes would expand $(...) in args: {script}"
    );
    // The script, run by sh for a pod in VIEW and one that is not.
    let view_text = view.join(",").replace("$(POD_NAMESPACE)", "ns");
    let probe = script.replace(
        "exec /usr/local/bin/causalkv",
        "echo \"SHARD_COUNT=${SHARD_COUNT-unset}\"",
    );
    for (pod, expected) in [
        (0, "SHARD_COUNT=2"),
        (5, "SHARD_COUNT=2"),
        (6, "SHARD_COUNT=unset"),
    ] {
        let out = Command::new("sh")
            .args(["-c", &probe])
            .env_remove("SHARD_COUNT")
            .env("VIEW", &view_text)
            .env(
                "SOCKET_ADDRESS",
                name_of(&format!("causalkv-shards-{pod}")).replace("$(POD_NAMESPACE)", "ns"),
            )
            .env("INITIAL_SHARD_COUNT", "2")
            .output()
            .expect("sh");
        assert!(out.status.success(), "{out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            expected,
            "pod {pod}"
        );
    }
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], json!("/ready"));
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], json!("/health"));
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], json!(true));
    assert!(c["volumeMounts"].is_null(), "no volumes");
    assert!(text.contains("NOT DURABLE"), "says so plainly");
}
