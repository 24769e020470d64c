//! kvctl's command line, parsed by clap, and the [`Action`] a command
//! becomes once its value is parsed and read.

use std::io::Read;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use serde_json::Value;

use super::session::{default_state_dir, session_path, SessionError, SessionFile};
use crate::client::{Precondition, DEFAULT_HOSTS};
use crate::shard::{ShardId, MAX_SHARDS};

const EXIT_CODES: &str = "\
Exit codes: 0 ok (a get of a key with siblings too), 1 key not found \
(add-member: no such shard; any command: no such table), 2 usage error \
or a request the store refuses (such as a reshard into more shards than the \
nodes can hold, or get --etag of a key with siblings), 3 no replica reachable, causal dependencies not satisfied in \
time, a disk unavailable, a write held by fewer replicas than --w asked in \
time (it was made and still spreads), or a reshard under way or failed, \
4 the condition of a write (put --if-absent, put/delete --if-match) did not \
hold: nothing was written (the error names the key's current etag).";

/// The command line of `kvctl`.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "kvctl",
    version,
    about = "Command-line client for causalkv; every command is causally ordered after the last one",
    after_help = EXIT_CODES
)]
pub struct Cli {
    /// Replicas to talk to, tried in order (comma-separated ip:port; a bare
    /// port takes the IP of the host before it).
    #[arg(long, global = true, env = "CAUSALKV_HOSTS", default_value = DEFAULT_HOSTS)]
    pub hosts: String,

    /// Name of the session whose causal context commands share.
    #[arg(long, global = true, env = "KVCTL_SESSION", default_value = super::session::DEFAULT_SESSION, value_name = "NAME")]
    pub session: String,

    /// Session file to use instead of the named session's.
    #[arg(long, global = true, env = "KVCTL_SESSION_FILE", value_name = "PATH")]
    pub session_file: Option<PathBuf>,

    /// Directory for sessions and shell history (default:
    /// $XDG_STATE_HOME/kvctl, else ~/.local/state/kvctl).
    #[arg(long, global = true, env = "KVCTL_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// Neither read nor write a session file.
    #[arg(long, global = true)]
    pub no_session: bool,

    /// Send get, put and delete to the keys of table NAME
    /// (/tables/NAME/key-value-store/KEY; `kvctl tables create NAME`
    /// creates it) instead of the default table.
    #[arg(long, global = true, value_name = "NAME", value_parser = parse_table_name)]
    pub table: Option<String>,

    /// Print the raw JSON response instead of a human-readable one.
    #[arg(long, global = true)]
    pub json: bool,

    /// Acknowledge writes only once this many replicas hold them: 1 (the
    /// default), a number, majority or all. Short of it in time, the write
    /// is kept and still spreads, and kvctl exits with 3.
    #[arg(long = "w", global = true, value_name = "W", value_parser = parse_concern)]
    pub w: Option<String>,

    /// Seconds allowed for each request to one replica.
    #[arg(long, global = true, default_value_t = 15, value_name = "SECONDS")]
    pub timeout: u64,

    /// Start a shell that reads commands line by line.
    #[arg(short, long)]
    pub interactive: bool,

