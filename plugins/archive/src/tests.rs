//! Native tests: archive a real temp tree through the same walker and writer the plugin uses
//! (with `std::fs` standing in for the host's `files` interface), then unpack and compare.

use std::collections::BTreeMap;
use std::fs::{self as stdfs, File};
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;
use std::time::{Duration, SystemTime};

use flate2::read::GzDecoder;
use qodify_plugin_sdk::fs::{FileKind, FileSystem as _, StdFs};
use qodify_plugin_sdk::{ErrorKind, LogLevel};

use super::*;
use crate::tarball::TarStats;
use crate::walk::Walk;

#[derive(Default)]
struct TestHooks {
    warnings: Vec<String>,
    reports: Vec<(f32, String)>,
}

impl Hooks for TestHooks {
    fn warn(&mut self, message: &str) {
        self.warnings.push(message.to_string());
    }
    fn progress(&mut self, percent: f32, message: &str) {
        self.reports.push((percent, message.to_string()));
    }
    fn cancelled(&mut self) -> bool {
        false
    }
}

fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect()
}

fn log_text(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 100);
    let mut i = 0u64;
    while out.len() < len {
        out.extend_from_slice(
            format!(
                "{{\"t\":{i},\"level\":\"info\",\"msg\":\"GET /api/items/{}\"}}\n",
                i * 7919 % 1000
            )
            .as_bytes(),
        );
        i += 1;
    }
    out.truncate(len);
    out
}

fn write(root: &Path, rel: &str, data: &[u8], mode: u32, mtime: u64) {
    let path = root.join(rel);
    stdfs::create_dir_all(path.parent().unwrap()).unwrap();
    stdfs::write(&path, data).unwrap();
    stdfs::set_permissions(&path, stdfs::Permissions::from_mode(mode)).unwrap();
    File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(mtime))
        .unwrap();
}

fn set_dir_mtime(path: &Path, mtime: u64) {
    File::open(path)
        .unwrap()
        .set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(mtime))
        .unwrap();
}

const LONG_DIR: &str =
    "a-very-long-folder-name-that-goes-on-and-on/another-quite-long-folder-name-for-good-measure";

/// A customer-like tree; returns the temp dir (tree at `<tmp>/src`).
fn sample_tree() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    write(
        &src,
        "server.js",
        b"require('./src/app');\n",
        0o644,
        1_600_000_000,
    );
    write(&src, "src/app.js", &log_text(20_000), 0o640, 1_600_000_100);
    write(
        &src,
        "bin/run.sh",
        b"#!/bin/sh\nexec node server.js\n",
        0o755,
        1_600_000_200,
    );
    write(&src, ".env", b"SECRET=1\n", 0o600, 1_600_000_300);
    write(
        &src,
        "uploads/photo.jpg",
        &noise(3 << 20, 7),
        0o644,
        1_600_000_400,
    );
    write(
        &src,
        "logs/app.log",
        &log_text(1 << 20),
        0o644,
        1_600_000_500,
    );
    write(&src, "node_modules/x/index.js", b"x", 0o644, 1);
    write(&src, "packages/a/node_modules/y/index.js", b"y", 0o644, 1);
    write(&src, "packages/a/index.js", b"a", 0o644, 1_600_000_600);
    write(&src, "tmp/cache.bin", b"c", 0o644, 1);
    write(&src, "a/tmp/b", b"kept", 0o644, 1_600_000_700);
    write(
        &src,
        &format!("{LONG_DIR}/file-with-a-long-name.json"),
        b"{}",
        0o644,
        1_600_000_800,
    );
    stdfs::create_dir_all(src.join("empty")).unwrap();
    stdfs::set_permissions(src.join("empty"), stdfs::Permissions::from_mode(0o700)).unwrap();
    symlink("src/app.js", src.join("link-rel")).unwrap();
    symlink("/etc/hostname", src.join("link-abs")).unwrap();
    let second = LONG_DIR.split('/').nth(1).unwrap();
    let long_target = format!("./{LONG_DIR}/../{second}/file-with-a-long-name.json");
    symlink(&long_target, src.join("link-long")).unwrap();
    for (dir, t) in [
        ("empty", 1_500_000_000),
        ("src", 1_500_000_100),
        ("uploads", 1_500_000_200),
    ] {
        set_dir_mtime(&src.join(dir), t);
    }
    tmp
}

