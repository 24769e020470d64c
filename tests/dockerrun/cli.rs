//! Missing tools, bad arguments, the help text, and Docker mode's commands (dry run).

use std::fs;
use std::path::Path;

use crate::script::{write_executable, Script};
use crate::support::free_ports;
use crate::{binary, repo, EXIT_MISSING_TOOL, EXIT_NOT_RUNNING, EXIT_USAGE};

#[test]
fn missing_tools_and_bad_arguments_fail_clearly() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let state = dir.path().join("state");
    let state = state.to_str().unwrap();
    let empty = dir.path().join("empty-path");
    fs::create_dir(&empty).unwrap();
    // Free ports: the script checks them before anything else.
    let base = free_ports(3).to_string();
    let base = base.as_str();

    // No cargo (and no docker): local mode cannot build.
    let run = Script::with_path(&empty)
        .run(&["--state-dir", state, "--base-port", base])
        .expect(EXIT_MISSING_TOOL);
    assert!(run.stdout.contains("Mode: local"), "{}", run.stdout);
    assert!(
        run.error_line().contains("cargo not found"),
        "{}",
        run.stderr
    );
    assert!(
        run.error_line().contains("--binary"),
        "says the way out: {}",
        run.stderr
    );

    // No docker at all, docker mode requested.
    let run = Script::with_path(&empty)
        .run(&[
            "--state-dir",
            state,
            "--base-port",
            base,
            "--mode",
            "docker",
        ])
        .expect(EXIT_MISSING_TOOL);
    assert!(
        run.error_line().contains("docker is not installed"),
        "{}",
        run.stderr
    );

    // A docker client without an engine (as on a machine with the CLI only).
    let fake_bin = dir.path().join("fake-docker-bin");
    fs::create_dir(&fake_bin).unwrap();
    write_executable(
        &fake_bin.join("docker"),
        "#!/bin/sh\necho 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock. \
         Is the docker daemon running?' >&2\nexit 1\n",
    );
    let run = Script::with_path(&fake_bin)
        .run(&[
            "--state-dir",
            state,
            "--base-port",
            base,
            "--mode",
            "docker",
        ])
        .expect(EXIT_MISSING_TOOL);
    assert!(
        run.error_line()
            .contains("Docker engine is not reachable: Cannot connect"),
        "{}",
        run.stderr
    );
    // ...so auto mode picks local (and here fails on the missing binary).
    let run = Script::with_path(&fake_bin)
        .run(&[
            "--state-dir",
            state,
            "--base-port",
            base,
            "--binary",
            "/nonexistent/causalkv",
        ])
        .expect(EXIT_USAGE);
    assert!(
        run.stdout.contains("Mode: local (no Docker engine"),
        "{}",
        run.stdout
    );
    assert!(
        run.error_line()
            .contains("--binary /nonexistent/causalkv: no such file"),
        "{}",
        run.stderr
    );
    let run = Script::with_path(&fake_bin)
        .env("CAUSALKV_BIN", "/nonexistent/causalkv")
        .run(&["--state-dir", state, "--base-port", base, "--mode", "local"])
        .expect(EXIT_USAGE);
    assert!(run.error_line().contains("CAUSALKV_BIN"), "{}", run.stderr);

    // Nothing running: commands that need a store say so.
    for args in [
        vec!["status"],
        vec!["add"],
        vec!["remove", "x"],
        vec!["restart", "x"],
        vec!["kill", "x"],
        vec!["logs", "x"],
    ] {
        let mut all = vec!["--state-dir", state];
        all.extend(args);
        let run = Script::new().run(&all).expect(EXIT_NOT_RUNNING);
        assert!(
            run.error_line().contains("no store is running"),
            "{}",
            run.stderr
        );
    }
    // Start-only options elsewhere, unknown commands.
    let run = Script::new()
        .run(&["--state-dir", state, "--binary", "x", "status"])
        .expect(EXIT_USAGE);
    assert!(
        run.stderr.contains("--binary only applies to start"),
        "{}",
        run.stderr
    );
    let run = Script::new()
        .run(&["--state-dir", state, "--durability", "os", "stop"])
        .expect(EXIT_USAGE);
    assert!(
        run.stderr.contains("--durability only applies to start"),
        "{}",
        run.stderr
    );
    let run = Script::new().run(&["frobnicate"]).expect(EXIT_USAGE);
    assert!(run.stderr.contains("invalid choice"), "{}", run.stderr);
    let run = Script::new()
        .run(&["--state-dir", state, "start", "--durability", "always"])
        .expect(EXIT_USAGE);
    assert!(
        run.stderr.contains("invalid choice: 'always'"),
        "{}",
        run.stderr
    );
    for command in ["restart", "kill"] {
        let run = Script::new()
            .run(&["--state-dir", state, command])
            .expect(EXIT_USAGE);
        assert!(
            run.stderr
                .contains("the following arguments are required: NAME"),
            "{command}: {}",
            run.stderr
        );
    }
    // Nothing running and no data: `stop --purge` has nothing to do.
    let run = Script::new()
        .run(&["--state-dir", state, "stop", "--purge"])
        .expect(0);
    assert!(run.stdout.contains("Nothing to stop"), "{}", run.stdout);
    assert!(run.stdout.contains("No data to delete"), "{}", run.stdout);
    assert!(!Path::new(state).join("state.json").exists());
}

