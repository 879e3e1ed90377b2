//! `offsite` step plugin: encrypted off-site copies of backups with restic. restic does the
//! storage, the encryption and the deduplication; this step only drives it, as a granted and
//! confined program, and reads its JSON.
//!
//! Actions (config `action`, see [`Action`]):
//! - `send`: backs up the folder `<backups>/<backup>` into the repository (created when missing)
//!   as one snapshot tagged `customer=<domain>` and `backup=<id>`, tags the snapshots of pinned
//!   backups (`<backups>/.pins/<id>`) `pinned`, then applies the off-site retention
//!   (`restic forget --keep-last/--keep-daily/--keep-weekly --keep-tag pinned --prune`, the
//!   customer's snapshots only). Outputs restic's own summary: `files`, `bytes` (processed),
//!   `data-added` (new bytes stored), `seconds`, `snapshot`, `forgotten`.
//! - `list`: the customer's snapshots, newest first, as the output `snapshots` (a JSON array of
//!   `{id, backup, time, pinned}`) and `count`.
//! - `fetch`: restores the newest snapshot of backup `<backup>` into the run's partial folder
//!   `<backups>/.partial-<run id>/` (its files at the top, also from a snapshot that nests them
//!   under the sending host's path), for the `verify` plugin to
//!   check against their own `backup.json` before `place` renames the folder into place.
//! - `place`: renames `<backups>/.partial-<run id>` to `<backups>/<backup>` after checking that
//!   its `backup.json` names that id; refuses to replace an existing backup.
//! - `discard`: removes the run's partial folder (a failed fetch; nothing there is fine).
//!
//! restic runs with the repository password in `RESTIC_PASSWORD`, which the pipeline grants from
//! a host secret (`secrets = { RESTIC_PASSWORD = "offsite" }`): this step never sees it.
//!
//! Commands it runs, with `<backups>` (or the backup folder) as working folder:
//! `restic -r <repository> --no-cache --json cat config | init | backup . --host <domain>
//! --tag customer=<domain> --tag backup=<id> | snapshots --tag customer=<domain>[,backup=<id>] |
//! tag --tag customer=<domain>,backup=<id> --add|--remove pinned | forget --tag
//! customer=<domain> --group-by host --keep-tag pinned --keep-last N --keep-daily N
//! --keep-weekly N --prune | restore latest --tag customer=<domain>,backup=<id> --target
//! .partial-<run id>`.

use std::time::Duration;

use backup_rules::{MANIFEST, PINS, is_backup_id, partial_name};
use qodify_plugin_sdk::fs::{FileSystem, HostFs};
use qodify_plugin_sdk::prelude::*;

/// The tag of snapshots whose backup is pinned on the host; `forget` keeps them.
pub const PINNED_TAG: &str = "pinned";
/// Listing, tagging and checking the repository are quick; a hang is a network problem.
const SHORT: Duration = Duration::from_secs(600);
/// stderr lines quoted in an error.
const QUOTED_LINES: usize = 6;

/// What the step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Send a backup, then apply the off-site retention.
    Send,
    /// List the customer's snapshots.
    List,
    /// Restore a backup into the run's partial folder.
    Fetch,
    /// Rename the run's partial folder into place.
    Place,
    /// Remove the run's partial folder.
    Discard,
}

/// The step's config.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// What to do.
    pub action: Action,
    /// The restic repository, exactly as the pipeline grants it to `restic -r`, e.g.
    /// `rest:http://10.0.0.5:8000/shop.example.com/`. Not needed by `place` and `discard`.
    #[serde(default)]
    pub repository: String,
    /// The `HOST:PORT` the pipeline grants restic (`net`), checked against the repository so a
    /// mismatch fails with a clear message instead of a refused connection.
    #[serde(default)]
    pub net: String,
    /// Guest path of the customer's `backups` folder, e.g. `/backups`.
    pub backups: String,
    /// The backup id (`send`, `fetch`, `place`).
    #[serde(default)]
    pub backup: String,
    /// Off-site retention (`send`): snapshots to keep; 0 leaves that rule out, all 0 keeps all.
    #[serde(default)]
    pub keep_last: u32,
    /// Keep the newest snapshot of each of the last N days.
    #[serde(default)]
    pub keep_daily: u32,
    /// Keep the newest snapshot of each of the last N weeks.
    #[serde(default)]
    pub keep_weekly: u32,
}

