//! Restore round trips on a real PostgreSQL server through the real binary: back up, change the
//! data and the files, restore, compare with the original; and hostile archives that must be
//! refused without touching anything.

mod common;
mod pg;

use std::path::{Path, PathBuf};

use common::*;
use pg::{TestDb, psql};

const DOMAIN: &str = "shop.example.com";

fn customer(host: &Host, db: &TestDb) -> PathBuf {
    let dir = plain_shop(
        &host.customer(DOMAIN),
        &db.url("pw"),
        &[("p.jpg".into(), noise(20_000, 3))],
    );
    let b = dir.join("backend");
    write(&b.join("scripts/run.sh"), "#!/bin/sh\n");
    chmod(&b.join("scripts/run.sh"), 0o755);
    std::os::unix::fs::symlink("server.js", b.join("index.js")).unwrap();
    write(&b.join("node_modules/dep/index.js"), "dep\n");
    dir
}

fn take_backup(host: &Host) -> String {
    let out = run(host
        .cmd()
        .args(["run", "backup", "--customer", DOMAIN, "--json"]));
    assert!(out.status.success(), "backup failed");
    run_result(&out)["backup"].as_str().unwrap().to_owned()
}

fn restore(host: &Host, id: &str, extra: &[&str]) -> std::process::Output {
    let mut c = host.cmd();
    c.args([
        "run",
        "restore",
        "--customer",
        DOMAIN,
        "--json",
        "--param",
        &format!("backup={id}"),
    ]);
    for p in extra {
        c.args(["--param", p]);
    }
    run(&mut c)
}

fn no_dependencies(r: &str) -> bool {
    r.split('/').any(|c| c == "node_modules")
}