fn src_of(tmp: &tempfile::TempDir) -> String {
    tmp.path().join("src").to_str().unwrap().to_string()
}

fn plan_for(tmp: &tempfile::TempDir, json: serde_json::Value) -> Plan {
    let mut json = json;
    json["source"] = src_of(tmp).into();
    json["output"] = tmp.path().join("out.tar.gz").to_str().unwrap().into();
    let config: Config = serde_json::from_value(json).unwrap();
    let mut plan = Plan::new(config).unwrap();
    plan.walk.boundary = tmp.path().to_str().unwrap().to_string();
    plan
}

fn archive(plan: &Plan) -> (Vec<u8>, Walk, TarStats, TestHooks) {
    let mut hooks = TestHooks::default();
    let walked = walk(&StdFs::new(), &plan.walk, &mut hooks).unwrap();
    let (bytes, stats) = write_tar_gz(Vec::new(), &walked, &plan.tar, &mut hooks).unwrap();
    (bytes, walked, stats, hooks)
}

#[derive(Debug, PartialEq)]
struct Unpacked {
    kind: tar::EntryType,
    mode: u32,
    mtime: u64,
    link: Option<String>,
    data: Vec<u8>,
}

fn unpack(bytes: &[u8]) -> Vec<(String, Unpacked)> {
    let mut archive = tar::Archive::new(GzDecoder::new(bytes));
    let mut out = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = String::from_utf8(entry.path_bytes().into_owned()).unwrap();
        let link = entry
            .link_name_bytes()
            .map(|l| String::from_utf8(l.into_owned()).unwrap());
        let h = entry.header();
        let (kind, mode, mtime) = (h.entry_type(), h.mode().unwrap(), h.mtime().unwrap());
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        out.push((
            name,
            Unpacked {
                kind,
                mode,
                mtime,
                link,
                data,
            },
        ));
    }
    out
}

#[test]
fn archive_round_trips_names_contents_modes_mtimes_and_links() {
    let tmp = sample_tree();
    let src = src_of(&tmp);
    let plan = plan_for(
        &tmp,
        serde_json::json!({ "exclude": ["**/node_modules/**", "tmp/**"] }),
    );
    let (bytes, walked, stats, hooks) = archive(&plan);
    assert!(hooks.warnings.is_empty(), "{:?}", hooks.warnings);
    let entries = unpack(&bytes);
    let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();

    let long_file = format!("{LONG_DIR}/file-with-a-long-name.json");
    let long_dir_1 = format!("{}/", LONG_DIR.split('/').next().unwrap());
    let long_dir_2 = format!("{LONG_DIR}/");
    let expected = [
        ".env",
        "a/",
        "a/tmp/",
        "a/tmp/b",
        long_dir_1.as_str(),
        long_dir_2.as_str(),
        long_file.as_str(),
        "bin/",
        "bin/run.sh",
        "empty/",
        "link-abs",
        "link-long",
        "link-rel",
        "logs/",
        "logs/app.log",
        "packages/",
        "packages/a/",
        "packages/a/index.js",
        "server.js",
        "src/",
        "src/app.js",
        "uploads/",
        "uploads/photo.jpg",
    ];
    assert_eq!(
        names, expected,
        "sorted, excluded paths absent, empty folder kept"
    );
    assert_eq!(walked.excluded, 3, "node_modules twice and tmp");
    assert_eq!(stats.files, 9);

    let by_name: BTreeMap<&str, &Unpacked> = entries.iter().map(|(n, u)| (n.as_str(), u)).collect();
    for (name, entry) in &by_name {
        let on_disk = format!("{src}/{}", name.trim_end_matches('/'));
        let meta = StdFs::new().stat(&on_disk).unwrap();
        match meta.kind {
            FileKind::File => {
                assert_eq!(entry.kind, tar::EntryType::Regular, "{name}");
                assert!(
                    entry.data == stdfs::read(&on_disk).unwrap(),
                    "content of {name}"
                );
            }
            FileKind::Directory => assert_eq!(entry.kind, tar::EntryType::Directory, "{name}"),
            FileKind::Symlink => {
                assert_eq!(entry.kind, tar::EntryType::Symlink, "{name}");
                assert_eq!(
                    entry.link, meta.symlink_target,
                    "{name}: target stored verbatim"
                );
            }
            FileKind::Other => unreachable!(),
        }
        if meta.kind != FileKind::Symlink {
            assert_eq!(entry.mode, meta.mode, "{name}: mode");
            assert_eq!(entry.mtime, meta.mtime.seconds as u64, "{name}: mtime");
        }
    }
    assert_eq!(by_name["empty/"].mode, 0o700);
    assert_eq!(by_name[".env"].mode, 0o600);
    assert_eq!(by_name["link-abs"].link.as_deref(), Some("/etc/hostname"));
    assert!(by_name["link-long"].link.as_ref().unwrap().len() > 100);

    assert_eq!(stats.stored_files, 1, "the incompressible photo is stored");

    // Progress by bytes, ending at 100%.
    let (last_percent, last_message) = hooks.reports.last().unwrap();
    assert_eq!(*last_percent, 100.0);
    assert!(
        last_message.starts_with("archiving out: "),
        "{last_message}"
    );
    assert!(last_message.ends_with(" MiB"), "{last_message}");
}

