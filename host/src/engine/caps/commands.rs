//! `commands`: host programs a step may have run, limited to its `commands` grants. The child
//! gets an explicit environment (nothing inherited), a private `HOME` and `TMPDIR`, a working
//! folder inside a mount, its own process group (killed whole on timeout or cancel), and runs in
//! a Landlock domain built from the step's grants ([`crate::engine::confine`]); its exit status is
//! always reported. Host secrets a grant names (`secrets`) are read from the host's
//! `secrets_dir` and set only in that program's environment, redacted from all it prints.

use std::io::{BufRead, BufReader, Read};
use std::os::fd::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use std::os::fd::AsFd;

use super::{StepHost, redact};
use crate::engine::bindings::commands::{Command, CommandError, CommandOutput, Host, OutputTarget};
use crate::engine::confine::Policy;
use crate::events::{Event, EventSink, LogLevel};
use crate::pipeline::CommandGrant;

/// Where granted programs are looked up; the host's `PATH` is not used.
const SEARCH_PATH: &[&str] = &[
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];
/// Captured output returned per stream: large enough for `pm2 jlist` of a big shop whole. More
/// fails the call (naming this cap), never a silently cut result.
pub const MAX_CAPTURE: usize = 16 << 20;
/// Longest line a program's output adds to the run log; the rest of the line is dropped, marked.
pub const MAX_LOG_LINE: usize = 16 << 10;

/// Largest host secret file read: a password or a key, not a document.
const MAX_SECRET: u64 = 64 << 10;

/// Reads host secret `name` from `dir`: a regular file reached without following a link, readable
/// by its owner only, of one line (a final newline is dropped). Errors name the file, never its
/// content, and say how to fix it.
pub fn read_secret(dir: &Path, name: &str) -> Result<String, String> {
    use std::io::Read as _;
    use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
    let path = dir.join(name);
    let shown = path.display();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => format!(
                "host secret `{name}` is missing: write it to {shown} (mode 600, owned by the host's user), or set secrets_dir in the settings"
            ),
            _ if e.raw_os_error() == Some(libc::ELOOP) => {
                format!("host secret {shown} is a symbolic link; put the secret in a regular file")
            }
            _ => format!("reading host secret {shown}: {e}"),
        })?;
    let meta = file
        .metadata()
        .map_err(|e| format!("reading host secret {shown}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("host secret {shown} is not a regular file"));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(format!(
            "host secret {shown} is readable or writable by group or others (mode {:o}); run `chmod 600 {shown}`",
            meta.mode() & 0o777
        ));
    }
    if meta.len() > MAX_SECRET {
        return Err(format!(
            "host secret {shown} is larger than {} KiB; a secret is one line",
            MAX_SECRET >> 10
        ));
    }
    let mut text = String::new();
    file.take(MAX_SECRET)
        .read_to_string(&mut text)
        .map_err(|e| format!("reading host secret {shown}: {e} (it must be UTF-8 text)"))?;
    let value = text
        .strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(&text);
    if value.is_empty() || value.contains(['\n', '\0']) {
        return Err(format!("host secret {shown} must hold one non-empty line"));
    }
    Ok(value.to_owned())
}

/// `bytes` with every secret replaced by `***`, for output a program returns to its step.
fn redact_bytes(bytes: Vec<u8>, secrets: &[String]) -> Vec<u8> {
    let mut out = bytes;
    for secret in secrets
        .iter()
        .map(String::as_bytes)
        .filter(|s| s.len() >= 3)
    {
        if !out.windows(secret.len()).any(|w| w == secret) {
            continue;
        }
        let mut next = Vec::with_capacity(out.len());
        let mut i = 0;
        while i < out.len() {
            if out[i..].starts_with(secret) {
                next.extend_from_slice(b"***");
                i += secret.len();
            } else {
                next.push(out[i]);
                i += 1;
            }
        }
        out = next;
    }
    out
}

