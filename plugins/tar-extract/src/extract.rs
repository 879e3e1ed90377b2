//! Unpacks a `.tar.gz` into a fresh, empty folder, checking every entry before anything of it
//! is written and refusing the whole archive on the first entry that breaks a rule.
//!
//! The tar crate's `unpack_in` is not used: it skips `..` entries and still succeeds, and writes
//! symlinks with any target. Entries are read raw and GNU long names, long link names and pax
//! records are applied here, so each of them is size-capped before it is buffered (the crate's
//! `entries()` reads them whole, whatever size their header claims).
//!
//! Rules (each breach rejects the archive, naming the entry and the rule): no empty names, NUL
//! bytes, non-UTF-8 names, absolute paths or `..` components; no hard links, devices, FIFOs,
//! sparse or unknown entry types; no data on anything but a file; symlinks with an empty target
//! or a relative target that leads out of the tree (alone or through other symlinks of the
//! archive) are refused, absolute targets are kept as they are (a symlink is data until
//! followed); nothing is written below a symlink of the archive; no path twice (folders aside);
//! sizes and counts within the limits.
//!
//! It serves restores and release installs alike, so its messages take the caller's words
//! ([`Wording`]) instead of naming a job of their own.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::ops::Range;
use std::rc::Rc;

use flate2::read::MultiGzDecoder;
use qodify_plugin_sdk::fs::{FileSystem, Timestamp};
use qodify_plugin_sdk::{Context, Error, ResultExt};
use tar::{Archive, EntryType, PaxExtensions};

use crate::paths::{depth, join, parent, parents};

/// Reads and writes go in pieces this big.
pub const IO_BUF: usize = 1 << 20;
/// Longest GNU long name / long link record accepted.
const MAX_NAME_RECORD: u64 = 64 * 1024;
/// Longest pax record accepted.
const MAX_PAX_RECORD: u64 = 1 << 20;
/// Longest path accepted (Linux `PATH_MAX` minus the terminating NUL).
const MAX_PATH_BYTES: usize = 4095;
/// Bytes allowed after the end-of-archive marker (GNU tar pads to 10 KiB records).
const MAX_TRAILING_BYTES: u64 = 64 << 20;
/// Symlinks resolved one after another before a chain counts as a loop (Linux uses 40 too).
const MAX_LINK_HOPS: usize = 40;
/// Report progress at least this many archive bytes apart (or 1% if that is more).
const PROGRESS_STEP: u64 = 8 << 20;
const MIB: f64 = 1024.0 * 1024.0;

/// The caller's words in the extractor's messages, so each plugin speaks of its own job: a
/// restore says `restoring` and `nothing was restored`, a release install `unpacking` and
/// `nothing was unpacked`. Each field completes a fixed sentence; the examples are
/// restore-files' words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wording {
    /// Starts each progress line: `restoring` (`restoring backend: 1.0 MiB of 4.0 MiB of the
    /// archive read`).
    pub doing: &'static str,
    /// Ends `nothing was …` in errors: `restored`.
    pub done: &'static str,
    /// The destination as the rules name it: `the restored folder`.
    pub folder: &'static str,
    /// Who never creates hard links, devices or FIFOs: `restores`.
    pub jobs: &'static str,
    /// The next step after an archive that breaks a rule: `restore from another backup or
    /// inspect this archive by hand`.
    pub if_rejected: &'static str,
    /// The next step after a damaged archive: `restore from another backup`.
    pub if_damaged: &'static str,
}

impl Wording {
    fn rejected(&self, archive: &str, entry: &str, rule: &str) -> Error {
        Error::permission_denied(format!(
            "archive {archive} was rejected and nothing was {}: entry `{entry}` {rule}; {}",
            self.done, self.if_rejected
        ))
    }

    fn damaged(&self, archive: &str, e: &io::Error) -> Error {
        Error::io(format!(
            "archive {archive} is damaged and nothing was {} ({e}); {}",
            self.done, self.if_damaged
        ))
    }

    fn progress(&self, label: &str, read: u64, total: u64) -> String {
        format!(
            "{} {label}: {:.1} MiB of {:.1} MiB of the archive read",
            self.doing,
            read.min(total) as f64 / MIB,
            total as f64 / MIB
        )
    }
}

/// Caps on what one archive may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Entries (files, folders, symlinks).
    pub max_entries: u64,
    /// Sum of file sizes.
    pub max_total_bytes: u64,
    /// Size of one file.
    pub max_entry_bytes: u64,
}