#[test]
fn incompressible_files_are_stored_with_little_overhead() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let size = 5 << 20;
    write(&src, "a.jpg", &noise(size, 1), 0o644, 1);
    write(&src, "b.png", &noise(100_000, 2), 0o644, 1);
    let plan = plan_for(&tmp, serde_json::json!({}));
    let (bytes, _, stats, _) = archive(&plan);
    assert_eq!(stats.stored_files, 2);
    let input = size + 100_000;
    // 5 bytes per 64 KiB stored block, tar headers and padding, gzip framing.
    assert!(
        bytes.len() > input && bytes.len() < input + input / 1000 + 4096,
        "{}",
        bytes.len()
    );
    assert_eq!(unpack(&bytes)[0].1.data, noise(size, 1));
}

#[test]
fn text_is_compressed() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    write(&src, "app.log", &log_text(4 << 20), 0o644, 1);
    let plan = plan_for(&tmp, serde_json::json!({}));
    let (bytes, _, stats, _) = archive(&plan);
    assert_eq!(stats.stored_files, 0);
    assert!(bytes.len() < (4 << 20) / 10, "{}", bytes.len());
}

#[test]
fn gnu_tar_and_gzip_accept_the_archive() {
    let tmp = sample_tree();
    let plan = plan_for(&tmp, serde_json::json!({ "prefix": "backend" }));
    let (bytes, ..) = archive(&plan);
    let out = tmp.path().join("check.tar.gz");
    stdfs::write(&out, &bytes).unwrap();
    let gzip = std::process::Command::new("gzip")
        .arg("-t")
        .arg(&out)
        .status()
        .unwrap();
    assert!(gzip.success(), "gzip -t");
    let dest = tmp.path().join("extracted");
    stdfs::create_dir(&dest).unwrap();
    let untar = std::process::Command::new("tar")
        .arg("-xzf")
        .arg(&out)
        .arg("-C")
        .arg(&dest)
        .status()
        .unwrap();
    assert!(untar.success(), "tar -xzf");
    let back = dest.join("backend");
    assert_eq!(
        stdfs::read(back.join("src/app.js")).unwrap(),
        log_text(20_000)
    );
    assert_eq!(
        stdfs::read(back.join("uploads/photo.jpg")).unwrap(),
        noise(3 << 20, 7)
    );
    assert_eq!(
        stdfs::read_link(back.join("link-abs")).unwrap(),
        Path::new("/etc/hostname")
    );
    let run_sh = stdfs::metadata(back.join("bin/run.sh")).unwrap();
    assert_eq!(run_sh.mode() & 0o7777, 0o755);
    assert_eq!(run_sh.mtime(), 1_600_000_200);
    let long = back.join(LONG_DIR).join("file-with-a-long-name.json");
    assert_eq!(stdfs::read(long).unwrap(), b"{}");
}

