//! Host settings: `qodify-host.toml`, `QODIFY_*` environment variables and flags, in rising order
//! of precedence, over defaults that need no file at all.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result};
use serde::Deserialize;

/// Default customers root from the plan.
pub const DEFAULT_CUSTOMERS_ROOT: &str = "/var/qodify/customers";
/// Default state folder.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/qodify-host";
/// Default listen address of `serve`.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8610";

/// Environment variable names (fixed: other programs set them).
pub mod env {
    /// Folder holding `<domain>/` folders.
    pub const CUSTOMERS_ROOT: &str = "QODIFY_CUSTOMERS_ROOT";
    /// State and caches.
    pub const DATA_DIR: &str = "QODIFY_DATA_DIR";
    /// `host:port` for `serve`.
    pub const LISTEN: &str = "QODIFY_LISTEN";
    /// Bearer token for the API.
    pub const API_TOKEN: &str = "QODIFY_API_TOKEN";
    /// Path of `qodify-host.toml`.
    pub const CONFIG: &str = "QODIFY_CONFIG";
    /// The release catalog folder (not one of the fixed names; `releases_dir` in the file).
    pub const RELEASES_DIR: &str = "QODIFY_RELEASES_DIR";
    /// Where the state is kept: `sqlite` or a `postgres://` URL (`store` in the file).
    pub const STORE: &str = "QODIFY_STORE";
    /// This host's node name (`node` in the file).
    pub const NODE: &str = "QODIFY_NODE";
    /// Where other hosts and clients reach this host's API (`advertise_url` in the file).
    pub const ADVERTISE_URL: &str = "QODIFY_ADVERTISE_URL";
}

/// Where the service keeps its state (`store`): customers, runs, events, history, audit log,
/// tokens and sessions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum StoreSetting {
    /// `sqlite`: `<data_dir>/state.sqlite`, the embedded default.
    #[default]
    Sqlite,
    /// A PostgreSQL database, which several hosts can share.
    Postgres(PgUrl),
}

impl StoreSetting {
    /// `sqlite`, or a `postgres://` (`postgresql://`) URL; `what` names where the value came
    /// from. The error never repeats the value: a URL may hold a password.
    pub fn parse(value: &str, what: &str) -> Result<Self> {
        let value = value.trim();
        if value == "sqlite" {
            return Ok(Self::Sqlite);
        }
        let url = url::Url::parse(value)
            .ok()
            .filter(|u| matches!(u.scheme(), "postgres" | "postgresql") && !u.cannot_be_a_base());
        anyhow::ensure!(
            url.is_some(),
            "{what}: expected `sqlite` or a PostgreSQL URL like \
             postgres://user:password@host:5432/database"
        );
        Ok(Self::Postgres(PgUrl(value.to_owned())))
    }
}

/// A PostgreSQL connection URL. It may hold a password, so it is shown (`Debug`, `Display`) only
/// without one; [`PgUrl::expose`] gives the whole URL to the one place that connects.
#[derive(Clone, PartialEq, Eq)]
pub struct PgUrl(String);

impl PgUrl {
    /// The URL as given, password included: for connecting, never for showing.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL without its password (in the user info or a `password` parameter).
    pub fn redacted(&self) -> String {
        match url::Url::parse(&self.0) {
            Ok(mut u) => {
                if u.password().is_some() {
                    let _ = u.set_password(Some("***"));
                }
                if u.query_pairs().any(|(k, _)| k == "password") {
                    let pairs: Vec<(String, String)> = u
                        .query_pairs()
                        .map(|(k, v)| {
                            let v = if k == "password" {
                                "***".into()
                            } else {
                                v.into_owned()
                            };
                            (k.into_owned(), v)
                        })
                        .collect();
                    u.query_pairs_mut().clear().extend_pairs(pairs);
                }
                u.to_string()
            }
            Err(_) => "(a PostgreSQL URL that does not parse)".into(),
        }
    }
}