/// Checks a call against the grants; `Ok` names the grant that allows it.
pub fn check_grant<'g>(
    grants: &'g [CommandGrant],
    cmd: &Command,
) -> Result<&'g CommandGrant, String> {
    let grant = grants.iter().find(|g| g.program == cmd.program).ok_or_else(|| {
        let granted: Vec<&str> = grants.iter().map(|g| g.program.as_str()).collect();
        format!(
            "program `{}` is not granted to this step (granted: {}); add it under [[steps.commands]] in the pipeline",
            cmd.program,
            if granted.is_empty() { "none".to_owned() } else { granted.join(", ") }
        )
    })?;
    for arg in &cmd.args {
        let ok = grant.args.iter().any(|pat| arg_matches(pat, arg));
        if !ok {
            return Err(format!(
                "argument `{arg}` of `{}` matches none of the granted patterns [{}]{}",
                cmd.program,
                grant.args.join(", "),
                if has_dotdot(arg) {
                    " (an argument with a `..` component only matches a pattern written exactly like it)"
                } else if arg.starts_with('-') {
                    " (an option only matches a pattern that starts with the same `-` text)"
                } else {
                    ""
                }
            ));
        }
    }
    for (name, _) in &cmd.env {
        if !grant.env.iter().any(|n| n == name) {
            return Err(format!(
                "environment variable `{name}` is not granted for `{}`",
                cmd.program
            ));
        }
    }
    Ok(grant)
}

/// True when `arg` has a `..` component anywhere, also inside an option value
/// (`--directory=../..`, `-C..`, `a,../b`).
fn has_dotdot(arg: &str) -> bool {
    arg.split(['/', '=', ',', ':'])
        .any(|part| part == ".." || part.ends_with("..") && part.starts_with('-'))
}

/// Whether `arg` is allowed by `pat`. A pattern written exactly like the argument always matches;
/// a glob never matches an argument with a `..` component, and never lets a wildcard stand for
/// a leading `-` (so `*.tar` cannot admit `--to-command=sh`): an option matches only a pattern
/// that starts with the same literal text up to its first wildcard.
pub fn arg_matches(pat: &str, arg: &str) -> bool {
    if pat == arg {
        return true;
    }
    if has_dotdot(arg) {
        return false;
    }
    if arg.starts_with('-') {
        let literal = pat.split(['*', '?', '[', '{']).next().unwrap_or("");
        if !literal.starts_with('-') || !arg.starts_with(literal) {
            return false;
        }
    }
    globset::GlobBuilder::new(pat)
        .literal_separator(true)
        .build()
        .is_ok_and(|g| g.compile_matcher().is_match(arg))
}

fn find_program(name: &str) -> Option<PathBuf> {
    if name.is_empty() || name.contains('/') {
        return None;
    }
    SEARCH_PATH
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// What a reader thread drained from one output stream.
#[derive(Debug, Default)]
struct Drained {
    /// The captured bytes (capture mode), at most [`MAX_CAPTURE`].
    bytes: Vec<u8>,
    /// Bytes read past the capture cap: the program's output was whole only if this is 0.
    over: u64,
}

/// Reads one line (without its `\n` or `\r\n`) into `line`, keeping at most `cap` bytes of it
/// and counting the rest, so a line without end never grows the host. `None` at end of stream.
fn read_line_capped(
    r: &mut impl BufRead,
    line: &mut Vec<u8>,
    cap: usize,
) -> std::io::Result<Option<u64>> {
    line.clear();
    let (mut cut, mut any) = (0u64, false);
    loop {
        let buf = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            break;
        }
        any = true;
        let (piece, used, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..i], i + 1, true),
            None => (buf, buf.len(), false),
        };
        let take = cap.saturating_sub(line.len()).min(piece.len());
        line.extend_from_slice(&piece[..take]);
        cut += (piece.len() - take) as u64;
        r.consume(used);
        if done {
            break;
        }
    }
    if line.last() == Some(&b'\r') && cut == 0 {
        line.pop();
    }
    Ok(any.then_some(cut))
}

/// The step's log-line budget as a program's output readers share it.
#[derive(Clone)]
struct LogBudget {
    /// Lines the step may still log.
    left: u64,
    /// Lines the program's streams sent to the log so far (kept or not).
    sent: Arc<std::sync::atomic::AtomicU64>,
    /// The step's limit, for the marker.
    max: u64,
}

impl LogBudget {
    /// Whether the next line may go to the log; the first one refused gets a marker instead.
    fn take(&self, step: &str, events: &dyn EventSink) -> bool {
        let n = self.sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        if n == self.left + 1 {
            events.emit(Event::StepLog {
                step: step.to_owned(),
                level: LogLevel::Warn,
                message: format!(
                    "log limit of {} lines reached; further lines of this step are dropped (the program's output is still read to its end)",
                    self.max
                ),
            });
        }
        n <= self.left
    }
}