#[test]
fn archives_are_deterministic() {
    let tmp = sample_tree();
    let plan = plan_for(&tmp, serde_json::json!({}));
    assert!(archive(&plan).0 == archive(&plan).0);
}

#[test]
fn include_keeps_only_matching_files_and_the_folders_leading_to_them() {
    let tmp = sample_tree();
    let src = tmp.path().join("src");
    write(&src, "backend/.env.production", b"A=1\n", 0o600, 1);
    write(
        &src,
        "backend/ecosystem.config.js",
        b"module.exports={}\n",
        0o644,
        1,
    );
    write(&src, "backend/server.js", b"no\n", 0o644, 1);
    let plan = plan_for(
        &tmp,
        serde_json::json!({ "include": [".env*", "*/.env*", "*/ecosystem.config.js"] }),
    );
    let (bytes, ..) = archive(&plan);
    let names: Vec<String> = unpack(&bytes).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            ".env",
            "backend/",
            "backend/.env.production",
            "backend/ecosystem.config.js"
        ]
    );
}

#[test]
fn following_symlinks_stores_targets_inside_the_mount_only() {
    let tmp = sample_tree();
    let src = tmp.path().join("src");
    stdfs::remove_file(src.join("link-abs")).unwrap();
    // A link to a folder elsewhere in the mount, reached through `..`.
    write(tmp.path(), "shared/uploads/a.txt", b"shared", 0o644, 1);
    symlink("../shared/uploads", src.join("uploads-link")).unwrap();
    let plan = plan_for(&tmp, serde_json::json!({ "follow_symlinks": true }));
    let (bytes, ..) = archive(&plan);
    let entries = unpack(&bytes);
    let by_name: BTreeMap<&str, &Unpacked> = entries.iter().map(|(n, u)| (n.as_str(), u)).collect();
    assert_eq!(by_name["link-rel"].kind, tar::EntryType::Regular);
    assert_eq!(by_name["link-rel"].data, log_text(20_000));
    assert_eq!(by_name["link-long"].data, b"{}");
    assert_eq!(by_name["uploads-link/"].kind, tar::EntryType::Directory);
    assert_eq!(by_name["uploads-link/a.txt"].data, b"shared");

    // Out of the mount: a clear error, not a silent skip.
    symlink("../../outside", src.join("escape")).unwrap();
    let mut hooks = TestHooks::default();
    let err = walk(&StdFs::new(), &plan.walk, &mut hooks).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    assert!(
        err.message().contains("escape") && err.message().contains("outside"),
        "{err}"
    );
    stdfs::remove_file(src.join("escape")).unwrap();

    // Absolute targets cannot be followed inside the sandbox.
    symlink("/etc/hostname", src.join("abs")).unwrap();
    let err = walk(&StdFs::new(), &plan.walk, &mut hooks).unwrap_err();
    assert!(err.message().contains("absolute"), "{err}");
    stdfs::remove_file(src.join("abs")).unwrap();

    // A link back to an ancestor would never end.
    symlink("..", src.join("src/loop")).unwrap();
    let err = walk(&StdFs::new(), &plan.walk, &mut hooks).unwrap_err();
    assert!(err.message().contains("loop"), "{err}");
}

#[test]
fn output_inside_the_source_is_not_archived() {
    let tmp = sample_tree();
    let src = src_of(&tmp);
    let config: Config = serde_json::from_value(serde_json::json!({
        "source": src, "output": format!("{src}/self.tar.gz"),
    }))
    .unwrap();
    let plan = Plan::new(config).unwrap();
    assert_eq!(plan.name, "self");
    write(Path::new(&src), "self.tar.gz", b"partial", 0o644, 1);
    let (bytes, ..) = archive(&plan);
    assert!(unpack(&bytes).iter().all(|(n, _)| n != "self.tar.gz"));
}