#[test]
fn help_lists_commands_and_exit_codes() {
    let run = Script::new().run(&["--help"]).expect(0);
    for word in [
        "start",
        "status",
        "add",
        "remove",
        "logs",
        "stop",
        "restart",
        "kill",
        "stop --purge",
        "--mode",
        "--binary",
        "--base-port",
        "--state-dir",
        "--durability",
        "DATA_DIR",
        "Exit codes",
    ] {
        assert!(
            run.stdout.contains(word),
            "--help lacks {word}:\n{}",
            run.stdout
        );
    }
    // What each new command and option does, in its own --help.
    for (command, words) in [
        ("stop", &["--purge", "delete every replica's data"][..]),
        (
            "restart",
            &["NAME", "same address, port and", "--grace", "--timeout"][..],
        ),
        ("kill", &["NAME", "SIGKILL", "restart NAME"][..]),
    ] {
        let run = Script::new().run(&[command, "--help"]).expect(0);
        let text = run.stdout.split_whitespace().collect::<Vec<_>>().join(" ");
        for word in words {
            assert!(
                text.contains(word),
                "{command} --help lacks {word}:\n{}",
                run.stdout
            );
        }
    }
    let doc = fs::read_to_string(repo().join("dockerRun.py")).unwrap();
    assert!(
        doc.starts_with("#!/usr/bin/env python3\n\"\"\""),
        "shebang and module docstring"
    );
}

