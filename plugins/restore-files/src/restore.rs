//! The restore itself: unpack into `<staging>/new`, then either swap the new tree in for the
//! target (replace) or move its files into place (overlay). A failing step undoes what was done,
//! so the customer keeps a working folder; staging is deleted unless it still holds something
//! the undo could not put back.

use std::collections::{BTreeMap, BTreeSet};
use std::io;

use glob_rules::GlobSet;
use qodify_plugin_sdk::fs::{FileSystem, Metadata, Timestamp};
use qodify_plugin_sdk::path::is_within;
use qodify_plugin_sdk::{Context, Error, ResultExt};
use serde::Deserialize;
use tar_extract::extract::{DirMeta, Extracted, Job, Limits, Wording, deepest_first, extract};
use tar_extract::paths::{depth, join, parent, parents};

use crate::journal::{self, Journal, Move};

/// Extraction fills this share of the step's progress; the swap the rest.
const EXTRACT_SHARE: f32 = 95.0;

/// How the extractor's messages speak of a restore.
const WORDING: Wording = Wording {
    doing: "restoring",
    done: "restored",
    folder: "the restored folder",
    jobs: "restores",
    if_rejected: "restore from another backup or inspect this archive by hand",
    if_damaged: "restore from another backup",
};

/// How the extracted tree is put in place.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The extracted tree replaces the target folder as a whole.
    #[default]
    Replace,
    /// Each extracted file is moved over the same path under the target; nothing else changes.
    Overlay,
}

/// A checked restore: normalised paths, compiled `carry`, limits.
#[derive(Debug)]
pub struct Plan {
    /// The `.tar.gz` to restore.
    pub archive: String,
    /// The folder to restore.
    pub target: String,
    /// The staging folder to create (same mount as `target`).
    pub staging: String,
    /// Replace or overlay.
    pub mode: Mode,
    /// Entries of the old target to move into the new tree (replace mode).
    pub carry: Option<GlobSet>,
    /// Caps on the archive.
    pub limits: Limits,
    /// Keep staging (the old tree and the journal) after success, for the run's `commit` or
    /// `undo` step.
    pub keep: bool,
}

/// What a restore did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Archive entries unpacked.
    pub entries: u64,
    /// Regular files among them.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Entries of the old target moved into the new tree.
    pub carried: u64,
}

/// A failed restore; `keep_staging` when staging holds something the undo could not put back.
struct Failure {
    error: Error,
    keep_staging: bool,
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Failure {
            error,
            keep_staging: false,
        }
    }
}

/// Runs the restore described by `plan`.
pub fn restore(fs: &impl FileSystem, ctx: &Context, plan: &Plan) -> Result<Stats, Error> {
    let current = fs.stat_opt(&plan.target)?;
    match &current {
        Some(meta) if meta.is_dir() => {}
        Some(meta) if meta.is_symlink() => {
            return Err(Error::invalid_config(format!(
                "target {} is a symlink (to `{}`), not a folder; point target at the real folder",
                plan.target,
                meta.symlink_target.as_deref().unwrap_or("?")
            )));
        }
        Some(_) => {
            return Err(Error::invalid_config(format!(
                "target {} is not a folder; point target at the folder to restore",
                plan.target
            )));
        }
        None if plan.mode == Mode::Overlay => {
            return Err(Error::not_found(format!(
                "target {} does not exist; overlay puts files into an existing folder",
                plan.target
            )));
        }
        None => {}
    }
    create_staging(fs, ctx, &plan.staging)?;
    let result = match plan.mode {
        Mode::Replace => replace(fs, ctx, plan, current.as_ref()),
        Mode::Overlay => overlay(fs, ctx, plan),
    };
    match result {
        Ok(stats) => {
            if !plan.keep {
                cleanup(fs, ctx, &plan.staging);
            }
            ctx.progress(100.0, format!("restored {}", plan.target));
            Ok(stats)
        }
        Err(failure) => {
            if !failure.keep_staging {
                cleanup(fs, ctx, &plan.staging);
            }
            Err(failure.error)
        }
    }
}

