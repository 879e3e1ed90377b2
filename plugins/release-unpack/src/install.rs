//! The unpack itself, over a [`FileSystem`] so native tests run it on the SDK's `StdFs` with
//! failures injected: hashing the package, deciding about an existing release folder,
//! extracting into staging, the checks of the tree, the marker, the journal flag and the rename
//! into place.

use std::io::Read as _;

use qodify_plugin_sdk::fs::FileSystem;
use qodify_plugin_sdk::{Context, Error, ResultExt as _};
use sha2::{Digest as _, Sha256};
use tar_extract::extract::{Extracted, IO_BUF, Job, Wording, deepest_first, extract};
use tar_extract::paths::join;
use upgrade_kit::journal::Journal;
use upgrade_kit::layout;
use upgrade_kit::marker::{Marker, Status};

use crate::{Plan, STAGING_PREFIX};

/// How the extractor's messages speak of a release install. The package's sha256 matched the
/// catalog before extraction, so a bad archive is the package as built: rebuilding is the fix.
const WORDING: Wording = Wording {
    doing: "unpacking",
    done: "unpacked",
    folder: "the release folder",
    jobs: "release installs",
    if_rejected: "rebuild the release package, or inspect it by hand",
    if_damaged: "rebuild the release package and put its new sha256 in releases.json",
};

/// Hashing the package fills the progress up to here.
pub const HASH_TO: f32 = 30.0;
/// Extraction starts here.
pub const EXTRACT_FROM: f32 = 30.0;
/// Extraction ends here; the rest is checks, marker and rename.
pub const EXTRACT_TO: f32 = 90.0;
/// Report hashing progress this many bytes apart.
const HASH_PROGRESS_STEP: u64 = 16 << 20;
const MIB: f64 = 1048576.0;

/// What is at `releases/<version>` before the unpack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Nothing.
    Absent,
    /// A folder of a failed or interrupted attempt (no marker, or not `succeeded`).
    Leftover,
    /// A release that once went live and is not live now.
    OlderRelease,
}

impl Existing {
    /// The `replaced` output.
    pub fn as_str(self) -> &'static str {
        match self {
            Existing::Absent => "none",
            Existing::Leftover => "leftover",
            Existing::OlderRelease => "older-release",
        }
    }
}

/// Decides about an existing release folder (pure). `exists`: something is at
/// `releases/<version>`; `marker`: its marker's status, if it has a readable one; `live`: the
/// versions that are live (the journal's `from`, what `current` points at).
pub fn decide(
    version: &str,
    exists: bool,
    marker: Option<Status>,
    live: &[String],
) -> Result<Existing, Error> {
    if live.iter().any(|v| v == version) {
        return Err(Error::invalid_config(format!(
            "releases/{version} is the live release; an upgrade never unpacks over it: pick \
             another version"
        )));
    }
    Ok(match (exists, marker) {
        (false, _) => Existing::Absent,
        (true, Some(Status::Succeeded)) => Existing::OlderRelease,
        (true, _) => Existing::Leftover,
    })
}

/// Looks at `releases/<version>` and decides with [`decide`].
pub fn inspect(
    fs: &impl FileSystem,
    ctx: &Context,
    plan: &Plan,
    live: &[String],
) -> Result<Existing, Error> {
    let meta = fs.stat_opt(&plan.target)?;
    if let Some(meta) = &meta
        && !meta.is_dir()
    {
        return Err(Error::invalid_config(format!(
            "{} exists but is not a folder; move it away and run the upgrade again",
            plan.target
        )));
    }
    let marker = match &meta {
        Some(_) => Marker::read(&plan.target)?.map(|m| m.status),
        None => None,
    };
    let existing = decide(&plan.version, meta.is_some(), marker, live)?;
    match existing {
        Existing::Absent => {}
        Existing::Leftover => ctx.warn(format!(
            "{} is the leftover of a failed attempt (marker: {}); it is replaced",
            plan.target,
            match marker {
                Some(Status::Installing) => "installing",
                Some(Status::Failed) => "failed",
                _ => "none",
            }
        )),
        Existing::OlderRelease => ctx.warn(format!(
            "{} holds an older install of {} that is not live; it is removed and {} unpacked anew",
            plan.target, plan.version, plan.version
        )),
    }
    Ok(existing)
}

