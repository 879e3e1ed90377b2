//! Native tests: hand-made archives (raw tar headers, so the crate's own path checks cannot
//! stop the tricks) restored through the same code the plugin runs, with the SDK's `StdFs`
//! standing in for the host's `files` interface (renames can be made to fail) and a native
//! context keeping the step's warnings.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fs as stdfs;
use std::io::Write as _;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;

use flate2::Compression;
use flate2::write::GzEncoder;
use qodify_plugin_sdk::fs::StdFs;
use qodify_plugin_sdk::{Context, Error, ErrorKind, LogLevel};
use tar::{EntryType, Header};

use super::*;
use crate::restore::restore;

// ---------------------------------------------------------------------------------------------
// The disk in the host's place

/// The disk, where the first rename whose destination ends with `suffix` fails.
fn failing_rename_to(suffix: &str) -> StdFs {
    let suffix = suffix.to_string();
    let failed = Cell::new(false);
    StdFs::failing_renames(move |_, to| {
        let fail = !failed.get() && to.ends_with(&suffix);
        failed.set(failed.get() || fail);
        fail
    })
}

fn ctx() -> Context {
    Context::builder().build()
}

// ---------------------------------------------------------------------------------------------
// Hand-made archives

const MTIME: u64 = 1_700_000_000;

/// A tar stream written header by header, with raw names.
#[derive(Default)]
struct Tar {
    out: Vec<u8>,
}

fn header(kind: EntryType, name: &[u8], size: u64, mode: u32, mtime: u64, link: &[u8]) -> Header {
    let mut h = Header::new_gnu();
    let n = name.len().min(100);
    h.as_old_mut().name[..n].copy_from_slice(&name[..n]);
    let l = link.len().min(100);
    h.as_old_mut().linkname[..l].copy_from_slice(&link[..l]);
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(1000);
    h.set_gid(1000);
    h.set_mtime(mtime);
    h.set_size(size);
    h.set_cksum();
    h
}

impl Tar {
    /// Appends one header and its data, padded to a block.
    fn push(&mut self, h: &Header, data: &[u8]) -> &mut Self {
        self.out.extend_from_slice(h.as_bytes());
        self.out.extend_from_slice(data);
        let rem = data.len() % 512;
        if rem != 0 {
            self.out.resize(self.out.len() + 512 - rem, 0);
        }
        self
    }

    /// A `././@LongLink` record carrying `value` for the next header.
    fn long(&mut self, kind: EntryType, value: &[u8]) -> &mut Self {
        let mut data = value.to_vec();
        data.push(0);
        let h = header(kind, b"././@LongLink", data.len() as u64, 0o644, 0, b"");
        self.push(&h, &data)
    }

    /// A pax record for the next header.
    fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        let mut data = Vec::new();
        for (key, value) in records {
            let rest = 3 + key.len() + value.len();
            let mut len = rest + 1;
            while len != rest + len.to_string().len() {
                len = rest + len.to_string().len();
            }
            data.extend_from_slice(format!("{len} {key}=").as_bytes());
            data.extend_from_slice(value);
            data.push(b'\n');
        }
        let h = header(
            EntryType::XHeader,
            b"PaxHeaders/x",
            data.len() as u64,
            0o644,
            0,
            b"",
        );
        self.push(&h, &data)
    }

    /// Any entry; names and link targets over 100 bytes get GNU long records.
    fn entry(
        &mut self,
        kind: EntryType,
        name: &[u8],
        data: &[u8],
        mode: u32,
        link: &[u8],
    ) -> &mut Self {
        if name.len() > 100 {
            self.long(EntryType::GNULongName, name);
        }
        if link.len() > 100 {
            self.long(EntryType::GNULongLink, link);
        }
        let h = header(kind, name, data.len() as u64, mode, MTIME, link);
        self.push(&h, data)
    }

    fn file(&mut self, name: &str, data: &[u8], mode: u32) -> &mut Self {
        self.entry(EntryType::Regular, name.as_bytes(), data, mode, b"")
    }

    fn dir(&mut self, name: &str, mode: u32) -> &mut Self {
        self.entry(
            EntryType::Directory,
            format!("{name}/").as_bytes(),
            b"",
            mode,
            b"",
        )
    }

    fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.entry(
            EntryType::Symlink,
            name.as_bytes(),
            b"",
            0o777,
            target.as_bytes(),
        )
    }

    /// The gzip'd archive with its end-of-archive blocks.
    fn gz(&self) -> Vec<u8> {
        let mut raw = self.out.clone();
        raw.extend_from_slice(&[0; 1024]);
        let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
        gz.write_all(&raw).unwrap();
        gz.finish().unwrap()
    }
}

// ---------------------------------------------------------------------------------------------
// A customer folder with canaries

struct Env {
    _tmp: tempfile::TempDir,
    root: String,
    customer: String,
    target: String,
    staging: String,
    archive: String,
}

fn write(path: &str, data: &[u8]) {
    stdfs::create_dir_all(Path::new(path).parent().unwrap()).unwrap();
    stdfs::write(path, data).unwrap();
}

