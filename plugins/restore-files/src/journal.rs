//! The swap journal. Before a restore step changes anything in the live tree it writes
//! `<staging>/journal.json`: what it is about to move (the target, whether an old folder was
//! there, the entries it will carry over, or each file an overlay moves). With it, what a run
//! did can be undone later from the disk alone: by the run's own `on_failure` step
//! (`action = "undo"`), or by the host's recovery after a crash, which runs the same step. Every
//! undo move checks what is on disk first, so undoing twice, or undoing a step that stopped
//! half-way, puts back exactly what was moved. `action = "commit"` removes the staging folders
//! (and the old trees they keep) once the whole run succeeded.
//!
//! Staging folders are found by name (`<root>/<prefix>*`) and undone newest journal first, so
//! the uploads restored into `backend/uploads` are put back before the backend folder itself.

use std::io::Write as _;

use qodify_plugin_sdk::fs::FileSystem;
use qodify_plugin_sdk::{Error, ResultExt};
use serde::{Deserialize, Serialize};
use tar_extract::paths::join;

/// The journal's file name inside a staging folder.
pub const JOURNAL: &str = "journal.json";
/// Largest journal read (an overlay lists every file it moves).
const MAX_JOURNAL_BYTES: u64 = 64 << 20;

/// What one staging folder's step changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "lowercase")]
pub enum Journal {
    /// `target` renamed to `<staging>/old` (when `had_old`), `<staging>/new` renamed to
    /// `target`, then each `carry` entry moved from the old tree into the new one.
    Replace {
        /// Guest path of the restored folder.
        target: String,
        /// Whether there was a folder to move aside.
        had_old: bool,
        /// Entries (relative to the target) moved from the old tree into the restored one.
        carry: Vec<String>,
        /// When the step wrote the journal (ns since the epoch): undo goes newest first.
        at: u64,
    },
    /// Each `moves` file moved from `<staging>/new/<rel>` to `<target>/<rel>`; a file it
    /// replaced went to `<staging>/old/<rel>` first. `created` folders were made for them.
    Overlay {
        /// Guest path the archive's paths are relative to.
        target: String,
        /// The files, in the order they are moved.
        moves: Vec<Move>,
        /// Folders created under the target, parents first.
        created: Vec<String>,
        /// When the step wrote the journal (ns since the epoch).
        at: u64,
    },
    /// A journal another step wrote (e.g. `db-restore`'s): not ours to undo; its folder stays
    /// until that step's own undo has removed the journal.
    #[serde(other)]
    Other,
}

/// One file an overlay moves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Move {
    /// Path relative to the target.
    pub rel: String,
    /// Whether a file was there before (it went to `<staging>/old/<rel>`).
    pub replaces: bool,
}

impl Journal {
    fn at(&self) -> u64 {
        match self {
            Journal::Replace { at, .. } | Journal::Overlay { at, .. } => *at,
            Journal::Other => u64::MAX,
        }
    }
}

/// Now, for [`Journal`]'s `at`.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Writes the journal into `staging` durably (temporary file, fsync, rename, folder fsync)
/// before the step moves anything in the live tree.
pub fn write(fs: &impl FileSystem, staging: &str, journal: &Journal) -> Result<(), Error> {
    let tmp = join(staging, "journal.json.tmp");
    let path = join(staging, JOURNAL);
    let bytes =
        serde_json::to_vec(journal).map_err(|e| Error::io(format!("encoding the journal: {e}")))?;
    let mut file = std::fs::File::create(&tmp).with_context(|| format!("writing {tmp}"))?;
    file.write_all(&bytes)
        .with_context(|| format!("writing {tmp}"))?;
    file.sync_all().with_context(|| format!("syncing {tmp}"))?;
    drop(file);
    std::fs::rename(&tmp, &path).with_context(|| format!("renaming {tmp} to {path}"))?;
    fs.sync_dir(staging)
}

/// Reads a staging folder's journal; `None` when it has none (the step never got to change the
/// live tree).
pub fn read(fs: &impl FileSystem, staging: &str) -> Result<Option<Journal>, Error> {
    let path = join(staging, JOURNAL);
    let Some(meta) = fs.stat_opt(&path)? else {
        return Ok(None);
    };
    if !meta.is_file() || meta.size > MAX_JOURNAL_BYTES {
        return Err(Error::invalid_config(format!(
            "{path} is not a journal this plugin wrote (not a regular file, or over 64 MiB); \
             inspect {staging} by hand"
        )));
    }
    let bytes = std::fs::read(&path).with_context(|| format!("reading {path}"))?;
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        Error::invalid_config(format!(
            "{path} is not a journal this plugin wrote ({e}); inspect {staging} by hand"
        ))
    })
}

/// What [`undo`] or [`commit`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Staging folders whose changes were put back (undo) or whose old trees were removed
    /// (commit).
    pub folders: Vec<String>,
    /// Folders left in place because another step's journal is in them (undo).
    pub pending: Vec<String>,
}

