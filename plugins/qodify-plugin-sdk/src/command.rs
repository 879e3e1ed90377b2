//! Programs the host runs for a step, limited to what the step's `commands` grants allow
//! (program name, argument patterns, env names). The child gets an explicit environment, a
//! working folder inside a mount and a timeout.
//!
//! ```no_run
//! use qodify_plugin_sdk::command::Command;
//! # fn dump() -> Result<(), qodify_plugin_sdk::Error> {
//! Command::new("pg_dump")
//!     .args(["-Fc", "-Z9", "shop"])
//!     .env("PGPASSWORD", "secret")
//!     .stdout_to_file("/out/db.dump")
//!     .run()?
//!     .check()?;
//! # Ok(()) }
//! ```

use std::time::Duration;

use crate::__private::bindings::qodify::pipeline::commands as wit;
use crate::Error;

/// How many trailing stderr lines a [`CommandOutput::check`] error quotes.
const STDERR_TAIL_LINES: usize = 20;

/// Where a stream of the child process goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stdio {
    /// Into the run log, line by line (secrets redacted).
    Log,
    /// Nowhere.
    Discard,
    /// Captured and returned in [`CommandOutput`] (up to 16 MiB per stream; more fails the call
    /// naming the cap: send large output to a file).
    Capture,
    /// Into a file at this guest path inside a writable mount (created or truncated).
    File(String),
}

/// A program to run, built with chained calls. By default stdout goes to the run log and stderr
/// is captured, so [`CommandOutput::check`] can quote it.
#[derive(Debug, Clone)]
pub struct Command {
    program: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    cwd: Option<String>,
    stdout: Stdio,
    stderr: Stdio,
    timeout: Option<Duration>,
}

impl Command {
    /// A command for the granted program `program` (bare name, e.g. `pg_dump`).
    pub fn new(program: impl Into<String>) -> Self {
        Command {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            cwd: None,
            stdout: Stdio::Log,
            stderr: Stdio::Capture,
            timeout: None,
        }
    }

    /// Adds one argument; it must match one of the grant's patterns.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets an environment variable; its name must be granted. Values are never logged.
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    /// Working folder as a guest path inside a mount (default: the first mount).
    pub fn cwd(mut self, guest_path: impl Into<String>) -> Self {
        self.cwd = Some(guest_path.into());
        self
    }

    /// Where stdout goes.
    pub fn stdout(mut self, to: Stdio) -> Self {
        self.stdout = to;
        self
    }

    /// Where stderr goes.
    pub fn stderr(mut self, to: Stdio) -> Self {
        self.stderr = to;
        self
    }

    /// Sends stdout into a file (guest path in a writable mount), e.g. a dump.
    pub fn stdout_to_file(self, guest_path: impl Into<String>) -> Self {
        self.stdout(Stdio::File(guest_path.into()))
    }

    /// Captures stdout into [`CommandOutput::stdout`].
    pub fn capture_stdout(self) -> Self {
        self.stdout(Stdio::Capture)
    }

    /// Kills the program after `timeout` (never later than the step's deadline).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Runs the program and waits. A non-zero exit is not an error here: call
    /// [`CommandOutput::check`].
    pub fn run(&self) -> Result<CommandOutput, Error> {
        let cmd = wit::Command {
            program: self.program.clone(),
            args: self.args.clone(),
            env: self.env.clone(),
            cwd: self.cwd.clone(),
            stdout: self.stdout.to_wit(),
            stderr: self.stderr.to_wit(),
            timeout_ms: self
                .timeout
                .map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
        };
        let program = &self.program;
        match wit::run(&cmd) {
            Ok(out) => Ok(CommandOutput {
                program: program.clone(),
                exit_code: out.exit_code,
                stdout: out.stdout,
                stderr: out.stderr,
            }),
            Err(wit::CommandError::NotGranted(m)) => Err(Error::permission_denied(format!(
                "running {program}: not granted: {m}"
            ))),
            Err(wit::CommandError::BadPath(m)) => Err(Error::permission_denied(format!(
                "running {program}: bad path: {m}"
            ))),
            Err(wit::CommandError::SpawnFailed(m)) => Err(Error::command_failed(format!(
                "running {program}: could not start: {m}"
            ))),
            Err(wit::CommandError::TimedOut) => Err(Error::command_failed(format!(
                "running {program}: timed out"
            ))),
            Err(wit::CommandError::Cancelled) => Err(Error::cancelled()),
        }
    }
}

impl Stdio {
    fn to_wit(&self) -> wit::OutputTarget {
        match self {
            Stdio::Log => wit::OutputTarget::Log,
            Stdio::Discard => wit::OutputTarget::Discard,
            Stdio::Capture => wit::OutputTarget::Capture,
            Stdio::File(path) => wit::OutputTarget::File(path.clone()),
        }
    }
}

/// How a program ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutput {
    /// The program's name, for messages.
    pub program: String,
    /// The exit code; `None` when a signal killed it.
    pub exit_code: Option<i32>,
    /// Captured stdout (empty unless [`Stdio::Capture`]).
    pub stdout: Vec<u8>,
    /// Captured stderr (empty unless [`Stdio::Capture`]).
    pub stderr: Vec<u8>,
}

impl CommandOutput {
    /// True when the program exited with code 0.
    pub fn success(&self) -> bool {
        self.exit_code == Some(0)
    }

    /// Captured stdout as text (invalid UTF-8 replaced).
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Captured stderr as text (invalid UTF-8 replaced).
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    /// `Ok(self)` on exit code 0, else a `command-failed` error quoting the last lines of
    /// captured stderr.
    pub fn check(self) -> Result<Self, Error> {
        if self.success() {
            return Ok(self);
        }
        let status = match self.exit_code {
            Some(code) => format!("exited with code {code}"),
            None => "was killed by a signal".to_string(),
        };
        let stderr = self.stderr_text();
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        let tail = &lines[lines.len().saturating_sub(STDERR_TAIL_LINES)..];
        let mut message = format!("{} {status}", self.program);
        if !tail.is_empty() {
            message.push_str(":\n");
            message.push_str(&tail.join("\n"));
        }
        Err(Error::command_failed(message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn output(code: Option<i32>, stderr: &str) -> CommandOutput {
        CommandOutput {
            program: "pg_dump".into(),
            exit_code: code,
            stdout: Vec::new(),
            stderr: stderr.as_bytes().to_vec(),
        }
    }

    #[test]
    fn check_passes_success() {
        assert!(output(Some(0), "warning").check().is_ok());
    }

    #[test]
    fn check_quotes_the_stderr_tail() {
        let stderr: String = (0..30).map(|i| format!("line {i}\n")).collect();
        let err = output(Some(1), &stderr).check().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::CommandFailed);
        assert!(
            err.message().starts_with("pg_dump exited with code 1:\n"),
            "{err}"
        );
        assert!(err.message().contains("line 29") && err.message().contains("line 10"));
        assert!(!err.message().contains("line 9\n"), "{err}");
        let err = output(None, "").check().unwrap_err();
        assert_eq!(err.message(), "pg_dump was killed by a signal");
    }
}