#[test]
fn config_is_checked() {
    let bad = |json: serde_json::Value| {
        let config: Config = serde_json::from_value(json).unwrap();
        Plan::new(config).unwrap_err()
    };
    let err = bad(serde_json::json!({ "source": "/s", "output": "/o.tgz", "level": 10 }));
    assert_eq!(err.kind(), ErrorKind::InvalidConfig);
    let err = bad(serde_json::json!({ "source": "/s", "output": "/o.tgz", "prefix": "../x" }));
    assert!(err.message().contains("prefix"), "{err}");
    let err = bad(serde_json::json!({ "source": "s", "output": "/o.tgz" }));
    assert!(err.message().starts_with("source"), "{err}");
    let err = bad(serde_json::json!({ "source": "/s", "output": "/o.tgz", "include": [] }));
    assert!(err.message().contains("include"), "{err}");
    let ok: Config = serde_json::from_value(serde_json::json!({
        "source": "/s/", "output": "/out/backend.tar.gz"
    }))
    .unwrap();
    let plan = Plan::new(ok).unwrap();
    assert_eq!((plan.name.as_str(), plan.tar.level), ("backend", 6));
    assert!(plan.tar.prefix.is_none() && !plan.walk.follow_symlinks);
}

#[test]
fn keep_drops_exclude_patterns_set_true_and_refuses_unknown_ones() {
    let tmp = sample_tree();
    let plan = plan_for(
        &tmp,
        serde_json::json!({
            "exclude": ["**/node_modules/**", "**/logs/**"],
            "keep": { "**/logs/**": true, "**/node_modules/**": false }
        }),
    );
    let (bytes, _, _, _) = archive(&plan);
    let names: Vec<String> = unpack(&bytes).into_iter().map(|(n, _)| n).collect();
    assert!(names.iter().any(|n| n == "logs/app.log"), "{names:?}");
    assert!(
        !names.iter().any(|n| n.contains("node_modules")),
        "{names:?}"
    );

    let mut json = serde_json::json!({ "exclude": ["**/logs/**"], "keep": { "logs/**": true } });
    json["source"] = src_of(&tmp).into();
    json["output"] = "/out/x.tar.gz".into();
    let err = Plan::new(serde_json::from_value(json).unwrap()).unwrap_err();
    assert!(
        err.message().contains("not one of the exclude patterns"),
        "{}",
        err.message()
    );
}

/// A moment well after every change the tests make, so no entry counts as changed moments ago.
fn later() -> fs::Timestamp {
    let mut t = now();
    t.seconds += 60;
    t
}

fn fingerprint_of(plan: &Plan) -> String {
    let mut hooks = TestHooks::default();
    let walked = walk(&StdFs::new(), &plan.walk, &mut hooks).unwrap();
    fingerprint::fingerprint(&walked, &plan.settings(), later()).unwrap()
}

/// Waits out the file system's timestamp granularity, so a change shows in ctime.
fn tick() {
    std::thread::sleep(Duration::from_millis(30));
}

#[test]
fn the_fingerprint_changes_with_every_attribute_of_every_entry() {
    let tmp = sample_tree();
    let src = tmp.path().join("src");
    let plan = plan_for(&tmp, serde_json::json!({"exclude": ["**/node_modules/**"]}));
    let first = fingerprint_of(&plan);
    assert_eq!(first.len(), 64);
    assert_eq!(
        fingerprint_of(&plan),
        first,
        "the same tree, the same fingerprint"
    );

    let mut seen = vec![first];
    let mut changed = |what: &str, change: &dyn Fn()| {
        tick();
        change();
        let fp = fingerprint_of(&plan);
        assert!(!seen.contains(&fp), "{what} left the fingerprint as it was");
        seen.push(fp);
    };
    let file = src.join("src/app.js");
    changed("a mode", &|| {
        stdfs::set_permissions(&file, stdfs::Permissions::from_mode(0o600)).unwrap()
    });
    changed("an mtime", &|| {
        File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000))
            .unwrap()
    });
    changed(
        "content of the same size with the mtime put back (ctime only)",
        &|| {
            let old = stdfs::metadata(&file).unwrap().modified().unwrap();
            let mut data = stdfs::read(&file).unwrap();
            data[0] ^= 1;
            stdfs::write(&file, &data).unwrap();
            File::options()
                .write(true)
                .open(&file)
                .unwrap()
                .set_modified(old)
                .unwrap();
        },
    );
    changed("a copy put in place (inode)", &|| {
        let copy = src.join("src/app.js.copy");
        stdfs::copy(&file, &copy).unwrap();
        let m = stdfs::metadata(&file).unwrap();
        File::options()
            .write(true)
            .open(&copy)
            .unwrap()
            .set_modified(m.modified().unwrap())
            .unwrap();
        stdfs::set_permissions(&copy, m.permissions()).unwrap();
        stdfs::rename(&copy, &file).unwrap();
    });
    changed("a size", &|| {
        stdfs::write(src.join("server.js"), b"x").unwrap()
    });
    changed("a new file", &|| {
        stdfs::write(src.join("new.txt"), b"").unwrap()
    });
    changed("a symlink's target", &|| {
        stdfs::remove_file(src.join("link-rel")).unwrap();
        symlink("server.js", src.join("link-rel")).unwrap();
    });
    changed("a removed file", &|| {
        stdfs::remove_file(src.join("new.txt")).unwrap()
    });
    // A change in an excluded folder is no change of the archive.
    let before = fingerprint_of(&plan);
    tick();
    stdfs::write(src.join("node_modules/x/index.js"), b"changed").unwrap();
    assert_eq!(fingerprint_of(&plan), before);
}

