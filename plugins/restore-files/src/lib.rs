//! `restore-files` step plugin: puts one archive of a backup back into a customer folder.
//!
//! The archive is unpacked into `<staging>/new`, a fresh, empty folder (never into the live
//! tree: GNU tar CVE-2025-45582), checking every entry before anything of it is written; one bad
//! entry rejects the whole archive (`permission-denied`, naming the entry and the rule) and
//! staging is deleted. Rules are listed in [`tar_extract::extract`], the strict extractor this
//! plugin shares with `release-unpack`. Folders stay 0700 while unpacking; modes
//! (without setuid/setgid bits) and mtimes are restored through the host, folders last and
//! deepest first; symlinks are created through the host with their targets verbatim.
//!
//! Then, by `mode`:
//! - `replace` (default): `target` is renamed to `<staging>/old` and `<staging>/new` to `target`;
//!   entries of the old folder matching `carry` that the archive does not hold are moved into
//!   the new tree at the same path, so services still start after a files-only restore. If a
//!   step fails, the old folder is put back. `<staging>` (old tree included) is removed only
//!   after everything succeeded.
//! - `overlay`: each regular file of the archive is moved over `target/<path>` (missing folders
//!   are created); files it replaces wait in `<staging>/old` until the end, so a failure puts
//!   them back. For the `.env` + PM2 archive, whose paths are relative to the customer folder.
//!   It never writes through a symlink of the target; symlinks of the archive are skipped.
//!
//! Config (see [`Config`]):
//! - `archive`: guest path of the `.tar.gz`, e.g. `/backup/backend.tar.gz`.
//! - `target`: guest path of the folder to restore, e.g. `/customer/backend`, inside a
//!   read-write mount (in replace mode below the mount's top, so it can be renamed).
//! - `staging`: guest path of a staging folder to create, e.g. `/customer/.restore-<run-id>`; it
//!   must not exist yet and must be in the same mount as `target` (renames are atomic there).
//! - `mode`: `"replace"` (default) or `"overlay"`.
//! - `carry`: anchored globs (replace mode; the archive plugin's rules, from [`glob_rules`]),
//!   default `["**/node_modules", "**/.next", "**/dist", "**/logs"]`; add `"uploads"` for the
//!   backend.
//! - `max_entries` (default 2 000 000), `max_total_bytes` (256 GiB), `max_entry_bytes` (64 GiB).
//! - `keep` (default false): leave staging (the old tree and `journal.json`) after success, for
//!   the run's `commit` or `undo` step, so a later failure can still put this folder back.
//! - `action`: `"restore"` (default, the above), or `"undo"` / `"commit"` with `root` (the
//!   folder holding the staging folders, e.g. `/customer`) and `prefix` (their names' start,
//!   e.g. `.restore-{{run.id}}-`): undo puts back everything the run's restore steps changed, from
//!   their journals (see [`journal`]); commit removes the staging folders.
//!
//! Before moving anything in the live tree, every restore writes `<staging>/journal.json`
//! (synced), so what it did can be undone from the disk alone, also after a crash.
//!
//! Outputs: `entries` (archive entries unpacked), `bytes` (file bytes unpacked), `carried`
//! (entries moved over from the old folder); for undo/commit `folders` (staging folders handled)
//! and `pending` (left for the database's own undo).

pub mod journal;
pub mod restore;

use glob_rules::glob_set;
use qodify_plugin_sdk::fs::HostFs;
use qodify_plugin_sdk::path::{is_within, normalize};
use qodify_plugin_sdk::prelude::*;
use tar_extract::extract::Limits;

pub use crate::restore::{Mode, Plan, Stats};

/// The step's config.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `restore` (default), or `undo` / `commit` over the run's staging folders.
    #[serde(default)]
    pub action: Action,
    /// Guest path of the `.tar.gz` to restore.
    #[serde(default)]
    pub archive: String,
    /// Guest path of the folder to restore (in a read-write mount).
    #[serde(default)]
    pub target: String,
    /// Guest path of the staging folder to create; same mount as `target`, must not exist.
    #[serde(default)]
    pub staging: String,
    /// Keep staging (old tree and journal) after success, for a later `commit` or `undo` step.
    #[serde(default)]
    pub keep: bool,
    /// `undo`/`commit`: guest path of the folder holding the staging folders.
    #[serde(default)]
    pub root: String,
    /// `undo`/`commit`: the staging folders' name prefix, e.g. `.restore-{{run.id}}-`.
    #[serde(default)]
    pub prefix: String,
    /// `replace` (default) or `overlay`.
    #[serde(default)]
    pub mode: Mode,
    /// Globs (anchored at the target) of old entries to keep when the archive lacks them;
    /// replace mode only. Default: `**/node_modules`, `**/.next`, `**/dist`, `**/logs`.
    #[serde(default)]
    pub carry: Option<Vec<String>>,
    /// Skip the step (with a note) when the archive is not in the backup, e.g. `admin.tar.gz`
    /// of a customer that has no admin service.
    #[serde(default)]
    pub if_present: bool,
    /// Most entries the archive may hold.
    #[serde(default = "default_max_entries")]
    pub max_entries: u64,
    /// Most bytes its files may add up to.
    #[serde(default = "default_max_total_bytes")]
    pub max_total_bytes: u64,
    /// Most bytes one file may have.
    #[serde(default = "default_max_entry_bytes")]
    pub max_entry_bytes: u64,
}