/// restic's `backup --json` summary line.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Summary {
    /// Files new in this snapshot.
    #[serde(default)]
    pub files_new: u64,
    /// Files changed since the parent snapshot.
    #[serde(default)]
    pub files_changed: u64,
    /// Files unchanged.
    #[serde(default)]
    pub files_unmodified: u64,
    /// Bytes restic added to the repository (after deduplication, before compression).
    #[serde(default)]
    pub data_added: u64,
    /// Files read.
    #[serde(default)]
    pub total_files_processed: u64,
    /// Bytes read.
    #[serde(default)]
    pub total_bytes_processed: u64,
    /// Seconds restic took.
    #[serde(default)]
    pub total_duration: f64,
    /// The new snapshot's id.
    #[serde(default)]
    pub snapshot_id: String,
}

/// The summary line of `restic backup --json` output (status lines come before it).
pub fn parse_summary(stdout: &str) -> Option<Summary> {
    stdout.lines().rev().find_map(|line| {
        let v: serde_json::Value = serde_json::from_str(line.trim()).ok()?;
        (v.get("message_type")?.as_str()? == "summary")
            .then(|| serde_json::from_value(v).ok())
            .flatten()
    })
}

/// One snapshot as `restic snapshots --json` lists it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Snapshot {
    /// Full id.
    pub id: String,
    /// Short id.
    #[serde(default)]
    pub short_id: String,
    /// RFC 3339 time.
    pub time: String,
    /// The folders backed up (absolute paths on the host that sent it).
    #[serde(default)]
    pub paths: Vec<String>,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
}

impl Snapshot {
    /// The backup id of its `backup=<id>` tag.
    pub fn backup(&self) -> Option<&str> {
        self.tags.iter().find_map(|t| t.strip_prefix("backup="))
    }

    /// Whether it is tagged pinned.
    pub fn pinned(&self) -> bool {
        self.tags.iter().any(|t| t == PINNED_TAG)
    }
}

/// Parses `restic snapshots --json`, newest first.
pub fn parse_snapshots(json: &str) -> Result<Vec<Snapshot>, Error> {
    let text = json.trim();
    let mut list: Vec<Snapshot> = if text.is_empty() || text == "null" {
        Vec::new()
    } else {
        serde_json::from_str(text).map_err(|e| {
            Error::io(format!(
                "restic snapshots printed JSON this step does not understand: {e}"
            ))
        })?
    };
    list.sort_by(|a, b| b.time.cmp(&a.time));
    Ok(list)
}

/// Why a restic call failed, as far as its stderr tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The password opens no key of the repository.
    WrongPassword,
    /// There is no repository at that location (yet).
    NoRepository,
    /// The connection was refused or could not be made.
    Unreachable,
    /// Anything else.
    Other,
}

/// Classifies restic's stderr.
pub fn classify(stderr: &str) -> Failure {
    let s = stderr.to_ascii_lowercase();
    if s.contains("wrong password") || s.contains("no key found") {
        Failure::WrongPassword
    } else if s.contains("is there a repository at the following location")
        || s.contains("config file does not exist")
        || s.contains("repository does not exist")
    {
        Failure::NoRepository
    } else if s.contains("connection refused")
        || s.contains("permission denied") && s.contains("dial")
        || s.contains("no such host")
        || s.contains("i/o timeout")
    {
        Failure::Unreachable
    } else {
        Failure::Other
    }
}