#[test]
fn the_fingerprint_changes_with_the_settings_that_shape_the_archive() {
    let tmp = sample_tree();
    let base = serde_json::json!({"exclude": ["**/logs/**", "tmp/**"]});
    let fp = |json: serde_json::Value| fingerprint_of(&plan_for(&tmp, json));
    let first = fp(base.clone());
    for (what, json) in [
        (
            "another exclude",
            serde_json::json!({"exclude": ["**/logs/**"]}),
        ),
        (
            "keep",
            serde_json::json!({"exclude": ["**/logs/**", "tmp/**"], "keep": {"**/logs/**": true}}),
        ),
        (
            "include",
            serde_json::json!({"exclude": ["**/logs/**", "tmp/**"], "include": ["**/*.js"]}),
        ),
        (
            "level",
            serde_json::json!({"exclude": ["**/logs/**", "tmp/**"], "level": 1}),
        ),
        (
            "prefix",
            serde_json::json!({"exclude": ["**/logs/**", "tmp/**"], "prefix": "b"}),
        ),
        (
            "name",
            serde_json::json!({"exclude": ["**/logs/**", "tmp/**"], "name": "other"}),
        ),
    ] {
        assert_ne!(fp(json), first, "{what}");
    }
    // `keep = false` is the exclude as it was.
    let kept_off =
        serde_json::json!({"exclude": ["**/logs/**", "tmp/**"], "keep": {"**/logs/**": false}});
    assert_eq!(fp(kept_off), first);
}

#[test]
fn a_source_changed_moments_ago_gets_no_fingerprint() {
    let tmp = sample_tree();
    let plan = plan_for(&tmp, serde_json::json!({}));
    let mut hooks = TestHooks::default();
    let walked = walk(&StdFs::new(), &plan.walk, &mut hooks).unwrap();
    // sample_tree just made every entry: its ctimes are now.
    let err = fingerprint::fingerprint(&walked, &plan.settings(), now()).unwrap_err();
    assert!(matches!(err, fingerprint::NoFingerprint::Racy(_)), "{err}");
    assert!(fingerprint::fingerprint(&walked, &plan.settings(), later()).is_ok());
}

/// `<tmp>/backups` with backup `id` holding `file` (the given bytes) and a `backup.json` that
/// lists it as artifact `name` with `fingerprint`.
fn earlier_backup(backups: &Path, id: &str, name: &str, file: &str, fingerprint: &str) -> String {
    let data = format!("archive of {id}");
    stdfs::create_dir_all(backups.join(id)).unwrap();
    stdfs::write(backups.join(id).join(file), &data).unwrap();
    let (_, size, sha256) = {
        let mut w = qodify_plugin_sdk::HashingWriter::new(std::io::sink());
        std::io::Write::write_all(&mut w, data.as_bytes()).unwrap();
        w.finish()
    };
    let doc = serde_json::json!({
        "formatVersion": 1,
        "id": id,
        "artifacts": [{"name": name, "file": file, "size": size, "sha256": sha256, "fingerprint": fingerprint}],
    });
    stdfs::write(backups.join(id).join("backup.json"), doc.to_string()).unwrap();
    sha256
}