    /// What to do.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// A kvctl command, as typed on the command line or in the shell.
#[derive(Subcommand, Debug, Clone, PartialEq)]
pub enum Command {
    /// Store VALUE at KEY (as JSON when it parses as JSON, else as a
    /// string); prints the new version's entity tag.
    Put {
        /// The key.
        key: String,
        /// The value; `-` reads it from standard input.
        #[arg(allow_hyphen_values = true)]
        value: String,
        /// Store VALUE as a string even if it parses as JSON.
        #[arg(long)]
        string: bool,
        /// Only if KEY holds no value (create, never overwrite); else exit 4.
        #[arg(long, conflicts_with = "if_match")]
        if_absent: bool,
        /// Only if KEY's current version has entity tag ETAG (as `get
        /// --etag` or `put` print it; quotes optional; `*`: only if KEY
        /// exists); else exit 4.
        #[arg(long, value_name = "ETAG")]
        if_match: Option<String>,
    },
    /// Print the value of KEY (in a table that keeps siblings, all its
    /// concurrent values, if it has several).
    Get {
        /// The key.
        key: String,
        /// Print the entity tag of KEY's current version (quoted) instead
        /// of its value, for `put`/`delete --if-match`.
        #[arg(long)]
        etag: bool,
    },
    /// Delete KEY.
    Delete {
        /// The key.
        key: String,
        /// Only if KEY's current version has entity tag ETAG (quotes
        /// optional; `*`: any version); else exit 4.
        #[arg(long, value_name = "ETAG")]
        if_match: Option<String>,
    },
    /// List the replicas in the view, or change the view.
    View {
        /// What to change (nothing: list the view).
        #[command(subcommand)]
        change: Option<ViewChange>,
    },
    /// Show the health of the first replica that answers.
    Health,
    /// Show every replica's health, key count and view.
    Status,
    /// Show or forget the session's causal context.
    Session {
        /// What to do (nothing: show).
        #[command(subcommand)]
        action: Option<SessionAction>,
    },
    /// List the tables, or create or drop one (--table NAME sends get,
    /// put and delete to a table's keys).
    Tables {
        /// What to do (nothing: list).
        #[command(subcommand)]
        action: Option<TablesCommand>,
    },
    /// List every shard with its members and key count, and the shard of
    /// the node asked.
    Shards,
    /// Reshard the store into COUNT shards (each needs two live nodes);
    /// waits until every key has moved (up to --timeout, at least 150 s).
    Reshard {
        /// The number of shards.
        #[arg(value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_SHARDS)))]
        count: u32,
    },
    /// Place the node at ADDR (ip:port, in the view but in no shard) in
    /// shard ID.
    AddMember {
        /// The shard id.
        id: ShardId,
        /// The node's address.
        addr: String,
    },
}

/// A change to the view.
#[derive(Subcommand, Debug, Clone, PartialEq)]
pub enum ViewChange {
    /// Add the replica at ADDR (ip:port) to the view.
    Add {
        /// The replica's address.
        addr: String,
    },
    /// Remove the replica at ADDR (ip:port) from the view.
    Remove {
        /// The replica's address.
        addr: String,
    },
}

/// What to do with the session.
#[derive(Subcommand, Debug, Clone, PartialEq)]
pub enum SessionAction {
    /// Print the session file and its causal context.
    Show,
    /// Forget the causal context (e.g. after the cluster was replaced).
    Reset,
}

/// What to do with tables.
#[derive(Subcommand, Debug, Clone, PartialEq)]
pub enum TablesCommand {
    /// List every table (the default one aside): whether it keeps
    /// siblings, and how many keys it holds.
    List,
    /// Create table NAME (nothing changes if it exists).
    Create {
        /// The table's name: 1 to 50 letters, digits, '-' and '_'.
        #[arg(value_parser = parse_table_name)]
        name: String,
        /// Keep concurrent writes to a key as siblings (a get shows them
        /// all) instead of resolving them.
        #[arg(long)]
        siblings: bool,
    },
    /// Drop table NAME and every key in it.
    Drop {
        /// The table's name.
        #[arg(value_parser = parse_table_name)]
        name: String,
    },
}

impl TablesCommand {
    /// The action this command asks for (`None`: `tables` alone lists).
    pub fn action(command: Option<TablesCommand>) -> Action {
        match command {
            None | Some(TablesCommand::List) => Action::Tables,
            Some(TablesCommand::Create { name, siblings }) => {
                Action::TableCreate { name, siblings }
            }
            Some(TablesCommand::Drop { name }) => Action::TableDrop { name },
        }
    }
}

/// A command ready to run: its value parsed, standard input read.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Store `value` at `key`.
    Put {
        /// The key.
        key: String,
        /// The value to store.
        value: Value,
        /// Store it only if this holds.
        condition: Option<Precondition>,
    },
    /// Read `key`.
    Get {
        /// The key.
        key: String,
        /// Show the entity tag of its version, not its value.
        etag: bool,
    },
    /// Delete `key`.
    Delete {
        /// The key.
        key: String,
        /// Delete it only if this holds.
        condition: Option<Precondition>,
    },
    /// List the view.
    View,
    /// Add `addr` to the view.
    ViewAdd {
        /// The replica's address.
        addr: String,
    },
    /// Remove `addr` from the view.
    ViewRemove {
        /// The replica's address.
        addr: String,
    },
    /// The first answering replica's health.
    Health,
    /// Every replica's health.
    Status,
    /// Print the session.
    SessionShow,
    /// Forget the session's context.
    SessionReset,
    /// List the tables.
    Tables,
    /// Create table `name`.
    TableCreate {
        /// The table's name.
        name: String,
        /// Keep concurrent writes as siblings.
        siblings: bool,
    },
    /// Drop table `name`.
    TableDrop {
        /// The table's name.
        name: String,
    },
    /// Every shard, and the shard of the node asked.
    Shards,
    /// Reshard into `count` shards.
    Reshard {
        /// The number of shards.
        count: u32,
    },
    /// Place the node at `addr` in shard `id`.
    AddMember {
        /// The shard id.
        id: ShardId,
        /// The node's address.
        addr: String,
    },
}

