//! `verify` step plugin: checks a backup folder against its `backup.json`. Every listed artifact
//! must exist as a regular file (not a symlink) with the listed size and SHA-256. Any difference
//! fails the step with an `io` error naming each bad file and what differs; a mismatch is never
//! just logged.
//!
//! Config (see [`Config`]): `backup` (guest path of the backup folder, e.g. `/backup`).
//! Outputs: `files` (artifacts checked) and `bytes` (their total size).
//!
//! The checks run over the [`Probe`] trait and plain `std::fs` reads, so they are unit-tested
//! natively against a corrupted fixture.

use std::io::Read as _;

use qodify_plugin_sdk::fs::{self, FileKind};
use qodify_plugin_sdk::prelude::*;
use sha2::{Digest, Sha256};

/// The `formatVersion` of `backup.json` this plugin understands.
pub const FORMAT_VERSION: u64 = 1;
/// Read size: WASI moves file data in 64 KiB pieces, fewer, bigger calls are faster.
const BUF_BYTES: usize = 1 << 20;
/// Progress is reported at most once per this many bytes.
const PROGRESS_EVERY: u64 = 16 << 20;

/// The step's config.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Guest path of the backup folder holding `backup.json`.
    pub backup: String,
}

/// The parts of `backup.json` this step checks.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Must be [`FORMAT_VERSION`].
    #[serde(default)]
    pub format_version: Option<u64>,
    /// The backup id, for messages.
    #[serde(default)]
    pub id: Option<String>,
    /// The files to check.
    pub artifacts: Vec<ListedFile>,
}

/// One artifact as `backup.json` lists it.
#[derive(Debug, Deserialize, PartialEq, Eq)]
pub struct ListedFile {
    /// Its label.
    #[serde(default)]
    pub name: String,
    /// Path relative to the backup folder.
    pub file: String,
    /// Size in bytes.
    pub size: u64,
    /// Lowercase hex SHA-256.
    pub sha256: String,
}

impl Manifest {
    /// Parses `backup.json` and checks its format version.
    pub fn parse(text: &str) -> Result<Manifest, Error> {
        let manifest: Manifest = serde_json::from_str(text).map_err(|e| {
            Error::io(format!(
                "backup.json is not a valid manifest ({e}); the backup is damaged or unfinished"
            ))
        })?;
        match manifest.format_version {
            Some(FORMAT_VERSION) => Ok(manifest),
            Some(v) => Err(Error::io(format!(
                "backup.json has formatVersion {v}, this verify step understands {FORMAT_VERSION}; \
                 update the verify plugin"
            ))),
            None => Err(Error::io(format!(
                "backup.json has no formatVersion (written before format {FORMAT_VERSION}); it \
                 cannot be verified, take a new backup"
            ))),
        }
    }
}

/// What a file turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    /// Its kind, without following a symlink.
    pub kind: FileKind,
    /// Its size.
    pub size: u64,
}

/// Metadata lookups: the host's `files` interface in the plugin, `std::fs` in tests.
pub trait Probe {
    /// What `path` is, without following a final symlink; `None` when it does not exist.
    fn stat(&self, path: &str) -> Result<Option<Found>, Error>;
}

/// Progress and cancellation.
pub trait Hooks {
    /// Reports progress.
    fn progress(&mut self, percent: f32, message: &str);
    /// True once the run was cancelled.
    fn cancelled(&mut self) -> bool;
}

/// Why one listed file does not match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// `file` is absolute, climbs with `..` or is otherwise not a plain relative path.
    BadPath,
    /// The listed sha256 is not 64 hex digits.
    BadChecksum,
    /// No such file.
    Missing,
    /// It exists but is not a regular file.
    NotAFile(FileKind),
    /// Sizes differ.
    Size {
        /// From `backup.json`.
        listed: u64,
        /// On disk.
        actual: u64,
    },
    /// Checksums differ.
    Sha256 {
        /// From `backup.json`.
        listed: String,
        /// Of the file's content.
        actual: String,
    },
    /// It could not be read.
    Unreadable(String),
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::BadPath => f.write_str("not a plain path inside the backup folder"),
            Problem::BadChecksum => f.write_str("its listed sha256 is not 64 hex digits"),
            Problem::Missing => f.write_str("missing"),
            Problem::NotAFile(kind) => write!(f, "not a regular file but {}", kind_name(*kind)),
            Problem::Size { listed, actual } => {
                write!(f, "size is {actual} bytes, backup.json says {listed}")
            }
            Problem::Sha256 { listed, actual } => {
                write!(f, "sha256 is {actual}, backup.json says {listed}")
            }
            Problem::Unreadable(e) => write!(f, "unreadable: {e}"),
        }
    }
}