impl std::fmt::Debug for PgUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl std::fmt::Display for PgUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// The most a pipeline may ask of the host per step, and what a step gets when it asks nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ceilings {
    /// Largest memory limit a step may set.
    pub max_memory_bytes: u64,
    /// Memory limit of a step that sets none.
    pub default_memory_bytes: u64,
    /// Longest timeout a step may set.
    pub max_timeout: Duration,
    /// Timeout of a step that sets none.
    pub default_timeout: Duration,
    /// Log lines kept per step; the rest are counted and dropped.
    pub max_log_lines: u64,
    /// Artifacts plus outputs a step may return.
    pub max_outputs: usize,
}

impl Default for Ceilings {
    fn default() -> Self {
        Self {
            max_memory_bytes: 4 << 30,
            default_memory_bytes: 512 << 20,
            max_timeout: Duration::from_secs(12 * 3600),
            default_timeout: Duration::from_secs(3600),
            max_log_lines: 20_000,
            max_outputs: 10_000,
        }
    }
}

/// Resolved settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Folder holding one `<domain>/` folder per customer.
    pub customers_root: PathBuf,
    /// State: compile cache, run work folders, and the SQLite store.
    pub data_dir: PathBuf,
    /// Where the service's state is kept.
    pub store: StoreSetting,
    /// This host's node name (`node`): it runs the runs of the customers that belong to it.
    /// Default: the hostname.
    pub node: String,
    /// Where other hosts send clients for what only this node has (a backup's download):
    /// `advertise_url`, e.g. `http://10.0.0.3:8610`; `None` when not set.
    pub advertise_url: Option<String>,
    /// Folders searched for `<plugin-id>.wasm`, first match wins.
    pub plugin_dirs: Vec<PathBuf>,
    /// Folder of `<name>.toml` pipelines and `tiers/<tier>.toml` overlays.
    pub pipelines_dir: PathBuf,
    /// The release catalog: `releases.json` and the release packages it names (mounted
    /// read-only with `from = "releases"`).
    pub releases_dir: PathBuf,
    /// `host:port` for `serve`.
    pub listen: String,
    /// Bearer token for the API.
    pub api_token: Option<String>,
    /// Per-step ceilings.
    pub ceilings: Ceilings,
    /// The settings file that was read, if any.
    pub config_file: Option<PathBuf>,
    /// How granted host programs run.
    pub commands: CommandSettings,
    /// `[grants]`: what any pipeline may grant on this host.
    pub grants: crate::pipeline::GrantCeilings,
    /// `[runs]`: what the host tells about runs.
    pub runs: RunSettings,
    /// `[console]`: the web console's sessions.
    pub console: ConsoleSettings,
    /// `[schedule]`: how `serve` runs the scheduled pipelines.
    pub schedule: ScheduleSettings,
}

/// `[schedule]`: how `serve` runs what tiers and customers schedule (docs/operations.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleSettings {
    /// `enabled`: whether this host starts scheduled runs at all (default true).
    pub enabled: bool,
    /// `max_concurrent`: scheduled runs queued or running at once on this host (default 2,
    /// 1 to 64); due slots wait for a free place, so a tier's 03:00 does not start every shop.
    pub max_concurrent: usize,
    /// `tick`: how often the scheduler looks for due slots (default `30s`, `1s` to `10m`).
    pub tick: Duration,
}

impl Default for ScheduleSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            max_concurrent: 2,
            tick: Duration::from_secs(30),
        }
    }
}

/// `[schedule]` in the settings file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSchedule {
    enabled: Option<bool>,
    max_concurrent: Option<usize>,
    tick: Option<String>,
}

/// `[console]`: how long a browser stays signed in, and how its cookie is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSettings {
    /// `session_ttl`: a session's lifetime from sign-in (default `12h`).
    pub session_ttl: Duration,
    /// `cookie_secure`: mark the session cookie `Secure` (set it when the console is reached over
    /// HTTPS, e.g. through a TLS proxy; default false, as `serve` itself speaks plain HTTP).
    pub cookie_secure: bool,
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        Self {
            session_ttl: Duration::from_secs(12 * 3600),
            cookie_secure: false,
        }
    }
}

/// `[console]` in the settings file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConsole {
    session_ttl: Option<String>,
    cookie_secure: Option<bool>,
}

