//! PM2 through the host's command grants. Lessons (tests/fixtures/upgrade/PM2-NOTES.md):
//! - never run `pm2` with its working folder inside `current`: PM2 would store the resolved
//!   release path and keep running the old release after every reload (pm2#1663); callers pass a
//!   `cwd` outside it (the customer folder);
//! - `pm2 jlist` shows the path PM2 was given, not what runs: the release a process runs is asked
//!   of the host ([`fs::process_cwd`](qodify_plugin_sdk::fs::process_cwd): its working folder as a
//!   guest path, so no `readlink` grant and no access to other processes is needed);
//! - a reload that exits 0 says nothing about health;
//! - on a cold `PM2_HOME` the first command prints a banner before any JSON, so `jlist` output is
//!   parsed from its last line that is a JSON list.
//!
//! Grants the steps need (with `inherit = ["PM2_HOME"]` so the host's PM2 daemon is used):
//! `pm2` with `jlist`, `ping`, `reload`, `restart`, `start`, `delete`, `--only`, `--update-env`,
//! `--name`, `--no-autorestart`, `--listen-timeout=<ms>`, app names and script paths.

use std::time::Duration;

use qodify_plugin_sdk::Error;
use qodify_plugin_sdk::command::{Command, Stdio};
use serde::Deserialize;

/// How long one pm2 command may take (a reload whose worker crashes takes ~3.5 s).
const PM2_TIMEOUT: Duration = Duration::from_secs(60);

/// One app of `pm2 jlist`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    /// `name`.
    pub name: String,
    /// `pid` (0 when not running).
    pub pid: u32,
    /// `pm2_env.status`: `online`, `stopped`, `errored`, …
    pub status: String,
    /// `pm2_env.pm_cwd`: the working folder PM2 was given.
    pub cwd: String,
    /// `pm2_env.pm_exec_path`: the script PM2 was given.
    pub exec_path: String,
    /// `pm2_env.exec_mode`: `cluster_mode` or `fork_mode`.
    pub exec_mode: String,
    /// `pm2_env.restart_time`: how often PM2 started the app again since `pm2 start` (a reload
    /// counts once, a crash that PM2 restarts once more).
    pub restart_time: u64,
    /// `pm2_env.exit_code`: set once a process of the app exited by itself.
    pub exit_code: Option<i64>,
    /// `pm2_env.listen_timeout` (ms): how long a reload waits for the new process to listen
    /// before it stops the old one anyway (none: the daemon's default, 3 s unless its
    /// environment sets `PM2_GRACEFUL_LISTEN_TIMEOUT`).
    pub listen_timeout: Option<u64>,
}

impl App {
    /// True when PM2 runs the app in fork mode, where `pm2 reload` is a stop, then a start: the
    /// port answers nothing while the app starts (cluster mode reloads without a gap).
    pub fn is_fork_mode(&self) -> bool {
        self.exec_mode == "fork_mode"
    }
}

#[derive(Deserialize)]
struct RawApp {
    name: String,
    #[serde(default)]
    pid: u32,
    #[serde(default)]
    pm2_env: RawEnv,
}

#[derive(Deserialize, Default)]
struct RawEnv {
    #[serde(default)]
    status: String,
    #[serde(default)]
    pm_cwd: String,
    #[serde(default)]
    pm_exec_path: String,
    #[serde(default)]
    exec_mode: String,
    // Read leniently (a number, or a string of one, as an ecosystem file may give): an odd value
    // must not make the whole list unreadable.
    #[serde(default)]
    restart_time: Option<serde_json::Value>,
    #[serde(default)]
    exit_code: Option<serde_json::Value>,
    #[serde(default)]
    listen_timeout: Option<serde_json::Value>,
}

fn number(v: Option<serde_json::Value>) -> Option<i64> {
    match v? {
        serde_json::Value::String(s) => s.trim().parse().ok(),
        v => v.as_i64(),
    }
}