/// Removes staging folders of earlier runs (`.staging-*` in `releases/`, and their `.old`
/// companions) that died before cleaning up.
pub fn remove_stale_staging(fs: &impl FileSystem, ctx: &Context, plan: &Plan) -> Result<(), Error> {
    let entries = match fs.list_dir(&plan.releases) {
        Ok(entries) => entries,
        Err(e) if e.kind() == qodify_plugin_sdk::ErrorKind::NotFound => {
            return Err(Error::not_found(format!(
                "{} does not exist: the customer is not in the blue/green layout; run the \
                 migrate-layout pipeline first",
                plan.releases
            )));
        }
        Err(e) => return Err(e),
    };
    for entry in entries {
        let path = join(&plan.releases, &entry.name);
        if entry.name.starts_with(STAGING_PREFIX) && path != plan.staging {
            ctx.info(format!(
                "removing {path}, left by an earlier run that did not finish"
            ));
            fs.remove_tree(&path)?;
        }
    }
    Ok(())
}

/// Hashes the whole package (with progress) and compares it with the catalog's sha256.
pub fn verify_package(
    ctx: &Context,
    package: &str,
    expected: &str,
) -> Result<(u64, String), Error> {
    let mut file = match std::fs::File::open(package) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::not_found(format!(
                "the package {package} is missing from the release catalog folder; copy it there \
                 (`qodify-host validate` checks the catalog)"
            )));
        }
        Err(e) => return Err(Error::from(e).context(format!("opening {package}"))),
    };
    let total = file
        .metadata()
        .with_context(|| format!("reading the size of {package}"))?
        .len();
    let step = HASH_PROGRESS_STEP.max(total / 100);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; IO_BUF];
    let (mut read, mut next) = (0u64, 0u64);
    loop {
        ctx.check_cancelled()?;
        let n = file
            .read(&mut buf)
            .with_context(|| format!("reading {package}"))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        read += n as u64;
        if read >= next {
            next = read + step;
            let share = if total == 0 {
                1.0
            } else {
                read as f32 / total as f32
            };
            ctx.progress(
                HASH_TO * share.min(1.0),
                format!(
                    "checking the package: {:.1} MiB of {:.1} MiB",
                    read as f64 / MIB,
                    total as f64 / MIB
                ),
            );
        }
    }
    let actual = hex::encode(hasher.finalize());
    if actual != expected {
        return Err(Error::invalid_config(format!(
            "sha256 mismatch for {package}: the catalog says {expected}, the file has {actual}; \
             the package was changed or damaged: put the right file there, or fix releases.json \
             if the file is right (`qodify-host validate` checks both); nothing was unpacked"
        )));
    }
    Ok((read, actual))
}

/// One unpack.
pub struct Install<'a> {
    /// The checked config.
    pub plan: &'a Plan,
    /// Guest path of the verified package.
    pub package: &'a str,
    /// The marker to write into the new release.
    pub marker: &'a Marker,
    /// What [`inspect`] found at `releases/<version>`.
    pub existing: Existing,
}

/// What was unpacked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Done {
    /// Archive entries.
    pub entries: u64,
    /// Regular files.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// Extracts into staging, checks and finishes the tree, then renames it into place. On error
/// staging is removed and a release folder moved aside is put back.
pub fn install(fs: &impl FileSystem, ctx: &Context, job: &Install<'_>) -> Result<Done, Error> {
    let plan = job.plan;
    match std::fs::create_dir(&plan.staging) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(Error::invalid_config(format!(
                "the staging folder {} already exists; remove it, or give staging a fresh name \
                 such as `{}/{STAGING_PREFIX}{{{{run.id}}}}`",
                plan.staging, plan.releases
            )));
        }
        Err(e) => return Err(Error::from(e).context(format!("creating {}", plan.staging))),
    }
    let aside = format!("{}.old", plan.staging);
    match unpack_and_swap(fs, ctx, job, &aside) {
        Ok(done) => {
            if job.existing != Existing::Absent
                && let Err(e) = fs.remove_tree(&aside)
            {
                ctx.warn(format!(
                    "could not remove the replaced folder {aside} ({e}); delete it by hand"
                ));
            }
            ctx.progress(100.0, format!("{} unpacked", plan.version));
            Ok(done)
        }
        Err(e) => {
            if let Err(cleanup) = fs.remove_tree(&plan.staging) {
                ctx.warn(format!(
                    "could not remove the staging folder {} ({cleanup}); delete it by hand",
                    plan.staging
                ));
            }
            Err(e)
        }
    }
}

