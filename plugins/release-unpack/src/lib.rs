//! `release-unpack` step plugin: puts the target release of an upgrade into
//! `releases/<version>` (plan §8, step 2), after `release-check` wrote the upgrade journal.
//!
//! 1. Reads the package's path and sha256 from the catalog and hashes the whole file; a mismatch
//!    refuses before anything is extracted.
//! 2. Decides what to do with an existing `releases/<version>`: the live release (the journal's
//!    `from`, or what `current` points at) is refused; a folder whose marker does not say
//!    `succeeded` is the leftover of a failed attempt and is replaced; a succeeded older release
//!    is replaced too, with a log line.
//! 3. Unpacks the package with the strict extractor of [`tar_extract`], shared with
//!    restore-files (every entry checked, one bad entry rejects the whole package), into a fresh
//!    staging folder beside the releases, checks that `backend/`, `admin/` and `store/` are at
//!    its top and that it carries no `backend/uploads`, links
//!    `backend/uploads -> ../../../shared/uploads`, sets the folders' modes and writes the
//!    marker `{status: installing, from, run, at, preUpgradeBackup}`.
//! 4. Sets `unpacked = true` in the journal, moves an existing folder aside, renames staging to
//!    `releases/<version>`, fsyncs `releases/` and deletes what was moved aside.
//!
//! On any error the staging folder is removed (and a folder moved aside is put back). Staging
//! folders of earlier runs that died (`.staging-*` in `releases/`) are removed first: only one
//! run per customer is ever active.
//!
//! Config (see [`Config`]):
//! - `version`: the release to unpack, e.g. `"{{params.targetVersion}}"`; it must be the
//!   journal's `to`.
//! - `catalog`: guest path of `releases.json`, default `/releases/releases.json`;
//!   `catalog_dir`: the folder package paths are relative to, default `/releases`.
//! - `releases`: guest path of the customer's `releases/` folder, read-write, default
//!   `/customer/releases`.
//! - `staging`: guest path of the staging folder, directly in `releases` and named with a
//!   leading `.`; default `<releases>/.staging-<run id>`.
//! - `max_entries` (default 2 000 000), `max_total_bytes` (256 GiB), `max_entry_bytes` (64 GiB).
//!
//! No host commands. Outputs: `version`, `entries`, `files`, `bytes`, `sha256`, `replaced`
//! (`none`, `leftover` or `older-release`).

pub mod install;

use qodify_plugin_sdk::fs::HostFs;
use qodify_plugin_sdk::path::{is_within, normalize};
use qodify_plugin_sdk::prelude::*;
use tar_extract::extract::Limits;
use tar_extract::paths;
use upgrade_kit::catalog::Catalog;
use upgrade_kit::journal::Journal;
use upgrade_kit::layout;
use upgrade_kit::marker::Marker;

use crate::install::{Existing, Install};

/// The step's config.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The release to unpack.
    pub version: String,
    /// Guest path of `releases.json`.
    #[serde(default = "default_catalog")]
    pub catalog: String,
    /// The folder package paths are relative to.
    #[serde(default = "default_catalog_dir")]
    pub catalog_dir: String,
    /// Guest path of the customer's `releases/` folder (read-write).
    #[serde(default = "default_releases")]
    pub releases: String,
    /// Guest path of the staging folder; default `<releases>/.staging-<run id>`.
    #[serde(default)]
    pub staging: Option<String>,
    /// Most entries the package may hold.
    #[serde(default = "default_max_entries")]
    pub max_entries: u64,
    /// Most bytes its files may add up to.
    #[serde(default = "default_max_total_bytes")]
    pub max_total_bytes: u64,
    /// Most bytes one file may have.
    #[serde(default = "default_max_entry_bytes")]
    pub max_entry_bytes: u64,
}

fn default_catalog() -> String {
    "/releases/releases.json".into()
}

fn default_catalog_dir() -> String {
    "/releases".into()
}