/// Drains one output stream to its end, whatever it holds: the program never blocks on a full
/// pipe because the host stopped reading (invalid UTF-8, an endless line, too much output, the
/// step's log limit reached).
fn spawn_reader(
    stream: impl Read + Send + 'static,
    target: &OutputTarget,
    step: String,
    events: Arc<dyn EventSink>,
    secrets: Vec<String>,
    budget: LogBudget,
) -> thread::JoinHandle<Drained> {
    let log = matches!(target, OutputTarget::Log);
    thread::spawn(move || {
        let mut drained = Drained::default();
        if log {
            let mut reader = BufReader::with_capacity(64 * 1024, stream);
            let mut line = Vec::new();
            while let Ok(Some(cut)) = read_line_capped(&mut reader, &mut line, MAX_LOG_LINE) {
                if !budget.take(&step, events.as_ref()) {
                    continue;
                }
                let mut message = redact(&String::from_utf8_lossy(&line), &secrets);
                if cut > 0 {
                    message.push_str(&format!("… [{cut} bytes cut]"));
                }
                events.emit(Event::StepLog {
                    step: step.clone(),
                    level: LogLevel::Info,
                    message,
                });
            }
        } else {
            let mut stream = stream;
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match stream.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                };
                let room = MAX_CAPTURE.saturating_sub(drained.bytes.len());
                let take = n.min(room);
                drained.bytes.extend_from_slice(&buf[..take]);
                drained.over += (n - take) as u64;
            }
        }
        drained
    })
}

/// Refuses arguments (or an option's value, `--file=x`) that name a symbolic link in the working
/// folder, or go through a folder link that leads out of the mount: a step may have planted it to
/// steer the program's output or input somewhere else, even inside its own grants. Folder links
/// that stay inside the mount (`current/backend/server.js` in the blue/green layout) are fine.
fn refuse_links(cwd: &cap_std::fs::Dir, args: &[String]) -> Result<(), CommandError> {
    for arg in args {
        let value = match arg.split_once('=') {
            Some((opt, v)) if opt.starts_with('-') => v,
            _ => arg.as_str(),
        };
        if value.is_empty() || value.starts_with('/') || value.contains('\0') {
            continue;
        }
        let path = Path::new(value);
        let refuse = |why: String| {
            Err(CommandError::BadPath(format!(
                "argument `{arg}` {why}; granted programs never act through links a step could plant (use the real file name)"
            )))
        };
        // The entry itself: never a link.
        if let Ok(m) = cwd.symlink_metadata(path)
            && m.file_type().is_symlink()
        {
            return refuse(format!(
                "is a symbolic link in the working folder (`{value}`)"
            ));
        }
        // Its folders: cap-std follows links only while they stay inside the mount.
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
            && let Err(e) = cwd.metadata(parent)
            && e.kind() != std::io::ErrorKind::NotFound
            && e.kind() != std::io::ErrorKind::NotADirectory
        {
            return refuse(format!(
                "goes through `{}`, which leads out of the mount ({e})",
                parent.display()
            ));
        }
    }
    Ok(())
}

/// Says what a failed start means; a refusal from inside the child is the confinement's.
fn spawn_error(program: &str, e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::ENOSYS) => {
            format!("starting `{program}`: the kernel did not enforce the Landlock ruleset")
        }
        _ => format!("starting `{program}`: {e}"),
    }
}

impl StepHost {
    /// The step's private `HOME` and `TMPDIR` inside the run's work folder, created on first use
    /// (mode 700): what a program keeps there (npm's cache, shell history) stays with the run.
    fn private_dirs(
        &self,
    ) -> Result<(cap_std::fs::Dir, PathBuf, cap_std::fs::Dir, PathBuf), CommandError> {
        let Some((work, work_path)) = &self.work else {
            return Err(CommandError::SpawnFailed(
                "the step has no work folder for the program's private HOME".into(),
            ));
        };
        let base = Path::new(".commands").join(&self.step_id);
        let open = |name: &str| -> Result<(cap_std::fs::Dir, PathBuf), CommandError> {
            let rel = base.join(name);
            let fail = |e: std::io::Error| {
                CommandError::SpawnFailed(format!(
                    "creating {}: {e}",
                    work_path.join(&rel).display()
                ))
            };
            let mut b = cap_std::fs::DirBuilder::new();
            b.recursive(true);
            cap_std::fs::DirBuilderExt::mode(&mut b, 0o700);
            work.create_dir_with(&rel, &b).map_err(fail)?;
            Ok((work.open_dir(&rel).map_err(fail)?, work_path.join(&rel)))
        };
        let (home, home_path) = open("home")?;
        let (tmp, tmp_path) = open("tmp")?;
        Ok((home, home_path, tmp, tmp_path))
    }