#[test]
fn restore_gives_back_the_database_and_files_of_the_backup() {
    let host = Host::new();
    let db = TestDb::shop("roundtrip");
    let dir = customer(&host, &db);
    let before_db = db.checksums();
    let before_backend = tree(&dir.join("backend"), &no_dependencies);
    let id = take_backup(&host);

    // Damage: rows, a sequence, files, modes, the .env.
    psql(
        &db.name,
        "DELETE FROM orders WHERE id % 3 = 0; UPDATE customers SET name = 'x'; SELECT nextval('invoice_seq');",
    );
    assert_ne!(db.checksums(), before_db);
    write(&dir.join("backend/server.js"), "// broken v2\n");
    std::fs::remove_file(dir.join("backend/src/a.js")).unwrap();
    write(&dir.join("backend/src/new.js"), "new\n");
    chmod(&dir.join("backend/scripts/run.sh"), 0o644);
    std::fs::remove_file(dir.join("backend/uploads/p.jpg")).unwrap();
    write(
        &dir.join("backend/.env"),
        format!("DATABASE_URL={}\nBROKEN=1\n", db.url("pw")),
    );

    let out = restore(&host, &id, &[]);
    assert!(out.status.success(), "restore failed");
    assert_eq!(db.checksums(), before_db, "database differs after restore");
    assert_eq!(
        tree(&dir.join("backend"), &no_dependencies),
        before_backend,
        "files differ after restore"
    );
    // What the backup left out was carried over from the live folder.
    assert!(dir.join("backend/node_modules/dep/index.js").is_file());
    // Nothing of the restore is left lying around.
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".restore"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn the_database_can_go_to_another_database_and_files_only_leaves_the_database_alone() {
    let host = Host::new();
    let db = TestDb::shop("target");
    customer(&host, &db);
    let before = db.checksums();
    let id = take_backup(&host);
    let other = TestDb::empty("other");
    let out = restore(
        &host,
        &id,
        &[
            &format!("targetDb={}", other.name),
            "include.services=false",
            "include.uploads=false",
            "include.envPm2=false",
        ],
    );
    assert!(out.status.success());
    assert_eq!(other.checksums(), before);

    psql(
        &db.name,
        "UPDATE customers SET note = 'changed' WHERE id = 3",
    );
    let changed = db.checksums();
    let out = restore(&host, &id, &["include.db=false"]);
    assert!(out.status.success());
    assert_eq!(
        db.checksums(),
        changed,
        "a files-only restore touched the database"
    );
}

#[test]
fn blue_green_uploads_go_back_into_shared_uploads_and_the_link_stays() {
    let host = Host::new();
    let db = TestDb::empty("bg");
    let dir = host.customer(DOMAIN);
    let rel = dir.join("releases/v2.0.0");
    write(&rel.join("backend/package.json"), r#"{"version":"2.0.0"}"#);
    write(
        &rel.join("backend/.env"),
        format!("DATABASE_URL={}\n", db.url("pw")),
    );
    write(&dir.join("shared/uploads/a.jpg"), noise(5000, 8));
    std::os::unix::fs::symlink("../../../shared/uploads", rel.join("backend/uploads")).unwrap();
    std::os::unix::fs::symlink("releases/v2.0.0", dir.join("current")).unwrap();
    std::os::unix::fs::symlink("current/backend", dir.join("backend")).unwrap();
    let before = tree(&dir.join("shared/uploads"), &|_| false);
    let id = take_backup(&host);
    std::fs::remove_file(dir.join("shared/uploads/a.jpg")).unwrap();
    write(&dir.join("shared/uploads/b.jpg"), "b");
    let out = restore(&host, &id, &["include.db=false"]);
    assert!(out.status.success());
    assert_eq!(tree(&dir.join("shared/uploads"), &|_| false), before);
    assert_eq!(
        std::fs::read_link(rel.join("backend/uploads")).unwrap(),
        Path::new("../../../shared/uploads")
    );
    assert_eq!(
        std::fs::read_link(dir.join("backend")).unwrap(),
        Path::new("current/backend")
    );
}

/// A backup folder written by hand, with a correct backup.json, around a hostile archive.
fn plant_backup(dir: &Path, id: &str, archive: Vec<u8>) {
    let b = dir.join("backups").join(id);
    write(&b.join("backend.tar.gz"), &archive);
    let manifest = serde_json::json!({
        "formatVersion": 1, "id": id, "customer": {"domain": DOMAIN, "id": DOMAIN},
        "artifacts": [{"name": "backend", "file": "backend.tar.gz", "size": archive.len(), "sha256": sha256_file(&b.join("backend.tar.gz"))}],
    });
    write(
        &b.join("backup.json"),
        serde_json::to_vec_pretty(&manifest).unwrap(),
    );
}

fn tar_gz(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    build(&mut b);
    let raw = b.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &raw).unwrap();
    gz.finish().unwrap()
}

#[test]
fn hostile_archives_are_refused_and_nothing_outside_staging_changes() {
    let host = Host::new();
    let db = TestDb::empty("hostile");
    let dir = customer(&host, &db);
    let canary = host.tmp.path().join("canary");
    write(&canary.join("victim.txt"), "untouched");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "symlink-then-write-through",
            tar_gz(|b| {
                let mut h = tar::Header::new_gnu();
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                h.set_mode(0o777);
                b.append_link(&mut h, "evil", &canary).unwrap();
                let mut h = tar::Header::new_gnu();
                h.set_size(5);
                h.set_mode(0o644);
                h.set_cksum();
                b.append_data(&mut h, "evil/victim.txt", &b"pwned"[..])
                    .unwrap();
            }),
        ),
        (
            "dotdot",
            tar_gz(|b| {
                let mut h = tar::Header::new_old();
                h.as_old_mut().name[..11].copy_from_slice(b"../../x.txt");
                h.set_size(1);
                h.set_mode(0o644);
                h.set_cksum();
                b.append(&h, &b"x"[..]).unwrap();
            }),
        ),
        (
            "hard-link",
            tar_gz(|b| {
                let mut h = tar::Header::new_gnu();
                h.set_entry_type(tar::EntryType::Link);
                h.set_size(0);
                b.append_link(&mut h, "passwd", "/etc/passwd").unwrap();
            }),
        ),
    ];
    let before_backend = tree(&dir.join("backend"), &|_| false);
    for (i, (what, archive)) in cases.into_iter().enumerate() {
        let id = format!("2020010{}-000000", i + 1);
        plant_backup(&dir, &id, archive);
        let out = restore(
            &host,
            &id,
            &[
                "include.db=false",
                "include.uploads=false",
                "include.envPm2=false",
            ],
        );
        assert_eq!(
            out.status.code(),
            Some(1),
            "{what}: the hostile archive was accepted"
        );
        let err = run_result(&out)["error"].as_str().unwrap().to_owned();
        assert!(
            err.starts_with("step restore-backend failed (permission-denied)"),
            "{what}: {err}"
        );
        assert_eq!(
            std::fs::read_to_string(canary.join("victim.txt")).unwrap(),
            "untouched",
            "{what}"
        );
        assert!(
            !host.tmp.path().join("x.txt").exists() && !dir.join("x.txt").exists(),
            "{what}"
        );
        assert_eq!(
            tree(&dir.join("backend"), &|_| false),
            before_backend,
            "{what}: the live folder changed"
        );
    }
}