/// Mode and mtime a folder gets once everything below it is in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirMeta {
    /// Permission bits.
    pub mode: u32,
    /// Modification time.
    pub mtime: Timestamp,
}

/// What was unpacked.
#[derive(Debug, Default)]
pub struct Extracted {
    /// Entries unpacked (files, folders, symlinks).
    pub entries: u64,
    /// Regular files unpacked.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Mode and mtime of the archive's entry for the folder itself (`./`), if it had one.
    pub root: Option<DirMeta>,
    /// Every folder of the tree by relative path, with the archive's mode and mtime, or `None`
    /// when the archive had no entry for it (created on the way to a deeper entry).
    pub dirs: BTreeMap<String, Option<DirMeta>>,
    /// Symlinks of the archive: relative path → target.
    pub symlinks: BTreeMap<String, String>,
    /// Relative paths of regular files, in archive order (only when asked for).
    pub file_list: Vec<String>,
}

/// One unpack: which archive, into which folder, within which limits, and how its messages and
/// progress speak of it.
#[derive(Debug, Clone)]
pub struct Job<'a> {
    /// Path of the `.tar.gz`.
    pub archive: &'a str,
    /// The existing, empty folder to unpack into.
    pub dest: &'a str,
    /// Caps on the archive.
    pub limits: Limits,
    /// The caller's words.
    pub wording: &'a Wording,
    /// Names the archive in progress lines (`backend`, `v1.1.0 (v1.1.0.tar.gz)`).
    pub label: &'a str,
    /// Also list the regular files ([`Extracted::file_list`]).
    pub collect_files: bool,
    /// The stretch of the step's progress the unpack fills, e.g. `0.0..95.0` when it is most of
    /// the step.
    pub progress: Range<f32>,
}

/// Unpacks `job.archive` into the existing, empty folder `job.dest` through `fs`, reporting
/// progress and checking for cancellation through `ctx`. On error `dest` may hold part of the
/// archive: the caller deletes it.
pub fn extract(fs: &impl FileSystem, ctx: &Context, job: &Job<'_>) -> Result<Extracted, Error> {
    let Job {
        archive,
        dest,
        limits,
        wording,
        label,
        collect_files,
        ..
    } = *job;
    let file = File::open(archive).with_context(|| format!("opening the archive {archive}"))?;
    let total = file
        .metadata()
        .with_context(|| format!("reading the size of {archive}"))?
        .len();
    let read = Rc::new(Cell::new(0u64));
    let counting = Counting {
        inner: file,
        count: Rc::clone(&read),
    };
    let mut tar = Archive::new(MultiGzDecoder::new(BufReader::with_capacity(
        IO_BUF, counting,
    )));
    let mut x = Extractor {
        fs,
        ctx,
        archive,
        dest,
        limits,
        wording,
        collect_files,
        buf: vec![0; IO_BUF],
        out: Extracted::default(),
        records: 0,
        progress: Progress::new(total, read, wording, label, job.progress.clone()),
    };
    ctx.progress(job.progress.start, x.progress.message());
    {
        let entries = tar.entries().map_err(|e| x.damaged(e))?.raw(true);
        let mut pending = Pending::default();
        for entry in entries {
            if ctx.is_cancelled() {
                return Err(Error::cancelled());
            }
            let entry = entry.map_err(|e| x.damaged(e))?;
            x.record(entry, &mut pending)?;
            x.tick();
        }
        if !pending.is_empty() {
            return Err(x.damaged(io::Error::other(
                "it ends with a long-name or pax record that describes no entry",
            )));
        }
    }
    // Read to the end of the gzip stream so its CRC and length are checked: an archive cut
    // at a tar block boundary would otherwise pass as complete.
    let mut rest = tar.into_inner().take(MAX_TRAILING_BYTES + 1);
    let trailing = io::copy(&mut rest, &mut io::sink()).map_err(|e| x.damaged(e))?;
    if trailing > MAX_TRAILING_BYTES {
        return Err(x.damaged(io::Error::other(
            "more than 64 MiB of data follow the end-of-archive marker",
        )));
    }
    x.check_symlinks()?;
    ctx.progress(job.progress.end, x.progress.message());
    Ok(x.out)
}

/// Extension records waiting for the entry they describe.
#[derive(Default)]
struct Pending {
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    pax: Option<Vec<u8>>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.long_name.is_none() && self.long_link.is_none() && self.pax.is_none()
    }
}