/// `[runs]`: what the host tells about runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSettings {
    /// `long_eta_warning`: a run whose preflight expects it to take longer gets a warning event
    /// (default `2h`; `"off"` for none).
    pub long_eta_warning: Option<Duration>,
    /// `lease`: how long a node's claim on a running run lasts without renewal (default `30s`,
    /// between `2s` and `10m`). A node that cannot renew it (stopped, paused, cut off) loses the
    /// run: another node marks it `interrupted` and the late node's writes are refused.
    pub lease: Duration,
}

impl Default for RunSettings {
    fn default() -> Self {
        Self {
            long_eta_warning: Some(Duration::from_secs(2 * 3600)),
            lease: Duration::from_secs(30),
        }
    }
}

/// `[runs]` in the settings file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRuns {
    long_eta_warning: Option<String>,
    lease: Option<String>,
}

/// `[commands]`: how the programs steps are granted run on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandSettings {
    /// `confinement`: `landlock` (the default) or `off`.
    pub confinement: ConfinementMode,
    /// `host_paths`: host folders a program may change besides the step's mounts, by program
    /// name. By default `pm2` gets its daemon's home (`$PM2_HOME`, else `~/.pm2`): the CLI talks
    /// to the daemon through sockets and files there.
    pub host_paths: BTreeMap<String, Vec<PathBuf>>,
}

impl Default for CommandSettings {
    fn default() -> Self {
        Self {
            confinement: ConfinementMode::default(),
            host_paths: Self::defaults(),
        }
    }
}

impl CommandSettings {
    fn defaults() -> BTreeMap<String, Vec<PathBuf>> {
        let pm2_home = std::env::var_os("PM2_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".pm2")));
        pm2_home
            .map(|p| ("pm2".to_owned(), vec![p]))
            .into_iter()
            .collect()
    }
}

/// `[commands]` in the settings file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCommands {
    confinement: Option<ConfinementMode>,
    host_paths: Option<BTreeMap<String, Vec<PathBuf>>>,
}

/// `[grants]` in the settings file; a key left out keeps its default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileGrants {
    programs: Option<Vec<String>>,
    connect_ports: Option<Vec<u16>>,
    bind_ports: Option<Vec<u16>>,
    http: Option<Vec<String>>,
}

/// `qodify-host.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    customers_root: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    store: Option<String>,
    node: Option<String>,
    advertise_url: Option<String>,
    plugin_dirs: Option<Vec<PathBuf>>,
    pipelines_dir: Option<PathBuf>,
    releases_dir: Option<PathBuf>,
    listen: Option<String>,
    api_token: Option<String>,
    #[serde(default)]
    limits: FileLimits,
    #[serde(default)]
    commands: FileCommands,
    #[serde(default)]
    grants: FileGrants,
    #[serde(default)]
    runs: FileRuns,
    #[serde(default)]
    console: FileConsole,
    #[serde(default)]
    schedule: FileSchedule,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLimits {
    max_memory: Option<String>,
    default_memory: Option<String>,
    max_timeout: Option<String>,
    default_timeout: Option<String>,
    max_log_lines: Option<u64>,
    max_outputs: Option<usize>,
}

/// Values given on the command line; `None` means "not given".
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--config`.
    pub config: Option<PathBuf>,
    /// `--customers-root`.
    pub customers_root: Option<PathBuf>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--plugins-dir` (repeatable; replaces the defaults).
    pub plugin_dirs: Vec<PathBuf>,
    /// `--pipelines-dir`.
    pub pipelines_dir: Option<PathBuf>,
    /// `--releases-dir`.
    pub releases_dir: Option<PathBuf>,
}

impl Settings {
    /// Settings for unit tests: everything under `root` (customers, data, pipelines, releases),
    /// one node named `test`, the defaults otherwise.
    #[cfg(test)]
    pub(crate) fn for_tests(root: &Path) -> Settings {
        Settings {
            customers_root: root.join("customers"),
            data_dir: root.join("data"),
            store: Default::default(),
            node: "test".into(),
            advertise_url: None,
            plugin_dirs: vec![],
            pipelines_dir: root.join("pipelines"),
            releases_dir: root.join("releases"),
            listen: String::new(),
            api_token: None,
            ceilings: Default::default(),
            config_file: None,
            commands: Default::default(),
            grants: Default::default(),
            runs: Default::default(),
            console: Default::default(),
            schedule: Default::default(),
        }
    }