/// Damages the database and the files after a backup: the state a restore starts from.
fn damage(db: &TestDb, dir: &Path) {
    psql(
        &db.name,
        "DELETE FROM orders WHERE id % 3 = 0; UPDATE customers SET name = 'x'; SELECT nextval('invoice_seq');",
    );
    write(
        &dir.join("backend/server.js"),
        "// v2, written after the backup\n",
    );
    write(&dir.join("backend/src/new.js"), "new\n");
    write(&dir.join("admin/package.json"), r#"{"name":"admin","v":2}"#);
    write(
        &dir.join("ecosystem.config.js"),
        "module.exports = {v: 2}\n",
    );
}

/// Everything of the customer folder but its backups.
fn customer_tree(dir: &Path) -> std::collections::BTreeMap<String, Node> {
    tree(dir, &|r| r.starts_with("backups"))
}

fn restore_leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".restore"))
        .collect()
}

/// Replaces one archive of a backup and fixes its sha256 and size in backup.json, so `verify`
/// passes and the failure comes from the restore step itself.
fn replace_archive(dir: &Path, id: &str, file: &str, archive: Vec<u8>) {
    let b = dir.join("backups").join(id);
    write(&b.join(file), &archive);
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(b.join("backup.json")).unwrap()).unwrap();
    for a in manifest["artifacts"].as_array_mut().unwrap() {
        if a["file"] == file {
            a["size"] = archive.len().into();
            a["sha256"] = sha256_file(&b.join(file)).into();
        }
    }
    write(
        &b.join("backup.json"),
        serde_json::to_vec_pretty(&manifest).unwrap(),
    );
}

#[test]
fn a_restore_that_fails_half_way_puts_the_database_and_the_files_back() {
    let host = Host::new();
    let db = TestDb::shop("undo");
    let dir = customer(&host, &db);
    let id = take_backup(&host);
    damage(&db, &dir);
    let before_db = db.checksums();
    let before = customer_tree(&dir);
    // The store archive, restored after the database, the backend and the admin, is refused.
    let hostile = tar_gz(|b| {
        let mut h = tar::Header::new_old();
        h.as_old_mut().name[..11].copy_from_slice(b"../../x.txt");
        h.set_size(1);
        h.set_mode(0o644);
        h.set_cksum();
        b.append(&h, &b"x"[..]).unwrap();
    });
    replace_archive(&dir, &id, "store.tar.gz", hostile);

    let out = restore(&host, &id, &[]);
    assert_eq!(out.status.code(), Some(1));
    let result = run_result(&out);
    let err = result["error"].as_str().unwrap();
    assert!(err.starts_with("step restore-store failed"), "{err}");
    let stderr = String::from_utf8_lossy(&out.stdout);
    for step in [
        "db-restore",
        "restore-backend",
        "restore-admin",
        "undo-files",
        "undo-db",
    ] {
        assert!(
            stderr.contains(&format!("\"{step}\"")),
            "{step} did not run"
        );
    }
    assert_eq!(db.checksums(), before_db, "the database was not put back");
    assert_eq!(customer_tree(&dir), before, "the files were not put back");
    assert!(
        restore_leftovers(&dir).is_empty(),
        "{:?}",
        restore_leftovers(&dir)
    );
}