/// Creates the staging folder and its empty `new` folder, both private.
fn create_staging(fs: &impl FileSystem, ctx: &Context, staging: &str) -> Result<(), Error> {
    match std::fs::create_dir(staging) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return Err(Error::invalid_config(format!(
                "staging folder {staging} already exists; it may hold the folder of an \
                 interrupted restore in old/: check it, move back what is needed, delete it and \
                 run again, or give staging a fresh name such as `.restore-{{{{run.id}}}}`"
            )));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(Error::not_found(format!(
                "creating the staging folder {staging}: the folder holding it does not exist"
            )));
        }
        Err(e) => return Err(Error::from(e).context(format!("creating {staging}"))),
    }
    let made = fs.set_mode(staging, 0o700).and_then(|()| {
        let new = join(staging, "new");
        std::fs::create_dir(&new).with_context(|| format!("creating {new}"))?;
        fs.set_mode(&new, 0o700)
    });
    if made.is_err() {
        cleanup(fs, ctx, staging);
    }
    made
}

/// Deletes staging; a failure only warns (the restore itself is done or already failed).
fn cleanup(fs: &impl FileSystem, ctx: &Context, staging: &str) {
    if let Err(e) = fs.remove_tree(staging) {
        ctx.warn(format!(
            "could not remove the staging folder {staging} ({e}); delete it by hand"
        ));
    }
}

/// Replace mode: unpack, set folder modes, swap, carry.
fn replace(
    fs: &impl FileSystem,
    ctx: &Context,
    plan: &Plan,
    current: Option<&Metadata>,
) -> Result<Stats, Failure> {
    let new = join(&plan.staging, "new");
    let old = join(&plan.staging, "old");
    let label = label(&plan.target);
    let x = extract(fs, ctx, &job(plan, &new, &label, false))?;
    let carry = match (&plan.carry, current) {
        (Some(set), Some(_)) => plan_carry(fs, ctx, set, &plan.target, &new, &x)?,
        _ => CarryPlan::default(),
    };
    let root = root_meta(&x, current);
    finish_dirs(fs, &new, &x, root)?;
    if ctx.is_cancelled() {
        return Err(Error::cancelled().into());
    }
    ctx.progress(
        EXTRACT_SHARE + 1.0,
        format!("restoring {label}: swapping the folders"),
    );

    journal::write(
        fs,
        &plan.staging,
        &Journal::Replace {
            target: plan.target.clone(),
            had_old: current.is_some(),
            carry: carry.items.clone(),
            at: journal::now(),
        },
    )?;
    if current.is_some() {
        fs.rename(&plan.target, &old)
            .map_err(|e| e.context(format!("moving the current folder {} aside", plan.target)))?;
    }
    if let Err(e) = fs.rename(&new, &plan.target) {
        let e = e.context(format!("moving the restored folder into {}", plan.target));
        return Err(put_back(fs, &plan.target, current.is_some(), &old, e));
    }
    let mut moved = Vec::new();
    if let Err(e) = carry_in(fs, ctx, plan, &carry, &x, root, &mut moved) {
        return Err(undo_replace(fs, plan, &new, &old, &moved, e));
    }
    let entries = x.entries;
    Ok(Stats {
        entries,
        files: x.files,
        bytes: x.bytes,
        carried: moved.len() as u64,
    })
}

/// The restored folder's own mode and mtime: the archive's `./` entry, else the old folder's
/// mode, else 0755.
fn root_meta(x: &Extracted, current: Option<&Metadata>) -> (u32, Option<Timestamp>) {
    match (x.root, current) {
        (Some(root), _) => (root.mode, Some(root.mtime)),
        (None, Some(meta)) => (meta.mode & 0o1777, None),
        (None, None) => (0o755, None),
    }
}