    /// Loads settings from the file (flag, `QODIFY_CONFIG`, `./qodify-host.toml` or
    /// `/etc/qodify/qodify-host.toml`), then the environment, then the flags.
    pub fn load(over: &Overrides) -> Result<Self> {
        let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        let config_file = over
            .config
            .clone()
            .or_else(|| env(env::CONFIG).map(PathBuf::from))
            .map(Ok)
            .or_else(|| {
                ["qodify-host.toml", "/etc/qodify/qodify-host.toml"]
                    .iter()
                    .map(PathBuf::from)
                    .find(|p| p.is_file())
                    .map(|p| trusted_implicit(&p).map(|()| p))
            })
            .transpose()?;
        let file = match &config_file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading settings file {}", path.display()))?;
                toml::from_str::<FileSettings>(&text)
                    .map_err(|e| anyhow::anyhow!("{}: invalid settings: {e}", path.display()))?
            }
            None => FileSettings::default(),
        };
        let base = config_file
            .as_deref()
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let rel = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };

        let checkout = checkout_dir();
        let customers_root = over
            .customers_root
            .clone()
            .or_else(|| env(env::CUSTOMERS_ROOT).map(PathBuf::from))
            .or(file.customers_root.map(rel))
            .unwrap_or_else(|| DEFAULT_CUSTOMERS_ROOT.into());
        let data_dir = over
            .data_dir
            .clone()
            .or_else(|| env(env::DATA_DIR).map(PathBuf::from))
            .or(file.data_dir.map(rel))
            .unwrap_or_else(|| DEFAULT_DATA_DIR.into());
        let store = match env(env::STORE) {
            Some(v) => StoreSetting::parse(
                &v.to_string_lossy(),
                &format!("{} in the environment", env::STORE),
            )?,
            None => match &file.store {
                Some(v) => StoreSetting::parse(v, "store in the settings file")?,
                None => StoreSetting::Sqlite,
            },
        };
        let node = match env(env::NODE) {
            Some(v) => Some((
                v.to_string_lossy().into_owned(),
                format!("{} in the environment", env::NODE),
            )),
            None => file
                .node
                .clone()
                .map(|v| (v, "node in the settings file".to_owned())),
        };
        let node = match node {
            Some((name, what)) => {
                anyhow::ensure!(
                    crate::store::valid_node(&name),
                    "{what}: a node name is 1-253 characters from A-Z, a-z, 0-9, `.`, `_` and \
                     `-`, starting with a letter or digit"
                );
                name
            }
            None => default_node(),
        };
        let advertise_url = match env(env::ADVERTISE_URL) {
            Some(v) => Some((
                v.to_string_lossy().into_owned(),
                format!("{} in the environment", env::ADVERTISE_URL),
            )),
            None => file
                .advertise_url
                .clone()
                .map(|v| (v, "advertise_url in the settings file".to_owned())),
        };
        let advertise_url = match advertise_url {
            Some((v, what)) if !v.trim().is_empty() => Some(parse_advertise_url(&v, &what)?),
            _ => None,
        };
        let plugin_dirs = if !over.plugin_dirs.is_empty() {
            over.plugin_dirs.clone()
        } else if let Some(dirs) = file.plugin_dirs {
            dirs.into_iter().map(rel).collect()
        } else {
            default_plugin_dirs(&data_dir)
        };
        let pipelines_dir = over
            .pipelines_dir
            .clone()
            .or(file.pipelines_dir.map(rel))
            .or_else(|| checkout.as_ref().map(|c| c.join("pipelines")))
            .unwrap_or_else(|| "/etc/qodify/pipelines".into());
        let releases_dir = over
            .releases_dir
            .clone()
            .or_else(|| env(env::RELEASES_DIR).map(PathBuf::from))
            .or(file.releases_dir.map(rel))
            .or_else(|| checkout.as_ref().map(|c| c.join("templates")))
            .unwrap_or_else(|| "/etc/qodify/releases".into());
        let listen = env(env::LISTEN)
            .map(|v| v.to_string_lossy().into_owned())
            .or(file.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.into());
        let api_token = env(env::API_TOKEN)
            .map(|v| v.to_string_lossy().into_owned())
            .or(file.api_token);

        let mut ceilings = Ceilings::default();
        let l = file.limits;
        let size = |what: &str, v: Option<String>, d: u64| -> Result<u64> {
            v.map_or(Ok(d), |v| {
                parse_size(&v).with_context(|| format!("limits.{what} in the settings file"))
            })
        };
        let dur = |what: &str, v: Option<String>, d: Duration| -> Result<Duration> {
            v.map_or(Ok(d), |v| {
                parse_duration(&v).with_context(|| format!("limits.{what} in the settings file"))
            })
        };
        ceilings.max_memory_bytes = size("max_memory", l.max_memory, ceilings.max_memory_bytes)?;
        ceilings.default_memory_bytes = size(
            "default_memory",
            l.default_memory,
            ceilings.default_memory_bytes,
        )?;
        ceilings.max_timeout = dur("max_timeout", l.max_timeout, ceilings.max_timeout)?;
        ceilings.default_timeout = dur(
            "default_timeout",
            l.default_timeout,
            ceilings.default_timeout,
        )?;
        ceilings.max_log_lines = l.max_log_lines.unwrap_or(ceilings.max_log_lines);
        ceilings.max_outputs = l.max_outputs.unwrap_or(ceilings.max_outputs);
        anyhow::ensure!(
            ceilings.default_memory_bytes <= ceilings.max_memory_bytes
                && ceilings.default_timeout <= ceilings.max_timeout,
            "settings: default limits must not exceed the max limits"
        );

        let mut host_paths = CommandSettings::defaults();
        for (program, paths) in file.commands.host_paths.unwrap_or_default() {
            for p in &paths {
                anyhow::ensure!(
                    p.is_absolute(),
                    "commands.host_paths.{program} in the settings file: `{}` is not an absolute path",
                    p.display()
                );
            }
            host_paths.insert(program, paths);
        }
        let commands = CommandSettings {
            confinement: file.commands.confinement.unwrap_or_default(),
            host_paths,
        };
        let mut grants = crate::pipeline::GrantCeilings::default();
        let g = file.grants;
        if let Some(path) = &config_file
            && (g.programs.is_some()
                || g.connect_ports.is_some()
                || g.bind_ports.is_some()
                || g.http.is_some())
        {
            grants.origin = path.display().to_string();
        }
        grants.programs = g.programs.unwrap_or(grants.programs);
        grants.connect_ports = g.connect_ports.unwrap_or(grants.connect_ports);
        grants.bind_ports = g.bind_ports.unwrap_or(grants.bind_ports);
        grants.http = g.http.unwrap_or(grants.http);
        grants
            .check()
            .map_err(|e| anyhow::anyhow!("settings file: {e}"))?;
        let runs = RunSettings {
            long_eta_warning: match file.runs.long_eta_warning.as_deref() {
                None => RunSettings::default().long_eta_warning,
                Some("off") => None,
                Some(v) => Some(parse_duration(v).with_context(|| {
                    "runs.long_eta_warning in the settings file (a duration like \"2h\", or \"off\")"
                })?),
            },
            lease: match file.runs.lease.as_deref() {
                None => RunSettings::default().lease,
                Some(v) => {
                    let lease = parse_duration(v).with_context(
                        || "runs.lease in the settings file (a duration like \"30s\")",
                    )?;
                    anyhow::ensure!(
                        lease >= Duration::from_secs(2) && lease <= Duration::from_secs(600),
                        "runs.lease in the settings file must be between 2s and 10m"
                    );
                    lease
                }
            },
        };

        let schedule = ScheduleSettings {
            enabled: file.schedule.enabled.unwrap_or(true),
            max_concurrent: match file.schedule.max_concurrent {
                None => ScheduleSettings::default().max_concurrent,
                Some(n) => {
                    anyhow::ensure!(
                        (1..=64).contains(&n),
                        "schedule.max_concurrent in the settings file must be between 1 and 64"
                    );
                    n
                }
            },
            tick: match file.schedule.tick.as_deref() {
                None => ScheduleSettings::default().tick,
                Some(v) => {
                    let tick = parse_duration(v).with_context(
                        || "schedule.tick in the settings file (a duration like \"30s\")",
                    )?;
                    anyhow::ensure!(
                        tick >= Duration::from_secs(1) && tick <= Duration::from_secs(600),
                        "schedule.tick in the settings file must be between 1s and 10m"
                    );
                    tick
                }
            },
        };

        let console = ConsoleSettings {
            session_ttl: match file.console.session_ttl.as_deref() {
                None => ConsoleSettings::default().session_ttl,
                Some(v) => {
                    let ttl = parse_duration(v).with_context(
                        || "console.session_ttl in the settings file (a duration like \"12h\")",
                    )?;
                    anyhow::ensure!(
                        ttl >= Duration::from_secs(60)
                            && ttl <= Duration::from_secs(30 * 24 * 3600),
                        "console.session_ttl in the settings file must be between 1m and 720h"
                    );
                    ttl
                }
            },
            cookie_secure: file.console.cookie_secure.unwrap_or(false),
        };

        Ok(Self {
            customers_root,
            data_dir,
            store,
            node,
            advertise_url,
            plugin_dirs,
            pipelines_dir,
            releases_dir,
            listen,
            api_token,
            ceilings,
            config_file,
            commands,
            grants,
            runs,
            console,
            schedule,
        })
    }
}

