//! `kvctl -i`: a shell running kvctl commands line by line, all in one
//! session.
//!
//! On a terminal it offers line editing and a history kept in the state
//! directory; from a pipe it reads lines silently (no prompt), so scripts
//! can feed it. Lines are split into words by [`shlex`], with a POSIX
//! shell's quotes and backslashes (and no expansions), so a line behaves as
//! it would after `kvctl` on the command line: quote a JSON value in single
//! quotes, `put k '{"a":1}'`. `--table NAME` on a line sends its key
//! command to table NAME (else to the table of `kvctl --table`, if any).

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use clap::Parser;
use rustyline::error::ReadlineError;

use super::args::{parse_table_name, usage_line, Command};
use super::outcome::{Outcome, EXIT_OK, EXIT_USAGE};
use super::runner::Runner;

/// What `help` prints in the shell.
pub const HELP: &str = "\
Commands:
  put KEY VALUE [--string]   store VALUE (JSON if it parses as JSON, else a string)
      [--if-absent]          ... only if KEY holds no value (else exit 4)
      [--if-match ETAG]      ... only if KEY's version is ETAG (else exit 4)
  get KEY [--etag]           print the value of KEY (--etag: its version's ETAG)
  delete KEY [--if-match ETAG]
                             delete KEY (only if its version is ETAG)
  view                       list the replicas in the view
  view add ADDR              add the replica at ADDR (ip:port) to the view
  view remove ADDR           remove the replica at ADDR from the view
  health                     the health of the first replica that answers
  status                     every replica's health, key count and view
  session [show|reset]       show or forget the session's causal context
  tables [list]              every table (the default one aside): siblings, key count
  tables create NAME [--siblings]
                             create table NAME (--siblings: keep concurrent writes)
  tables drop NAME           drop table NAME and every key in it
  shards                     every shard's members and key count, and this node's shard
  reshard N                  reshard the store into N shards (two live nodes each)
  add-member ID ADDR         place the node at ADDR (in no shard yet) in shard ID
  help [COMMAND]             this list, or the options of COMMAND
  exit, quit                 leave (so does end of input)
Add --json to a command for the raw response, --table NAME to a put, get
or delete for the keys of table NAME (kvctl --table NAME -i: every line's).
Quote words with spaces: put greeting 'hello world', put doc '{\"a\": [1, 2]}'.";

/// A shell line, parsed (the command line's options do not apply).
#[derive(Parser, Debug)]
#[command(
    name = "kvctl",
    no_binary_name = true,
    disable_version_flag = true,
    override_usage = "COMMAND [ARGS] [--json] [--table NAME]"
)]
struct Line {
    /// Print the raw JSON response.
    #[arg(long, global = true)]
    json: bool,
    /// Send get, put and delete to the keys of table NAME (for this line).
    #[arg(long, global = true, value_name = "NAME", value_parser = parse_table_name)]
    table: Option<String>,
    #[command(subcommand)]
    command: Command,
}

/// What one line asked for.
#[derive(Debug, PartialEq)]
pub enum Step {
    /// Leave the shell.
    Exit,
    /// Nothing to do (a blank line or a comment).
    Nothing,
    /// Print this; the code is the line's exit status.
    Done(Outcome),
}

/// Runs the shell on the process's stdin until `exit` or end of input;
/// returns the exit code of the last command (0 if none), as `sh` does.
pub async fn run(runner: &mut Runner, json: bool, history: Option<PathBuf>) -> u8 {
    if std::io::stdin().is_terminal() {
        run_terminal(runner, json, history).await
    } else {
        let stdin = std::io::stdin();
        run_script(
            runner,
            json,
            stdin.lock(),
            &mut std::io::stdout(),
            &mut std::io::stderr(),
        )
        .await
    }
}

/// Runs the lines of `input`, printing to `out` and `err`; returns the exit
/// code of the last command.
pub async fn run_script(
    runner: &mut Runner,
    json: bool,
    input: impl BufRead,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    let mut code = EXIT_OK;
    for line in input.lines() {
        let line = match line {
            Ok(line) => line,
            Err(e) => {
                Outcome::error(EXIT_USAGE, format!("cannot read input: {e}")).write_to(out, err);
                return EXIT_USAGE;
            }
        };
        match run_line(runner, &line, json).await {
            Step::Exit => break,
            Step::Nothing => {}
            Step::Done(outcome) => {
                outcome.write_to(out, err);
                code = outcome.code;
            }
        }
    }
    code
}