impl Env {
    /// `<tmp>/outside/canary.txt`, `<tmp>/customer/{canary.txt, backups/, backend/…}`.
    fn new() -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_str().unwrap().to_string();
        let customer = format!("{root}/customer");
        let target = format!("{customer}/backend");
        write(&format!("{root}/outside/canary.txt"), b"outside canary");
        write(&format!("{customer}/canary.txt"), b"customer canary");
        write(&format!("{target}/src/old.js"), b"old code");
        write(&format!("{target}/package.json"), b"{\"old\":true}");
        write(&format!("{target}/node_modules/pkg/index.js"), b"module");
        write(&format!("{target}/uploads/a.png"), b"png");
        write(&format!("{target}/logs/app.log"), b"log line");
        stdfs::create_dir_all(format!("{customer}/backups")).unwrap();
        Env {
            staging: format!("{customer}/.restore-run1"),
            archive: format!("{customer}/backups/backend.tar.gz"),
            _tmp: tmp,
            root,
            customer,
            target,
        }
    }

    fn plan(&self, mode: Mode, carry: Option<&[&str]>) -> Plan {
        let mut config = serde_json::json!({
            "archive": self.archive,
            "target": self.target,
            "staging": self.staging,
            "mode": if mode == Mode::Replace { "replace" } else { "overlay" },
        });
        if let Some(carry) = carry {
            config["carry"] = serde_json::json!(carry);
        }
        Plan::new(serde_json::from_value(config).unwrap()).unwrap()
    }

    fn restore(&self, tar: &Tar, plan: &Plan) -> Result<Stats, Error> {
        self.restore_with(tar, plan, &StdFs::new(), &ctx())
    }

    fn restore_with(
        &self,
        tar: &Tar,
        plan: &Plan,
        fs: &StdFs,
        ctx: &Context,
    ) -> Result<Stats, Error> {
        stdfs::write(&self.archive, tar.gz()).unwrap();
        restore(fs, ctx, plan)
    }

    /// Everything under the temp root (archive aside): kind, mode, content or link target.
    fn snapshot(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let mut stack = vec![self.root.clone()];
        while let Some(dir) = stack.pop() {
            for e in stdfs::read_dir(&dir).unwrap() {
                let path = e.unwrap().path();
                let p = path.to_str().unwrap().to_string();
                if p == self.archive {
                    continue;
                }
                let m = stdfs::symlink_metadata(&p).unwrap();
                let rel = p[self.root.len()..].to_string();
                let mode = m.mode() & 0o7777;
                let what = if m.is_symlink() {
                    format!("link -> {}", stdfs::read_link(&p).unwrap().display())
                } else if m.is_dir() {
                    stack.push(p.clone());
                    format!("dir {mode:o}")
                } else {
                    format!(
                        "file {mode:o} {}",
                        String::from_utf8_lossy(&stdfs::read(&p).unwrap())
                    )
                };
                out.insert(rel, what);
            }
        }
        out
    }
}

fn meta(path: &str) -> stdfs::Metadata {
    stdfs::symlink_metadata(path).unwrap()
}