fn default_releases() -> String {
    "/customer/releases".into()
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

/// The prefix of staging folders; leftovers with it are removed before a new unpack.
pub const STAGING_PREFIX: &str = ".staging-";

/// A checked config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The release to unpack.
    pub version: String,
    /// Normalised guest path of the catalog.
    pub catalog: String,
    /// Normalised catalog folder.
    pub catalog_dir: String,
    /// Normalised `releases/` folder.
    pub releases: String,
    /// Normalised staging folder (directly in `releases`).
    pub staging: String,
    /// `releases/<version>`.
    pub target: String,
    /// Extraction limits.
    pub limits: Limits,
}

impl Plan {
    /// Validates `config` (pure); `run_id` names the default staging folder.
    pub fn new(config: Config, run_id: &str) -> Result<Plan, Error> {
        let version = config.version.trim().to_owned();
        if version.is_empty() {
            return Err(Error::invalid_config(
                "version is empty; pass the version to unpack, e.g. \"{{params.targetVersion}}\"",
            ));
        }
        if !layout::is_version_name(&version) {
            return Err(Error::invalid_config(format!(
                "version `{version}` is not a release version name (letters, digits, `.`, `_`, \
                 `+`, `-`, not starting with `.`); use a version from releases.json"
            )));
        }
        let catalog = normalize(&config.catalog).map_err(|e| e.context("catalog"))?;
        let catalog_dir = normalize(&config.catalog_dir).map_err(|e| e.context("catalog_dir"))?;
        let releases = normalize(&config.releases).map_err(|e| e.context("releases"))?;
        if releases == "/" {
            return Err(Error::invalid_config(
                "releases must be the customer's releases/ folder, e.g. /customer/releases",
            ));
        }
        let staging = match config.staging {
            Some(s) => normalize(&s).map_err(|e| e.context("staging"))?,
            None => format!("{releases}/{STAGING_PREFIX}{run_id}"),
        };
        let name = staging
            .strip_prefix(&releases)
            .and_then(|rest| rest.strip_prefix('/'))
            .filter(|name| !name.is_empty() && !name.contains('/'));
        match name {
            Some(name) if name.starts_with('.') && name != "." && name != ".." => {}
            _ => {
                return Err(Error::invalid_config(format!(
                    "staging {staging} must be a folder directly in {releases} whose name starts \
                     with `.`, e.g. {releases}/{STAGING_PREFIX}{{{{run.id}}}}: the rename into \
                     place stays in one folder, and a dot name is never taken for a release"
                )));
            }
        }
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
            target: format!("{releases}/{version}"),
            version,
            catalog,
            catalog_dir,
            releases,
            staging,
            limits: Limits {
                max_entries: config.max_entries,
                max_total_bytes: config.max_total_bytes,
                max_entry_bytes: config.max_entry_bytes,
            },
        })
    }

    /// Guest path of a package named in the catalog, which must stay inside the catalog folder.
    pub fn package_path(&self, rel: &str) -> Result<String, Error> {
        let plain = !rel.is_empty()
            && !rel.starts_with('/')
            && rel
                .split('/')
                .all(|c| !c.is_empty() && c != "." && c != "..");
        let path = format!("{}/{rel}", self.catalog_dir.trim_end_matches('/'));
        if !plain || !is_within(&self.catalog_dir, &path) {
            return Err(Error::invalid_config(format!(
                "the package path `{rel}` of {} is not a plain path inside the catalog folder; \
                 fix releases.json (`qodify-host validate` checks it)",
                self.version
            )));
        }
        Ok(path)
    }
}

/// Checks the journal against this step: it exists, belongs to this run and targets `version`.
pub fn check_journal(
    journal: Option<Journal>,
    run_id: &str,
    version: &str,
) -> Result<Journal, Error> {
    let journal = journal.ok_or_else(|| {
        Error::not_found(format!(
            "there is no upgrade journal ({}): release-unpack runs only inside an upgrade, after \
             release-check",
            upgrade_kit::journal::FILE
        ))
    })?;
    if journal.run != run_id {
        return Err(Error::invalid_config(format!(
            "the upgrade journal belongs to run {} ({} to {}), not to this run; release-check \
             must run first in the same pipeline",
            journal.run, journal.from, journal.to
        )));
    }
    if journal.to != version {
        return Err(Error::invalid_config(format!(
            "this upgrade goes to {} (the journal says so), but version is {version}; give both \
             steps the same version",
            journal.to
        )));
    }
    Ok(journal)
}

