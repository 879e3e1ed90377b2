//! Reusing an earlier backup's archive of an unchanged source: the newest complete backup (by
//! [`backup_list`]'s rules, the ones retention counts) whose `backup.json` lists an artifact of
//! the same name made from a source of the same fingerprint lends its file, hard-linked into the
//! new backup. A link shares the file: deleting either backup leaves the other whole.

use backup_list::{Listed, Reusable};
use qodify_plugin_sdk::Error;
use qodify_plugin_sdk::fs::FileSystem;

/// Looks in `backups` (the customer's backups folder; read access is enough) for an archive named
/// `name` of a source with `fingerprint` and links it as `output`. `Ok(None)` when no complete
/// backup has one; an error when one was found but could not be linked (another file system, a
/// host that refuses): the caller then writes the archive itself.
pub fn reuse(
    tree: &impl FileSystem,
    backups: &str,
    name: &str,
    fingerprint: &str,
    output: &str,
) -> Result<Option<Reusable>, Error> {
    let dir = backups.trim_end_matches('/');
    let mut listing = Vec::new();
    for entry in tree.list_dir(dir)? {
        let is_dir = entry.metadata.is_dir();
        let manifest = if backup_list::may_be_backup(&entry.name, is_dir) {
            read_manifest(
                tree,
                &format!("{dir}/{}/{}", entry.name, backup_rules::MANIFEST),
            )
        } else {
            None
        };
        listing.push(Listed {
            name: entry.name,
            is_dir,
            manifest,
        });
    }
    let (complete, _) = backup_list::scan_in(dir, listing);
    let Some(found) = backup_list::reusable(&complete, name, fingerprint) else {
        return Ok(None);
    };
    let source = format!("{dir}/{}/{}", found.id, found.file);
    if tree.stat_opt(output)?.is_some() {
        // A recovered run's leftover: the link takes its place.
        tree.remove_file(output)?;
    }
    tree.hard_link(&source, output)?;
    Ok(Some(found))
}

/// `backup.json` at `path` when it is a plain file small enough to be one.
fn read_manifest(tree: &impl FileSystem, path: &str) -> Option<String> {
    let meta = tree.stat(path).ok()?;
    if !meta.is_file() || meta.size > backup_rules::MAX_MANIFEST_BYTES {
        return None;
    }
    std::fs::read_to_string(path).ok()
}
