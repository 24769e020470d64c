//! How a kvctl command ends: its exit code and the lines it prints, and
//! the outcome of an answer no command expected (`answer_outcome`).

use std::io::Write;

use crate::client::Response;

/// Exit code: the command succeeded.
pub const EXIT_OK: u8 = 0;
/// Exit code: the key does not exist (for `view add`/`remove`: the address
/// already is / is not a member; for `add-member`: the shard does not exist).
pub const EXIT_NOT_FOUND: u8 = 1;
/// Exit code: the command or its input is invalid, or the store refuses
/// the request (a 400: a key too long, a reshard into more shards than the
/// nodes can hold).
pub const EXIT_USAGE: u8 = 2;
/// Exit code: no replica reachable, causal dependencies not satisfied in
/// time at any replica, or a reshard already under way (409) or failed
/// and undone (503).
pub const EXIT_UNAVAILABLE: u8 = 3;
/// Exit code: the condition of a write (`put --if-absent`, `put
/// --if-match`, `delete --if-match`) did not hold (the store's 412):
/// nothing was written; the error names the key's current entity tag.
pub const EXIT_CONDITION_FAILED: u8 = 4;

/// What a command printed and how it ended.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Outcome {
    /// The exit code (`EXIT_*`).
    pub code: u8,
    /// Lines for standard output.
    pub stdout: Vec<String>,
    /// Lines for standard error (one per error).
    pub stderr: Vec<String>,
}

impl Outcome {
    /// Success, printing `lines`.
    pub fn ok(lines: impl IntoIterator<Item = String>) -> Self {
        Outcome {
            code: EXIT_OK,
            stdout: lines.into_iter().collect(),
            stderr: Vec::new(),
        }
    }

    /// Failure with `code`, saying `message` on standard error.
    pub fn error(code: u8, message: impl Into<String>) -> Self {
        Outcome {
            code,
            stdout: Vec::new(),
            stderr: vec![format!("kvctl: {}", message.into())],
        }
    }

    /// Writes the lines to `out` and `err`.
    pub fn write_to(&self, out: &mut dyn Write, err: &mut dyn Write) {
        for line in &self.stdout {
            let _ = writeln!(out, "{line}");
        }
        let _ = out.flush();
        for line in &self.stderr {
            let _ = writeln!(err, "{line}");
        }
        let _ = err.flush();
    }

    /// Writes the lines to the process's stdout and stderr.
    pub fn print(&self) {
        self.write_to(&mut std::io::stdout().lock(), &mut std::io::stderr().lock());
    }
}

/// The outcome of an answer no command expected: a refusal (4xx) is a
/// usage error in the store's words, anything else is unexpected.
pub(super) fn answer_outcome(response: &Response) -> Outcome {
    match response.status {
        400..=499 => Outcome::error(
            EXIT_USAGE,
            format!("{} ({})", server_error(response), response.host),
        ),
        503 => Outcome::error(
            EXIT_UNAVAILABLE,
            format!("{} ({})", server_error(response), response.host),
        ),
        _ => Outcome::error(
            EXIT_UNAVAILABLE,
            format!(
                "unexpected answer from {}: {} {}",
                response.host, response.status, response.body
            ),
        ),
    }
}

/// The `error` of a response body (else its `message`, the only field of
/// some of the family's answers), lowercased at the start.
pub(super) fn server_error(response: &Response) -> String {
    let text = response.body["error"]
        .as_str()
        .or_else(|| response.body["message"].as_str())
        .map(str::to_string)
        .unwrap_or_else(|| format!("{} {}", response.status, response.body));
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => text,
    }
}