struct ReleaseUnpack;

impl Step for ReleaseUnpack {
    type Config = Config;

    fn run(ctx: &Context, config: Config) -> Result<Output, Error> {
        let plan = Plan::new(config, ctx.run_id())?;
        check_mounts(ctx, &plan)?;
        let journal = check_journal(Journal::read(&plan.releases)?, ctx.run_id(), &plan.version)?;
        install::remove_stale_staging(&HostFs, ctx, &plan)?;

        let catalog = Catalog::read(&plan.catalog)?;
        let release = catalog.release(&plan.version)?;
        let package = plan.package_path(&release.package.path)?;
        let (size, sha256) = install::verify_package(ctx, &package, &release.package.sha256)?;
        ctx.info(format!(
            "{package} ({:.1} MiB) matches the catalog's sha256",
            size as f64 / 1048576.0
        ));

        // The live release, from the journal and, when the mount shows it, from `current`.
        let mut live = vec![journal.from.clone()];
        let customer = paths::parent(plan.releases.trim_start_matches('/'));
        if let Ok(meta) = fs::stat(format!("/{customer}/{}", layout::CURRENT))
            && let Some(v) = meta
                .symlink_target
                .as_deref()
                .and_then(layout::version_of_target)
        {
            live.push(v.to_owned());
        }
        let existing = install::inspect(&HostFs, ctx, &plan, &live)?;
        let marker = Marker {
            version: plan.version.clone(),
            status: upgrade_kit::marker::Status::Installing,
            from: Some(journal.from.clone()),
            run: ctx.run_id().to_owned(),
            at: ctx.run_timestamp().to_owned(),
            pre_upgrade_backup: journal.backup.clone(),
        };
        let done = install::install(
            &HostFs,
            ctx,
            &Install {
                plan: &plan,
                package: &package,
                marker: &marker,
                existing,
            },
        )?;
        ctx.info(format!(
            "unpacked {} into {}: {} entries, {} files, {:.1} MiB{}",
            plan.version,
            plan.target,
            done.entries,
            done.files,
            done.bytes as f64 / 1048576.0,
            match existing {
                Existing::Absent => "",
                Existing::Leftover => "; replaced the leftover of a failed attempt",
                Existing::OlderRelease => "; replaced the older install of this release",
            }
        ));
        Ok(Output::new()
            .value("version", &plan.version)
            .value("entries", done.entries)
            .value("files", done.files)
            .value("bytes", done.bytes)
            .value("sha256", sha256)
            .value("replaced", existing.as_str()))
    }
}

export_step!(ReleaseUnpack);

/// `releases` (and so staging) in a writable mount; the catalog in some mount.
fn check_mounts(ctx: &Context, plan: &Plan) -> Result<(), Error> {
    let mount = ctx.mount_for(&plan.releases).ok_or_else(|| {
        Error::permission_denied(format!(
            "releases {} is not inside a folder granted to this step; mount the customer folder \
             with access = \"rw\"",
            plan.releases
        ))
    })?;
    if !mount.writable {
        return Err(Error::permission_denied(format!(
            "releases {} is in the read-only mount {}; grant it with access = \"rw\"",
            plan.releases, mount.guest_path
        )));
    }
    if mount.guest_path.trim_end_matches('/') == plan.releases {
        return Err(Error::invalid_config(format!(
            "releases {} is the top of its mount; mount the customer folder (path = \"\") so the \
             journal, the releases and `current` are in one mount",
            plan.releases
        )));
    }
    for (what, path) in [
        ("catalog", &plan.catalog),
        ("catalog_dir", &plan.catalog_dir),
    ] {
        if ctx.mount_for(path).is_none() {
            return Err(Error::permission_denied(format!(
                "{what} {path} is not inside a folder granted to this step; mount the release \
                 catalog with from = \"releases\""
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