fn unpack_and_swap(
    fs: &impl FileSystem,
    ctx: &Context,
    job: &Install<'_>,
    aside: &str,
) -> Result<Done, Error> {
    let plan = job.plan;
    let label = format!("{} ({})", plan.version, file_name(job.package));
    let x = extract(
        fs,
        ctx,
        &Job {
            archive: job.package,
            dest: &plan.staging,
            limits: plan.limits,
            wording: &WORDING,
            label: &label,
            collect_files: false,
            progress: EXTRACT_FROM..EXTRACT_TO,
        },
    )?;
    check_top(&x, &plan.version)?;
    let uploads = join(&plan.staging, "backend/uploads");
    if fs.stat_opt(&uploads)?.is_some() {
        return Err(Error::invalid_config(format!(
            "the package of {} carries backend/uploads; uploads live in shared/uploads and each \
             release links to them, so build the package without it",
            plan.version
        )));
    }
    ctx.progress(EXTRACT_TO, format!("finishing {}", plan.version));
    fs.symlink(layout::UPLOADS_LINK, &uploads)?;
    for (rel, meta) in deepest_first(&x.dirs) {
        let path = join(&plan.staging, rel);
        match meta {
            Some(meta) => {
                fs.set_mode(&path, meta.mode)?;
                fs.set_mtime(&path, meta.mtime)?;
            }
            None => fs.set_mode(&path, 0o755)?,
        }
    }
    // The release folder itself: the archive's `./` entry if it has a usable one, else 0755.
    match x.root {
        Some(root) if root.mode & 0o700 == 0o700 => fs.set_mode(&plan.staging, root.mode)?,
        _ => fs.set_mode(&plan.staging, 0o755)?,
    }
    job.marker.write(&plan.staging)?;
    ctx.check_cancelled()?;

    // From here on the rollback removes releases/<version>: record that before it appears.
    Journal::update(fs, &plan.releases, |j| j.unpacked = true)?;
    let moved_aside = job.existing != Existing::Absent;
    if moved_aside {
        fs.rename(&plan.target, aside)
            .map_err(|e| e.context(format!("moving the old {} aside", plan.target)))?;
    }
    if let Err(e) = fs.rename(&plan.staging, &plan.target) {
        if moved_aside && let Err(back) = fs.rename(aside, &plan.target) {
            ctx.warn(format!(
                "could not put {aside} back to {} ({back}); move it by hand",
                plan.target
            ));
        }
        return Err(e.context(format!("moving the unpacked release into {}", plan.target)));
    }
    fs.sync_dir(&plan.releases)?;
    Ok(Done {
        entries: x.entries,
        files: x.files,
        bytes: x.bytes,
    })
}

/// The package must hold `backend/`, `admin/` and `store/` folders at its top.
pub fn check_top(x: &Extracted, version: &str) -> Result<(), Error> {
    let missing: Vec<&str> = layout::SERVICES
        .into_iter()
        .filter(|s| !x.dirs.contains_key(*s))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let mut top: Vec<&str> = x
        .dirs
        .keys()
        .chain(x.symlinks.keys())
        .map(String::as_str)
        .filter(|p| !p.contains('/'))
        .collect();
    top.sort_unstable();
    Err(Error::invalid_config(format!(
        "the package of {version} has no {} folder at its top (its top holds: {}); a release \
         package holds backend/, admin/ and store/ at the top: rebuild it",
        missing.join("/, no ") + "/",
        if top.is_empty() {
            "no folders".to_owned()
        } else {
            top.join(", ")
        }
    )))
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}
