//! The causalkv node: read the configuration, set up tracing, serve until
//! SIGTERM or SIGINT.

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use causalkv::config::{Args, Config};

// The storage engine allocates a node per journalled entry: glibc's
// allocator spends more time on that than the engine itself.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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

    // A replica without a disk (or whose disk holds no state to trust) is
    // someone new at every start.
    let incarnation = causalkv::incarnation::fresh();
    let opened = match &config.data_dir {
        None => None,
        Some(dir) => match causalkv::durable::open(
            dir,
            config.durability,
            &config.socket_address,
            config.discard_corrupt_state,
        ) {
            Ok(opened) => Some(opened),
            Err(e) => {
                eprintln!("causalkv: DATA_DIR: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    let system = actix_rt::System::new();
    let result = system.block_on(async move {
        let running = match opened {
            Some(opened) => causalkv::server::start_on_disk(config, opened, &incarnation)?,
            None => causalkv::server::start(config, &incarnation)?,
        };
        let node = running.node.clone();
        let result = running.server.await;
        node.close_disk();
        result
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
