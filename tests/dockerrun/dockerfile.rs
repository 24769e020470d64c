//! The Dockerfile: a locked release build, run unprivileged.

use std::fs;

use crate::repo;

/// Dockerfile instructions: (keyword, arguments, line of the keyword),
/// continuation lines joined, comments dropped.
fn dockerfile_instructions(text: &str) -> Vec<(String, String, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim();
        if line.is_empty() || line.starts_with('#') {
            i += 1;
            continue;
        }
        let start = i;
        let mut joined = String::new();
        loop {
            let part = lines[i].trim();
            if !part.starts_with('#') {
                let (part, more) = match part.strip_suffix('\\') {
                    Some(p) => (p, true),
                    None => (part, false),
                };
                joined.push_str(part.trim());
                joined.push(' ');
                if !more {
                    break;
                }
            }
            i += 1;
            assert!(i < lines.len(), "Dockerfile ends inside a continued line");
        }
        i += 1;
        let joined = joined.trim().to_string();
        let (keyword, args) = joined.split_once(' ').unwrap_or((&joined, ""));
        out.push((keyword.to_ascii_uppercase(), args.trim().to_string(), start));
    }
    out
}

#[test]
fn dockerfile_builds_the_locked_release_binary_and_runs_it_unprivileged() {
    let text = fs::read_to_string(repo().join("docker/Dockerfile")).expect("docker/Dockerfile");
    let lines: Vec<&str> = text.lines().collect();
    let instructions = dockerfile_instructions(&text);
    let find = |kw: &str| -> Vec<&(String, String, usize)> {
        instructions.iter().filter(|i| i.0 == kw).collect()
    };

    // Multi-stage: a Rust builder, a slim Debian runtime.
    let froms = find("FROM");
    assert_eq!(froms.len(), 2, "two stages: {froms:?}");
    let builder: Vec<&str> = froms[0].1.split_whitespace().collect();
    assert!(
        builder[0].starts_with("rust:") && builder[0].contains("bookworm"),
        "{builder:?}"
    );
    assert_eq!(&builder[1..], ["AS", "builder"], "{builder:?}");
    assert_eq!(froms[1].1, "debian:bookworm-slim");

    // The build command, exactly, in the builder stage.
    let runtime_start = froms[1].2;
    let builds: Vec<_> = find("RUN")
        .into_iter()
        .filter(|r| r.1.contains("cargo build"))
        .collect();
    assert_eq!(builds.len(), 1, "{builds:?}");
    assert_eq!(builds[0].1, "cargo build --release --locked --bin causalkv");
    assert!(
        builds[0].2 < runtime_start,
        "the build runs in the builder stage"
    );
    assert!(
        find("COPY")
            .iter()
            .any(|c| c.1 == "--from=builder /src/target/release/causalkv /usr/local/bin/causalkv"),
        "the runtime takes the builder's release binary"
    );
    assert_eq!(find("WORKDIR")[0].1, "/src");

    // Port, user, health check, entry point.
    assert_eq!(
        find("EXPOSE")
            .iter()
            .map(|e| e.1.as_str())
            .collect::<Vec<_>>(),
        ["8085"]
    );
    let users = find("USER");
    assert_eq!(users.len(), 1);
    let user = users[0].1.split(':').next().unwrap();
    assert!(
        !["root", "0", ""].contains(&user),
        "runs as non-root: {user}"
    );
    assert!(users[0].2 > runtime_start);
    let health = find("HEALTHCHECK");
    assert_eq!(health.len(), 1);
    assert!(
        health[0].1.contains("CMD") && health[0].1.contains("/health"),
        "{health:?}"
    );
    assert!(health[0].1.contains("curl"), "{health:?}");
    assert!(
        find("RUN")
            .iter()
            .any(|r| r.2 > runtime_start && r.1.contains("install") && r.1.contains("curl")),
        "the health check's curl is installed in the runtime stage"
    );
    assert!(find("ENTRYPOINT")[0].1.contains("/usr/local/bin/causalkv"));

    // /data, where the orchestrations mount each replica's volume, exists
    // in the runtime image and belongs to the user the replica runs as (a
    // new docker volume mounted there takes that owner).
    let user_ids = users[0].1.as_str();
    let user_ids = if user_ids.contains(':') {
        user_ids.to_string()
    } else {
        format!("{user_ids}:{user_ids}")
    };
    assert!(
        find("RUN").iter().any(|r| r.2 > runtime_start
            && r.1.contains("mkdir /data")
            && r.1.contains(&format!("chown {user_ids} /data"))),
        "the runtime stage makes /data owned by {user_ids}"
    );

    // Configured only through the environment at run time: nothing baked in.
    for kw in ["ENV", "ARG"] {
        for i in find(kw) {
            for var in ["SOCKET_ADDRESS", "VIEW", "DATA_DIR", "DURABILITY"] {
                assert!(
                    !i.1.split(['=', ' ']).any(|w| w == var),
                    "{kw} bakes in {var}: {i:?}"
                );
            }
        }
    }

    // The files it copies exist and are not excluded from the context.
    for c in find("COPY").iter().filter(|c| !c.1.starts_with("--from")) {
        let parts: Vec<&str> = c.1.split_whitespace().collect();
        for source in &parts[..parts.len() - 1] {
            assert!(
                repo().join(source).exists(),
                "COPY source {source} is missing"
            );
        }
    }
    let ignore = fs::read_to_string(repo().join(".dockerignore")).expect(".dockerignore");
    let patterns: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.trim_end_matches('/'))
        .collect();
    for excluded in ["target", ".git", ".causalkv-run"] {
        assert!(
            patterns.contains(&excluded),
            ".dockerignore lacks {excluded}: {patterns:?}"
        );
    }
    for needed in ["src", "Cargo.toml", "Cargo.lock"] {
        assert!(
            !patterns.contains(&needed),
            ".dockerignore excludes {needed}"
        );
    }

    // Every instruction is explained by a comment right above it.
    for (keyword, args, line) in &instructions {
        assert!(
            *line > 0 && lines[line - 1].trim_start().starts_with('#'),
            "{keyword} {args} (line {}) has no comment above it",
            line + 1
        );
    }
}