fn pg_restore_running(db: &str) -> bool {
    std::process::Command::new("pgrep")
        .args(["-f", &format!("pg_restore .*--dbname={db}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[test]
fn a_host_killed_mid_restore_leaves_the_database_whole_and_the_next_start_puts_everything_back() {
    const TOKEN: &str = "restore-kill-token";
    let host = Host::new();
    let db = TestDb::shop("killrestore");
    // Enough rows for pg_restore to be caught in the middle.
    psql(
        &db.name,
        "CREATE TABLE big AS SELECT g, md5(g::text) AS m FROM generate_series(1, 1500000) g;
         CREATE INDEX big_m ON big (m);",
    );
    let dir = customer(&host, &db);
    let id = take_backup(&host);
    damage(&db, &dir);
    psql(&db.name, "DELETE FROM big WHERE g % 2 = 0");
    let big = || psql(&db.name, "SELECT count(*) FROM big");
    let (before_db, before_big) = (db.checksums(), big());
    let before = customer_tree(&dir);

    let call = |s: &Server, method: &str, path: &str| {
        ureq::request(method, &format!("{}{path}", s.base))
            .set("Authorization", &format!("Bearer {TOKEN}"))
            .timeout(std::time::Duration::from_secs(30))
    };
    let mut s = host.serve(TOKEN, &[]);
    call(&s, "PUT", "/api/customers/42")
        .send_json(serde_json::json!({"domain": DOMAIN}))
        .unwrap();
    let body: serde_json::Value = call(&s, "POST", "/api/customers/42/restores")
        .send_json(serde_json::json!({"backup": id}))
        .unwrap()
        .into_json()
        .unwrap();
    let run_id = body["runId"].as_str().unwrap().to_owned();
    let until = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !pg_restore_running(&db.name) {
        assert!(
            std::time::Instant::now() < until,
            "pg_restore never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    s.child.kill().unwrap(); // SIGKILL
    s.child.wait().unwrap();
    // Nothing the host started outlives it, and the half-done transaction is gone with it.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while pg_restore_running(&db.name) {
        assert!(
            std::time::Instant::now() < until,
            "pg_restore outlived the host"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(
        db.checksums(),
        before_db,
        "a killed restore changed the database"
    );
    assert_eq!(big(), before_big);
    assert!(
        dir.join(format!(".restore-{run_id}-db/journal.json"))
            .is_file(),
        "the database journal is what tells the next start to put the database back"
    );

    // The next start runs the restore's undo before it serves anything.
    let s = host.serve(TOKEN, &[]);
    let run: serde_json::Value = call(&s, "GET", &format!("/api/runs/{run_id}"))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    assert_eq!(run["state"], "interrupted", "{run}");
    assert_eq!(db.checksums(), before_db, "{run}");
    assert_eq!(big(), before_big);
    assert_eq!(customer_tree(&dir), before);
    assert!(
        restore_leftovers(&dir).is_empty(),
        "{:?}",
        restore_leftovers(&dir)
    );
}

/// A shop the installer set up directly in the plan's blue/green layout (§3.2): releases,
/// `current`, `shared/uploads`, and none of the top-level `backend`/`admin`/`store` links that
/// `migrate-layout` leaves. `current` is a relative link, or an absolute one (what `ln -sfn
/// /…/releases/1.4.0 current` makes).
fn fresh_blue_green(host: &Host, db: &TestDb, absolute: bool) -> PathBuf {
    let dir = host.customer(DOMAIN);
    let rel = dir.join("releases/1.4.0");
    for svc in ["backend", "admin", "store"] {
        write(
            &rel.join(svc).join("package.json"),
            format!(r#"{{"name":"{svc}","version":"1.4.0"}}"#),
        );
        write(&rel.join(svc).join("src/index.js"), format!("// {svc}\n"));
        write(&rel.join(svc).join("node_modules/dep/x.js"), "dep\n");
    }
    write(
        &rel.join("backend/.env"),
        format!("DATABASE_URL={}\n", db.url("pw")),
    );
    chmod(&rel.join("backend/.env"), 0o600);
    write(&rel.join("store/.env.production"), "NEXT_PUBLIC_X=1\n");
    write(&dir.join("shared/uploads/p.jpg"), noise(30_000, 5));
    write(&dir.join("shared/uploads/sub/q.png"), noise(7_000, 6));
    write(&dir.join("ecosystem.config.js"), "module.exports = {}\n");
    if absolute {
        std::os::unix::fs::symlink(&rel, dir.join("current")).unwrap();
    } else {
        std::os::unix::fs::symlink("releases/1.4.0", dir.join("current")).unwrap();
    }
    dir
}

#[test]
fn a_shop_installed_straight_into_blue_green_is_backed_up_and_restored_whole() {
    for absolute in [false, true] {
        let host = Host::new();
        let db = TestDb::shop(if absolute { "bgabs" } else { "bgrel" });
        let dir = fresh_blue_green(&host, &db, absolute);
        let rel = dir.join("releases/1.4.0");
        let before_db = db.checksums();
        let before = customer_tree(&dir);
        let id = take_backup(&host);

        // Every part is in the backup, taken from the release and from shared/uploads.
        let b = dir.join("backups").join(&id);
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(b.join("backup.json")).unwrap()).unwrap();
        assert_eq!(manifest["paths"]["uploadsPath"], "shared/uploads");
        assert_eq!(manifest["versions"]["backend"], "1.4.0");
        let names: Vec<&str> = manifest["artifacts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["file"].as_str().unwrap())
            .collect();
        for want in [
            "db.dump",
            "backend.tar.gz",
            "admin.tar.gz",
            "store.tar.gz",
            "uploads.tar.gz",
            "env-pm2.tar.gz",
        ] {
            assert!(names.contains(&want), "{want} missing from {names:?}");
        }
        let uploads = archive_tree(&b.join("uploads.tar.gz"));
        assert!(
            uploads.contains_key("p.jpg") && uploads.contains_key("sub/q.png"),
            "{uploads:?}"
        );
        let backend = archive_tree(&b.join("backend.tar.gz"));
        assert!(backend.contains_key("src/index.js"), "{backend:?}");
        assert!(!backend.keys().any(|k| k.contains("node_modules")));

        // Damage everything, then restore.
        damage_release(&db, &dir);
        let out = restore(&host, &id, &[]);
        assert!(
            out.status.success(),
            "restore failed (absolute: {absolute})"
        );
        assert_eq!(db.checksums(), before_db, "database differs after restore");
        assert_eq!(customer_tree(&dir), before, "files differ after restore");
        assert!(restore_leftovers(&dir).is_empty());
        // The layout is the one the shop had: no link appeared on top, `current` unchanged.
        for svc in ["backend", "admin", "store"] {
            assert!(
                std::fs::symlink_metadata(dir.join(svc)).is_err(),
                "{svc} appeared"
            );
        }
        assert!(rel.join("backend/node_modules/dep/x.js").is_file());
    }
}

/// Changes the database, the release's files and the shared uploads after a backup.
fn damage_release(db: &TestDb, dir: &Path) {
    psql(
        &db.name,
        "DELETE FROM orders WHERE id % 2 = 0; UPDATE customers SET name = 'y';",
    );
    let rel = dir.join("releases/1.4.0");
    write(&rel.join("backend/src/index.js"), "// broken\n");
    write(&rel.join("admin/src/new.js"), "new\n");
    std::fs::remove_file(rel.join("store/.env.production")).unwrap();
    std::fs::remove_file(dir.join("shared/uploads/p.jpg")).unwrap();
    write(&dir.join("shared/uploads/evil.php"), "<?php\n");
    write(
        &dir.join("ecosystem.config.js"),
        "module.exports = {v: 2}\n",
    );
}
