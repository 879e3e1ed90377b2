//! Reusing unchanged archives, through the real binary, real plugins and a real PostgreSQL: a
//! backup of an unchanged source links the earlier backup's archive (same inode) and says so in
//! `backup.json`; a changed upload, a touched file or `full=true` writes archives anew; verify
//! and restore treat linked archives like any other, also after the backup they came from is
//! deleted.

mod common;
mod pg;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use pg::{TestDb, psql};

const DOMAIN: &str = "reuse.example.com";
const ARCHIVES: [&str; 5] = ["backend", "admin", "store", "uploads", "env-pm2"];

fn customer(host: &Host, db: &TestDb) -> PathBuf {
    let dir = plain_shop(
        &host.customer(DOMAIN),
        &db.url("pw"),
        &[
            ("p.jpg".into(), noise(200_000, 3)),
            ("q.jpg".into(), noise(100_000, 4)),
        ],
    );
    let b = dir.join("backend");
    std::os::unix::fs::symlink("server.js", b.join("index.js")).unwrap();
    write(&b.join("node_modules/dep/index.js"), "dep\n");
    dir
}

/// Lets the last change age past the archive's "changed moments ago" window (1 s), so the
/// source gets a fingerprint; also gives the next backup its own second.
fn settle() {
    std::thread::sleep(Duration::from_millis(1300));
}

fn backup(host: &Host, params: &[&str]) -> String {
    let mut c = host.cmd();
    c.args(["run", "backup", "--customer", DOMAIN, "--json"]);
    for p in params {
        c.args(["--param", p]);
    }
    let out = run(&mut c);
    assert!(
        out.status.success(),
        "backup failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    run_result(&out)["backup"].as_str().unwrap().to_owned()
}

/// Artifact name → (`reusedFrom`, has a fingerprint) from backup `id`'s `backup.json`.
fn reuse_of(dir: &Path, id: &str) -> BTreeMap<String, (Option<String>, bool)> {
    let text = std::fs::read_to_string(dir.join("backups").join(id).join("backup.json")).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    doc["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["name"].as_str().unwrap().to_owned(),
                (
                    a["reusedFrom"].as_str().map(str::to_owned),
                    a["fingerprint"].as_str().is_some_and(|f| f.len() == 64),
                ),
            )
        })
        .collect()
}

fn inode(dir: &Path, id: &str, file: &str) -> u64 {
    std::fs::metadata(dir.join("backups").join(id).join(file))
        .unwrap()
        .ino()
}

/// The archives (by name) of backup `id` that were linked from backup `from`: listed so in its
/// `backup.json`, and the very same file.
fn linked(dir: &Path, id: &str, from: &str) -> Vec<&'static str> {
    let reuse = reuse_of(dir, id);
    assert_eq!(reuse["db"], (None, false), "the dump is always made anew");
    ARCHIVES
        .into_iter()
        .filter(|name| {
            let file = format!("{name}.tar.gz");
            let (reused, fingerprinted) = &reuse[*name];
            assert!(fingerprinted, "{name} of {id} has no fingerprint");
            let same = inode(dir, id, &file) == inode(dir, from, &file);
            assert_eq!(
                reused.as_deref() == Some(from),
                same,
                "{name} of {id}: reusedFrom {reused:?} but same file as {from}: {same}"
            );
            same
        })
        .collect()
}

fn verify(host: &Host) {
    let out = run(host.cmd().args(["backups", "verify", "--customer", DOMAIN]));
    assert!(
        out.status.success(),
        "verify failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn no_dependencies(r: &str) -> bool {
    r.split('/').any(|c| c == "node_modules")
}

#[test]
fn unchanged_archives_are_linked_and_changed_ones_written_anew() {
    let host = Host::new();
    let db = TestDb::shop("reuse");
    let dir = customer(&host, &db);
    settle();
    let first = backup(&host, &[]);
    assert!(
        reuse_of(&dir, &first).values().all(|(r, _)| r.is_none()),
        "nothing to reuse in the first backup"
    );

    settle();
    let second = backup(&host, &[]);
    assert_eq!(
        linked(&dir, &second, &first),
        ARCHIVES,
        "unchanged: all linked"
    );
    assert_ne!(
        inode(&dir, &second, "db.dump"),
        inode(&dir, &first, "db.dump")
    );
    verify(&host);

    // One changed upload: only the uploads are archived again.
    write(&dir.join("backend/uploads/q.jpg"), noise(100_000, 5));
    settle();
    let third = backup(&host, &[]);
    assert_eq!(
        linked(&dir, &third, &second),
        ["backend", "admin", "store", "env-pm2"]
    );

    // A chmod back to the same mode changes only the ctime; a new mtime alone as well.
    chmod(&dir.join("admin/package.json"), 0o644);
    let store_pkg = std::fs::File::options()
        .write(true)
        .open(dir.join("store/package.json"))
        .unwrap();
    store_pkg
        .set_modified(std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        .unwrap();
    settle();
    let fourth = backup(&host, &[]);
    assert_eq!(
        linked(&dir, &fourth, &third),
        ["backend", "uploads", "env-pm2"]
    );

    // A full backup writes everything anew, and still records fingerprints for the next one.
    settle();
    let full = backup(&host, &["full=true"]);
    assert!(linked(&dir, &full, &fourth).is_empty());
    settle();
    let after_full = backup(&host, &[]);
    assert_eq!(linked(&dir, &after_full, &full), ARCHIVES);
    verify(&host);
}

#[test]
fn a_linked_backup_verifies_and_restores_after_the_backup_it_came_from_is_deleted() {
    let host = Host::new();
    let db = TestDb::shop("reuse_restore");
    let dir = customer(&host, &db);
    let before_db = db.checksums();
    let before_backend = tree(&dir.join("backend"), &no_dependencies);
    settle();
    let first = backup(&host, &[]);
    settle();
    let second = backup(&host, &[]);
    assert_eq!(linked(&dir, &second, &first), ARCHIVES);

    let out = run(host
        .cmd()
        .args(["backups", "delete", "--customer", DOMAIN, &first]));
    assert!(
        out.status.success(),
        "delete failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!dir.join("backups").join(&first).exists());
    verify(&host);

    // Damage the shop, then restore the backup whose archives were links.
    psql(&db.name, "DELETE FROM orders WHERE id % 2 = 0;");
    write(&dir.join("backend/server.js"), "// broken\n");
    std::fs::remove_file(dir.join("backend/uploads/p.jpg")).unwrap();
    let out = run(host.cmd().args([
        "run",
        "restore",
        "--customer",
        DOMAIN,
        "--json",
        "--param",
        &format!("backup={second}"),
    ]));
    assert!(
        out.status.success(),
        "restore failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(db.checksums(), before_db, "database differs after restore");
    assert_eq!(
        tree(&dir.join("backend"), &no_dependencies),
        before_backend,
        "files differ after restore"
    );
}