impl Command {
    /// The action this command asks for. A `put` whose value is `-` reads
    /// it from `stdin` (dropping one trailing newline); without `stdin`
    /// (in the shell) that is an error.
    pub fn into_action(self, stdin: Option<&mut dyn Read>) -> Result<Action, String> {
        Ok(match self {
            Command::Put {
                key,
                value,
                string,
                if_absent,
                if_match,
            } => {
                let condition = match (if_absent, if_match) {
                    (true, _) => Some(Precondition::Absent),
                    (false, Some(tag)) => Some(if_match_condition(&tag)?),
                    (false, None) => None,
                };
                let text = if value == "-" {
                    let stdin =
                        stdin.ok_or("`-` (read the value from stdin) is not available here")?;
                    read_value(stdin)?
                } else {
                    value
                };
                Action::Put {
                    key,
                    value: parse_value(&text, string)?,
                    condition,
                }
            }
            Command::Get { key, etag } => Action::Get { key, etag },
            Command::Delete { key, if_match } => Action::Delete {
                key,
                condition: if_match.as_deref().map(if_match_condition).transpose()?,
            },
            Command::View { change: None } => Action::View,
            Command::View {
                change: Some(ViewChange::Add { addr }),
            } => Action::ViewAdd { addr },
            Command::View {
                change: Some(ViewChange::Remove { addr }),
            } => Action::ViewRemove { addr },
            Command::Health => Action::Health,
            Command::Status => Action::Status,
            Command::Session {
                action: None | Some(SessionAction::Show),
            } => Action::SessionShow,
            Command::Session {
                action: Some(SessionAction::Reset),
            } => Action::SessionReset,
            Command::Tables { action } => TablesCommand::action(action),
            Command::Shards => Action::Shards,
            Command::Reshard { count } => Action::Reshard { count },
            Command::AddMember { id, addr } => Action::AddMember { id, addr },
        })
    }
}

/// The value `kvctl put` stores for `text`: the JSON it parses as, else
/// the string itself; always the string with `force_string`. `null`
/// cannot be stored, so it is refused rather than silently turned into
/// the text "null".
pub fn parse_value(text: &str, force_string: bool) -> Result<Value, String> {
    if force_string {
        return Ok(Value::String(text.to_string()));
    }
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Null) => {
            Err("null cannot be stored (--string stores the text \"null\")".to_string())
        }
        Ok(value) => Ok(value),
        Err(_) => Ok(Value::String(text.to_string())),
    }
}

/// The condition `--if-match TAG` asks for.
fn if_match_condition(tag: &str) -> Result<Precondition, String> {
    Precondition::matching(tag).map_err(|e| format!("--if-match: {e}"))
}

/// Reads a value from `input`, dropping one trailing newline (as `$(...)`
/// would drop it, so `echo hello | kvctl put k -` stores "hello").
fn read_value(input: &mut dyn Read) -> Result<String, String> {
    let mut text = String::new();
    input
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read the value from stdin: {e}"))?;
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    Ok(text)
}

impl Cli {
    /// The state directory: `--state-dir`, else the XDG default.
    pub fn state_dir(&self) -> Option<PathBuf> {
        self.state_dir.clone().or_else(default_state_dir)
    }

    /// The session file commands share, or `None` with `--no-session`.
    pub fn session_file(&self) -> Result<Option<SessionFile>, SessionError> {
        if self.no_session {
            return Ok(None);
        }
        if let Some(path) = &self.session_file {
            return Ok(Some(SessionFile::new(path)));
        }
        let dir = self.state_dir().ok_or(SessionError::NoStateDir)?;
        Ok(Some(SessionFile::new(session_path(&dir, &self.session)?)))
    }
}

/// The one line to print for a clap error: its first line, without the
/// `error: ` prefix, pointing at `help` (e.g. `kvctl --help`).
pub fn usage_line(error: &clap::Error, help: &str) -> String {
    let text = error.to_string();
    let first = text.lines().next().unwrap_or("invalid arguments");
    format!(
        "{} (see {help})",
        first.trim_start_matches("error: ").trim_end()
    )
}

/// A write concern as `--w` takes it.
fn parse_concern(text: &str) -> Result<String, String> {
    crate::concern::WriteConcern::parse(text)
        .map(|_| text.trim().to_ascii_lowercase())
        .ok_or_else(|| "must be a positive number, majority or all".to_string())
}

/// The longest table name the store takes.
pub const MAX_TABLE_NAME: usize = 50;

/// A table name as `--table` and `tables create|drop` take it: 1 to 50
/// letters, digits, `-` and `_` (the store's rule).
pub fn parse_table_name(text: &str) -> Result<String, String> {
    let valid = !text.is_empty()
        && text.chars().count() <= MAX_TABLE_NAME
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if valid {
        Ok(text.to_string())
    } else {
        Err(invalid_name(text))
    }
}

/// Why `name` is not a table name, in the store's terms.
pub(super) fn invalid_name(name: &str) -> String {
    format!("invalid table name {name:?}: use 1 to {MAX_TABLE_NAME} letters, digits, '-' and '_'")
}

#[cfg(test)]
#[path = "args_tests.rs"]
mod tests;