/// The last lines of restic's stderr, for an error (the host already replaced secrets by `***`).
fn quote(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('{'))
        .collect();
    let start = lines.len().saturating_sub(QUOTED_LINES);
    lines[start..].join(" | ")
}

/// `restic forget` retention arguments; `None` when every rule is 0 (keep everything).
pub fn forget_args(
    domain: &str,
    keep_last: u32,
    keep_daily: u32,
    keep_weekly: u32,
) -> Option<Vec<String>> {
    let mut args: Vec<String> = Vec::new();
    for (flag, n) in [
        ("--keep-last", keep_last),
        ("--keep-daily", keep_daily),
        ("--keep-weekly", keep_weekly),
    ] {
        if n > 0 {
            args.push(flag.to_owned());
            args.push(n.to_string());
        }
    }
    if args.is_empty() {
        return None;
    }
    let mut all = vec![
        "forget".to_owned(),
        "--tag".to_owned(),
        format!("customer={domain}"),
        "--group-by".to_owned(),
        "host".to_owned(),
        "--keep-tag".to_owned(),
        PINNED_TAG.to_owned(),
    ];
    all.extend(args);
    all.push("--prune".to_owned());
    Some(all)
}

/// Checks that the `net` grant names the repository's server, for the URL schemes that say it.
pub fn check_net(repository: &str, net: &str) -> Result<(), Error> {
    let Some(url) = repository
        .strip_prefix("rest:")
        .or_else(|| repository.strip_prefix("s3:"))
    else {
        return Ok(());
    };
    if net.is_empty() {
        return Err(Error::invalid_config(format!(
            "the repository {repository} is on the network but restic is granted no destination: set the param offsite.net to its HOST:PORT"
        )));
    }
    let authority = url
        .split_once("://")
        .map_or(url, |(_, rest)| rest)
        .split('/')
        .next()
        .unwrap_or_default();
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    // Without a port the URL's scheme says it.
    let with_port = match authority.rsplit_once(':') {
        Some((_, port)) if port.bytes().all(|b| b.is_ascii_digit()) => authority.to_owned(),
        _ if url.starts_with("http://") => format!("{authority}:80"),
        _ => format!("{authority}:443"),
    };
    if !with_port.eq_ignore_ascii_case(net) {
        return Err(Error::invalid_config(format!(
            "the repository's server is `{authority}` but restic is granted `{net}` (param offsite.net): set both to the same HOST:PORT"
        )));
    }
    Ok(())
}

/// Ids of the pinned backups: the backup ids named in `<backups>/.pins/`.
pub fn pinned_ids(fs: &impl FileSystem, backups: &str) -> Result<Vec<String>, Error> {
    let dir = format!("{backups}/{PINS}");
    if fs.stat_opt(&dir)?.is_none() {
        return Ok(Vec::new());
    }
    Ok(fs
        .list_dir(&dir)?
        .into_iter()
        .filter(|e| e.metadata.is_file() && is_backup_id(&e.name))
        .map(|e| e.name)
        .collect())
}

/// Moves the files restic restored under `<partial>/<path>/` (the snapshot's absolute path as
/// it was on the sending host) up to `<partial>/`, then removes the emptied folders.
pub fn flatten(fs: &impl FileSystem, partial: &str, path: &str) -> Result<u64, Error> {
    let rel = path.trim_matches('/');
    if rel.is_empty()
        || rel
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(Error::io(format!(
            "the snapshot's path `{path}` is not a plain absolute folder path"
        )));
    }
    let deep = format!("{partial}/{rel}");
    let meta = fs
        .stat_opt(&deep)?
        .ok_or_else(|| Error::io(format!("restic restored nothing under {deep}")))?;
    if !meta.is_dir() {
        return Err(Error::io(format!("{deep} is not a folder")));
    }
    let mut moved = 0;
    let top = rel.split('/').next().unwrap_or(rel).to_owned();
    for entry in fs.list_dir(&deep)? {
        if entry.name == top {
            // A backup folder holding a name like the path's first folder cannot be laid out flat.
            return Err(Error::io(format!(
                "the backup holds `{}`, which is also the first folder of its path; it cannot be laid out",
                entry.name
            )));
        }
        fs.rename(
            &format!("{deep}/{}", entry.name),
            &format!("{partial}/{}", entry.name),
        )?;
        moved += 1;
    }
    fs.remove_tree(&format!("{partial}/{top}"))?;
    Ok(moved)
}

