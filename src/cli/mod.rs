//! `kvctl`, the command-line client: arguments, commands, exit codes.
//!
//! `kvctl put a 1`, then `kvctl get a` at another replica, reads the write:
//! every command starts from the causal context of the session and merges
//! the context it gets back into it ([`crate::cli::session`]), so commands stay
//! causally ordered across processes without the user passing
//! `causal-metadata` around. Requests go to the first host that answers
//! ([`crate::client::Client`] moves on after a connection failure, a
//! timeout or a 503).
//!
//! Writes can be conditional (`put --if-absent`, `put`/`delete --if-match
//! ETAG`, sent as `If-None-Match: *` / `If-Match`); a put prints the new
//! version's entity tag and `get --etag` the current one. A condition that
//! does not hold exits with [`EXIT_CONDITION_FAILED`], naming the key's
//! current tag, and the session keeps the 412's context like any answer's.
//!
//! Tables ([`TablesCommand`], [`tables`]): `--table NAME` sends `get`,
//! `put` and `delete` to the keys of table NAME, and `tables` lists,
//! creates (`--siblings`) and drops tables, carrying the session's context like the key commands. A
//! `get` of a key with concurrent values in a table that keeps siblings
//! prints them all (and exits 0); a table that does not exist exits with
//! [`EXIT_NOT_FOUND`].
//!
//! The layers, each testable without a process:
//!
//! - [`args`]: [`Cli`] and [`Command`], the arguments parsed by clap
//!   (table names and [`TablesCommand`] too), and the [`Action`] a command
//!   becomes ([`parse_value`]).
//! - [`runner`]: the [`Runner`] runs an action against the store and
//!   returns an [`Outcome`] ([`outcome`]): an exit code and the lines to
//!   print, worded by [`render`] (and, for tables, by [`tables`]; for the
//!   view, health, status and shards, by [`cluster`]).
//! - [`shell`]: the interactive shell (`-i`), reading lines from a terminal
//!   with editing and history, or from a pipe.
//!
//! `src/bin/kvctl.rs` only parses the arguments and calls [`main`].

pub mod args;
pub mod cluster;
pub mod outcome;
pub mod render;
pub mod runner;
pub mod session;
pub mod shell;
pub mod tables;

use std::time::Duration;

use crate::client::{parse_hosts, Client};

pub use args::{
    parse_value, usage_line, Action, Cli, Command, SessionAction, TablesCommand, ViewChange,
};
pub use outcome::{
    Outcome, EXIT_CONDITION_FAILED, EXIT_NOT_FOUND, EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE,
};
pub use runner::Runner;

/// Runs kvctl as the command line says and returns the exit code.
/// Reads a `-` value from standard input; prints to stdout and stderr.
pub fn main(cli: Cli) -> u8 {
    let usage = |message: String| {
        Outcome::error(EXIT_USAGE, message).print();
        EXIT_USAGE
    };
    let mut runner = match runner_for(&cli) {
        Ok(runner) => runner,
        Err(e) => return usage(e),
    };
    let history = cli.state_dir().map(|dir| dir.join("history"));
    let system = actix_rt::System::new();
    match (cli.command, cli.interactive) {
        (Some(_), true) => usage("-i starts a shell: give it no command".into()),
        (None, false) => usage(
            "no command given (put, get, delete, view, health, status, session, tables, \
             shards, reshard, add-member; see kvctl --help)"
                .into(),
        ),
        (None, true) => system.block_on(shell::run(&mut runner, cli.json, history)),
        (Some(command), false) => {
            let mut stdin = std::io::stdin();
            match command.into_action(Some(&mut stdin)) {
                Ok(action) => {
                    let outcome = system.block_on(runner.run(&action, cli.json));
                    outcome.print();
                    outcome.code
                }
                Err(e) => usage(e),
            }
        }
    }
}

/// A runner for the command line's hosts, timeout and session.
pub fn runner_for(cli: &Cli) -> Result<Runner, String> {
    let hosts = parse_hosts(&cli.hosts)?;
    let session = cli.session_file().map_err(|e| e.to_string())?;
    let mut client = Client::with_timeout(hosts, Duration::from_secs(cli.timeout.max(1)));
    client.set_write_concern(cli.w.clone());
    let mut runner = Runner::new(client, session);
    runner.set_table(cli.table.clone());
    Ok(runner)
}