fn kind_name(kind: FileKind) -> &'static str {
    match kind {
        FileKind::File => "a file",
        FileKind::Directory => "a folder",
        FileKind::Symlink => "a symlink",
        FileKind::Other => "a device, FIFO or socket",
    }
}

/// Totals of a backup that verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    /// Files checked.
    pub files: usize,
    /// Their total size.
    pub bytes: u64,
}

/// Checks every artifact of `manifest` in folder `dir`. `Ok` only when all match; otherwise an
/// `io` error listing every bad file.
pub fn verify(
    dir: &str,
    manifest: &Manifest,
    probe: &impl Probe,
    hooks: &mut impl Hooks,
) -> Result<Verified, Error> {
    let dir = dir.trim_end_matches('/');
    let total: u64 = manifest.artifacts.iter().map(|a| a.size).sum();
    let mut done = 0u64;
    let mut last_report = 0u64;
    let mut problems: Vec<(&str, Problem)> = Vec::new();
    for listed in &manifest.artifacts {
        if hooks.cancelled() {
            return Err(Error::cancelled());
        }
        let path = format!("{dir}/{}", listed.file);
        let result = check_file(&path, listed, probe, &mut |n| {
            done += n;
            if done - last_report >= PROGRESS_EVERY {
                last_report = done;
                hooks.progress(
                    percent(done, total),
                    &format!("verifying {}: {} of {}", listed.file, mib(done), mib(total)),
                );
            }
            !hooks.cancelled()
        });
        match result {
            Ok(None) => {}
            Ok(Some(problem)) => problems.push((&listed.file, problem)),
            Err(e) => return Err(e),
        }
    }
    if problems.is_empty() {
        hooks.progress(
            100.0,
            &format!("verified {} files", manifest.artifacts.len()),
        );
        return Ok(Verified {
            files: manifest.artifacts.len(),
            bytes: total,
        });
    }
    let id = manifest.id.as_deref().unwrap_or(dir);
    let list: Vec<String> = problems.iter().map(|(f, p)| format!("{f}: {p}")).collect();
    Err(Error::io(format!(
        "backup {id} does not verify ({} of {} files bad): {}; the backup is damaged: do not \
         restore from it, take a new backup",
        problems.len(),
        manifest.artifacts.len(),
        list.join("; ")
    )))
}

/// Checks one file; `Ok(None)` when it matches. `on_read` gets each chunk's length and returns
/// false to stop (cancellation).
fn check_file(
    path: &str,
    listed: &ListedFile,
    probe: &impl Probe,
    on_read: &mut impl FnMut(u64) -> bool,
) -> Result<Option<Problem>, Error> {
    if !is_plain_relative(&listed.file) {
        return Ok(Some(Problem::BadPath));
    }
    let listed_sha = listed.sha256.to_ascii_lowercase();
    if listed_sha.len() != 64 || !listed_sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(Some(Problem::BadChecksum));
    }
    let found = match probe.stat(path)? {
        None => return Ok(Some(Problem::Missing)),
        Some(found) => found,
    };
    if found.kind != FileKind::File {
        return Ok(Some(Problem::NotAFile(found.kind)));
    }
    if found.size != listed.size {
        return Ok(Some(Problem::Size {
            listed: listed.size,
            actual: found.size,
        }));
    }
    let (size, sha256) = match hash_file(path, on_read) {
        Ok(done) => done,
        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => return Err(Error::cancelled()),
        Err(e) => return Ok(Some(Problem::Unreadable(e.to_string()))),
    };
    // The file may have changed between stat and read.
    if size != listed.size {
        return Ok(Some(Problem::Size {
            listed: listed.size,
            actual: size,
        }));
    }
    if sha256 != listed_sha {
        return Ok(Some(Problem::Sha256 {
            listed: listed_sha,
            actual: sha256,
        }));
    }
    Ok(None)
}

/// Size and lowercase hex SHA-256 of a file, read once in 1 MiB pieces. `on_read` returning
/// false stops with `Interrupted`.
pub fn hash_file(
    path: &str,
    on_read: &mut impl FnMut(u64) -> bool,
) -> std::io::Result<(u64, String)> {
    let mut file = std::fs::File::open(path)?;
    let mut buf = vec![0u8; BUF_BYTES];
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
        if !on_read(n as u64) {
            return Err(std::io::Error::from(std::io::ErrorKind::Interrupted));
        }
    }
    Ok((size, hex::encode(hasher.finalize())))
}