/// An `advertise_url`: an `http://` or `https://` base URL (a path is kept, a trailing `/`
/// dropped), without query, fragment or credentials.
fn parse_advertise_url(value: &str, what: &str) -> Result<String> {
    let value = value.trim();
    let url = url::Url::parse(value).ok().filter(|u| {
        matches!(u.scheme(), "http" | "https")
            && u.host().is_some()
            && u.query().is_none()
            && u.fragment().is_none()
            && u.username().is_empty()
            && u.password().is_none()
    });
    anyhow::ensure!(
        url.is_some(),
        "{what}: expected the base URL other hosts reach this one's API at, like \
         http://10.0.0.3:8610 (http or https, no query, no credentials)"
    );
    Ok(value.trim_end_matches('/').to_owned())
}

/// The default node name: the hostname (`local` when it is no node name).
pub fn default_node() -> String {
    let name = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    if crate::store::valid_node(&name) {
        name
    } else {
        "local".into()
    }
}

/// A settings file found without being named (`./qodify-host.toml`) is read only when nobody but
/// its owner (this user or root) can change it or its folder: otherwise whoever can write the
/// working folder would choose the host's data dir, grants and confinement.
fn trusted_implicit(path: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let me = rustix::process::geteuid().as_raw();
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    for (what, p) in [("it", path), ("its folder", dir)] {
        let m = std::fs::metadata(p).with_context(|| format!("reading {}", p.display()))?;
        let sticky_dir = m.is_dir() && m.mode() & 0o1000 != 0;
        let others_write = m.mode() & 0o022 != 0 && !sticky_dir;
        let foreign = m.uid() != me && m.uid() != 0;
        if others_write || foreign {
            anyhow::bail!(
                "refusing to read {} implicitly: {what} can be changed by users other than {} (mode {:o}, owner uid {}); \
                 make it writable only by its owner, or name the settings file with --config or QODIFY_CONFIG",
                path.display(),
                if me == 0 {
                    "root".to_owned()
                } else {
                    format!("uid {me}")
                },
                m.mode() & 0o7777,
                m.uid()
            );
        }
    }
    Ok(())
}