/// Gives the unpacked folders their modes and mtimes, deepest first. The top folder keeps 0700
/// when its own mode would stop the swap (renaming a folder needs write access to it).
fn finish_dirs(
    fs: &impl FileSystem,
    new: &str,
    x: &Extracted,
    root: (u32, Option<Timestamp>),
) -> Result<(), Error> {
    for (rel, meta) in deepest_first(&x.dirs) {
        let path = join(new, rel);
        match meta {
            Some(meta) => {
                fs.set_mode(&path, meta.mode)?;
                fs.set_mtime(&path, meta.mtime)?;
            }
            None => fs.set_mode(&path, 0o755)?,
        }
    }
    if root.0 & 0o300 == 0o300 {
        fs.set_mode(new, root.0)?;
    }
    if let Some(mtime) = root.1 {
        fs.set_mtime(new, mtime)?;
    }
    Ok(())
}

/// Puts the old folder back after the new one could not take its place.
fn put_back(fs: &impl FileSystem, target: &str, had_old: bool, old: &str, error: Error) -> Failure {
    if !had_old {
        return error.into();
    }
    match fs.rename(old, target) {
        Ok(()) => Failure {
            error: Error::new(
                error.kind(),
                format!("{error}; the previous folder was put back, nothing changed"),
            ),
            keep_staging: false,
        },
        Err(again) => Failure {
            error: Error::new(
                error.kind(),
                format!(
                    "{error}; putting the previous folder back failed too ({again}): it is at \
                     {old}, move it to {target} by hand"
                ),
            ),
            keep_staging: true,
        },
    }
}

/// Undoes a swap whose carry step failed: carried entries go back to the old tree, the new tree
/// back to staging, the old tree back to the target.
fn undo_replace(
    fs: &impl FileSystem,
    plan: &Plan,
    new: &str,
    old: &str,
    moved: &[String],
    error: Error,
) -> Failure {
    let target = &plan.target;
    let mut stuck = Vec::new();
    for rel in moved.iter().rev() {
        if let Err(e) = fs.rename(&join(target, rel), &join(old, rel)) {
            stuck.push(format!("{rel} ({e})"));
        }
    }
    if !stuck.is_empty() {
        return Failure {
            error: Error::new(
                error.kind(),
                format!(
                    "{error}; undoing it failed: {} stayed in the restored folder {target}; the \
                     previous folder is at {old}: fix by hand",
                    stuck.join(", ")
                ),
            ),
            keep_staging: true,
        };
    }
    if let Err(e) = fs.rename(target, new) {
        return Failure {
            error: Error::new(
                error.kind(),
                format!(
                    "{error}; undoing it failed ({e}): {target} holds the restored folder, the \
                     previous one is at {old}"
                ),
            ),
            keep_staging: true,
        };
    }
    put_back(fs, target, true, old, error)
}

/// Entries of the old folder to move into the new tree, and the folders to create for them.
#[derive(Debug, Default)]
struct CarryPlan {
    /// Relative paths, sorted.
    items: Vec<String>,
    /// Folders the archive lacks on the way to an item, with the old folder's mode and mtime.
    create: BTreeMap<String, DirMeta>,
}