/// What a pax record says about the next entry (the keys the extractor uses).
#[derive(Default)]
struct Pax {
    path: Option<Vec<u8>>,
    linkpath: Option<Vec<u8>>,
    size: Option<u64>,
    mtime: Option<Timestamp>,
}

enum Kind {
    File,
    Dir,
    Symlink,
}

struct Extractor<'a, F: FileSystem> {
    fs: &'a F,
    ctx: &'a Context,
    archive: &'a str,
    dest: &'a str,
    limits: Limits,
    wording: &'a Wording,
    collect_files: bool,
    buf: Vec<u8>,
    out: Extracted,
    /// Raw records seen, extension records included.
    records: u64,
    progress: Progress,
}

impl<F: FileSystem> Extractor<'_, F> {
    /// Handles one raw tar record: an extension record is kept for the next entry, an entry is
    /// checked and written.
    fn record<R: Read>(
        &mut self,
        mut entry: tar::Entry<'_, R>,
        pending: &mut Pending,
    ) -> Result<(), Error> {
        self.records += 1;
        // Each entry may bring a long name, a long link and a pax record; global pax records
        // are rare. Anything beyond is a flood of records describing nothing.
        if self.records > self.limits.max_entries.saturating_mul(4).saturating_add(64) {
            return Err(self.reject(
                &lossy(&entry.header().path_bytes()),
                &format!(
                    "is past {} tar records, far more than max_entries ({}) needs",
                    self.records - 1,
                    self.limits.max_entries
                ),
            ));
        }
        let entry_type = entry.header().entry_type();
        let slot = match entry_type {
            EntryType::GNULongName => Some((&mut pending.long_name, MAX_NAME_RECORD, "long name")),
            EntryType::GNULongLink => Some((&mut pending.long_link, MAX_NAME_RECORD, "long link")),
            EntryType::XHeader => Some((&mut pending.pax, MAX_PAX_RECORD, "pax")),
            _ => None,
        };
        if let Some((slot, cap, what)) = slot {
            if slot.is_some() {
                return Err(self.damaged(io::Error::other(format!(
                    "two {what} records describe one entry"
                ))));
            }
            *slot = Some(self.read_record(&mut entry, cap, what)?);
            return Ok(());
        }
        if entry_type == EntryType::XGlobalHeader {
            // Defaults for every later entry (charset, comments); nothing the extractor uses.
            self.read_record(&mut entry, MAX_PAX_RECORD, "global pax")?;
            return Ok(());
        }

        let ext = std::mem::take(pending);
        let pax = match &ext.pax {
            Some(data) => parse_pax(data).map_err(|e| self.damaged(io::Error::other(e)))?,
            None => Pax::default(),
        };
        let header = entry.header();
        let raw_name: Vec<u8> = match (ext.long_name, &pax.path) {
            (Some(name), _) => trim_nuls(name),
            (None, Some(path)) => path.clone(),
            (None, None) => header.path_bytes().into_owned(),
        };
        let shown = lossy(&raw_name);
        self.out.entries += 1;
        if self.out.entries > self.limits.max_entries {
            return Err(self.reject(
                &shown,
                &format!(
                    "is past the limit of {} entries (max_entries)",
                    self.limits.max_entries
                ),
            ));
        }
        let (rel, trailing_slash) = entry_path(&raw_name, self.wording.folder)
            .map_err(|rule| self.reject(&shown, &rule))?;

        let size = header.entry_size().map_err(|e| self.damaged(e))?;
        if let Some(pax_size) = pax.size
            && pax_size != size
        {
            // Parsers that disagree on an entry's size see different archives.
            return Err(self.reject(
                &shown,
                &format!("has a pax size ({pax_size}) that differs from its header ({size})"),
            ));
        }
        let kind = match entry_type {
            EntryType::Regular | EntryType::Continuous if trailing_slash && size == 0 => Kind::Dir,
            EntryType::Regular | EntryType::Continuous => Kind::File,
            EntryType::Directory => Kind::Dir,
            EntryType::Symlink => Kind::Symlink,
            EntryType::Link => {
                let jobs = self.wording.jobs;
                return Err(self.reject(
                    &shown,
                    &format!("is a hard link; {jobs} never create hard links"),
                ));
            }
            EntryType::Char | EntryType::Block => {
                let jobs = self.wording.jobs;
                return Err(self.reject(
                    &shown,
                    &format!("is a device node; {jobs} never create devices"),
                ));
            }
            EntryType::Fifo => {
                let jobs = self.wording.jobs;
                return Err(self.reject(&shown, &format!("is a FIFO; {jobs} never create FIFOs")));
            }
            EntryType::GNUSparse => {
                return Err(self.reject(&shown, "is a GNU sparse file, which is not supported"));
            }
            other => {
                return Err(self.reject(
                    &shown,
                    &format!(
                        "has the unsupported entry type `{}`",
                        (other.as_byte() as char).escape_default()
                    ),
                ));
            }
        };
        if !matches!(kind, Kind::File) && size > 0 {
            return Err(self.reject(
                &shown,
                &format!("is not a file but carries {size} bytes of data"),
            ));
        }
        // A symlink's mode means nothing on Linux; some writers leave the field empty.
        let mode = match (header.mode(), &kind) {
            (Ok(mode), _) => mode,
            (Err(_), Kind::Symlink) => 0o777,
            (Err(e), _) => return Err(self.damaged(e)),
        };
        let mtime = match pax.mtime {
            Some(t) => t,
            None => Timestamp {
                seconds: i64::try_from(header.mtime().map_err(|e| self.damaged(e))?)
                    .unwrap_or(i64::MAX),
                nanos: 0,
            },
        };

        if rel.is_empty() {
            if !matches!(kind, Kind::Dir) {
                return Err(self.reject(
                    &shown,
                    &format!("names {} itself but is not a folder", self.wording.folder),
                ));
            }
            self.out.root = Some(DirMeta {
                mode: mode & 0o1777,
                mtime,
            });
            return Ok(());
        }
        // Never write through a symlink the archive planted (GNU tar CVE-2025-45582).
        if let Some(link) = parents(&rel).find(|p| self.out.symlinks.contains_key(*p)) {
            return Err(self.reject(
                &shown,
                &format!(
                    "lies below `{link}`, a symlink from this archive; nothing is written \
                     through symlinks"
                ),
            ));
        }

        match kind {
            Kind::Dir => {
                let meta = DirMeta {
                    mode: mode & 0o1777,
                    mtime,
                };
                self.make_parents(&rel, &shown)?;
                if let Some(known) = self.out.dirs.get_mut(&rel) {
                    *known = Some(meta);
                    return Ok(());
                }
                self.make_dir(&rel, &shown)?;
                self.out.dirs.insert(rel, Some(meta));
            }
            Kind::File => {
                if size > self.limits.max_entry_bytes {
                    return Err(self.reject(
                        &shown,
                        &format!(
                            "is {size} bytes, past max_entry_bytes ({})",
                            self.limits.max_entry_bytes
                        ),
                    ));
                }
                let total = self.out.bytes.saturating_add(size);
                if total > self.limits.max_total_bytes {
                    return Err(self.reject(
                        &shown,
                        &format!(
                            "brings the files to {total} bytes, past max_total_bytes ({})",
                            self.limits.max_total_bytes
                        ),
                    ));
                }
                self.make_parents(&rel, &shown)?;
                self.write_file(&mut entry, &rel, &shown, size)?;
                let path = join(self.dest, &rel);
                // No setuid/setgid bits from an archive.
                self.fs.set_mode(&path, mode & 0o777)?;
                self.fs.set_mtime(&path, mtime)?;
                self.out.files += 1;
                self.out.bytes = total;
                if self.collect_files {
                    self.out.file_list.push(rel);
                }
            }
            Kind::Symlink => {
                let raw_target = match (ext.long_link, pax.linkpath) {
                    (Some(link), _) => trim_nuls(link),
                    (None, Some(link)) => link,
                    (None, None) => header
                        .link_name_bytes()
                        .map(|l| l.into_owned())
                        .unwrap_or_default(),
                };
                let target = link_target(&rel, &raw_target, self.wording.folder)
                    .map_err(|rule| self.reject(&shown, &format!("is a symlink {rule}")))?;
                self.make_parents(&rel, &shown)?;
                let path = join(self.dest, &rel);
                if std::fs::symlink_metadata(&path).is_ok() {
                    return Err(self.duplicate(&shown));
                }
                self.fs.symlink(&target, &path)?;
                self.fs.set_mtime(&path, mtime)?;
                self.out.symlinks.insert(rel, target);
            }
        }
        Ok(())
    }

    /// Creates the folders leading to `rel` that do not exist yet.
    fn make_parents(&mut self, rel: &str, shown: &str) -> Result<(), Error> {
        for dir in parents(rel) {
            if !self.out.dirs.contains_key(dir) {
                self.make_dir(dir, shown)?;
                self.out.dirs.insert(dir.to_string(), None);
            }
        }
        Ok(())
    }

    /// Creates one folder, private until the caller has finished the tree.
    fn make_dir(&self, rel: &str, shown: &str) -> Result<(), Error> {
        let path = join(self.dest, rel);
        match std::fs::create_dir(&path) {
            Ok(()) => self.fs.set_mode(&path, 0o700),
            // Not a folder we made: an earlier file or symlink of the archive.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(self.reject(
                shown,
                &format!("needs `{rel}` to be a folder, but an earlier entry is a file or symlink"),
            )),
            Err(e) => Err(Error::from(e).context(format!("creating {path}"))),
        }
    }

    fn write_file<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        rel: &str,
        shown: &str,
        size: u64,
    ) -> Result<(), Error> {
        let path = join(self.dest, rel);
        // `create_new` never follows a symlink and never reuses a path.
        let mut file = match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(self.duplicate(shown));
            }
            Err(e) => return Err(Error::from(e).context(format!("creating {path}"))),
        };
        let mut left = size;
        while left > 0 {
            let want = left.min(IO_BUF as u64) as usize;
            let n = read_full(entry, &mut self.buf[..want]).map_err(|e| self.damaged(e))?;
            if n == 0 {
                return Err(self.damaged(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("`{shown}` is cut short"),
                )));
            }
            file.write_all(&self.buf[..n])
                .with_context(|| format!("writing {path}"))?;
            left -= n as u64;
            self.tick();
            if self.ctx.is_cancelled() {
                return Err(Error::cancelled());
            }
        }
        Ok(())
    }

    fn read_record<R: Read>(
        &self,
        entry: &mut tar::Entry<'_, R>,
        cap: u64,
        what: &str,
    ) -> Result<Vec<u8>, Error> {
        let size = entry.size();
        if size > cap {
            return Err(self.reject(
                &lossy(&entry.header().path_bytes()),
                &format!("is a {what} record of {size} bytes, past the limit of {cap}"),
            ));
        }
        let mut data = Vec::with_capacity(size as usize);
        entry.read_to_end(&mut data).map_err(|e| self.damaged(e))?;
        Ok(data)
    }

    /// Resolves every relative symlink of the archive through the others: `a -> .` and
    /// `b -> a/..` each stay inside alone, but `b` leads out.
    fn check_symlinks(&self) -> Result<(), Error> {
        let links = &self.out.symlinks;
        for (link, target) in links {
            if target.starts_with('/') {
                continue;
            }
            let mut at: Vec<&str> = components(parent(link)).collect();
            let mut pending: Vec<&str> = components(target).collect();
            pending.reverse();
            let mut hops = 0;
            while let Some(part) = pending.pop() {
                if part == ".." {
                    if at.pop().is_none() {
                        return Err(self.reject(
                            link,
                            &format!(
                                "is a symlink to `{target}`, which leads out of {} through \
                                 other symlinks of the archive",
                                self.wording.folder
                            ),
                        ));
                    }
                    continue;
                }
                at.push(part);
                let Some(next) = links.get(&at.join("/")) else {
                    continue;
                };
                hops += 1;
                if hops > MAX_LINK_HOPS {
                    return Err(self.reject(
                        link,
                        &format!(
                            "is a symlink to `{target}` that never resolves (a loop or a chain \
                             of more than {MAX_LINK_HOPS} links)"
                        ),
                    ));
                }
                at.pop();
                if next.starts_with('/') {
                    // Continues outside like any absolute symlink: kept as data.
                    break;
                }
                let len = pending.len();
                pending.extend(components(next));
                pending[len..].reverse();
            }
        }
        Ok(())
    }

    fn tick(&mut self) {
        if let Some((percent, message)) = self.progress.due() {
            self.ctx.progress(percent, message);
        }
    }

    fn reject(&self, entry: &str, rule: &str) -> Error {
        self.wording.rejected(self.archive, entry, rule)
    }

    fn duplicate(&self, shown: &str) -> Error {
        self.reject(
            shown,
            "appears twice, or collides with an earlier file, folder or symlink of the same name",
        )
    }

    fn damaged(&self, e: io::Error) -> Error {
        // A read error of our own (cancellation) travels through `io::Error` intact.
        if let Some(inner) = e.get_ref().and_then(|i| i.downcast_ref::<Error>()) {
            return inner.clone();
        }
        self.wording.damaged(self.archive, &e)
    }
}