/// The repository checkout this binary was built from, when it still exists: pipelines and plugins
/// shipped in the repository are then found without any setting.
pub fn checkout_dir() -> Option<PathBuf> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = manifest.parent()?;
    (root.join("pipelines").is_dir() && root.join("wit").is_dir()).then(|| root.to_path_buf())
}

/// Plugins next to the binary (`<target>/<profile>/../plugins`, where `cargo xtask build` puts
/// them, or `<bindir>/plugins` in an installed layout), then `<data_dir>/plugins`.
fn default_plugin_dirs(data_dir: &Path) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Ok(exe) = std::env::current_exe()
        && let Some(bin) = exe.parent()
    {
        dirs.push(bin.join("plugins"));
        if let Some(target) = bin.parent() {
            dirs.push(target.join("plugins"));
        }
    }
    dirs.push(data_dir.join("plugins"));
    dirs
}

/// Parses `512MiB`, `2 GiB`, `1048576`, `10MB` into bytes.
pub fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .with_context(|| format!("`{s}` is not a size like 512MiB"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => anyhow::bail!("unknown size unit `{other}` in `{s}` (use B, KiB, MiB, GiB)"),
    };
    n.checked_mul(mult)
        .with_context(|| format!("size `{s}` is too large"))
}

/// Parses `500ms`, `30s`, `10m`, `2h`, `1h30m`.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let mut rest = s.trim();
    anyhow::ensure!(
        !rest.is_empty(),
        "empty duration (use e.g. 30s, 10m, 1h30m)"
    );
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let split = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        anyhow::ensure!(split > 0, "`{s}` is not a duration like 30s, 10m or 1h30m");
        let n: u64 = rest[..split].parse()?;
        rest = &rest[split..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        total += match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n * 60),
            "h" => Duration::from_secs(n * 3600),
            _ => {
                anyhow::bail!("`{s}` is not a duration like 30s, 10m or 1h30m (units: ms, s, m, h)")
            }
        };
    }
    Ok(total)
}