/// Walks the current target for entries matching `carry` that the archive does not hold.
/// Runs before the swap, while the customer still has the old folder in place.
fn plan_carry(
    fs: &impl FileSystem,
    ctx: &Context,
    carry: &GlobSet,
    target: &str,
    new: &str,
    x: &Extracted,
) -> Result<CarryPlan, Error> {
    let mut plan = CarryPlan::default();
    let mut stack = vec![String::new()];
    while let Some(dir) = stack.pop() {
        if ctx.is_cancelled() {
            return Err(Error::cancelled());
        }
        for entry in fs.list_dir(&join(target, &dir))? {
            let rel = join(&dir, &entry.name);
            if !carry.is_match(&rel) {
                if entry.metadata.is_dir() {
                    stack.push(rel);
                }
                continue;
            }
            if let Some(link) = parents(&rel).find(|p| x.symlinks.contains_key(*p)) {
                return Err(Error::permission_denied(format!(
                    "carry: {rel} of the current folder cannot go into the restored one: `{link}` \
                     is a symlink in the archive and nothing is written through symlinks; drop \
                     the pattern from carry or restore another backup"
                )));
            }
            // Folders on the way: in the archive, or missing (created from the old folder's
            // mode and mtime); a file of the archive in the way stops the restore.
            let mut missing = false;
            for p in parents(&rel) {
                if !missing {
                    if x.dirs.contains_key(p) {
                        continue;
                    }
                    if fs.stat_opt(&join(new, p))?.is_some() {
                        return Err(Error::io(format!(
                            "carry: {rel} of the current folder cannot go into the restored \
                             one: the archive has a file at `{p}`; drop the pattern from carry"
                        )));
                    }
                    missing = true;
                }
                if !plan.create.contains_key(p) {
                    plan.create.insert(p.to_string(), old_dir(fs, target, p)?);
                }
            }
            // The archive's own copy wins.
            let in_archive = !missing
                && (x.dirs.contains_key(&rel)
                    || x.symlinks.contains_key(&rel)
                    || fs.stat_opt(&join(new, &rel))?.is_some());
            if !in_archive {
                plan.items.push(rel);
            }
        }
    }
    plan.items.sort_unstable();
    // Folders created only for items that turned out to be in the archive are not needed.
    let needed: BTreeSet<&str> = plan.items.iter().flat_map(|rel| parents(rel)).collect();
    plan.create.retain(|p, _| needed.contains(p.as_str()));
    Ok(plan)
}

fn old_dir(fs: &impl FileSystem, target: &str, rel: &str) -> Result<DirMeta, Error> {
    let meta = fs.stat(&join(target, rel))?;
    Ok(DirMeta {
        mode: meta.mode & 0o1777,
        mtime: meta.mtime,
    })
}

/// Moves the carried entries from the old tree (now in staging) into the restored target,
/// creating missing folders, then gives every folder touched its final mode and mtime back.
/// `moved` lists what was moved, for an undo.
fn carry_in(
    fs: &impl FileSystem,
    ctx: &Context,
    plan: &Plan,
    carry: &CarryPlan,
    x: &Extracted,
    root: (u32, Option<Timestamp>),
    moved: &mut Vec<String>,
) -> Result<(), Error> {
    let (target, old) = (plan.target.as_str(), join(&plan.staging, "old"));
    let old = old.as_str();
    if carry.items.is_empty() {
        if root.0 & 0o300 != 0o300 {
            fs.set_mode(target, root.0)?;
        }
        return Ok(());
    }
    // Every folder a move or a mkdir changes, with the mode and mtime it must end with.
    let mut touched: BTreeMap<String, (u32, Option<Timestamp>)> = BTreeMap::new();
    touched.insert(String::new(), root);
    for rel in &carry.items {
        for p in parents(rel) {
            let last = match (carry.create.get(p), x.dirs.get(p)) {
                (Some(meta), _) => (meta.mode, Some(meta.mtime)),
                (None, Some(Some(meta))) => (meta.mode, Some(meta.mtime)),
                (None, _) => (0o755, None),
            };
            touched.insert(p.to_string(), last);
        }
    }
    // Open up folders whose final mode keeps their owner from adding entries.
    for (rel, (mode, _)) in &touched {
        if mode & 0o300 != 0o300 && !carry.create.contains_key(rel) {
            fs.set_mode(&join(target, rel), 0o700)?;
        }
    }
    for rel in carry.create.keys() {
        let path = join(target, rel);
        std::fs::create_dir(&path).with_context(|| format!("carry: creating {path}"))?;
        fs.set_mode(&path, 0o700)?;
    }
    for rel in &carry.items {
        fs.rename(&join(old, rel), &join(target, rel))
            .map_err(|e| e.context(format!("carry: moving {rel} into the restored folder")))?;
        moved.push(rel.clone());
    }
    let mut order: Vec<(&String, &(u32, Option<Timestamp>))> = touched.iter().collect();
    order.sort_by_key(|(rel, _)| std::cmp::Reverse(depth(rel)));
    for (rel, (mode, mtime)) in order {
        let path = join(target, rel);
        // Cosmetic from here on: the entries are in place.
        let done = fs
            .set_mode(&path, *mode)
            .and_then(|()| mtime.map_or(Ok(()), |t| fs.set_mtime(&path, t)));
        if let Err(e) = done {
            ctx.warn(format!(
                "carry: restoring the mode and mtime of {path}: {e}"
            ));
        }
    }
    Ok(())
}

