//! `commands`: host programs a step may have run, limited to its `commands` grants. The child
//! gets an explicit environment (nothing inherited), a working folder inside a mount, its own
//! process group (killed whole on timeout or cancel), and its exit status is always reported.

use std::io::{BufRead, BufReader, Read};
use std::os::fd::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use super::{StepHost, redact};
use crate::bindings::commands::{Command, CommandError, CommandOutput, Host, OutputTarget};
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
/// Captured output kept per stream.
const MAX_CAPTURE: usize = 1 << 20;

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
        let dotdot = Path::new(arg)
            .components()
            .any(|c| c == std::path::Component::ParentDir);
        let ok = grant.args.iter().any(|pat| {
            pat == arg
                || (!dotdot
                    && globset::GlobBuilder::new(pat)
                        .literal_separator(true)
                        .build()
                        .is_ok_and(|g| g.compile_matcher().is_match(arg)))
        });
        if !ok {
            return Err(format!(
                "argument `{arg}` of `{}` matches none of the granted patterns [{}]",
                cmd.program,
                grant.args.join(", ")
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

fn find_program(name: &str) -> Option<PathBuf> {
    if name.is_empty() || name.contains('/') {
        return None;
    }
    SEARCH_PATH
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

fn spawn_reader(
    stream: impl Read + Send + 'static,
    target: &OutputTarget,
    step: String,
    events: Arc<dyn EventSink>,
    secrets: Vec<String>,
) -> thread::JoinHandle<Vec<u8>> {
    let log = matches!(target, OutputTarget::Log);
    thread::spawn(move || {
        let mut captured = Vec::new();
        if log {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                events.emit(Event::StepLog {
                    step: step.clone(),
                    level: LogLevel::Info,
                    message: redact(&line, &secrets),
                });
            }
        } else {
            let mut stream = stream;
            let mut buf = [0u8; 64 * 1024];
            while let Ok(n) = stream.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let room = MAX_CAPTURE.saturating_sub(captured.len());
                captured.extend_from_slice(&buf[..n.min(room)]);
            }
        }
        captured
    })
}

impl StepHost {
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
                let file = dir
                    .open_with(
                        &name,
                        cap_std::fs::OpenOptions::new()
                            .write(true)
                            .create(true)
                            .truncate(true),
                    )
                    .map_err(|e| CommandError::BadPath(format!("{path}: {e}")))?;
                Stdio::from(file.into_std())
            }
        })
    }

    fn kill_group(child: &Child) {
        if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    }
}

impl Host for StepHost {
    fn run(&mut self, cmd: Command) -> Result<CommandOutput, CommandError> {
        let grant = check_grant(&self.commands, &cmd)
            .map_err(CommandError::NotGranted)?
            .clone();
        let program = find_program(&cmd.program).ok_or_else(|| {
            CommandError::SpawnFailed(format!("`{}` is not installed on this host", cmd.program))
        })?;

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

        let mut secrets = self.secrets.clone();
        secrets.extend(cmd.env.iter().map(|(_, v)| v.clone()));

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
            .current_dir(format!("/proc/self/fd/{}", cwd_dir.as_raw_fd()))
            .stdin(Stdio::null())
            .stdout(self.output_stdio(&cmd.stdout)?)
            .stderr(self.output_stdio(&cmd.stderr)?)
            .process_group(0);
        let started = Instant::now();
        let mut child = proc
            .spawn()
            .map_err(|e| CommandError::SpawnFailed(format!("starting `{}`: {e}", cmd.program)))?;
        drop(cwd_dir);

        let readers: Vec<Option<thread::JoinHandle<Vec<u8>>>> = vec![
            child.stdout.take().map(|s| {
                spawn_reader(
                    s,
                    &cmd.stdout,
                    self.step_id.clone(),
                    self.events.clone(),
                    secrets.clone(),
                )
            }),
            child.stderr.take().map(|s| {
                spawn_reader(
                    s,
                    &cmd.stderr,
                    self.step_id.clone(),
                    self.events.clone(),
                    secrets.clone(),
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
                    Self::kill_group(&child);
                    return Err(CommandError::SpawnFailed(format!(
                        "waiting for `{}`: {e}",
                        cmd.program
                    )));
                }
            }
            if self.cancel.is_cancelled() {
                Self::kill_group(&child);
                let _ = child.wait();
                return Err(CommandError::Cancelled);
            }
            if Instant::now() >= until {
                Self::kill_group(&child);
                let _ = child.wait();
                return Err(CommandError::TimedOut);
            }
            thread::sleep(Duration::from_millis(10));
        };
        // The group may have left grandchildren behind; they die with it.
        Self::kill_group(&child);
        let mut captured = readers
            .into_iter()
            .map(|r| r.and_then(|h| h.join().ok()).unwrap_or_default());
        let stdout = captured.next().unwrap_or_default();
        let stderr = captured.next().unwrap_or_default();
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
        Ok(CommandOutput {
            exit_code: status.code(),
            stdout,
            stderr,
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
}