/// Checks an entry's raw name; returns the normalised relative path (no `.`, no doubled or
/// trailing slashes, `""` for the folder itself) and whether the name ended with `/`. `folder`
/// is how the rules name the destination ([`Wording::folder`]).
fn entry_path(raw: &[u8], folder: &str) -> Result<(String, bool), String> {
    if raw.is_empty() {
        return Err("has an empty name".into());
    }
    if raw.contains(&0) {
        return Err("has a NUL byte in its name".into());
    }
    if raw.len() > MAX_PATH_BYTES {
        return Err("has a name longer than 4095 bytes".into());
    }
    let name = std::str::from_utf8(raw).map_err(|_| "has a name that is not UTF-8")?;
    if name.starts_with('/') {
        return Err(format!(
            "has an absolute path; entries must be relative to {folder}"
        ));
    }
    let mut parts = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                return Err(format!("has a `..` component, which would leave {folder}"));
            }
            part => parts.push(part),
        }
    }
    Ok((parts.join("/"), name.ends_with('/')))
}

/// Checks a symlink's raw target; relative targets must stay inside the tree when resolved from
/// the link's folder. The error completes "is a symlink …"; `folder` names the destination.
fn link_target(rel: &str, raw: &[u8], folder: &str) -> Result<String, String> {
    if raw.is_empty() {
        return Err("with an empty target".into());
    }
    if raw.contains(&0) {
        return Err("whose target has a NUL byte".into());
    }
    let target = std::str::from_utf8(raw).map_err(|_| "whose target is not UTF-8".to_string())?;
    if target.starts_with('/') {
        return Ok(target.to_string());
    }
    let mut at = depth(parent(rel));
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." if at == 0 => {
                return Err(format!("to `{target}`, which leads out of {folder}"));
            }
            ".." => at -= 1,
            _ => at += 1,
        }
    }
    Ok(target.to_string())
}