/// Overlay mode: unpack, then move each file over its place under the target. Replaced files go
/// to `<staging>/old` until the end, so a failure can put them back.
fn overlay(fs: &impl FileSystem, ctx: &Context, plan: &Plan) -> Result<Stats, Failure> {
    let new = join(&plan.staging, "new");
    let old = join(&plan.staging, "old");
    let target = &plan.target;
    let label = label(target);
    let x = extract(fs, ctx, &job(plan, &new, &label, true))?;
    for link in x.symlinks.keys() {
        ctx.warn(format!(
            "skipping the symlink {link}: overlay puts back files only"
        ));
    }

    // Check every destination before moving anything.
    let mut known: BTreeMap<String, bool> = BTreeMap::new(); // folder → existed before
    let mut create: Vec<String> = Vec::new();
    let mut moves: Vec<(&str, bool)> = Vec::new(); // (file, replaces one)
    for rel in &x.file_list {
        let dest = join(target, rel);
        if is_within(&plan.staging, &dest) {
            return Err(Error::permission_denied(format!(
                "archive {} was rejected and nothing was restored: entry `{rel}` would land in \
                 the staging folder {}",
                plan.archive, plan.staging
            ))
            .into());
        }
        let mut all_exist = true;
        for p in parents(rel) {
            if let Some(existed) = known.get(p) {
                all_exist &= *existed;
                continue;
            }
            let path = join(target, p);
            let existed = if !all_exist {
                false
            } else {
                match fs.stat_opt(&path)? {
                    None => false,
                    Some(meta) if meta.is_dir() => true,
                    Some(meta) if meta.is_symlink() => {
                        return Err(Error::permission_denied(format!(
                            "{path} is a symlink and overlay never writes through symlinks, so \
                             {rel} cannot be restored; nothing was changed"
                        ))
                        .into());
                    }
                    Some(_) => {
                        return Err(Error::io(format!(
                            "{path} is a file, but the archive has {rel} below it; nothing was \
                             changed"
                        ))
                        .into());
                    }
                }
            };
            if !existed {
                create.push(p.to_string());
            }
            all_exist &= existed;
            known.insert(p.to_string(), existed);
        }
        let replaces = all_exist
            && match fs.stat_opt(&dest)? {
                None => false,
                Some(meta) if meta.is_dir() => {
                    return Err(Error::io(format!(
                        "{dest} is a folder, but the archive has a file there; nothing was changed"
                    ))
                    .into());
                }
                Some(_) => true,
            };
        moves.push((rel, replaces));
    }
    if ctx.is_cancelled() {
        return Err(Error::cancelled().into());
    }
    ctx.progress(
        EXTRACT_SHARE + 1.0,
        format!("restoring {label}: moving files into place"),
    );

    journal::write(
        fs,
        &plan.staging,
        &Journal::Overlay {
            target: target.clone(),
            moves: moves
                .iter()
                .map(|&(rel, replaces)| Move {
                    rel: rel.to_string(),
                    replaces,
                })
                .collect(),
            created: create.clone(),
            at: journal::now(),
        },
    )?;
    let mut created: Vec<&str> = Vec::new();
    let mut done: Vec<(&str, bool)> = Vec::new();
    let applied = (|| -> Result<(), Error> {
        for p in &create {
            let path = join(target, p);
            std::fs::create_dir(&path).with_context(|| format!("creating {path}"))?;
            created.push(p);
            fs.set_mode(&path, 0o700)?;
        }
        for &(rel, replaces) in &moves {
            let dest = join(target, rel);
            if replaces {
                let backup = join(&old, rel);
                std::fs::create_dir_all(join(&old, parent(rel)))
                    .with_context(|| format!("creating a folder for {backup}"))?;
                fs.rename(&dest, &backup)
                    .map_err(|e| e.context(format!("moving {dest} aside")))?;
            }
            if let Err(e) = fs.rename(&join(&new, rel), &dest) {
                if replaces && fs.rename(&join(&old, rel), &dest).is_err() {
                    // Counted as done so the undo below retries putting it back.
                    done.push((rel, true));
                }
                return Err(e.context(format!("moving {rel} into {target}")));
            }
            done.push((rel, replaces));
        }
        Ok(())
    })();
    if let Err(error) = applied {
        return Err(undo_overlay(fs, target, &old, &done, &created, error));
    }
    // Created folders get the archive's mode and mtime once their files are in.
    for p in created.iter().rev() {
        let path = join(target, p);
        let meta = x.dirs.get(*p).copied().flatten();
        let finished = fs
            .set_mode(&path, meta.map_or(0o755, |m| m.mode))
            .and_then(|()| meta.map_or(Ok(()), |m| fs.set_mtime(&path, m.mtime)));
        if let Err(e) = finished {
            ctx.warn(format!("setting the mode and mtime of {path}: {e}"));
        }
    }
    Ok(Stats {
        entries: x.entries,
        files: x.files,
        bytes: x.bytes,
        carried: 0,
    })
}