/// What the host does to the programs steps run (`commands.confinement` in the settings).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConfinementMode {
    /// Every granted program runs in a Landlock domain; steps with command grants are refused
    /// where the kernel has no Landlock.
    #[default]
    Landlock,
    /// Programs run with the host's rights (only for kernels without Landlock, and said loudly).
    Off,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_parse() {
        assert_eq!(parse_size("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_size("10MB").unwrap(), 10_000_000);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("12 parsecs").is_err());
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("soon").is_err());
    }

    /// Settings loaded from a settings file holding `text`.
    fn load(text: &str) -> Result<Settings> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("qodify-host.toml");
        std::fs::write(&file, text).unwrap();
        Settings::load(&Overrides {
            config: Some(file),
            ..Default::default()
        })
    }

    #[test]
    fn the_commands_table_sets_confinement_and_host_paths() {
        let s = load(
            "[commands]\nconfinement = \"off\"\n[commands.host_paths]\npm2 = [\"/srv/pm2\"]\n",
        )
        .unwrap();
        assert_eq!(s.commands.confinement, ConfinementMode::Off);
        assert_eq!(
            s.commands.host_paths["pm2"],
            vec![PathBuf::from("/srv/pm2")]
        );
        let s = load("").unwrap();
        assert_eq!(s.commands.confinement, ConfinementMode::Landlock);
        let err = load("[commands.host_paths]\npm2 = [\"relative\"]\n").unwrap_err();
        assert!(
            format!("{err:#}").contains("not an absolute path"),
            "{err:#}"
        );
        let err = load("[commands]\nconfinement = \"maybe\"\n").unwrap_err();
        assert!(format!("{err:#}").contains("unknown variant"), "{err:#}");
    }

    #[test]
    fn the_console_table_sets_the_session_lifetime_and_cookie() {
        let d = load("").unwrap().console;
        assert_eq!(d.session_ttl, Duration::from_secs(12 * 3600));
        assert!(!d.cookie_secure);
        let c = load("[console]\nsession_ttl = \"30m\"\ncookie_secure = true\n")
            .unwrap()
            .console;
        assert_eq!(
            (c.session_ttl, c.cookie_secure),
            (Duration::from_secs(1800), true)
        );
        let err = load("[console]\nsession_ttl = \"10s\"\n").unwrap_err();
        assert!(
            format!("{err:#}").contains("console.session_ttl"),
            "{err:#}"
        );
    }

    #[test]
    fn the_store_is_sqlite_or_a_postgres_url_never_shown_with_its_password() {
        assert_eq!(load("").unwrap().store, StoreSetting::Sqlite);
        assert_eq!(
            load("store = \"sqlite\"\n").unwrap().store,
            StoreSetting::Sqlite
        );
        let s = load("store = \"postgres://qodify:s3cret@db.internal:5433/state\"\n").unwrap();
        let StoreSetting::Postgres(url) = &s.store else {
            panic!("{:?}", s.store)
        };
        assert_eq!(
            url.expose(),
            "postgres://qodify:s3cret@db.internal:5433/state"
        );
        assert_eq!(
            url.to_string(),
            "postgres://qodify:***@db.internal:5433/state"
        );
        assert!(!format!("{s:?}").contains("s3cret"), "{s:?}");
        let url = PgUrl("postgresql://qodify@db/state?password=s3cret&sslmode=disable".into());
        assert_eq!(
            url.redacted(),
            "postgresql://qodify@db/state?password=***&sslmode=disable"
        );
        for bad in ["mysql://x@y/z", "postgres:state", "sqlite3", "s3cret"] {
            let err = load(&format!("store = \"{bad}\"\n")).unwrap_err();
            let err = format!("{err:#}");
            assert!(err.contains("store in the settings file"), "{err}");
            assert!(
                err.contains("expected `sqlite` or a PostgreSQL URL"),
                "{err}"
            );
            assert!(!err.contains(bad), "{err}");
        }
    }

    #[test]
    fn the_node_is_the_hostname_unless_named() {
        assert_eq!(load("").unwrap().node, default_node());
        assert_eq!(load("node = \"web-2\"\n").unwrap().node, "web-2");
        for bad in ["", "-x", "a b", "x/y"] {
            let err = load(&format!("node = \"{bad}\"\n")).unwrap_err();
            assert!(
                format!("{err:#}").contains("node in the settings file"),
                "{err:#}"
            );
        }
    }

    #[test]
    fn the_lease_and_the_advertised_url_are_checked() {
        assert_eq!(load("").unwrap().runs.lease, Duration::from_secs(30));
        assert_eq!(
            load("[runs]\nlease = \"5s\"\n").unwrap().runs.lease,
            Duration::from_secs(5)
        );
        let err = load("[runs]\nlease = \"1s\"\n").unwrap_err();
        assert!(format!("{err:#}").contains("between 2s and 10m"), "{err:#}");
        assert_eq!(load("").unwrap().advertise_url, None);
        assert_eq!(
            load("advertise_url = \"http://10.0.0.3:8610/\"\n")
                .unwrap()
                .advertise_url
                .as_deref(),
            Some("http://10.0.0.3:8610")
        );
        for bad in [
            "10.0.0.3:8610",
            "ftp://x",
            "http://u:p@x:1",
            "http://x/?a=1",
        ] {
            let err = load(&format!("advertise_url = \"{bad}\"\n")).unwrap_err();
            assert!(
                format!("{err:#}").contains("advertise_url in the settings file"),
                "{bad}: {err:#}"
            );
        }
    }

    #[test]
    fn the_runs_table_sets_the_long_eta_warning() {
        assert_eq!(
            load("").unwrap().runs.long_eta_warning,
            Some(Duration::from_secs(7200))
        );
        assert_eq!(
            load("[runs]\nlong_eta_warning = \"45m\"\n")
                .unwrap()
                .runs
                .long_eta_warning,
            Some(Duration::from_secs(2700))
        );
        assert_eq!(
            load("[runs]\nlong_eta_warning = \"off\"\n")
                .unwrap()
                .runs
                .long_eta_warning,
            None
        );
        let err = load("[runs]\nlong_eta_warning = \"soon\"\n").unwrap_err();
        assert!(
            format!("{err:#}").contains("runs.long_eta_warning"),
            "{err:#}"
        );
    }
}