fn read(path: &str) -> String {
    String::from_utf8(stdfs::read(path).unwrap()).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Rejections: each is refused as a whole and leaves no trace

/// Restores `tar` (with `limits`, if given) and checks it is refused with a message naming
/// `entry` and containing `rule`, and that nothing changed anywhere.
fn assert_rejected(tar: &Tar, limits: Option<Limits>, entry: &str, rule: &str) {
    let env = Env::new();
    let before = env.snapshot();
    let mut plan = env.plan(Mode::Replace, None);
    if let Some(limits) = limits {
        plan.limits = limits;
    }
    let err = env.restore(tar, &plan).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    assert!(
        err.message().contains(&format!("entry `{entry}`")),
        "message does not name `{entry}`: {err}"
    );
    assert!(
        err.message().contains(rule),
        "message lacks `{rule}`: {err}"
    );
    assert!(err.message().contains("nothing was restored"), "{err}");
    assert_eq!(env.snapshot(), before, "the restore left traces");
    assert!(!Path::new(&env.staging).exists());
}

fn good_start() -> Tar {
    let mut tar = Tar::default();
    tar.dir("src", 0o755).file("src/app.js", b"new code", 0o644);
    tar
}

#[test]
fn dot_dot_in_a_raw_name_is_refused() {
    let mut tar = good_start();
    tar.entry(EntryType::Regular, b"../evil.txt", b"x", 0o644, b"");
    assert_rejected(&tar, None, "../evil.txt", "`..`");
    let mut tar = good_start();
    tar.entry(EntryType::Regular, b"src/../../evil.txt", b"x", 0o644, b"");
    assert_rejected(&tar, None, "src/../../evil.txt", "`..`");
}

#[test]
fn dot_dot_in_a_gnu_long_name_is_refused() {
    let long = format!("{}/../../../evil.txt", "a".repeat(120));
    let mut tar = good_start();
    tar.entry(EntryType::Regular, long.as_bytes(), b"x", 0o644, b"");
    assert_rejected(&tar, None, &long, "`..`");
}

#[test]
fn dot_dot_in_a_pax_path_is_refused() {
    let mut tar = good_start();
    tar.pax(&[("path", b"../evil.txt")])
        .file("harmless.txt", b"x", 0o644);
    assert_rejected(&tar, None, "../evil.txt", "`..`");
}

#[test]
fn absolute_paths_are_refused() {
    let mut tar = good_start();
    tar.entry(EntryType::Regular, b"/tmp/evil.txt", b"x", 0o644, b"");
    assert_rejected(&tar, None, "/tmp/evil.txt", "absolute path");
}

#[test]
fn empty_and_nul_names_are_refused() {
    let mut tar = good_start();
    tar.entry(EntryType::Regular, b"", b"x", 0o644, b"");
    assert_rejected(&tar, None, "", "empty name");
    let mut tar = good_start();
    let name = format!("{}\0/../evil", "n".repeat(110));
    tar.entry(EntryType::Regular, name.as_bytes(), b"x", 0o644, b"");
    assert_rejected(
        &tar,
        None,
        &format!("{}\\0/../evil", "n".repeat(110)),
        "NUL",
    );
}

#[test]
fn hard_links_are_refused() {
    let mut tar = good_start();
    tar.entry(EntryType::Link, b"passwd", b"", 0o644, b"src/app.js");
    // The whole tail, in restore-files' words (the extractor is shared with release-unpack).
    assert_rejected(
        &tar,
        None,
        "passwd",
        "is a hard link; restores never create hard links; restore from another backup or \
         inspect this archive by hand",
    );
}

#[test]
fn devices_and_fifos_are_refused() {
    let mut tar = good_start();
    tar.entry(EntryType::Char, b"null", b"", 0o666, b"");
    assert_rejected(&tar, None, "null", "device");
    let mut tar = good_start();
    tar.entry(EntryType::Block, b"sda", b"", 0o660, b"");
    assert_rejected(&tar, None, "sda", "device");
    let mut tar = good_start();
    tar.entry(EntryType::Fifo, b"pipe", b"", 0o644, b"");
    assert_rejected(&tar, None, "pipe", "FIFO");
}

#[test]
fn a_huge_size_header_is_refused_before_reading() {
    let mut tar = good_start();
    // 1 TiB claimed, no data follows: refused on the header alone.
    let h = header(EntryType::Regular, b"big.bin", 1 << 40, 0o644, MTIME, b"");
    tar.push(&h, b"");
    assert_rejected(&tar, None, "big.bin", "past max_entry_bytes");
}

#[test]
fn total_size_and_entry_count_caps() {
    let limits = |entries, total| Limits {
        max_entries: entries,
        max_total_bytes: total,
        max_entry_bytes: 1 << 20,
    };
    let mut tar = good_start();
    tar.file("a.bin", &[1; 600], 0o644)
        .file("b.bin", &[2; 600], 0o644);
    assert_rejected(
        &tar,
        Some(limits(100, 1000)),
        "b.bin",
        "past max_total_bytes",
    );
    let mut tar = good_start();
    tar.file("a", b"", 0o644).file("b", b"", 0o644);
    assert_rejected(&tar, Some(limits(3, 1 << 20)), "b", "limit of 3 entries");
}

#[test]
fn a_symlink_to_the_root_then_a_file_through_it_is_refused() {
    let evil = format!("tmp/qodify-restore-test-{}", std::process::id());
    let mut tar = good_start();
    tar.symlink("root", "/")
        .file(&format!("root/{evil}"), b"pwned", 0o644);
    assert_rejected(
        &tar,
        None,
        &format!("root/{evil}"),
        "symlink from this archive",
    );
    assert!(!Path::new(&format!("/{evil}")).exists());
}

#[test]
fn a_symlink_out_then_a_file_through_it_leaves_the_canary_alone() {
    let env = Env::new();
    let before = env.snapshot();
    let mut tar = good_start();
    tar.symlink("out", &format!("{}/outside", env.root)).file(
        "out/canary.txt",
        b"overwritten",
        0o644,
    );
    let err = env
        .restore(&tar, &env.plan(Mode::Replace, None))
        .unwrap_err();
    assert!(err.message().contains("entry `out/canary.txt`"), "{err}");
    assert_eq!(
        read(&format!("{}/outside/canary.txt", env.root)),
        "outside canary"
    );
    assert_eq!(env.snapshot(), before);
}

#[test]
fn relative_symlinks_leading_out_are_refused() {
    let mut tar = good_start();
    tar.symlink("a", "../..").file("a/x", b"x", 0o644);
    assert_rejected(&tar, None, "a", "leads out of the restored folder");
    let mut tar = good_start();
    tar.symlink("src/up", "../../customer/canary.txt");
    assert_rejected(&tar, None, "src/up", "leads out");
    // Each link stays inside on its own; `b` leads out through `a`.
    let mut tar = good_start();
    tar.symlink("src/here", ".").symlink("b", "src/here/../..");
    assert_rejected(&tar, None, "b", "through other symlinks");
    let mut tar = good_start();
    tar.symlink("loop1", "loop2")
        .symlink("loop2", "loop1")
        .symlink("c", "loop1/x");
    assert_rejected(&tar, None, "c", "loop");
}

#[test]
fn nothing_is_written_below_an_archive_symlink() {
    let mut tar = good_start();
    tar.symlink("lib", "src").dir("lib/sub", 0o755);
    assert_rejected(&tar, None, "lib/sub/", "symlink from this archive");
    let mut tar = good_start();
    tar.symlink("lib", "src").symlink("lib/x", "y");
    assert_rejected(&tar, None, "lib/x", "symlink from this archive");
}

#[test]
fn a_path_twice_is_refused() {
    let mut tar = good_start();
    tar.file("src/app.js", b"again", 0o644);
    assert_rejected(&tar, None, "src/app.js", "appears twice");
    // A file over a symlink would be written through it.
    let mut tar = good_start();
    tar.symlink("cfg", "/etc/passwd").file("cfg", b"x", 0o644);
    assert_rejected(&tar, None, "cfg", "appears twice");
    let mut tar = good_start();
    tar.file("f", b"x", 0o644).file("f/g", b"y", 0o644);
    assert_rejected(&tar, None, "f/g", "earlier entry is a file or symlink");
}

#[test]
fn oversized_long_name_records_and_size_tricks_are_refused() {
    let mut tar = good_start();
    tar.long(EntryType::GNULongName, &vec![b'a'; 100_000])
        .file("x", b"", 0o644);
    assert_rejected(&tar, None, "././@LongLink", "long name record");
    let mut tar = good_start();
    tar.pax(&[("size", b"5")]).file("x", b"1234567890", 0o644);
    assert_rejected(&tar, None, "x", "pax size");
    let mut tar = good_start();
    tar.entry(EntryType::Directory, b"d/", &[0; 10], 0o755, b"");
    assert_rejected(&tar, None, "d/", "carries 10 bytes");
}

#[test]
fn a_damaged_archive_changes_nothing() {
    let env = Env::new();
    let before = env.snapshot();
    let mut tar = good_start();
    tar.file("big.bin", &noise(300_000), 0o644);
    let gz = tar.gz();
    stdfs::write(&env.archive, &gz[..gz.len() - 100]).unwrap();
    let err = restore(&StdFs::new(), &ctx(), &env.plan(Mode::Replace, None)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io, "{err}");
    assert!(
        err.message()
            .contains("is damaged and nothing was restored ("),
        "{err}"
    );
    assert!(
        err.message().ends_with("; restore from another backup"),
        "{err}"
    );
    assert_eq!(env.snapshot(), before);
}

#[test]
fn cancellation_stops_between_entries_and_cleans_up() {
    let env = Env::new();
    let before = env.snapshot();
    let ctx = ctx();
    ctx.cancel();
    let err = env
        .restore_with(
            &good_start(),
            &env.plan(Mode::Replace, None),
            &StdFs::new(),
            &ctx,
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled);
    assert_eq!(env.snapshot(), before);
}

#[test]
fn an_existing_staging_folder_is_left_alone() {
    let env = Env::new();
    write(
        &format!("{}/old/keep.txt", env.staging),
        b"from an interrupted restore",
    );
    let before = env.snapshot();
    let err = env
        .restore(&good_start(), &env.plan(Mode::Replace, None))
        .unwrap_err();
    assert!(err.message().contains("already exists"), "{err}");
    assert_eq!(env.snapshot(), before);
}

// ---------------------------------------------------------------------------------------------
// Good archives

fn noise(len: usize) -> Vec<u8> {
    let mut seed = 0x9e3779b97f4a7c15u64;
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect()
}

#[test]
fn a_good_archive_round_trips_names_contents_modes_mtimes_and_links() {
    let env = Env::new();
    stdfs::remove_dir_all(&env.target).unwrap();
    let long_dir = format!("deep/{}", "d".repeat(90));
    let long_file = format!("{long_dir}/{}.txt", "f".repeat(80));
    let long_target = format!("../{}", "t".repeat(150));
    let big = noise(2_500_000);
    let mut tar = Tar::default();
    tar.dir("src", 0o750)
        .file("src/app.js", b"console.log(1)", 0o644)
        .file("src/run.sh", b"#!/bin/sh", 0o755)
        .file("src/secret", b"s", 0o600)
        .file("src/setuid", b"s", 0o4755)
        .file("empty", b"", 0o644)
        .file("big.bin", &big, 0o644)
        .dir("deep", 0o755)
        .dir(&long_dir, 0o700)
        .file(&long_file, b"long name", 0o640)
        .symlink("abs", "/var/qodify/shared/uploads")
        .symlink("src/rel", "../empty")
        .symlink(&format!("{long_dir}/ln"), &long_target)
        .dir("readonly", 0o555)
        .file("readonly/f", b"ro", 0o444)
        // A file whose folder has no entry of its own.
        .file("implicit/x", b"x", 0o644);
    let stats = env.restore(&tar, &env.plan(Mode::Replace, None)).unwrap();
    assert_eq!(stats.entries, 16);
    assert_eq!(stats.files, 9);
    assert_eq!(stats.bytes, 14 + 9 + 1 + 1 + 2_500_000 + 9 + 2 + 1);
    let t = &env.target;
    assert_eq!(read(&format!("{t}/src/app.js")), "console.log(1)");
    assert!(stdfs::read(format!("{t}/big.bin")).unwrap() == big);
    assert_eq!(read(&format!("{t}/{long_file}")), "long name");
    let mode = |p: &str| meta(&format!("{t}/{p}")).mode() & 0o7777;
    assert_eq!(mode("src"), 0o750);
    assert_eq!(mode("src/run.sh"), 0o755);
    assert_eq!(mode("src/secret"), 0o600);
    assert_eq!(mode("src/setuid"), 0o755, "setuid bits are dropped");
    assert_eq!(mode(&long_dir), 0o700);
    assert_eq!(mode(&long_file), 0o640);
    assert_eq!(mode("readonly"), 0o555);
    assert_eq!(mode("readonly/f"), 0o444);
    assert_eq!(mode("implicit"), 0o755);
    for p in [
        "src",
        "src/app.js",
        "big.bin",
        &long_dir,
        &long_file,
        "readonly",
        "abs",
    ] {
        assert_eq!(
            meta(&format!("{t}/{p}")).mtime(),
            MTIME as i64,
            "mtime of {p}"
        );
    }
    let link = |p: &str| stdfs::read_link(format!("{t}/{p}")).unwrap();
    assert_eq!(link("abs").to_str(), Some("/var/qodify/shared/uploads"));
    assert_eq!(link("src/rel").to_str(), Some("../empty"));
    assert_eq!(
        link(&format!("{long_dir}/ln")).to_str(),
        Some(long_target.as_str())
    );
    assert!(!Path::new(&env.staging).exists());
    assert_eq!(
        read(&format!("{}/canary.txt", env.customer)),
        "customer canary"
    );
}

#[test]
fn pax_names_and_gnu_style_dot_slash_archives_work() {
    let env = Env::new();
    stdfs::remove_dir_all(&env.target).unwrap();
    let long = format!("{}/file.txt", "p".repeat(200));
    let mut tar = Tar::default();
    tar.entry(EntryType::Directory, b"./", b"", 0o711, b"")
        .entry(EntryType::Directory, b"./a/", b"", 0o755, b"")
        .entry(EntryType::Regular, b"./a/b.txt", b"b", 0o644, b"")
        .pax(&[("path", long.as_bytes()), ("mtime", b"1600000000.25")])
        .file("placeholder", b"pax", 0o644)
        .pax(&[("linkpath", b"a/b.txt")])
        .symlink("ln", "");
    env.restore(&tar, &env.plan(Mode::Replace, None)).unwrap();
    let t = &env.target;
    assert_eq!(
        meta(t).mode() & 0o7777,
        0o711,
        "the `./` entry sets the top folder"
    );
    assert_eq!(read(&format!("{t}/a/b.txt")), "b");
    assert_eq!(read(&format!("{t}/{long}")), "pax");
    assert!(!Path::new(&format!("{t}/placeholder")).exists());
    let m = meta(&format!("{t}/{long}"));
    assert_eq!((m.mtime(), m.mtime_nsec()), (1_600_000_000, 250_000_000));
    assert_eq!(
        stdfs::read_link(format!("{t}/ln")).unwrap().to_str(),
        Some("a/b.txt")
    );
}

#[test]
fn archives_from_the_tar_crate_builder_work() {
    let env = Env::new();
    stdfs::remove_dir_all(&env.target).unwrap();
    let mut b = tar::Builder::new(Vec::new());
    let long = format!("{}/x.txt", "q".repeat(150));
    let mut h = Header::new_gnu();
    h.set_mode(0o640);
    h.set_mtime(MTIME);
    h.set_size(5);
    h.set_entry_type(EntryType::Regular);
    b.append_data(&mut h, &long, &b"hello"[..]).unwrap();
    let mut h = Header::new_gnu();
    h.set_entry_type(EntryType::Symlink);
    h.set_mtime(MTIME);
    h.set_size(0);
    let target = format!("{}/x.txt", "q".repeat(150));
    b.append_link(&mut h, "link", &target).unwrap();
    let raw = b.into_inner().unwrap();
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    gz.write_all(&raw).unwrap();
    stdfs::write(&env.archive, gz.finish().unwrap()).unwrap();
    restore(&StdFs::new(), &ctx(), &env.plan(Mode::Replace, None)).unwrap();
    assert_eq!(read(&format!("{}/{long}", env.target)), "hello");
    assert_eq!(
        stdfs::read_link(format!("{}/link", env.target))
            .unwrap()
            .to_str(),
        Some(target.as_str())
    );
}

// ---------------------------------------------------------------------------------------------
// Replace: carry and a failing swap

fn backend_archive() -> Tar {
    let mut tar = Tar::default();
    tar.dir("src", 0o755)
        .file("src/app.js", b"new code", 0o644)
        .file("package.json", b"{\"new\":true}", 0o644)
        .dir("packages", 0o755)
        .dir("packages/a", 0o555)
        .file("packages/a/index.js", b"a", 0o644);
    tar
}

#[test]
fn replace_carries_build_output_and_uploads_from_the_old_folder() {
    let env = Env::new();
    let t = env.target.clone();
    write(&format!("{t}/packages/a/node_modules/dep/i.js"), b"dep");
    write(&format!("{t}/apps/web/.next/build.txt"), b"next");
    write(&format!("{t}/apps/web/page.js"), b"old page");
    stdfs::set_permissions(format!("{t}/apps"), stdfs::Permissions::from_mode(0o750)).unwrap();
    let carry = [
        "**/node_modules",
        "**/.next",
        "**/dist",
        "**/logs",
        "uploads",
    ];
    let stats = env
        .restore(&backend_archive(), &env.plan(Mode::Replace, Some(&carry)))
        .unwrap();
    assert_eq!(
        stats.carried, 5,
        "node_modules ×2, uploads, logs, apps/web/.next"
    );
    assert_eq!(read(&format!("{t}/src/app.js")), "new code");
    assert!(
        !Path::new(&format!("{t}/src/old.js")).exists(),
        "old files go"
    );
    assert_eq!(read(&format!("{t}/node_modules/pkg/index.js")), "module");
    assert_eq!(
        read(&format!("{t}/packages/a/node_modules/dep/i.js")),
        "dep"
    );
    assert_eq!(read(&format!("{t}/uploads/a.png")), "png");
    assert_eq!(read(&format!("{t}/logs/app.log")), "log line");
    assert_eq!(read(&format!("{t}/apps/web/.next/build.txt")), "next");
    assert!(!Path::new(&format!("{t}/apps/web/page.js")).exists());
    // Folders keep the archive's (or, when created for a carry, the old folder's) mode and mtime.
    assert_eq!(meta(&format!("{t}/packages/a")).mode() & 0o7777, 0o555);
    assert_eq!(meta(&format!("{t}/packages/a")).mtime(), MTIME as i64);
    assert_eq!(meta(&format!("{t}/apps")).mode() & 0o7777, 0o750);
    assert!(!Path::new(&env.staging).exists());
}

#[test]
fn the_archive_copy_wins_over_carry_and_default_carry_keeps_no_uploads() {
    let env = Env::new();
    let t = env.target.clone();
    let mut tar = backend_archive();
    tar.dir("node_modules", 0o755)
        .file("node_modules/fresh.js", b"fresh", 0o644);
    let stats = env.restore(&tar, &env.plan(Mode::Replace, None)).unwrap();
    assert_eq!(stats.carried, 1, "only logs");
    assert_eq!(read(&format!("{t}/node_modules/fresh.js")), "fresh");
    assert!(!Path::new(&format!("{t}/node_modules/pkg")).exists());
    assert!(!Path::new(&format!("{t}/uploads")).exists());
}

#[test]
fn carry_never_writes_below_an_archive_symlink() {
    let env = Env::new();
    let before = env.snapshot();
    let mut tar = Tar::default();
    tar.dir("real", 0o755).symlink("logs", "real");
    write(&format!("{}/logs/sub/node_modules/x", env.target), b"x");
    let before_with_sub = env.snapshot();
    assert_ne!(before, before_with_sub);
    let err = env
        .restore(&tar, &env.plan(Mode::Replace, Some(&["**/node_modules"])))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    assert!(err.message().contains("symlink in the archive"), "{err}");
    assert_eq!(env.snapshot(), before_with_sub);
}

#[test]
fn a_failing_swap_puts_the_old_folder_back() {
    let env = Env::new();
    let before = env.snapshot();
    let fs = failing_rename_to("/backend");
    let err = env
        .restore_with(
            &backend_archive(),
            &env.plan(Mode::Replace, None),
            &fs,
            &ctx(),
        )
        .unwrap_err();
    assert!(err.message().contains("put back"), "{err}");
    assert_eq!(env.snapshot(), before);
}

#[test]
fn a_failing_carry_puts_everything_back() {
    let env = Env::new();
    let before = env.snapshot();
    // logs moves first (sorted), then node_modules fails.
    let fs = failing_rename_to("/backend/node_modules");
    let err = env
        .restore_with(
            &backend_archive(),
            &env.plan(Mode::Replace, None),
            &fs,
            &ctx(),
        )
        .unwrap_err();
    assert!(err.message().contains("put back"), "{err}");
    assert_eq!(env.snapshot(), before);
}

#[test]
fn a_failing_first_rename_changes_nothing() {
    let env = Env::new();
    let before = env.snapshot();
    let fs = failing_rename_to("/old");
    let err = env
        .restore_with(
            &backend_archive(),
            &env.plan(Mode::Replace, None),
            &fs,
            &ctx(),
        )
        .unwrap_err();
    assert!(err.message().contains("aside"), "{err}");
    assert_eq!(env.snapshot(), before);
}

#[test]
fn a_missing_target_is_created() {
    let env = Env::new();
    stdfs::remove_dir_all(&env.target).unwrap();
    let stats = env
        .restore(&backend_archive(), &env.plan(Mode::Replace, None))
        .unwrap();
    assert_eq!(stats.carried, 0);
    assert_eq!(
        read(&format!("{}/package.json", env.target)),
        "{\"new\":true}"
    );
    assert_eq!(meta(&env.target).mode() & 0o7777, 0o755);
}

// ---------------------------------------------------------------------------------------------
// Overlay

fn env_pm2_archive() -> Tar {
    let mut tar = Tar::default();
    tar.dir("backend", 0o755)
        .file("backend/.env", b"DATABASE_URL=new", 0o600)
        .dir("admin", 0o750)
        .file("admin/.env", b"ADMIN=new", 0o600)
        .file("ecosystem.config.js", b"module.exports = {new: 1}", 0o644);
    tar
}

fn overlay_env() -> (Env, Plan) {
    let mut env = Env::new();
    write(
        &format!("{}/backend/.env", env.customer),
        b"DATABASE_URL=old",
    );
    write(&format!("{}/ecosystem.config.js", env.customer), b"old pm2");
    env.target = env.customer.clone();
    let plan = env.plan(Mode::Overlay, None);
    (env, plan)
}

#[test]
fn overlay_moves_files_into_place_and_leaves_the_rest() {
    let (env, plan) = overlay_env();
    let c = &env.customer;
    let mut tar = env_pm2_archive();
    tar.symlink("backend/.env.link", ".env");
    let ctx = ctx();
    let stats = env.restore_with(&tar, &plan, &StdFs::new(), &ctx).unwrap();
    assert_eq!((stats.files, stats.carried), (3, 0));
    assert_eq!(read(&format!("{c}/backend/.env")), "DATABASE_URL=new");
    assert_eq!(meta(&format!("{c}/backend/.env")).mode() & 0o7777, 0o600);
    assert_eq!(read(&format!("{c}/admin/.env")), "ADMIN=new");
    assert_eq!(meta(&format!("{c}/admin")).mode() & 0o7777, 0o750);
    assert_eq!(
        read(&format!("{c}/ecosystem.config.js")),
        "module.exports = {new: 1}"
    );
    assert_eq!(read(&format!("{c}/backend/src/old.js")), "old code");
    assert_eq!(read(&format!("{c}/canary.txt")), "customer canary");
    assert!(!Path::new(&format!("{c}/backend/.env.link")).exists());
    let warnings = ctx.logged(LogLevel::Warn);
    assert!(
        warnings.iter().any(|w| w.contains("symlink")),
        "{warnings:?}"
    );
    assert!(!Path::new(&env.staging).exists());
}

#[test]
fn overlay_never_writes_through_a_symlink_of_the_target() {
    let (env, plan) = overlay_env();
    stdfs::create_dir_all(format!("{}/elsewhere", env.root)).unwrap();
    symlink(
        format!("{}/elsewhere", env.root),
        format!("{}/admin", env.customer),
    )
    .unwrap();
    let before = env.snapshot();
    let err = env.restore(&env_pm2_archive(), &plan).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    assert!(err.message().contains("symlink"), "{err}");
    assert_eq!(env.snapshot(), before);
}

#[test]
fn a_failing_overlay_puts_the_replaced_files_back() {
    let (env, plan) = overlay_env();
    let before = env.snapshot();
    // backend/.env and admin/.env move first; the PM2 file fails.
    let fs = failing_rename_to("/customer/ecosystem.config.js");
    let err = env
        .restore_with(&env_pm2_archive(), &plan, &fs, &ctx())
        .unwrap_err();
    assert!(err.message().contains("put back"), "{err}");
    assert_eq!(env.snapshot(), before);
}

// ---------------------------------------------------------------------------------------------
// Config and mounts

fn config(json: serde_json::Value) -> Result<Plan, Error> {
    let config: Config = qodify_plugin_sdk::__private::parse_config(&json.to_string())?;
    Plan::new(config)
}

#[test]
fn config_defaults_and_checks() {
    let plan = config(serde_json::json!({
        "archive": "/backup/backend.tar.gz",
        "target": "/customer/backend/",
        "staging": "/customer/.restore-1",
    }))
    .unwrap();
    assert_eq!(plan.mode, Mode::Replace);
    assert_eq!(plan.target, "/customer/backend");
    assert!(plan.carry.as_ref().unwrap().is_match("a/node_modules"));
    assert_eq!(plan.limits.max_entries, 2_000_000);
    assert_eq!(plan.limits.max_total_bytes, 256 << 30);
    assert_eq!(plan.limits.max_entry_bytes, 64 << 30);

    let err = |json: serde_json::Value, needle: &str| {
        let e = config(json).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidConfig, "{e}");
        assert!(e.message().contains(needle), "{e} lacks {needle}");
    };
    err(
        serde_json::json!({"archive": "/b/x.tar.gz", "target": "/c/b", "staging": "/c/s", "carri": []}),
        "carri",
    );
    err(
        serde_json::json!({"archive": "/b/x.tar.gz", "target": "/c/b", "staging": "/c/b/.s"}),
        "lies in target",
    );
    err(
        serde_json::json!({"archive": "/b/x.tar.gz", "target": "/c", "staging": "/c/.s",
                           "mode": "overlay", "carry": ["x"]}),
        "carry applies",
    );
    err(
        serde_json::json!({"archive": "/b/x.tar.gz", "target": "/c/b", "staging": "/c/s", "mode": "merge"}),
        "mode",
    );
    err(
        serde_json::json!({"archive": "b.tar.gz", "target": "/c/b", "staging": "/c/s"}),
        "absolute",
    );
    // Overlay may keep staging inside the target (the customer folder).
    config(serde_json::json!({"archive": "/b/x.tar.gz", "target": "/c", "staging": "/c/.s", "mode": "overlay"}))
        .unwrap();
}