/// Puts replaced files back and removes the files and folders an overlay added.
fn undo_overlay(
    fs: &impl FileSystem,
    target: &str,
    old: &str,
    done: &[(&str, bool)],
    created: &[&str],
    error: Error,
) -> Failure {
    let mut stuck = Vec::new();
    for &(rel, replaced) in done.iter().rev() {
        let dest = join(target, rel);
        let undone = if replaced {
            fs.rename(&join(old, rel), &dest)
        } else {
            std::fs::remove_file(&dest).with_context(|| format!("removing {dest}"))
        };
        if let Err(e) = undone {
            stuck.push(format!("{rel} ({e})"));
        }
    }
    for p in created.iter().rev() {
        // Only empty: anything else in it was not ours.
        let _ = std::fs::remove_dir(join(target, p));
    }
    if stuck.is_empty() {
        return Failure {
            error: Error::new(
                error.kind(),
                format!("{error}; the files moved so far were put back, nothing changed"),
            ),
            keep_staging: false,
        };
    }
    Failure {
        error: Error::new(
            error.kind(),
            format!(
                "{error}; putting back {} failed: the previous files are in {old}, fix by hand",
                stuck.join(", ")
            ),
        ),
        keep_staging: true,
    }
}

/// Unpacking the plan's archive into `new`.
fn job<'a>(plan: &'a Plan, new: &'a str, label: &'a str, collect_files: bool) -> Job<'a> {
    Job {
        archive: &plan.archive,
        dest: new,
        limits: plan.limits,
        wording: &WORDING,
        label,
        collect_files,
        progress: 0.0..EXTRACT_SHARE,
    }
}

/// The target's folder name, for messages.
fn label(target: &str) -> String {
    match target.rsplit('/').next() {
        Some(name) if !name.is_empty() => name.to_string(),
        _ => target.to_string(),
    }
}