/// Runs `pm2 <args>` with its working folder `cwd` (a guest path outside `current`) and extra
/// environment `env`; returns stdout. A non-zero exit is an error quoting stderr.
pub fn run(cwd: &str, args: &[&str], env: &[(&str, &str)]) -> Result<String, Error> {
    run_for(cwd, args, env, PM2_TIMEOUT)
}

/// [`run`] with its own time limit, for a command that waits longer than most (a reload with a
/// long `--listen-timeout`).
pub fn run_for(
    cwd: &str,
    args: &[&str],
    env: &[(&str, &str)],
    timeout: Duration,
) -> Result<String, Error> {
    let mut cmd = Command::new("pm2")
        .args(args.iter().copied())
        .cwd(cwd)
        .stdout(Stdio::Capture)
        .timeout(timeout);
    for (k, v) in env {
        cmd = cmd.env(*k, *v);
    }
    let out = cmd.run()?.check()?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Parses `pm2 jlist` output (anything before the first `[` is a banner).
pub fn parse_jlist(stdout: &str) -> Result<Vec<App>, Error> {
    // The list is one line; banner lines such as `[PM2] Spawning…` also start with `[`.
    let line = stdout
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with("[{") || *l == "[]")
        .ok_or_else(|| Error::command_failed("`pm2 jlist` printed no JSON list"))?;
    let raw: Vec<RawApp> = serde_json::from_str(line).map_err(|e| {
        Error::command_failed(format!("`pm2 jlist` output is not a JSON list: {e}"))
    })?;
    Ok(raw
        .into_iter()
        .map(|r| App {
            name: r.name,
            pid: r.pid,
            status: r.pm2_env.status,
            cwd: r.pm2_env.pm_cwd,
            exec_path: r.pm2_env.pm_exec_path,
            exec_mode: r.pm2_env.exec_mode,
            restart_time: number(r.pm2_env.restart_time)
                .map_or(0, |n| u64::try_from(n).unwrap_or(0)),
            // Any exit code, also one that is not a number, says a process exited.
            exit_code: r
                .pm2_env
                .exit_code
                .filter(|v| !v.is_null())
                .map(|v| number(Some(v)).unwrap_or(-1)),
            listen_timeout: number(r.pm2_env.listen_timeout).and_then(|n| u64::try_from(n).ok()),
        })
        .collect())
}

/// `pm2 jlist`.
pub fn jlist(cwd: &str) -> Result<Vec<App>, Error> {
    parse_jlist(&run(cwd, &["jlist"], &[])?)
}

/// `pm2 delete <name>`; an app that does not exist is not an error.
pub fn delete_if_present(cwd: &str, name: &str) -> Result<(), Error> {
    let present = jlist(cwd)?.iter().any(|a| a.name == name);
    if present {
        run(cwd, &["delete", name], &[])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jlist_after_a_banner() {
        let out = "                        -------------\n[PM2] Spawning PM2 daemon\n[{\"name\":\"a\",\"pid\":12,\"pm2_env\":{\"status\":\"online\",\"pm_cwd\":\"/c/current/backend\",\"pm_exec_path\":\"/c/current/backend/server.js\",\"exec_mode\":\"fork_mode\",\"restart_time\":1,\"exit_code\":1,\"listen_timeout\":30000}},{\"name\":\"b\",\"pm2_env\":{\"listen_timeout\":\"8000\"}}]\n";
        let apps = parse_jlist(out).unwrap();
        assert_eq!(apps.len(), 2);
        assert_eq!(apps[0].pid, 12);
        assert_eq!(apps[0].cwd, "/c/current/backend");
        assert!(apps[0].is_fork_mode());
        assert_eq!(
            (
                apps[0].restart_time,
                apps[0].exit_code,
                apps[0].listen_timeout
            ),
            (1, Some(1), Some(30000))
        );
        assert_eq!(apps[1].status, "");
        assert!(!apps[1].is_fork_mode());
        assert_eq!(
            (
                apps[1].restart_time,
                apps[1].exit_code,
                apps[1].listen_timeout
            ),
            (0, None, Some(8000))
        );
        assert!(parse_jlist("no json").is_err());
    }
}