#[test]
fn mounts_are_checked() {
    let plan = config(serde_json::json!({
        "archive": "/backup/backend.tar.gz",
        "target": "/customer/backend",
        "staging": "/customer/.restore-1",
    }))
    .unwrap();
    let ok = Context::builder()
        .mount("/backup", false)
        .mount("/customer", true)
        .build();
    plan.check_mounts(&ok).unwrap();
    let read_only = Context::builder()
        .mount("/backup", false)
        .mount("/customer", false)
        .build();
    assert_eq!(
        plan.check_mounts(&read_only).unwrap_err().kind(),
        ErrorKind::PermissionDenied
    );
    let split = Context::builder()
        .mount("/backup", false)
        .mount("/customer", true)
        .mount("/customer/backend", true)
        .build();
    assert!(
        plan.check_mounts(&split)
            .unwrap_err()
            .message()
            .contains("different mounts")
    );
    let no_backup = Context::builder().mount("/customer", true).build();
    assert!(
        plan.check_mounts(&no_backup)
            .unwrap_err()
            .message()
            .contains("archive")
    );
}

// ---------------------------------------------------------------------------------------------
// The journal: a run's restores undone (or committed) from the disk alone

use crate::journal::{self, Journal};

/// A restore plan for `staging` with `keep`, from a JSON config like the pipeline's.
fn kept(config: serde_json::Value) -> Plan {
    let mut config = config;
    config["keep"] = serde_json::json!(true);
    Plan::new(serde_json::from_value(config).unwrap()).unwrap()
}