/// One restic call.
struct Restic<'a> {
    repository: &'a str,
    cwd: &'a str,
}

impl Restic<'_> {
    fn command(&self, args: &[String]) -> Command {
        let mut all = vec![
            "-r".to_owned(),
            self.repository.to_owned(),
            "--no-cache".to_owned(),
            "--json".to_owned(),
        ];
        all.extend(args.iter().cloned());
        Command::new("restic")
            .args(all)
            .cwd(self.cwd)
            .capture_stdout()
            .stderr(Stdio::Capture)
    }

    /// Runs restic; a failure says what it was doing, what restic said, and what to do.
    fn run(
        &self,
        what: &str,
        args: &[String],
        timeout: Option<Duration>,
    ) -> Result<CommandOutput, Error> {
        let mut cmd = self.command(args);
        if let Some(t) = timeout {
            cmd = cmd.timeout(t);
        }
        let out = cmd.run()?;
        if out.success() {
            return Ok(out);
        }
        Err(self.failed(what, &out.stderr_text()))
    }

    fn failed(&self, what: &str, stderr: &str) -> Error {
        let repo = self.repository;
        match classify(stderr) {
            Failure::WrongPassword => Error::permission_denied(format!(
                "{what}: the repository password (host secret `offsite`) does not open {repo}; put the right one in the host's secret file"
            )),
            Failure::NoRepository => Error::not_found(format!(
                "{what}: there is no restic repository at {repo}: {}",
                quote(stderr)
            )),
            Failure::Unreachable => Error::command_failed(format!(
                "{what}: cannot reach {repo}; check that the repository server is up and that offsite.net grants its HOST:PORT: {}",
                quote(stderr)
            )),
            Failure::Other => {
                Error::command_failed(format!("{what} ({repo}) failed: {}", quote(stderr)))
            }
        }
    }

    /// Opens the repository, creating it when there is none.
    fn open_or_init(&self, ctx: &Context) -> Result<(), Error> {
        let out = self
            .command(&["cat".into(), "config".into()])
            .timeout(SHORT)
            .run()?;
        if out.success() {
            return Ok(());
        }
        let stderr = out.stderr_text();
        if classify(&stderr) != Failure::NoRepository {
            return Err(self.failed("opening the off-site repository", &stderr));
        }
        ctx.info(format!(
            "creating the restic repository {}",
            self.repository
        ));
        self.run(
            "creating the off-site repository",
            &["init".into()],
            Some(SHORT),
        )?;
        Ok(())
    }

    /// Removes the locks of restic processes that died on this host (a kill, a crash, a
    /// timeout). restic 0.14 never does so by itself, and one stale lock fails every later
    /// `forget --prune` (an exclusive one every backup too), so copies would stop until someone
    /// ran `restic unlock`. Live locks, and other hosts' locks younger than 30 minutes, stay.
    /// Best effort: a repository that cannot be reached is the next command's to report.
    fn remove_stale_locks(&self, ctx: &Context) {
        let out = match self.command(&["unlock".into()]).timeout(SHORT).run() {
            Ok(out) if out.success() => return,
            Ok(out) => out.stderr_text(),
            Err(e) => e.to_string(),
        };
        if classify(&out) != Failure::NoRepository {
            ctx.warn(format!(
                "could not remove stale locks from {}: {}",
                self.repository,
                quote(&out)
            ));
        }
    }

    fn snapshots(&self, filter: &str) -> Result<Vec<Snapshot>, Error> {
        let out = self.run(
            "listing the off-site snapshots",
            &["snapshots".into(), "--tag".into(), filter.to_owned()],
            Some(SHORT),
        )?;
        parse_snapshots(&out.stdout_text())
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / 1048576.0)
}