/// True for `a/b.tar.gz`-like paths: relative, no `.`/`..`/empty components, no backslashes.
fn is_plain_relative(file: &str) -> bool {
    !file.is_empty()
        && !file.contains('\\')
        && file
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
}

fn percent(done: u64, total: u64) -> f32 {
    if total == 0 {
        100.0
    } else {
        (done as f64 * 100.0 / total as f64) as f32
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / 1048576.0)
}

struct Verify;

impl Step for Verify {
    type Config = Config;

    fn run(ctx: &Context, config: Config) -> Result<Output, Error> {
        if !config.backup.starts_with('/') {
            return Err(Error::invalid_config(format!(
                "backup `{}` must be an absolute guest path, e.g. /backup",
                config.backup
            )));
        }
        let dir = config.backup.trim_end_matches('/');
        let manifest_path = format!("{dir}/backup.json");
        let text = match std::fs::read_to_string(&manifest_path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::not_found(format!(
                    "no backup.json in {dir}: it is not a finished backup; pick another backup"
                )));
            }
            Err(e) => return Err(Error::from(e).context(format!("reading {manifest_path}"))),
        };
        let manifest = Manifest::parse(&text)?;
        ctx.progress(0.0, format!("verifying {} files", manifest.artifacts.len()));
        let verified = verify(dir, &manifest, &HostProbe, &mut CtxHooks(ctx))?;
        ctx.info(format!(
            "backup {} verified: {} files, {}, sizes and sha256 match backup.json",
            manifest.id.as_deref().unwrap_or(dir),
            verified.files,
            mib(verified.bytes)
        ));
        Ok(Output::new()
            .value("files", verified.files)
            .value("bytes", verified.bytes))
    }
}

export_step!(Verify);

struct HostProbe;

impl Probe for HostProbe {
    fn stat(&self, path: &str) -> Result<Option<Found>, Error> {
        match fs::stat(path) {
            Ok(m) => Ok(Some(Found {
                kind: m.kind,
                size: m.size,
            })),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

struct CtxHooks<'a>(&'a Context);

impl Hooks for CtxHooks<'_> {
    fn progress(&mut self, percent: f32, message: &str) {
        self.0.progress(percent, message);
    }

    fn cancelled(&mut self) -> bool {
        self.0.is_cancelled()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    struct NativeProbe;

    impl Probe for NativeProbe {
        fn stat(&self, path: &str) -> Result<Option<Found>, Error> {
            match std::fs::symlink_metadata(path) {
                Ok(m) => Ok(Some(Found {
                    kind: if m.file_type().is_symlink() {
                        FileKind::Symlink
                    } else if m.is_dir() {
                        FileKind::Directory
                    } else if m.is_file() {
                        FileKind::File
                    } else {
                        FileKind::Other
                    },
                    size: m.len(),
                })),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e.into()),
            }
        }
    }

    #[derive(Default)]
    struct Quiet {
        reports: usize,
    }

    impl Hooks for Quiet {
        fn progress(&mut self, _percent: f32, _message: &str) {
            self.reports += 1;
        }
        fn cancelled(&mut self) -> bool {
            false
        }
    }

    fn sha(data: &[u8]) -> String {
        hex::encode(Sha256::digest(data))
    }

    /// A backup folder with two artifacts and a matching manifest.
    fn fixture(dir: &Path) -> Manifest {
        let files: [(&str, &str, Vec<u8>); 2] = [
            (
                "db",
                "db.dump",
                (0..3_000_000u32).map(|i| i as u8).collect(),
            ),
            ("backend", "sub/backend.tar.gz", b"tar bytes".to_vec()),
        ];
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        let artifacts = files
            .iter()
            .map(|(name, file, data)| {
                std::fs::write(dir.join(file), data).unwrap();
                serde_json::json!({"name": name, "file": file, "size": data.len(), "sha256": sha(data)})
            })
            .collect::<Vec<_>>();
        let text = serde_json::json!({
            "formatVersion": 1, "id": "20250101-000000", "customer": {"domain": "x", "id": "1"},
            "artifacts": artifacts, "stats": {"totalBytes": 3_000_009}
        })
        .to_string();
        Manifest::parse(&text).unwrap()
    }

    fn run(dir: &Path, manifest: &Manifest) -> Result<Verified, Error> {
        verify(
            dir.to_str().unwrap(),
            manifest,
            &NativeProbe,
            &mut Quiet::default(),
        )
    }

    #[test]
    fn an_intact_backup_verifies() {
        let tmp = tempfile::tempdir().unwrap();
        let m = fixture(tmp.path());
        assert_eq!(
            run(tmp.path(), &m).unwrap(),
            Verified {
                files: 2,
                bytes: 3_000_009
            }
        );
    }

    #[test]
    fn a_flipped_byte_fails_naming_the_file_and_both_checksums() {
        let tmp = tempfile::tempdir().unwrap();
        let m = fixture(tmp.path());
        let path = tmp.path().join("db.dump");
        let mut data = std::fs::read(&path).unwrap();
        data[2_500_000] ^= 1;
        std::fs::write(&path, &data).unwrap();
        let err = run(tmp.path(), &m).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Io);
        let msg = err.message();
        assert!(
            msg.contains("backup 20250101-000000 does not verify (1 of 2"),
            "{msg}"
        );
        assert!(
            msg.contains(&format!(
                "db.dump: sha256 is {}, backup.json says {}",
                sha(&data),
                m.artifacts[0].sha256
            )),
            "{msg}"
        );
        assert!(!msg.contains("backend.tar.gz"), "{msg}");
    }