/// The customer folder's entries starting with `prefix`.
fn stagings_left(env: &Env, prefix: &str) -> Vec<String> {
    stdfs::read_dir(&env.customer)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix))
        .collect()
}

#[test]
fn a_runs_kept_restores_are_undone_newest_first_back_to_the_exact_previous_tree() {
    let env = Env::new();
    let c = env.customer.clone();
    write(&format!("{c}/ecosystem.config.js"), b"old pm2");
    let before = env.snapshot();
    let fs = StdFs::new();
    // Step 1: the backend replaced, node_modules and logs carried over.
    let backend = kept(serde_json::json!({
        "archive": env.archive, "target": env.target, "staging": format!("{c}/.restore-run1-backend"),
    }));
    env.restore(&backend_archive(), &backend).unwrap();
    assert!(Path::new(&format!("{c}/.restore-run1-backend/old/src/old.js")).exists());
    // Step 2: .env files put over the customer folder: one new file, one replaced.
    let overlay = kept(serde_json::json!({
        "archive": env.archive, "target": c, "staging": format!("{c}/.restore-run1-env"),
        "mode": "overlay",
    }));
    env.restore(&env_pm2_archive(), &overlay).unwrap();
    assert_eq!(read(&format!("{c}/backend/.env")), "DATABASE_URL=new");
    assert_ne!(env.snapshot(), before);

    // Another run's staging folder is not touched.
    write(&format!("{c}/.restore-run2-backend/journal.json"), b"{}");
    let outcome = journal::undo(&fs, &c, ".restore-run1-").unwrap();
    assert_eq!(outcome.folders.len(), 2, "{outcome:?}");
    stdfs::remove_dir_all(format!("{c}/.restore-run2-backend")).unwrap();
    assert_eq!(
        env.snapshot(),
        before,
        "undo must give back the previous tree exactly"
    );
    // Undoing again finds nothing to do.
    assert_eq!(
        journal::undo(&fs, &c, ".restore-run1-")
            .unwrap()
            .folders
            .len(),
        0
    );
}