#[test]
fn docker_mode_commands_follow_the_kevindb_layout() {
    // No Docker engine is needed for a dry run: it only prints the commands.
    let dir = tempfile::tempdir().expect("temporary directory");
    let empty = dir.path().join("empty-path");
    fs::create_dir(&empty).unwrap();
    let run = Script::with_path(&empty)
        .env("CLUSTER_TOKEN", "s3cret")
        .run(&[
            "--state-dir",
            dir.path().to_str().unwrap(),
            "start",
            "--mode",
            "docker",
            "--dry-run",
        ])
        .expect(0);
    let out = &run.stdout;
    let repo_dir = repo();
    let dockerfile = repo_dir.join("docker").join("Dockerfile");
    assert!(
        out.contains(&format!(
            "+ docker build --tag causalkv:latest --file {} {}",
            dockerfile.display(),
            repo_dir.display()
        )),
        "{out}"
    );
    assert!(
        out.contains("+ docker network create --subnet 10.10.0.0/16 causalkv-net"),
        "{out}"
    );
    let view = "10.10.0.2:8085,10.10.0.3:8085,10.10.0.4:8085";
    for i in 1..=3 {
        let ip = format!("10.10.0.{}", 1 + i);
        // A named volume per replica, mounted at /data, made before its container.
        let volume = format!(
            "+ docker volume create --label causalkv.replica=causalkv-replica{i} causalkv-data-replica{i}\n"
        );
        let expected = format!(
            "{volume}+ docker run --detach --name causalkv-replica{i} --hostname causalkv-replica{i} \
             --network causalkv-net --ip {ip} --publish 127.0.0.1:{}:8085 \
             --volume causalkv-data-replica{i}:/data \
             --env SOCKET_ADDRESS={ip}:8085 --env VIEW={view} --env DATA_DIR=/data \
             --env CLUSTER_TOKEN causalkv:latest\n",
            8081 + i
        );
        assert!(out.contains(&expected), "missing:\n{expected}\nin:\n{out}");
    }
    assert!(
        !out.contains("DURABILITY"),
        "DURABILITY is passed only when given: {out}"
    );
    assert!(!out.contains("s3cret"), "the token stays off command lines");
    assert!(
        !dir.path().join("state.json").exists(),
        "a dry run records nothing"
    );

    // Another subnet (for machines where 10.10.0.0/16 is taken).
    let state = dir.path().to_str().unwrap();
    let run = Script::with_path(&empty)
        .run(&[
            "--state-dir",
            state,
            "start",
            "--mode",
            "docker",
            "--dry-run",
            "--subnet",
            "172.30.0.0/24",
            "-n",
            "2",
            "--base-port",
            "9000",
            "--durability",
            "os",
        ])
        .expect(0);
    assert!(
        run.stdout
            .contains("--ip 172.30.0.3 --publish 127.0.0.1:9001:8085 --volume causalkv-data-replica2:/data \
                       --env SOCKET_ADDRESS=172.30.0.3:8085 --env VIEW=172.30.0.2:8085,172.30.0.3:8085 \
                       --env DATA_DIR=/data --env DURABILITY=os causalkv:latest"),
        "{}",
        run.stdout
    );
    let run = Script::with_path(&empty)
        .run(&[
            "--state-dir",
            state,
            "--mode",
            "docker",
            "--dry-run",
            "--subnet",
            "10.10.0.1/16",
        ])
        .expect(EXIT_USAGE);
    assert!(
        run.error_line().contains("--subnet 10.10.0.1/16"),
        "{}",
        run.stderr
    );
}

#[test]
fn local_mode_gives_every_replica_a_data_dir_and_passes_durability() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let state = dir.path().join("state");
    let state_text = state.to_str().unwrap();
    let dry_run = |script: Script, extra: &[&str]| {
        let mut args = vec![
            "--state-dir",
            state_text,
            "start",
            "--mode",
            "local",
            "--binary",
            binary(),
            "--dry-run",
            "-n",
            "2",
            "--base-port",
            "9000",
        ];
        args.extend_from_slice(extra);
        script.run(&args).expect(0).stdout
    };
    let out = dry_run(Script::new(), &[]);
    for (i, port) in [(1, 9000), (2, 9001)] {
        let data = state.join("data").join(format!("causalkv-replica{i}"));
        let data = data.to_str().unwrap();
        assert!(
            out.contains(&format!("+ mkdir -p -m 700 {data}\n")),
            "{out}"
        );
        let line = out
            .lines()
            .find(|l| l.contains(&format!("SOCKET_ADDRESS=127.0.0.1:{port} ")))
            .unwrap_or_else(|| panic!("no command for port {port}:\n{out}"));
        assert!(line.contains(&format!(" DATA_DIR={data} ")), "{line}");
    }
    assert!(
        !out.contains("DURABILITY"),
        "DURABILITY is passed only when given: {out}"
    );
    // From the environment, like the other settings; --durability wins.
    let out = dry_run(Script::new().env("DURABILITY", "os"), &[]);
    assert_eq!(out.matches(" DURABILITY=os ").count(), 2, "{out}");
    let out = dry_run(
        Script::new().env("DURABILITY", "os"),
        &["--durability", "fsync"],
    );
    assert_eq!(out.matches(" DURABILITY=fsync ").count(), 2, "{out}");
    assert!(!out.contains("DURABILITY=os"), "{out}");
    assert!(!state.exists(), "a dry run makes nothing");
}