/// Non-empty, non-`.` components of a `/`-separated path.
fn components(path: &str) -> impl DoubleEndedIterator<Item = &str> {
    path.split('/').filter(|p| !p.is_empty() && *p != ".")
}

fn parse_pax(data: &[u8]) -> Result<Pax, String> {
    let mut pax = Pax::default();
    for ext in PaxExtensions::new(data) {
        let ext = ext.map_err(|e| format!("pax record: {e}"))?;
        let value = ext.value_bytes();
        match ext.key_bytes() {
            b"path" => pax.path = Some(value.to_vec()),
            b"linkpath" => pax.linkpath = Some(value.to_vec()),
            b"size" => {
                let size = std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .ok_or("pax record: bad size")?;
                pax.size = Some(size);
            }
            b"mtime" => pax.mtime = Some(parse_pax_time(value).ok_or("pax record: bad mtime")?),
            _ => {}
        }
    }
    Ok(pax)
}

/// A pax time: `[-]seconds[.fraction]`.
fn parse_pax_time(value: &[u8]) -> Option<Timestamp> {
    let text = std::str::from_utf8(value).ok()?;
    let (negative, text) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let seconds: i64 = whole.parse().ok()?;
    let digits = &fraction[..fraction.len().min(9)];
    let nanos: u32 = if digits.is_empty() {
        0
    } else {
        digits.parse::<u32>().ok()? * 10u32.pow(9 - digits.len() as u32)
    };
    Some(if !negative {
        Timestamp { seconds, nanos }
    } else if nanos == 0 {
        Timestamp {
            seconds: -seconds,
            nanos: 0,
        }
    } else {
        Timestamp {
            seconds: -seconds - 1,
            nanos: 1_000_000_000 - nanos,
        }
    })
}