/// A checked backup id.
fn backup_id(config: &Config) -> Result<&str, Error> {
    if is_backup_id(&config.backup) {
        Ok(&config.backup)
    } else {
        Err(Error::invalid_config(format!(
            "backup `{}` is not a backup id (YYYYMMDD-HHMMSS)",
            config.backup
        )))
    }
}

fn send(ctx: &Context, config: &Config, backups: &str) -> Result<Output, Error> {
    let id = backup_id(config)?;
    let domain = ctx.customer_domain();
    let folder = format!("{backups}/{id}");
    if HostFs.stat_opt(&format!("{folder}/{MANIFEST}"))?.is_none() {
        return Err(Error::not_found(format!(
            "backup {id} is not a complete backup of this customer (no {MANIFEST}); pick another one"
        )));
    }
    let repo = Restic {
        repository: &config.repository,
        cwd: backups,
    };
    ctx.progress(0.0, "opening the off-site repository");
    repo.open_or_init(ctx)?;
    repo.remove_stale_locks(ctx);
    ctx.check_cancelled()?;
    ctx.progress(5.0, format!("sending backup {id}"));
    let sender = Restic {
        repository: &config.repository,
        cwd: &folder,
    };
    let args: Vec<String> = [
        "backup",
        ".",
        "--host",
        domain,
        "--tag",
        &format!("customer={domain}"),
        "--tag",
        &format!("backup={id}"),
    ]
    .map(str::to_owned)
    .to_vec();
    let out = sender.run(&format!("sending backup {id} off-site"), &args, None)?;
    let summary = parse_summary(&out.stdout_text()).ok_or_else(|| {
        Error::io("restic backup succeeded but printed no summary; is this restic 0.12 or newer?")
    })?;
    ctx.info(format!(
        "sent backup {id} off-site in {:.1}s: {} files, {} read, {} new in the repository (snapshot {})",
        summary.total_duration,
        summary.total_files_processed,
        mib(summary.total_bytes_processed),
        mib(summary.data_added),
        summary.snapshot_id.get(..8).unwrap_or(&summary.snapshot_id),
    ));
    ctx.check_cancelled()?;

    // Pins: the snapshots of pinned backups carry `pinned`, the others do not.
    ctx.progress(80.0, "marking pinned backups");
    let pinned = pinned_ids(&HostFs, backups)?;
    let snapshots = repo.snapshots(&format!("customer={domain}"))?;
    for s in &snapshots {
        let Some(b) = s.backup() else { continue };
        let want = pinned.iter().any(|p| p == b);
        if want == s.pinned() {
            continue;
        }
        let flag = if want { "--add" } else { "--remove" };
        repo.run(
            &format!("marking the off-site copy of backup {b}"),
            &[
                "tag".into(),
                "--tag".into(),
                format!("customer={domain},backup={b}"),
                flag.into(),
                PINNED_TAG.into(),
            ],
            Some(SHORT),
        )?;
    }

    let mut forgotten = 0usize;
    match forget_args(
        domain,
        config.keep_last,
        config.keep_daily,
        config.keep_weekly,
    ) {
        None => ctx.info("off-site retention is off (every keep rule is 0): nothing forgotten"),
        Some(args) => {
            ctx.progress(85.0, "applying the off-site retention");
            repo.run("applying the off-site retention", &args, None)?;
            let after = repo.snapshots(&format!("customer={domain}"))?;
            forgotten = snapshots.len().saturating_sub(after.len());
            ctx.info(format!(
                "off-site retention: {} snapshots kept, {forgotten} forgotten (keep last {}, daily {}, weekly {}, pinned always)",
                after.len(),
                config.keep_last,
                config.keep_daily,
                config.keep_weekly
            ));
        }
    }
    ctx.progress(100.0, format!("backup {id} is off-site"));
    Ok(Output::new()
        .value("snapshot", &summary.snapshot_id)
        .value("files", summary.total_files_processed)
        .value("bytes", summary.total_bytes_processed)
        .value("data-added", summary.data_added)
        .value("seconds", format!("{:.3}", summary.total_duration))
        .value("forgotten", forgotten))
}