#[test]
fn commit_removes_the_kept_old_trees_and_keeps_the_restore() {
    let env = Env::new();
    let c = env.customer.clone();
    let fs = StdFs::new();
    let backend = kept(serde_json::json!({
        "archive": env.archive, "target": env.target, "staging": format!("{c}/.restore-run1-backend"),
    }));
    env.restore(&backend_archive(), &backend).unwrap();
    let restored = env.snapshot();
    let outcome = journal::commit(&fs, &c, ".restore-run1-").unwrap();
    assert_eq!(outcome.folders.len(), 1);
    assert!(stagings_left(&env, ".restore-run1-").is_empty());
    let after = env.snapshot();
    assert_eq!(
        restored
            .into_iter()
            .filter(|(k, _)| !k.contains(".restore-run1-"))
            .collect::<BTreeMap<_, _>>(),
        after
    );
    assert_eq!(read(&format!("{}/src/app.js", env.target)), "new code");
}

#[test]
fn a_swap_cut_between_its_two_renames_is_undone() {
    // What a kill -9 between `target -> old` and `new -> target` leaves behind.
    let env = Env::new();
    let c = env.customer.clone();
    let before = env.snapshot();
    let fs = StdFs::new();
    let staging = format!("{c}/.restore-run1-backend");
    stdfs::create_dir_all(format!("{staging}/new/src")).unwrap();
    write(&format!("{staging}/new/src/app.js"), b"new code");
    journal::write(
        &fs,
        &staging,
        &Journal::Replace {
            target: env.target.clone(),
            had_old: true,
            carry: vec!["logs".into(), "node_modules".into()],
            at: journal::now(),
        },
    )
    .unwrap();
    stdfs::rename(&env.target, format!("{staging}/old")).unwrap();
    assert!(!Path::new(&env.target).exists());
    journal::undo(&fs, &c, ".restore-run1-").unwrap();
    assert_eq!(env.snapshot(), before);
}