fn trim_nuls(mut name: Vec<u8>) -> Vec<u8> {
    while name.last() == Some(&0) {
        name.pop();
    }
    name
}

/// A name for messages: lossy UTF-8, control characters escaped, at most 200 characters.
fn lossy(raw: &[u8]) -> String {
    let text: String = String::from_utf8_lossy(raw)
        .chars()
        .flat_map(char::escape_debug)
        .collect();
    match text.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text,
    }
}

/// Reads until `buf` is full or the entry ends.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Counts the bytes read from the archive file, for progress.
struct Counting<R> {
    inner: R,
    count: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

/// Progress by bytes of the archive read, every 1% or 8 MiB, whichever is more.
struct Progress {
    read: Rc<Cell<u64>>,
    total: u64,
    step: u64,
    next: u64,
    wording: Wording,
    label: String,
    /// The stretch of the step's progress this unpack fills.
    span: Range<f32>,
}

impl Progress {
    fn new(
        total: u64,
        read: Rc<Cell<u64>>,
        wording: &Wording,
        label: &str,
        span: Range<f32>,
    ) -> Self {
        let step = (total / 100).max(PROGRESS_STEP);
        Progress {
            read,
            total,
            step,
            next: step,
            wording: *wording,
            label: label.to_string(),
            span,
        }
    }