    fn output_stdio(&self, target: &OutputTarget) -> Result<Stdio, CommandError> {
        Ok(match target {
            OutputTarget::Log | OutputTarget::Capture => Stdio::piped(),
            OutputTarget::Discard => Stdio::null(),
            OutputTarget::File(path) => {
                let loc = self.mounts.locate(path).map_err(CommandError::BadPath)?;
                if !loc.mount.writable {
                    return Err(CommandError::BadPath(format!(
                        "{path}: mount {} is read-only",
                        loc.mount.guest
                    )));
                }
                let (dir, name) = loc
                    .parent()
                    .map_err(|e| CommandError::BadPath(format!("{path}: {e}")))?;
                // Never through a planted link, never blocking on a FIFO: a regular file or nothing.
                let mut opts = cap_std::fs::OpenOptions::new();
                opts.write(true).create(true);
                cap_std::fs::OpenOptionsExt::custom_flags(
                    &mut opts,
                    libc::O_NOFOLLOW | libc::O_NONBLOCK,
                );
                let file = dir
                    .open_with(&name, &opts)
                    .map_err(|e| CommandError::BadPath(format!("{path}: {e}")))?;
                let meta = file
                    .metadata()
                    .map_err(|e| CommandError::BadPath(format!("{path}: {e}")))?;
                if !meta.is_file() {
                    return Err(CommandError::BadPath(format!(
                        "{path} is not a regular file; command output goes only into regular files"
                    )));
                }
                file.set_len(0)
                    .map_err(|e| CommandError::BadPath(format!("{path}: {e}")))?;
                Stdio::from(file.into_std())
            }
        })
    }

    /// Stops a running program: the supervisor kills it and everything it started (also
    /// `setsid` daemons); should the supervisor not answer, its process group is killed.
    fn stop(child: &mut Child, lifeline: &mut crate::engine::confine::Lifeline) {
        lifeline.cut();
        let until = Instant::now() + Duration::from_secs(2);
        while Instant::now() < until {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(5));
        }
        Self::kill_group(child);
        let _ = child.wait();
    }

    fn kill_group(child: &Child) {
        if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    }
}