#[test]
fn an_overlay_cut_half_way_is_undone() {
    let (env, plan) = overlay_env();
    let c = env.customer.clone();
    let before = env.snapshot();
    let fs = StdFs::new();
    let mut plan = plan;
    plan.keep = true;
    env.restore(&env_pm2_archive(), &plan).unwrap();
    // Make it look as if the host died before the last move (ecosystem.config.js, sorted last
    // after admin/.env and backend/.env): the file back to new/, the previous one back in place.
    let staging = &env.staging;
    stdfs::rename(
        format!("{c}/ecosystem.config.js"),
        format!("{staging}/new/ecosystem.config.js"),
    )
    .unwrap();
    stdfs::rename(
        format!("{staging}/old/ecosystem.config.js"),
        format!("{c}/ecosystem.config.js"),
    )
    .unwrap();
    journal::undo(&fs, &c, ".restore-run1").unwrap();
    assert_eq!(env.snapshot(), before);
}

#[test]
fn a_folder_with_another_steps_pending_journal_is_left_for_that_step() {
    let env = Env::new();
    let c = env.customer.clone();
    let fs = StdFs::new();
    let backend = kept(serde_json::json!({
        "archive": env.archive, "target": env.target, "staging": format!("{c}/.restore-run1-backend"),
    }));
    let before = env.snapshot();
    env.restore(&backend_archive(), &backend).unwrap();
    write(
        &format!("{c}/.restore-run1-db/journal.json"),
        br#"{"mode":"db","state":"started"}"#,
    );
    let outcome = journal::undo(&fs, &c, ".restore-run1-").unwrap();
    assert_eq!(outcome.pending, vec![format!("{c}/.restore-run1-db")]);
    assert_eq!(
        stagings_left(&env, ".restore-run1-"),
        vec![".restore-run1-db"]
    );
    // Once the database's undo removed its journal, the next undo removes the folder.
    stdfs::remove_file(format!("{c}/.restore-run1-db/journal.json")).unwrap();
    journal::undo(&fs, &c, ".restore-run1-").unwrap();
    assert!(stagings_left(&env, ".restore-run1-").is_empty());
    assert_eq!(env.snapshot(), before, "the backend was still put back");
}