fn default_max_entries() -> u64 {
    2_000_000
}

fn default_max_total_bytes() -> u64 {
    256 << 30
}

fn default_max_entry_bytes() -> u64 {
    64 << 30
}

/// What the step does.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Restore one archive.
    #[default]
    Restore,
    /// Put back everything the run's restore steps changed (from their journals).
    Undo,
    /// Remove the run's staging folders after the whole run succeeded.
    Commit,
}

/// The default `carry`: build output and dependencies the backups leave out.
pub const DEFAULT_CARRY: [&str; 4] = ["**/node_modules", "**/.next", "**/dist", "**/logs"];

impl Plan {
    /// Validates `config` (pure: no host calls).
    pub fn new(config: Config) -> Result<Plan, Error> {
        for (field, value) in [
            ("archive", &config.archive),
            ("target", &config.target),
            ("staging", &config.staging),
        ] {
            if value.is_empty() {
                return Err(Error::invalid_config(format!(
                    "{field} is missing; a restore needs archive, target and staging"
                )));
            }
        }
        if !config.root.is_empty() || !config.prefix.is_empty() {
            return Err(Error::invalid_config(
                "root and prefix are for action = \"undo\" or \"commit\"",
            ));
        }
        let archive = normalize(&config.archive).map_err(|e| e.context("archive"))?;
        let target = normalize(&config.target).map_err(|e| e.context("target"))?;
        let staging = normalize(&config.staging).map_err(|e| e.context("staging"))?;
        if target == "/" {
            return Err(Error::invalid_config("target must not be `/`"));
        }
        if is_within(&staging, &target) {
            return Err(Error::invalid_config(format!(
                "target {target} lies in staging {staging}; staging must be a fresh folder beside it"
            )));
        }
        if is_within(&staging, &archive) {
            return Err(Error::invalid_config(format!(
                "archive {archive} lies in staging {staging}, which the restore creates and deletes"
            )));
        }
        if config.mode == Mode::Replace {
            if is_within(&target, &staging) {
                return Err(Error::invalid_config(format!(
                    "staging {staging} lies in target {target}, which replace mode swaps out; put \
                     it beside the target, e.g. in the customer folder"
                )));
            }
            if is_within(&target, &archive) {
                return Err(Error::invalid_config(format!(
                    "archive {archive} lies in target {target}, which replace mode swaps out and \
                     deletes; read it from the backup folder"
                )));
            }
        }
        let carry = match (config.mode, config.carry) {
            (Mode::Replace, None) => {
                let patterns: Vec<String> = DEFAULT_CARRY.iter().map(|p| p.to_string()).collect();
                glob_set("carry", &patterns)?
            }
            (Mode::Replace, Some(patterns)) => glob_set("carry", &patterns)?,
            (Mode::Overlay, None) => None,
            (Mode::Overlay, Some(_)) => {
                return Err(Error::invalid_config(
                    "carry applies to mode = \"replace\" only; overlay leaves everything but the \
                     archive's files alone",
                ));
            }
        };
        for (field, value) in [
            ("max_entries", config.max_entries),
            ("max_total_bytes", config.max_total_bytes),
            ("max_entry_bytes", config.max_entry_bytes),
        ] {
            if value == 0 {
                return Err(Error::invalid_config(format!(
                    "{field} is 0; leave it out for the default"
                )));
            }
        }
        Ok(Plan {
            archive,
            target,
            staging,
            mode: config.mode,
            carry,
            limits: Limits {
                max_entries: config.max_entries,
                max_total_bytes: config.max_total_bytes,
                max_entry_bytes: config.max_entry_bytes,
            },
            keep: config.keep,
        })
    }

    /// Checks the paths against the step's mounts: `target` and `staging` in one writable
    /// mount, `archive` in some mount.
    pub fn check_mounts(&self, ctx: &Context) -> Result<(), Error> {
        let writable = |what: &str, path: &str| {
            let mount = ctx.mount_for(path).ok_or_else(|| {
                Error::permission_denied(format!(
                    "{what} {path} is not inside a folder granted to this step; add a mount with \
                     access = \"rw\" that holds it"
                ))
            })?;
            if !mount.writable {
                return Err(Error::permission_denied(format!(
                    "{what} {path} is in the read-only mount {}; grant it with access = \"rw\"",
                    mount.guest_path
                )));
            }
            Ok(mount.guest_path.trim_end_matches('/').to_string())
        };
        let target_mount = writable("target", &self.target)?;
        let staging_mount = writable("staging", &self.staging)?;
        if target_mount != staging_mount {
            return Err(Error::invalid_config(format!(
                "staging {} (mount {staging_mount}) and target {} (mount {target_mount}) are in \
                 different mounts; put staging in the target's mount so the swap is a rename",
                self.staging, self.target
            )));
        }
        if self.mode == Mode::Replace && target_mount == self.target {
            return Err(Error::invalid_config(format!(
                "target {} is the top of its mount and cannot be swapped; mount the folder that \
                 holds it (e.g. the customer folder) and point target below it",
                self.target
            )));
        }
        if ctx.mount_for(&self.archive).is_none() {
            return Err(Error::permission_denied(format!(
                "archive {} is not inside a folder granted to this step; mount the backup folder",
                self.archive
            )));
        }
        Ok(())
    }
}