#[test]
fn the_newest_complete_backup_with_the_fingerprint_is_linked() {
    let tmp = tempfile::tempdir().unwrap();
    let backups = tmp.path().join("backups");
    earlier_backup(
        &backups,
        "20260101-000000",
        "uploads",
        "uploads.tar.gz",
        "fp",
    );
    let newest = earlier_backup(
        &backups,
        "20260102-000000",
        "uploads",
        "uploads.tar.gz",
        "fp",
    );
    earlier_backup(
        &backups,
        "20260103-000000",
        "uploads",
        "uploads.tar.gz",
        "other",
    );
    // Neither a partial folder nor a backup whose file is gone counts.
    earlier_backup(&backups, ".partial-run9", "uploads", "uploads.tar.gz", "fp");
    earlier_backup(
        &backups,
        "20260104-000000",
        "uploads",
        "uploads.tar.gz",
        "fp",
    );
    stdfs::remove_file(backups.join("20260104-000000/uploads.tar.gz")).unwrap();
    stdfs::create_dir(backups.join(".partial-run10")).unwrap();
    let out = backups.join(".partial-run10/uploads.tar.gz");
    let (b, o) = (backups.to_str().unwrap(), out.to_str().unwrap());

    let found = reuse::reuse(&StdFs::new(), b, "uploads", "fp", o)
        .unwrap()
        .unwrap();
    assert_eq!(found.id, "20260102-000000");
    assert_eq!(found.sha256, newest);
    let ino = |p: &Path| stdfs::metadata(p).unwrap().ino();
    assert_eq!(
        ino(&out),
        ino(&backups.join("20260102-000000/uploads.tar.gz"))
    );

    // Deleting the backup it came from leaves the new one whole.
    stdfs::remove_dir_all(backups.join("20260102-000000")).unwrap();
    assert_eq!(
        stdfs::read_to_string(&out).unwrap(),
        "archive of 20260102-000000"
    );

    // Another name or fingerprint: nothing to reuse.
    let o2 = backups.join(".partial-run10/x.tar.gz");
    let o2 = o2.to_str().unwrap();
    assert_eq!(
        reuse::reuse(&StdFs::new(), b, "backend", "fp", o2).unwrap(),
        None
    );
    assert_eq!(
        reuse::reuse(&StdFs::new(), b, "uploads", "nope", o2).unwrap(),
        None
    );
    assert!(!Path::new(o2).exists());
}

#[test]
fn a_link_across_file_systems_falls_back_to_writing_the_archive() {
    let tmp = tempfile::tempdir().unwrap();
    let backups = tmp.path().join("backups");
    earlier_backup(
        &backups,
        "20260101-000000",
        "uploads",
        "uploads.tar.gz",
        "fp",
    );
    stdfs::create_dir(backups.join(".partial-r")).unwrap();
    let out = backups.join(".partial-r/uploads.tar.gz");
    let mut plan = plan_for(
        &tmp,
        serde_json::json!({"backups": backups.to_str().unwrap(), "name": "uploads"}),
    );
    plan.output = out.to_str().unwrap().to_string();
    let exdev = StdFs::failing_links(|_, _| true);
    let ctx = Context::builder().build();
    assert_eq!(plan.try_reuse(&ctx, &exdev, Some("fp")), None);
    let warned = ctx.logged(LogLevel::Warn).join("\n");
    assert!(
        warned.contains("EXDEV") && warned.contains("writing it instead"),
        "{warned}"
    );
    assert!(!out.exists());
    // The same on one file system links; a full backup never looks.
    assert!(plan.try_reuse(&ctx, &StdFs::new(), Some("fp")).is_some());
    stdfs::remove_file(&out).unwrap();
    plan.reuse = false;
    assert_eq!(plan.try_reuse(&ctx, &StdFs::new(), Some("fp")), None);
    assert!(
        ctx.logged(LogLevel::Info)
            .join("\n")
            .contains("a full backup")
    );
    assert!(!out.exists());
}