fn list(ctx: &Context, config: &Config, backups: &str) -> Result<Output, Error> {
    let domain = ctx.customer_domain();
    let repo = Restic {
        repository: &config.repository,
        cwd: backups,
    };
    repo.remove_stale_locks(ctx);
    let snapshots = repo.snapshots(&format!("customer={domain}"))?;
    let rows: Vec<serde_json::Value> = snapshots
        .iter()
        .map(|s| {
            serde_json::json!({
                "id": s.short_id,
                "backup": s.backup(),
                "time": s.time,
                "pinned": s.pinned(),
            })
        })
        .collect();
    ctx.info(format!("{} off-site snapshots of {domain}", rows.len()));
    Ok(Output::new()
        .value("snapshots", serde_json::Value::Array(rows))
        .value("count", snapshots.len()))
}

fn fetch(ctx: &Context, config: &Config, backups: &str) -> Result<Output, Error> {
    let id = backup_id(config)?;
    let domain = ctx.customer_domain();
    if HostFs.stat_opt(&format!("{backups}/{id}"))?.is_some() {
        return Err(Error::invalid_config(format!(
            "backup {id} is already on the disk; restore it with source=local (the default)"
        )));
    }
    let partial = partial_name(ctx.run_id());
    let target = format!("{backups}/{partial}");
    let repo = Restic {
        repository: &config.repository,
        cwd: backups,
    };
    let filter = format!("customer={domain},backup={id}");
    repo.remove_stale_locks(ctx);
    let found = repo.snapshots(&filter)?;
    let newest = found.first().ok_or_else(|| {
        Error::not_found(format!(
            "no off-site copy of backup {id} of {domain} in {}; see `qodify-host backups list --customer {domain} --offsite`",
            config.repository
        ))
    })?;
    let path = newest.paths.first().cloned().ok_or_else(|| {
        Error::io(format!(
            "snapshot {} of backup {id} names no path",
            newest.short_id
        ))
    })?;
    HostFs.remove_tree(&target)?;
    ctx.progress(0.0, format!("fetching backup {id} from off-site"));
    let restored = repo.run(
        &format!("fetching backup {id} from off-site"),
        &[
            "restore".into(),
            "latest".into(),
            "--tag".into(),
            filter.clone(),
            "--target".into(),
            partial.clone(),
        ],
        None,
    );
    // restic puts a snapshot of `.` at the top of the target; older versions nest it under its
    // absolute path.
    let laid_out =
        restored.and_then(
            |_| match HostFs.stat_opt(&format!("{target}/{MANIFEST}"))? {
                Some(_) => Ok(HostFs.list_dir(&target)?.len() as u64),
                None => flatten(&HostFs, &target, &path),
            },
        );
    let moved = match laid_out {
        Ok(n) => n,
        Err(e) => {
            let _ = HostFs.remove_tree(&target);
            return Err(e);
        }
    };
    ctx.info(format!(
        "fetched backup {id} from off-site (snapshot {}, {moved} files) into {partial}; it is checked against its backup.json next",
        newest.short_id
    ));
    ctx.progress(100.0, format!("backup {id} fetched"));
    Ok(Output::new()
        .value("snapshot", &newest.short_id)
        .value("files", moved))
}