    fn due(&mut self) -> Option<(f32, String)> {
        let done = self.read.get();
        if done < self.next {
            return None;
        }
        self.next = done + self.step;
        let share = if self.total == 0 {
            1.0
        } else {
            (done as f64 / self.total as f64).min(1.0)
        };
        let percent = self.span.start + share as f32 * (self.span.end - self.span.start);
        Some((percent, self.message()))
    }

    fn message(&self) -> String {
        self.wording
            .progress(&self.label, self.read.get(), self.total)
    }
}

/// Relative paths of the archive's folders, deepest first (so a parent's mtime is set after
/// everything inside it).
pub fn deepest_first(dirs: &BTreeMap<String, Option<DirMeta>>) -> Vec<(&str, Option<DirMeta>)> {
    let mut out: Vec<(&str, Option<DirMeta>)> = dirs
        .iter()
        .map(|(rel, meta)| (rel.as_str(), *meta))
        .collect();
    out.sort_by_key(|(rel, _)| std::cmp::Reverse(depth(rel)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Words no real caller uses, so a message that ignores them shows.
    const WORDS: Wording = Wording {
        doing: "fetching",
        done: "fetched",
        folder: "the fetch folder",
        jobs: "fetches",
        if_rejected: "ask for another archive",
        if_damaged: "fetch it again",
    };
    const F: &str = WORDS.folder;

    #[test]
    fn entry_paths_are_checked_and_normalised() {
        assert_eq!(entry_path(b"a/b", F).unwrap(), ("a/b".into(), false));
        assert_eq!(entry_path(b"./a//b/", F).unwrap(), ("a/b".into(), true));
        assert_eq!(entry_path(b"./", F).unwrap(), ("".into(), true));
        assert!(entry_path(b"", F).is_err());
        assert!(entry_path(b"../x", F).is_err());
        assert!(entry_path(b"a/../../x", F).is_err());
        assert!(entry_path(b"a/..", F).is_err());
        assert!(entry_path(b"/etc/passwd", F).is_err());
        assert!(entry_path(b"a\0b", F).is_err());
        assert!(entry_path(b"\xff", F).is_err());
        assert!(entry_path(&[b'a'; 5000], F).is_err());
        // A backslash is an ordinary character on Linux.
        assert!(entry_path(b"..\\x", F).is_ok());
    }

    #[test]
    fn relative_link_targets_stay_inside() {
        assert!(link_target("a", b"b", F).is_ok());
        assert!(link_target("a/b/l", b"../../x", F).is_ok());
        assert!(link_target("a/b/l", b"../../../x", F).is_err());
        assert!(link_target("l", b"..", F).is_err());
        assert!(link_target("a/l", b"x/../../..", F).is_err());
        assert!(link_target("l", b"/etc/passwd", F).is_ok());
        assert!(link_target("l", b"", F).is_err());
        assert!(link_target("l", b"a\0", F).is_err());
    }

    #[test]
    fn pax_times() {
        let t = |s: &str| parse_pax_time(s.as_bytes());
        assert_eq!(
            t("1700000000.5"),
            Some(Timestamp {
                seconds: 1700000000,
                nanos: 500_000_000
            })
        );
        assert_eq!(
            t("-1.25"),
            Some(Timestamp {
                seconds: -2,
                nanos: 750_000_000
            })
        );
        assert_eq!(t("12").map(|t| t.seconds), Some(12));
        assert_eq!(t("x"), None);
        assert_eq!(t("1.x"), None);
    }

    #[test]
    fn names_in_messages_are_escaped_and_short() {
        assert_eq!(lossy(b"a\nb"), "a\\nb");
        assert!(lossy(&[b'x'; 500]).chars().count() <= 201);
    }

    #[test]
    fn messages_speak_the_callers_words() {
        let rejected = WORDS.rejected("/in/a.tar.gz", "x", "has an empty name");
        assert_eq!(
            rejected.kind(),
            qodify_plugin_sdk::ErrorKind::PermissionDenied
        );
        assert_eq!(
            rejected.message(),
            "archive /in/a.tar.gz was rejected and nothing was fetched: entry `x` has an empty \
             name; ask for another archive"
        );
        let damaged = WORDS.damaged("/in/a.tar.gz", &io::Error::other("bad gzip header"));
        assert_eq!(damaged.kind(), qodify_plugin_sdk::ErrorKind::Io);
        assert_eq!(
            damaged.message(),
            "archive /in/a.tar.gz is damaged and nothing was fetched (bad gzip header); fetch it \
             again"
        );
        assert_eq!(
            WORDS.progress("app", 3 << 20, 2 << 20),
            "fetching app: 2.0 MiB of 2.0 MiB of the archive read"
        );
        assert_eq!(
            entry_path(b"../x", WORDS.folder).unwrap_err(),
            "has a `..` component, which would leave the fetch folder"
        );
        assert_eq!(
            link_target("l", b"..", WORDS.folder).unwrap_err(),
            "to `..`, which leads out of the fetch folder"
        );
    }

    /// A gzipped tar of a folder `app/` (mode 0750) holding `app/big` (`size` bytes, 0640) and
    /// the symlink `app/link -> big`.
    #[cfg(unix)]
    fn archive(path: &std::path::Path, size: usize) {
        let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
            File::create(path).unwrap(),
            flate2::Compression::fast(),
        ));
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(EntryType::Directory);
        h.set_mode(0o750);
        h.set_mtime(1_600_000_000);
        h.set_size(0);
        tar.append_data(&mut h, "app/", io::empty()).unwrap();
        // Bytes that do not compress, so the archive is as big as the file.
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        let data: Vec<u8> = (0..size)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o640);
        h.set_mtime(1_600_000_001);
        h.set_size(size as u64);
        tar.append_data(&mut h, "app/big", &data[..]).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(EntryType::Symlink);
        h.set_mtime(1_600_000_002);
        h.set_size(0);
        tar.append_link(&mut h, "app/link", "big").unwrap();
        tar.into_inner().unwrap().finish().unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn an_unpack_fills_its_stretch_of_the_progress_and_keeps_modes_mtimes_and_links() {
        use qodify_plugin_sdk::fs::StdFs;
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("a.tar.gz");
        archive(&src, 40 << 20);
        let dest = tmp.path().join("out");
        std::fs::create_dir(&dest).unwrap();
        let ctx = Context::builder().build();
        let fs = StdFs::new();
        let job = Job {
            archive: src.to_str().unwrap(),
            dest: dest.to_str().unwrap(),
            limits: Limits {
                max_entries: 10,
                max_total_bytes: 1 << 30,
                max_entry_bytes: 1 << 30,
            },
            wording: &WORDS,
            label: "app",
            collect_files: true,
            progress: 30.0..90.0,
        };
        let x = extract(&fs, &ctx, &job).unwrap();
        assert_eq!((x.entries, x.files, x.bytes), (3, 1, 40 << 20));
        assert_eq!(x.file_list, ["app/big"]);

        let reported = ctx.reported();
        assert!(reported.len() >= 3, "{reported:?}");
        assert_eq!(reported.first().unwrap().0, 30.0);
        assert_eq!(reported.last().unwrap().0, 90.0);
        assert!(
            reported.windows(2).all(|w| w[0].0 <= w[1].0),
            "{reported:?}"
        );
        assert!(
            reported
                .iter()
                .all(|(_, m)| m.starts_with("fetching app: ")),
            "{reported:?}"
        );

        let d = dest.to_str().unwrap();
        let big = fs.stat(&format!("{d}/app/big")).unwrap();
        assert_eq!((big.mode, big.mtime.seconds), (0o640, 1_600_000_001));
        let link = fs.stat(&format!("{d}/app/link")).unwrap();
        assert_eq!(link.symlink_target.as_deref(), Some("big"));
        assert_eq!(link.mtime.seconds, 1_600_000_002);
        // Folders stay private until the caller finishes the tree.
        assert_eq!(fs.stat(&format!("{d}/app")).unwrap().mode, 0o700);
        assert_eq!(x.dirs["app"].unwrap().mode, 0o750);

        // Cancelled: stops before the first entry.
        let again = tmp.path().join("again");
        std::fs::create_dir(&again).unwrap();
        ctx.cancel();
        let job = Job {
            dest: again.to_str().unwrap(),
            ..job
        };
        let err = extract(&fs, &ctx, &job).unwrap_err();
        assert_eq!(err.kind(), qodify_plugin_sdk::ErrorKind::Cancelled);
        assert!(fs.list_dir(again.to_str().unwrap()).unwrap().is_empty());
    }
}