struct RestoreFiles;

impl Step for RestoreFiles {
    type Config = Config;

    fn run(ctx: &Context, mut config: Config) -> Result<Output, Error> {
        if config.action != Action::Restore {
            return journal_step(ctx, &config);
        }
        if config.if_present && std::fs::symlink_metadata(&config.archive).is_err() {
            ctx.info(format!(
                "{} is not in this backup; nothing to restore",
                config.archive
            ));
            return Ok(Output::new().value("skipped", true));
        }
        let resolved = resolve_symlinked_target(&config.target)?;
        if resolved != config.target {
            ctx.info(format!(
                "{} is a symlink; restoring into {resolved}",
                config.target
            ));
            config.target = resolved;
        }
        let plan = Plan::new(config)?;
        plan.check_mounts(ctx)?;
        let stats = restore::restore(&HostFs, ctx, &plan)?;
        ctx.info(format!(
            "restored {} from {}: {} entries, {} files, {:.1} MiB, {} carried over",
            plan.target,
            plan.archive,
            stats.entries,
            stats.files,
            stats.bytes as f64 / 1048576.0,
            stats.carried
        ));
        Ok(Output::new()
            .value("entries", stats.entries)
            .value("bytes", stats.bytes)
            .value("carried", stats.carried))
    }
}

export_step!(RestoreFiles);

/// `undo` / `commit`: over every `<root>/<prefix>*` staging folder of the run.
fn journal_step(ctx: &Context, config: &Config) -> Result<Output, Error> {
    let root = normalize(&config.root).map_err(|e| e.context("root"))?;
    let prefix = &config.prefix;
    if prefix.len() < 3 || prefix.contains('/') {
        return Err(Error::invalid_config(format!(
            "prefix `{prefix}` must name the run's staging folders, e.g. `.restore-{{{{run.id}}}}-`"
        )));
    }
    if !config.archive.is_empty() || !config.target.is_empty() || !config.staging.is_empty() {
        return Err(Error::invalid_config(
            "archive, target and staging are for action = \"restore\"; undo and commit take root and prefix",
        ));
    }
    let outcome = match config.action {
        Action::Undo => journal::undo(&HostFs, &root, prefix)?,
        _ => journal::commit(&HostFs, &root, prefix)?,
    };
    let verb = match config.action {
        Action::Undo => "put back",
        _ => "committed",
    };
    match outcome.folders.len() {
        0 => ctx.info(format!(
            "nothing to {}",
            if config.action == Action::Undo {
                "put back"
            } else {
                "commit"
            }
        )),
        n => ctx.info(format!(
            "{verb} {n} restore step(s): {}",
            outcome.folders.join(", ")
        )),
    }
    Ok(Output::new().value("folders", outcome.folders.len()))
}

/// The real path of `target` inside the mounts: every symlink on the way (relative ones only)
/// is followed, like `realpath`, so the restore replaces the folder a link points at, not the
/// link. Blue/green: `backend` -> `current/backend`, `backend/uploads` -> `../../../shared/uploads`.
fn resolve_symlinked_target(target: &str) -> Result<String, Error> {
    let norm = normalize(target)?;
    let mut pending: std::collections::VecDeque<String> = norm
        .split('/')
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .collect();
    let mut resolved: Vec<String> = Vec::new();
    let mut links = 0;
    while let Some(c) = pending.pop_front() {
        if c == ".." {
            if resolved.pop().is_none() {
                return Err(Error::permission_denied(format!(
                    "target {target} leads above `/`"
                )));
            }
            continue;
        }
        let candidate = format!(
            "/{}",
            resolved
                .iter()
                .chain([&c])
                .cloned()
                .collect::<Vec<_>>()
                .join("/")
        );
        let link = match fs::stat(&candidate) {
            Ok(md) if md.is_symlink() => md.symlink_target.unwrap_or_default(),
            _ => {
                resolved.push(c);
                continue;
            }
        };
        links += 1;
        if links > 40 {
            return Err(Error::invalid_config(format!(
                "target {target}: too many levels of symlinks"
            )));
        }
        if link.starts_with('/') || link.is_empty() {
            return Err(Error::permission_denied(format!(
                "target {target}: {candidate} is a symlink to `{link}`; restore follows only relative links"
            )));
        }
        for part in link.split('/').rev().filter(|p| !p.is_empty() && *p != ".") {
            pending.push_front(part.to_owned());
        }
    }
    Ok(format!("/{}", resolved.join("/")))
}

#[cfg(test)]
mod tests;