fn place(ctx: &Context, config: &Config, backups: &str) -> Result<Output, Error> {
    let id = backup_id(config)?;
    let partial = format!("{backups}/{}", partial_name(ctx.run_id()));
    let manifest = format!("{partial}/{MANIFEST}");
    let text = std::fs::read_to_string(&manifest)
        .with_context(|| format!("reading {manifest} of the fetched backup"))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::io(format!("{manifest} is not JSON: {e}")))?;
    if v.get("id").and_then(|i| i.as_str()) != Some(id) {
        return Err(Error::io(format!(
            "the fetched {MANIFEST} names backup {}, not {id}",
            v.get("id").and_then(|i| i.as_str()).unwrap_or("(none)")
        )));
    }
    let dest = format!("{backups}/{id}");
    if HostFs.stat_opt(&dest)?.is_some() {
        return Err(Error::io(format!(
            "backup {id} appeared on the disk meanwhile; it is left as it is"
        )));
    }
    // Like every backup folder: the host's user only.
    HostFs.set_mode(&partial, 0o700)?;
    HostFs.rename(&partial, &dest)?;
    HostFs.sync_dir(backups)?;
    ctx.info(format!("backup {id} is back on the disk"));
    Ok(Output::new().value("backup", id))
}

struct Offsite;

impl Step for Offsite {
    type Config = Config;

    fn run(ctx: &Context, config: Config) -> Result<Output, Error> {
        if !config.backups.starts_with('/') {
            return Err(Error::invalid_config(format!(
                "backups `{}` must be an absolute guest path, e.g. /backups",
                config.backups
            )));
        }
        let backups = config.backups.trim_end_matches('/').to_owned();
        let needs_repo = matches!(config.action, Action::Send | Action::List | Action::Fetch);
        if needs_repo {
            if config.repository.is_empty() {
                return Err(Error::invalid_config(
                    "no off-site repository: set the param offsite.repository (a tier overlay's [params])",
                ));
            }
            check_net(&config.repository, &config.net)?;
            if config
                .repository
                .ends_with(&format!("//{}/", ctx.customer_domain()))
            {
                return Err(Error::invalid_config(format!(
                    "the repository {} has `//` before the customer: write offsite.repository without a trailing /",
                    config.repository
                )));
            }
        }
        match config.action {
            Action::Send => send(ctx, &config, &backups),
            Action::List => list(ctx, &config, &backups),
            Action::Fetch => fetch(ctx, &config, &backups),
            Action::Place => place(ctx, &config, &backups),
            Action::Discard => {
                let partial = format!("{backups}/{}", partial_name(ctx.run_id()));
                HostFs.remove_tree(&partial)?;
                Ok(Output::new())
            }
        }
    }
}

export_step!(Offsite);

#[cfg(test)]
mod tests {
    use super::*;
    use qodify_plugin_sdk::fs::StdFs;

    #[test]
    fn the_summary_is_the_last_summary_line() {
        let out = concat!(
            "{\"message_type\":\"status\",\"percent_done\":0.5}\n",
            "{\"message_type\":\"summary\",\"files_new\":3,\"files_changed\":0,\"files_unmodified\":0,",
            "\"data_added\":1234,\"total_files_processed\":3,\"total_bytes_processed\":5000,",
            "\"total_duration\":0.25,\"snapshot_id\":\"abcdef0123\"}\n"
        );
        let s = parse_summary(out).unwrap();
        assert_eq!(
            (
                s.data_added,
                s.total_bytes_processed,
                s.total_files_processed
            ),
            (1234, 5000, 3)
        );
        assert_eq!(s.snapshot_id, "abcdef0123");
        assert!(parse_summary("{\"message_type\":\"status\"}\n").is_none());
    }