async fn run_terminal(runner: &mut Runner, json: bool, history: Option<PathBuf>) -> u8 {
    let mut editor = match rustyline::DefaultEditor::new() {
        Ok(editor) => editor,
        Err(e) => {
            Outcome::error(EXIT_USAGE, format!("cannot start the shell: {e}")).print();
            return EXIT_USAGE;
        }
    };
    if let Some(path) = &history {
        // No history yet is fine.
        let _ = editor.load_history(path);
    }
    println!("kvctl shell: `help` lists the commands, `exit` leaves.");
    let mut code = EXIT_OK;
    loop {
        let line = match editor.readline("kvctl> ") {
            Ok(line) => line,
            // Ctrl-C drops the line being typed; Ctrl-D leaves.
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => {
                Outcome::error(EXIT_USAGE, format!("cannot read input: {e}")).print();
                code = EXIT_USAGE;
                break;
            }
        };
        if !line.trim().is_empty() {
            let _ = editor.add_history_entry(line.as_str());
        }
        match run_line(runner, &line, json).await {
            Step::Exit => break,
            Step::Nothing => {}
            Step::Done(outcome) => {
                outcome.print();
                code = outcome.code;
            }
        }
    }
    if let Some(path) = &history {
        let saved = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| editor.save_history(path).map_err(std::io::Error::other));
        if let Err(e) = saved {
            eprintln!("kvctl: history not saved to {}: {e}", path.display());
        }
    }
    code
}

/// Runs one shell line.
pub async fn run_line(runner: &mut Runner, line: &str, json: bool) -> Step {
    let words = match split_words(line) {
        Ok(words) => words,
        Err(e) => return Step::Done(Outcome::error(EXIT_USAGE, e)),
    };
    match words.first().map(String::as_str) {
        None => return Step::Nothing,
        Some(first) if first.starts_with('#') => return Step::Nothing,
        Some("exit" | "quit") if words.len() == 1 => return Step::Exit,
        Some("help" | "?") if words.len() == 1 => {
            return Step::Done(Outcome::ok(HELP.lines().map(str::to_string)))
        }
        _ => {}
    }
    let parsed = match Line::try_parse_from(&words) {
        Ok(parsed) => parsed,
        // `help put`, `put --help`: clap's help for that command.
        Err(e) if !e.use_stderr() => {
            return Step::Done(Outcome::ok(
                e.render()
                    .to_string()
                    .trim_end()
                    .lines()
                    .map(str::to_string),
            ))
        }
        Err(e) => return Step::Done(Outcome::error(EXIT_USAGE, usage_line(&e, "help"))),
    };
    match parsed.command.into_action(None) {
        Ok(action) => {
            let json = json || parsed.json;
            Step::Done(runner.run_in(&action, parsed.table.as_deref(), json).await)
        }
        Err(e) => Step::Done(Outcome::error(EXIT_USAGE, e)),
    }
}

/// Splits a shell line into words as a POSIX shell does.
pub fn split_words(line: &str) -> Result<Vec<String>, String> {
    shlex::split(line).ok_or_else(|| "unterminated quote or trailing backslash".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_may_name_its_table() {
        let line = |text: &str| Line::try_parse_from(words(text));
        let parsed = line("get k --table carts").unwrap();
        assert_eq!(parsed.table.as_deref(), Some("carts"));
        assert_eq!(
            parsed.command,
            Command::Get {
                key: "k".into(),
                etag: false
            }
        );
        assert_eq!(
            line("--table t put k 1").unwrap().table.as_deref(),
            Some("t")
        );
        assert_eq!(line("get k").unwrap().table, None);
        let parsed = line("tables create c --siblings --json").unwrap();
        assert!(parsed.json);
        assert_eq!(
            parsed.command.into_action(None).unwrap(),
            crate::cli::Action::TableCreate {
                name: "c".into(),
                siblings: true
            }
        );
        let e = line("get k --table 'a b'").unwrap_err();
        assert!(usage_line(&e, "help").contains("invalid table name"), "{e}");
        assert!(HELP.contains("tables create NAME [--siblings]"));
    }

    fn words(line: &str) -> Vec<String> {
        split_words(line).unwrap()
    }

    #[test]
    fn words_split_on_whitespace_and_quotes_group_them() {
        assert_eq!(words("  put  k   v "), ["put", "k", "v"]);
        assert_eq!(words("put k 'hello world'"), ["put", "k", "hello world"]);
        assert_eq!(
            words(r#"put k "say \"hi\" \\ \n""#),
            ["put", "k", r#"say "hi" \ \n"#]
        );
        assert_eq!(
            words(r#"put k '{"a": [1, 2]}'"#),
            ["put", "k", r#"{"a": [1, 2]}"#]
        );
        // Quotes inside a word are a shell's, not part of the value.
        assert_eq!(words(r#"put k {"a":1}"#), ["put", "k", "{a:1}"]);
        assert_eq!(words(r"put k hello\ world"), ["put", "k", "hello world"]);
        assert_eq!(words("put k ''"), ["put", "k", ""]);
        assert!(words("").is_empty());
        assert!(split_words("put k 'open").is_err());
        assert!(split_words("put k \"open").is_err());
        assert!(split_words("put k end\\").is_err());
    }
}