    #[test]
    fn every_kind_of_damage_fails_and_all_are_listed() {
        let tmp = tempfile::tempdir().unwrap();
        let mut m = fixture(tmp.path());
        std::fs::write(tmp.path().join("sub/backend.tar.gz"), b"tar byte").unwrap();
        std::fs::rename(tmp.path().join("db.dump"), tmp.path().join("real.dump")).unwrap();
        std::os::unix::fs::symlink("real.dump", tmp.path().join("db.dump")).unwrap();
        let sha = m.artifacts[1].sha256.clone();
        for (file, sha256) in [
            ("gone.tar.gz", sha.clone()),
            ("../escape", sha.clone()),
            ("/abs", sha.clone()),
            ("sub", sha.clone()),
            ("sub/backend.tar.gz", "xyz".to_string()),
        ] {
            m.artifacts.push(ListedFile {
                name: "x".into(),
                file: file.into(),
                size: 9,
                sha256,
            });
        }
        let msg = run(tmp.path(), &m).unwrap_err().message().to_string();
        for want in [
            "(7 of 7 files bad)",
            "db.dump: not a regular file but a symlink",
            "sub/backend.tar.gz: size is 8 bytes, backup.json says 9",
            "gone.tar.gz: missing",
            "../escape: not a plain path",
            "/abs: not a plain path",
            "sub: not a regular file but a folder",
            "sub/backend.tar.gz: its listed sha256 is not 64 hex digits",
        ] {
            assert!(msg.contains(want), "missing `{want}` in {msg}");
        }
    }

    #[test]
    fn uppercase_listed_checksums_match() {
        let tmp = tempfile::tempdir().unwrap();
        let mut m = fixture(tmp.path());
        m.artifacts[1].sha256 = m.artifacts[1].sha256.to_uppercase();
        assert!(run(tmp.path(), &m).is_ok());
    }

    #[test]
    fn format_version_is_checked() {
        let arts = r#""artifacts":[]"#;
        assert!(Manifest::parse(&format!(r#"{{"formatVersion":1,{arts}}}"#)).is_ok());
        let err = Manifest::parse(&format!(r#"{{"formatVersion":2,{arts}}}"#)).unwrap_err();
        assert!(err.message().contains("formatVersion 2"), "{err}");
        let err = Manifest::parse(&format!("{{{arts}}}")).unwrap_err();
        assert!(err.message().contains("no formatVersion"), "{err}");
        let err = Manifest::parse(r#"{"formatVersion":1}"#).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Io);
        assert!(err.message().contains("artifacts"), "{err}");
    }

    #[test]
    fn hashing_reads_big_files_in_pieces() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("f");
        let data = vec![7u8; 2 * BUF_BYTES + 5];
        std::fs::write(&path, &data).unwrap();
        let mut calls = 0;
        let (size, digest) = hash_file(path.to_str().unwrap(), &mut |_| {
            calls += 1;
            true
        })
        .unwrap();
        assert_eq!((size, digest), (data.len() as u64, sha(&data)));
        assert!(calls >= 3);
        let err = hash_file(path.to_str().unwrap(), &mut |_| false).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::Interrupted);
    }
}
