//! The source's fingerprint: a sha256 over a canonical listing of every entry the archive would
//! hold (path, type, size, mode, owner, mtime, ctime, device and inode, symlink target) and of
//! every setting that shapes the archive (excludes after `keep`, includes, symlink policy,
//! level, prefix, name, the plugin's version). Two walks with the same fingerprint make the same
//! archive, so an earlier backup's archive of it can be reused (restic and borg skip unchanged
//! files by the same attributes). No content is read: the ctime, which nobody can set, changes
//! with every write, chmod, chown and rename.

use qodify_plugin_sdk::HashingWriter;
use qodify_plugin_sdk::fs::{FileKind, Timestamp};

use crate::walk::Walk;

/// Bump when the listing or the archive format changes: every archive is then made anew once.
const SCHEME: &str = "qodify-archive-fingerprint-1";

/// An entry changed this recently may change again within the file system's timestamp
/// granularity without its ctime moving: such a source gets no fingerprint (git's "racily
/// clean" rule).
pub const RACY_SECONDS: i64 = 1;

/// The settings that shape an archive besides its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings<'a> {
    /// Exclude patterns in effect (those `keep` dropped are not among them).
    pub exclude: &'a [String],
    /// Include patterns, when given.
    pub include: Option<&'a [String]>,
    /// Whether symlinks are followed.
    pub follow_symlinks: bool,
    /// Deflate level.
    pub level: u32,
    /// Folder every entry goes under.
    pub prefix: Option<&'a str>,
    /// The artifact's name.
    pub name: &'a str,
}

/// Why a source has no fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoFingerprint {
    /// An entry's identity is unknown (a followed symlink, or it changed between two listings).
    Unidentified(String),
    /// An entry changed within [`RACY_SECONDS`] of `now`.
    Racy(String),
}

impl std::fmt::Display for NoFingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NoFingerprint::Unidentified(name) => {
                write!(f, "{name} has no change time and inode to compare")
            }
            NoFingerprint::Racy(name) => write!(f, "{name} changed moments ago"),
        }
    }
}

/// The fingerprint (lowercase hex sha256) of `walk` archived with `settings`; `now` is when the
/// walk started.
pub fn fingerprint(
    walk: &Walk,
    settings: &Settings<'_>,
    now: Timestamp,
) -> Result<String, NoFingerprint> {
    let mut h = HashingWriter::new(std::io::sink());
    let mut put = |field: &str| {
        // Length-prefixed fields: no name or pattern can imitate a separator.
        use std::io::Write as _;
        let _ = write!(h, "{}:{field};", field.len());
    };
    put(SCHEME);
    put(env!("CARGO_PKG_VERSION"));
    put(settings.name);
    put(&settings.level.to_string());
    put(settings.prefix.unwrap_or("\0none"));
    put(if settings.follow_symlinks {
        "follow"
    } else {
        "store-links"
    });
    put(&format!("exclude {}", settings.exclude.len()));
    for p in settings.exclude {
        put(p);
    }
    match settings.include {
        Some(patterns) => {
            put(&format!("include {}", patterns.len()));
            for p in patterns {
                put(p);
            }
        }
        None => put("include all"),
    }
    // The source folder itself is an entry only under a prefix.
    if settings.prefix.is_some() {
        let root = &walk.root;
        put(&format!(
            "root {:o} {} {} {}",
            root.mode,
            root.uid,
            root.gid,
            stamp(root.mtime)
        ));
    }
    let racy_after = Timestamp {
        seconds: now.seconds - RACY_SECONDS,
        nanos: now.nanos,
    };
    put(&format!("entries {}", walk.entries.len()));
    for e in &walk.entries {
        let id = e
            .identity
            .ok_or_else(|| NoFingerprint::Unidentified(e.name.clone()))?;
        if id.ctime >= racy_after || e.meta.mtime >= racy_after {
            return Err(NoFingerprint::Racy(e.name.clone()));
        }
        let kind = match e.meta.kind {
            FileKind::File => "f",
            FileKind::Directory => "d",
            FileKind::Symlink => "l",
            FileKind::Other => "o",
        };
        put(&e.name);
        put(&format!(
            "{kind} {} {:o} {} {} {} {} {} {}",
            e.meta.size,
            e.meta.mode,
            e.meta.uid,
            e.meta.gid,
            stamp(e.meta.mtime),
            stamp(id.ctime),
            id.device,
            id.inode
        ));
        put(e.meta.symlink_target.as_deref().unwrap_or(""));
    }
    Ok(h.finish().2)
}

fn stamp(t: Timestamp) -> String {
    format!("{}.{:09}", t.seconds, t.nanos)
}