impl Host for StepHost {
    fn run(&mut self, cmd: Command) -> Result<CommandOutput, CommandError> {
        // Values handed to a program stay secret for the rest of the step: a guest that later logs
        // them (or an error that quotes them) shows `***`.
        for (_, value) in &cmd.env {
            if !self.secrets.contains(value) {
                self.secrets.push(value.clone());
            }
        }
        let grant = check_grant(&self.commands, &cmd);
        self.note_program(&cmd.program, grant.is_ok());
        let grant = grant.map_err(CommandError::NotGranted)?.clone();
        let program = find_program(&cmd.program).ok_or_else(|| {
            CommandError::SpawnFailed(format!("`{}` is not installed on this host", cmd.program))
        })?;
        // Host secrets: read now, set only in this program's environment, never shown.
        let mut host_secrets: Vec<(String, String)> = Vec::new();
        for (var, name) in &grant.secrets {
            let dir = self.secrets_dir.as_deref().ok_or_else(|| {
                CommandError::SpawnFailed(format!(
                    "`{}` needs host secret `{name}`, but this step has no secrets folder",
                    cmd.program
                ))
            })?;
            let value = read_secret(dir, name).map_err(|e| {
                CommandError::SpawnFailed(format!("`{}` ({var}): {e}", cmd.program))
            })?;
            if !self.secrets.contains(&value) {
                self.secrets.push(value.clone());
            }
            host_secrets.push((var.clone(), value));
        }

        // Working folder: opened inside a mount, then entered through /proc/self/fd so the child
        // lands in exactly that folder.
        let cwd_guest = match &cmd.cwd {
            Some(c) => c.clone(),
            None => self
                .mounts
                .iter()
                .next()
                .map(|m| m.guest.clone())
                .ok_or_else(|| {
                    CommandError::BadPath("the step has no mounts to run a command in".into())
                })?,
        };
        let loc = self
            .mounts
            .locate(&cwd_guest)
            .map_err(CommandError::BadPath)?;
        let cwd_dir = if loc.rel.as_os_str().is_empty() {
            loc.mount.dir.try_clone()
        } else {
            loc.mount.dir.open_dir(&loc.rel)
        }
        .map_err(|e| CommandError::BadPath(format!("{cwd_guest}: {e}")))?;

        let secrets = self.secrets.clone();

        refuse_links(&cwd_dir, &cmd.args)?;
        let (home, home_path, tmp, tmp_path) = self.private_dirs()?;
        let host_write: Vec<PathBuf> = self
            .host_paths
            .get(&cmd.program)
            .into_iter()
            .flatten()
            .filter(|p| p.is_dir())
            .cloned()
            .collect();
        let mut policy = Policy {
            host_write,
            connect: grant.net.iter().map(|n| n.port).collect(),
            bind: grant.bind.iter().map(|n| n.port).collect(),
            ..Default::default()
        };
        for m in self.mounts.iter() {
            if m.writable {
                policy.write.push(m.dir.as_fd());
            } else {
                policy.read.push(m.dir.as_fd());
            }
        }
        policy.write.push(home.as_fd());
        policy.write.push(tmp.as_fd());
        let confined = self
            .confinement
            .prepare(&policy)
            .map_err(|e| CommandError::SpawnFailed(format!("`{}`: {e}", cmd.program)))?;

        let inherited: Vec<(String, std::ffi::OsString)> = grant
            .inherit
            .iter()
            .filter_map(|name| Some((name.clone(), std::env::var_os(name)?)))
            .collect();
        let mut proc = std::process::Command::new(&program);
        proc.args(&cmd.args)
            .env_clear()
            .env("PATH", SEARCH_PATH.join(":"))
            .env("LANG", "C.UTF-8")
            .envs(inherited)
            .envs(cmd.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(host_secrets.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            // Last, so neither an inherited nor a granted variable can point them elsewhere.
            .env("HOME", &home_path)
            .env("TMPDIR", &tmp_path)
            .current_dir(format!("/proc/self/fd/{}", cwd_dir.as_raw_fd()))
            .stdin(Stdio::null())
            .stdout(self.output_stdio(&cmd.stdout)?)
            .stderr(self.output_stdio(&cmd.stderr)?)
            .process_group(0);
        let mut lifeline = confined
            .install(&mut proc)
            .map_err(|e| CommandError::SpawnFailed(format!("`{}`: {e}", cmd.program)))?;
        let started = Instant::now();
        let spawned = proc.spawn();
        // The lifeline's read end lives in `proc`: gone now, so only the supervisor holds it.
        drop(proc);
        let mut child =
            spawned.map_err(|e| CommandError::SpawnFailed(spawn_error(&cmd.program, &e)))?;
        drop(policy);
        drop((cwd_dir, home, tmp));

        let budget = LogBudget {
            left: self.max_log_lines.saturating_sub(self.log_lines),
            sent: Default::default(),
            max: self.max_log_lines,
        };
        let readers: Vec<Option<thread::JoinHandle<Drained>>> = vec![
            child.stdout.take().map(|s| {
                spawn_reader(
                    s,
                    &cmd.stdout,
                    self.step_id.clone(),
                    self.events.clone(),
                    secrets.clone(),
                    budget.clone(),
                )
            }),
            child.stderr.take().map(|s| {
                spawn_reader(
                    s,
                    &cmd.stderr,
                    self.step_id.clone(),
                    self.events.clone(),
                    secrets.clone(),
                    budget.clone(),
                )
            }),
        ];

        let asked = cmd.timeout_ms.map(Duration::from_millis);
        let until = match asked {
            Some(t) => (started + t).min(self.deadline),
            None => self.deadline,
        };
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) => {}
                Err(e) => {
                    Self::stop(&mut child, &mut lifeline);
                    return Err(CommandError::SpawnFailed(format!(
                        "waiting for `{}`: {e}",
                        cmd.program
                    )));
                }
            }
            if self.cancel.is_cancelled() {
                Self::stop(&mut child, &mut lifeline);
                return Err(CommandError::Cancelled);
            }
            if Instant::now() >= until {
                Self::stop(&mut child, &mut lifeline);
                return Err(CommandError::TimedOut);
            }
            thread::sleep(Duration::from_millis(10));
        };
        // The group may have left grandchildren behind; they die with it.
        Self::kill_group(&child);
        let mut drained = readers
            .into_iter()
            .map(|r| r.and_then(|h| h.join().ok()).unwrap_or_default());
        let stdout = drained.next().unwrap_or_default();
        let stderr = drained.next().unwrap_or_default();
        self.log_lines = self
            .log_lines
            .saturating_add(budget.sent.load(std::sync::atomic::Ordering::Relaxed));
        self.emit(Event::StepLog {
            step: self.step_id.clone(),
            level: LogLevel::Debug,
            message: format!(
                "`{}` exited with {} after {:.1}s",
                cmd.program,
                status.code().map_or_else(
                    || format!("signal {}", status.signal().unwrap_or(0)),
                    |c| c.to_string()
                ),
                started.elapsed().as_secs_f64()
            ),
        });
        for (name, out) in [("stdout", &stdout), ("stderr", &stderr)] {
            if out.over > 0 {
                return Err(CommandError::SpawnFailed(format!(
                    "{name} of `{}` exceeded the {} MiB capture cap ({} bytes); send it to a file instead (output target `file`)",
                    cmd.program,
                    MAX_CAPTURE >> 20,
                    out.bytes.len() as u64 + out.over
                )));
            }
        }
        let shown: Vec<String> = host_secrets.into_iter().map(|(_, v)| v).collect();
        Ok(CommandOutput {
            exit_code: status.code(),
            // The step never learns a host secret, not even from what its program printed.
            stdout: redact_bytes(stdout.bytes, &shown),
            stderr: redact_bytes(stderr.bytes, &shown),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant() -> Vec<CommandGrant> {
        vec![CommandGrant {
            program: "pg_dump".into(),
            args: vec!["-Fc".into(), "-f".into(), "*.dump".into()],
            env: vec!["PGPASSWORD".into()],
            inherit: vec![],
            secrets: Default::default(),
            net: vec![],
            bind: vec![],
            reason: None,
        }]
    }

    fn cmd(program: &str, args: &[&str], env: &[&str]) -> Command {
        Command {
            program: program.into(),
            args: args.iter().map(|s| s.to_string()).collect(),
            env: env.iter().map(|k| (k.to_string(), "x".into())).collect(),
            cwd: None,
            stdout: OutputTarget::Discard,
            stderr: OutputTarget::Discard,
            timeout_ms: None,
        }
    }

    #[test]
    fn only_granted_programs_args_and_env_pass() {
        let g = grant();
        assert!(
            check_grant(
                &g,
                &cmd("pg_dump", &["-Fc", "-f", "db.dump"], &["PGPASSWORD"])
            )
            .is_ok()
        );
        assert!(
            check_grant(&g, &cmd("sh", &[], &[]))
                .unwrap_err()
                .contains("not granted")
        );
        assert!(check_grant(&g, &cmd("pg_dump", &["--host=evil"], &[])).is_err());
        assert!(check_grant(&g, &cmd("pg_dump", &["../x.dump"], &[])).is_err());
        assert!(check_grant(&g, &cmd("pg_dump", &["a/b.dump"], &[])).is_err());
        assert!(check_grant(&g, &cmd("pg_dump", &[], &["LD_PRELOAD"])).is_err());
    }

    #[test]
    fn dotdot_inside_an_option_value_never_matches_a_glob() {
        for (pat, arg) in [
            ("--directory=*", "--directory=.."),
            ("--directory=*", "--directory=../x"),
            ("-C*", "-C.."),
            ("-C*", "-C../.."),
            ("--file=*", "--file=a/../b"),
            ("*", "a,../b"),
        ] {
            assert!(!arg_matches(pat, arg), "`{pat}` matched `{arg}`");
        }
        // Written exactly like that in the pipeline, it is what the pipeline's author meant.
        assert!(arg_matches("--directory=..", "--directory=.."));
        assert!(arg_matches("--directory=*", "--directory=backend"));
        assert!(arg_matches("*", "a..b"));
    }

    #[test]
    fn a_wildcard_never_stands_for_a_leading_dash() {
        for (pat, arg) in [
            ("*.tar", "--to-command=sh -c id;.tar"),
            ("*", "--to-command=sh"),
            ("?f", "-f"),
            ("[-a]x", "-x"),
            ("--host=*", "--hostaddr=1"),
            ("-f*", "--file=x"),
        ] {
            assert!(!arg_matches(pat, arg), "`{pat}` matched `{arg}`");
        }
        assert!(arg_matches("*.tar", "backend.tar"));
        assert!(arg_matches("--host=*", "--host=127.0.0.1"));
        assert!(arg_matches("-f*", "-fx"));
        assert!(arg_matches("-", "-"));
    }

    /// A step host allowed to run `sh -c <script>` for exactly `scripts`.
    fn step_host(
        t: &tempfile::TempDir,
        scripts: &[&str],
    ) -> (StepHost, Arc<crate::events::MemorySink>) {
        let mut args = vec!["-c".to_owned()];
        args.extend(scripts.iter().map(|s| s.to_string()));
        super::super::test_host(
            t,
            vec![CommandGrant {
                program: "sh".into(),
                args,
                env: vec!["TOKEN".into()],
                inherit: vec![],
                secrets: Default::default(),
                net: vec![],
                bind: vec![],
                reason: None,
            }],
        )
    }

    fn sh(script: &str, stdout: OutputTarget) -> Command {
        Command {
            program: "sh".into(),
            args: vec!["-c".into(), script.into()],
            env: vec![],
            cwd: Some("/data".into()),
            stdout,
            stderr: OutputTarget::Discard,
            timeout_ms: None,
        }
    }

    fn logged(sink: &crate::events::MemorySink) -> Vec<String> {
        sink.0
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                Event::StepLog {
                    level: LogLevel::Info,
                    message,
                    ..
                } => Some(message.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn five_mib_of_output_are_captured_byte_exact() {
        let t = tempfile::tempdir().unwrap();
        let script = "head -c 5242880 /dev/urandom | tee out.bin";
        let (mut host, _) = step_host(&t, &[script]);
        let out = host.run(sh(script, OutputTarget::Capture)).unwrap();
        assert_eq!(out.exit_code, Some(0));
        let written = std::fs::read(t.path().join("customers/shop.example.com/out.bin")).unwrap();
        assert_eq!(written.len(), 5 << 20);
        assert!(
            out.stdout == written,
            "captured output differs from what was written"
        );
    }

    #[test]
    fn output_past_the_capture_cap_fails_naming_the_cap_and_the_program_still_ends() {
        let t = tempfile::tempdir().unwrap();
        let script = "head -c 20971520 /dev/zero; echo done > end.txt";
        let (mut host, _) = step_host(&t, &[script]);
        let started = Instant::now();
        let err = match host.run(sh(script, OutputTarget::Capture)) {
            Err(CommandError::SpawnFailed(e)) => e,
            other => panic!("expected a capture-cap error, got {other:?}"),
        };
        assert!(
            err.contains("stdout of `sh` exceeded the 16 MiB capture cap (20971520 bytes)")
                && err.contains("send it to a file"),
            "{err}"
        );
        assert!(started.elapsed() < Duration::from_secs(60));
        // It ran to its end: the host kept draining past the cap.
        let end = t.path().join("customers/shop.example.com/end.txt");
        assert_eq!(std::fs::read_to_string(end).unwrap(), "done\n");
    }

    #[test]
    fn invalid_utf8_in_logged_output_does_not_stop_the_log() {
        let t = tempfile::tempdir().unwrap();
        // Far more than a pipe holds after the bad line: a reader that stopped would hang it.
        let script = r"printf 'a\n\377\376 bad\nb\n'; yes line | head -n 100000; echo last";
        let (mut host, sink) = step_host(&t, &[script]);
        host.deadline = Instant::now() + Duration::from_secs(60);
        let out = host.run(sh(script, OutputTarget::Log)).unwrap();
        assert_eq!(out.exit_code, Some(0));
        let lines = logged(&sink);
        assert_eq!(lines[..3], ["a", "\u{fffd}\u{fffd} bad", "b"]);
        assert_eq!(lines.iter().filter(|l| *l == "line").count(), 100_000);
        assert_eq!(lines.last().map(String::as_str), Some("last"));
    }

    #[test]
    fn an_endless_log_line_is_cut_and_marked() {
        let t = tempfile::tempdir().unwrap();
        let script = "head -c 1048576 /dev/zero | tr '\\0' x; echo; echo next";
        let (mut host, sink) = step_host(&t, &[script]);
        host.run(sh(script, OutputTarget::Log)).unwrap();
        let lines = logged(&sink);
        let cut = (1 << 20) - MAX_LOG_LINE;
        assert_eq!(
            lines,
            [
                format!("{}… [{cut} bytes cut]", "x".repeat(MAX_LOG_LINE)),
                "next".to_owned()
            ]
        );
    }

    #[test]
    fn values_given_to_a_command_stay_redacted_for_the_rest_of_the_step() {
        use crate::engine::bindings::progress::{Host as _, Level};
        let t = tempfile::tempdir().unwrap();
        let script = "echo \"token is $TOKEN\"";
        let (mut host, sink) = step_host(&t, &[script]);
        let mut cmd = sh(script, OutputTarget::Log);
        cmd.env = vec![("TOKEN".into(), "s3cr3t-value".into())];
        host.run(cmd).unwrap();
        host.log(Level::Info, "later: s3cr3t-value".into());
        let lines = logged(&sink);
        assert_eq!(lines, ["token is ***", "later: ***"]);
    }

    #[test]
    fn a_program_s_log_lines_count_against_the_step_s_limit() {
        use crate::engine::bindings::progress::{Host as _, Level};
        let t = tempfile::tempdir().unwrap();
        let script = "yes line | head -n 5000; yes err | head -n 5000 >&2; echo end";
        let (mut host, sink) = step_host(&t, &[script]);
        host.max_log_lines = 100;
        host.log(Level::Info, "from the plugin".into());
        let mut cmd = sh(script, OutputTarget::Log);
        cmd.stderr = OutputTarget::Log;
        let out = host.run(cmd).unwrap();
        assert_eq!(out.exit_code, Some(0), "the output was not read to its end");
        assert_eq!(logged(&sink).len(), 100);
        host.log(Level::Info, "dropped".into());
        let warnings: Vec<String> = sink
            .0
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                Event::StepLog {
                    level: LogLevel::Warn,
                    message,
                    ..
                } => Some(message.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].starts_with("log limit of 100 lines reached"));
        assert_eq!(logged(&sink).len(), 100);
    }

    #[test]
    fn a_host_secret_reaches_only_its_program_and_is_never_shown() {
        use std::os::unix::fs::PermissionsExt as _;
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("secrets");
        std::fs::create_dir(&dir).unwrap();
        let file = dir.join("offsite");
        std::fs::write(&file, "s3cr3t-pass\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let script = "echo \"log:$RESTIC_PASSWORD\"; echo \"out:$RESTIC_PASSWORD\" >&2";
        let (host, sink) = step_host(&t, &[script]);
        let mut host = host.with_secrets_dir(dir.clone());
        host.commands[0]
            .secrets
            .insert("RESTIC_PASSWORD".into(), "offsite".into());
        let mut call = sh(script, OutputTarget::Log);
        call.stderr = OutputTarget::Capture;
        let out = host.run(call).unwrap();
        assert_eq!(out.exit_code, Some(0));
        // The program had it; neither the log nor what the step gets back shows it.
        assert_eq!(logged(&sink), ["log:***"]);
        assert_eq!(String::from_utf8_lossy(&out.stderr), "out:***\n");
        assert_eq!(host.redact("x s3cr3t-pass y"), "x *** y");
        // The step cannot set the variable itself: it is not in `env`.
        let mut own = sh(script, OutputTarget::Log);
        own.env = vec![("RESTIC_PASSWORD".into(), "mine".into())];
        assert!(matches!(host.run(own), Err(CommandError::NotGranted(_))));

        // A file others may read is refused, naming the file and the fix, not the content.
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
        let err = match host.run(sh(script, OutputTarget::Log)) {
            Err(CommandError::SpawnFailed(e)) => e,
            other => panic!("expected a refusal, got {other:?}"),
        };
        assert!(
            err.contains("mode 640") && err.contains("chmod 600"),
            "{err}"
        );
        assert!(!err.contains("s3cr3t"), "{err}");
        std::fs::remove_file(&file).unwrap();
        let err = read_secret(&dir, "offsite").unwrap_err();
        assert!(
            err.contains("is missing") && err.contains("offsite"),
            "{err}"
        );
        std::os::unix::fs::symlink("/etc/hostname", &file).unwrap();
        assert!(
            read_secret(&dir, "offsite")
                .unwrap_err()
                .contains("symbolic link")
        );
    }

    #[test]
    fn redacting_bytes_replaces_every_occurrence() {
        let secrets = vec!["abc".to_owned()];
        assert_eq!(
            redact_bytes(b"xabcyabc\xff".to_vec(), &secrets),
            b"x***y***\xff"
        );
        assert_eq!(redact_bytes(b"ab".to_vec(), &secrets), b"ab");
    }
}
