//! The causalkv node: read the configuration, set up tracing, serve until
//! SIGTERM or SIGINT.

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use causalkv::config::{Args, Config};

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            eprintln!("causalkv: {}", first.trim_start_matches("error: "));
            return ExitCode::from(2);
        }
    };
    let config = match Config::from_args(args) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("causalkv: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    let filter = match std::env::var("RUST_LOG") {
        Ok(text) if !text.is_empty() => match EnvFilter::try_new(&text) {
            Ok(filter) => filter,
            Err(e) => {
                eprintln!("causalkv: invalid configuration: RUST_LOG: {e}");
                return ExitCode::from(2);
            }
        },
        _ => EnvFilter::new("info"),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();

    // A panicking task must not leave a half-alive replica behind.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        std::process::exit(101);
    }));

    let system = actix_rt::System::new();
    let result = system.block_on(async move {
        // A replica without a disk is someone new at every start.
        let incarnation = causalkv::incarnation::fresh();
        let running = causalkv::server::start(config, &incarnation)?;
        running.server.await
    });
    match result {
        Ok(()) => {
            tracing::info!("replica stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("causalkv: {e}");
            ExitCode::FAILURE
        }
    }
}