/// The staging folders of `root` whose names start with `prefix`, with their journals, newest
/// journal first.
fn stagings(
    fs: &impl FileSystem,
    root: &str,
    prefix: &str,
) -> Result<Vec<(String, Option<Journal>)>, Error> {
    let mut found = Vec::new();
    for entry in fs.list_dir(root)? {
        if !entry.name.starts_with(prefix) || !entry.metadata.is_dir() {
            continue;
        }
        let staging = join(root, &entry.name);
        let journal = read(fs, &staging)?;
        found.push((staging, journal));
    }
    found.sort_by_key(|(name, j)| {
        (
            std::cmp::Reverse(j.as_ref().map_or(0, Journal::at)),
            name.clone(),
        )
    });
    Ok(found)
}

/// Puts back what the run's restore steps changed, newest first, and removes their staging
/// folders. A folder holding another step's journal (the database's) is left for that step's
/// own undo and listed in `pending`; once that undo removed its journal, the next `undo`
/// removes the folder.
pub fn undo(fs: &impl FileSystem, root: &str, prefix: &str) -> Result<Outcome, Error> {
    let mut outcome = Outcome::default();
    let mut problems = Vec::new();
    for (staging, journal) in stagings(fs, root, prefix)? {
        let undone = match &journal {
            None => Ok(()),
            Some(Journal::Replace {
                target,
                had_old,
                carry,
                ..
            }) => undo_replace(fs, &staging, target, *had_old, carry),
            Some(Journal::Overlay {
                target,
                moves,
                created,
                ..
            }) => undo_overlay(fs, &staging, target, moves, created),
            Some(Journal::Other) => {
                outcome.pending.push(staging);
                continue;
            }
        };
        match undone.and_then(|()| fs.remove_tree(&staging)) {
            Ok(()) => {
                if journal.is_some() {
                    outcome.folders.push(staging);
                }
            }
            Err(e) => problems.push(format!("{staging}: {e}")),
        }
    }
    if problems.is_empty() {
        Ok(outcome)
    } else {
        Err(Error::io(format!(
            "putting the restore back failed: {}; what was not put back is in those staging \
             folders, move it by hand",
            problems.join("; ")
        )))
    }
}

/// Removes the run's staging folders (and the old trees they keep) after the run succeeded.
pub fn commit(fs: &impl FileSystem, root: &str, prefix: &str) -> Result<Outcome, Error> {
    let mut outcome = Outcome::default();
    for (staging, _) in stagings(fs, root, prefix)? {
        fs.remove_tree(&staging).map_err(|e| {
            e.context(format!(
                "the restore succeeded, but its staging folder {staging} could not be removed; \
                 delete it by hand"
            ))
        })?;
        outcome.folders.push(staging);
    }
    Ok(outcome)
}

fn exists(fs: &impl FileSystem, path: &str) -> Result<bool, Error> {
    Ok(fs.stat_opt(path)?.is_some())
}

/// Undoes a replace: carried entries back into the old tree, the restored tree aside, the old
/// tree back in place. Each move checks the disk first, so a step that stopped anywhere is
/// undone exactly.
fn undo_replace(
    fs: &impl FileSystem,
    staging: &str,
    target: &str,
    had_old: bool,
    carry: &[String],
) -> Result<(), Error> {
    let old = join(staging, "old");
    let old_there = exists(fs, &old)?;
    if old_there {
        for rel in carry.iter().rev() {
            let (from, to) = (join(target, rel), join(&old, rel));
            if exists(fs, &from)? && !exists(fs, &to)? {
                fs.rename(&from, &to).map_err(|e| {
                    e.context(format!("moving {rel} back into the previous folder"))
                })?;
            }
        }
    }
    let restored = join(staging, "restored");
    let target_there = exists(fs, target)?;
    if had_old && !old_there {
        // The first rename never happened: the live folder was not touched.
        return if target_there {
            Ok(())
        } else {
            Err(Error::not_found(format!(
                "{target} is missing and {old} holds no previous folder"
            )))
        };
    }
    // Without a previous folder, the restored one goes only if it is really ours: the
    // second rename happened, so `new` is gone.
    if target_there && (had_old || !exists(fs, &join(staging, "new"))?) {
        fs.rename(target, &restored)
            .map_err(|e| e.context(format!("moving the restored {target} aside")))?;
    }
    if had_old {
        fs.rename(&old, target)
            .map_err(|e| e.context(format!("putting the previous {target} back")))?;
    }
    Ok(())
}

/// Undoes an overlay, last move first: replaced files back from `old`, added files removed,
/// created folders removed when empty.
fn undo_overlay(
    fs: &impl FileSystem,
    staging: &str,
    target: &str,
    moves: &[Move],
    created: &[String],
) -> Result<(), Error> {
    let (old, new) = (join(staging, "old"), join(staging, "new"));
    for m in moves.iter().rev() {
        let dest = join(target, &m.rel);
        if m.replaces {
            let backup = join(&old, &m.rel);
            if exists(fs, &backup)? {
                fs.rename(&backup, &dest)
                    .map_err(|e| e.context(format!("putting the previous {dest} back")))?;
            }
        } else if !exists(fs, &join(&new, &m.rel))? && exists(fs, &dest)? {
            std::fs::remove_file(&dest).with_context(|| format!("removing the restored {dest}"))?;
        }
    }
    for p in created.iter().rev() {
        // Only when empty: anything else in it was not ours.
        let _ = std::fs::remove_dir(join(target, p));
    }
    Ok(())
}