    #[test]
    fn snapshots_parse_newest_first_with_their_backup_and_pin() {
        let json = r#"[{"id":"a1","short_id":"a1","time":"2026-12-01T03:00:00Z","paths":["/c/backups/20261201-030000"],"tags":["customer=shop.example.com","backup=20261201-030000"]},
                      {"id":"b2","short_id":"b2","time":"2026-12-02T03:00:00Z","paths":["/c/backups/20261202-030000"],"tags":["customer=shop.example.com","backup=20261202-030000","pinned"]}]"#;
        let list = parse_snapshots(json).unwrap();
        assert_eq!(list[0].id, "b2");
        assert_eq!(list[0].backup(), Some("20261202-030000"));
        assert!(list[0].pinned() && !list[1].pinned());
        assert!(parse_snapshots("null").unwrap().is_empty());
        assert!(parse_snapshots("{").is_err());
    }

    #[test]
    fn failures_are_told_apart() {
        assert_eq!(
            classify("Fatal: wrong password or no key found\n"),
            Failure::WrongPassword
        );
        assert_eq!(
            classify(
                "Fatal: unable to open config file: <config/> does not exist\nIs there a repository at the following location?\n"
            ),
            Failure::NoRepository
        );
        assert_eq!(
            classify("dial tcp 127.0.0.1:1: connect: connection refused"),
            Failure::Unreachable
        );
        assert_eq!(classify("something else"), Failure::Other);
    }

    #[test]
    fn retention_keeps_pinned_and_is_off_when_every_rule_is_zero() {
        let args = forget_args("shop.example.com", 3, 0, 2).unwrap();
        assert_eq!(
            args.join(" "),
            "forget --tag customer=shop.example.com --group-by host --keep-tag pinned --keep-last 3 --keep-weekly 2 --prune"
        );
        assert!(forget_args("shop.example.com", 0, 0, 0).is_none());
    }

    #[test]
    fn the_net_grant_must_name_the_repository_server() {
        assert!(check_net("rest:http://10.0.0.5:8000/shop/", "10.0.0.5:8000").is_ok());
        assert!(
            check_net(
                "rest:https://u:p@backup.example:8443/shop/",
                "backup.example:8443"
            )
            .is_ok()
        );
        let e = check_net("rest:http://10.0.0.5:8000/shop/", "10.0.0.5:9000").unwrap_err();
        assert!(e.message().contains("10.0.0.5:8000") && e.message().contains("offsite.net"));
        assert!(check_net("rest:http://10.0.0.5:8000/shop/", "").is_err());
        assert!(check_net("rest:https://backup.example/shop/", "backup.example:443").is_ok());
        assert!(check_net("s3:http://minio.internal/bucket/shop/", "minio.internal:80").is_ok());
        assert!(check_net("sftp:backup@host:/srv/restic/shop", "").is_ok());
    }

    #[test]
    fn a_restored_tree_is_laid_out_flat_and_pins_are_listed() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().to_str().unwrap();
        let deep = t
            .path()
            .join(".partial-r/var/q/shop/backups/20261201-030000");
        std::fs::create_dir_all(&deep).unwrap();
        std::fs::write(deep.join("backup.json"), "{}").unwrap();
        std::fs::write(deep.join("db.dump"), "x").unwrap();
        let partial = format!("{root}/.partial-r");
        let n = flatten(
            &StdFs::new(),
            &partial,
            "/var/q/shop/backups/20261201-030000",
        )
        .unwrap();
        assert_eq!(n, 2);
        let mut names: Vec<String> = std::fs::read_dir(&partial)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["backup.json", "db.dump"]);
        assert!(flatten(&StdFs::new(), &partial, "/../x").is_err());

        std::fs::create_dir_all(t.path().join(".pins")).unwrap();
        std::fs::write(t.path().join(".pins/20261201-030000"), "why").unwrap();
        std::fs::write(t.path().join(".pins/junk"), "").unwrap();
        assert_eq!(
            pinned_ids(&StdFs::new(), root).unwrap(),
            ["20261201-030000"]
        );
    }
}
