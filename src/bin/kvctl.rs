//! kvctl, the command-line client: parse the arguments, run the command
//! (the logic lives in `causalkv::cli`), exit with its code.

use std::process::ExitCode;

use clap::Parser;

use causalkv::cli::{self, Cli, EXIT_USAGE};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("kvctl: {}", cli::usage_line(&e, "kvctl --help"));
            return ExitCode::from(EXIT_USAGE);
        }
    };
    ExitCode::from(cli::main(cli))
}
