//! The plan's backup flow on a real PostgreSQL server with the real `pg_dump`/`pg_restore`,
//! through the real binary: artifacts per include flag, modes, backup.json (§6.2), a restore of
//! the dump that gives back the same rows, both layouts, retention, failures and crashes.

mod common;
mod pg;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use pg::{TestDb, psql};

const DOMAIN: &str = "shop.example.com";
const SECRET: &str = "s3cret-Pa55";

/// A customer in the current layout whose backend/.env points at `db`.
fn customer(host: &Host, db: &TestDb) -> PathBuf {
    let dir = host.customer(DOMAIN);
    let b = dir.join("backend");
    write(
        &b.join("package.json"),
        r#"{"name":"backend","version":"2.3.4","packageManager":"npm@10.8.2"}"#,
    );
    write(
        &b.join("server.js"),
        "require('http').createServer().listen(4000)\n",
    );
    write(
        &b.join(".env"),
        format!(
            "PORT=4000\nDATABASE_URL={}\nJWT_SECRET=jwt-{SECRET}\n",
            db.url(SECRET)
        ),
    );
    chmod(&b.join(".env"), 0o600);
    write(&b.join("node_modules/x/index.js"), "x\n");
    write(&b.join("logs/app.log"), "line\n");
    write(&b.join("uploads/a.jpg"), noise(30_000, 1));
    write(
        &dir.join("admin/package.json"),
        r#"{"name":"admin","version":"1.1.0"}"#,
    );
    write(&dir.join("admin/.next/cache/x"), "cache\n");
    write(
        &dir.join("store/package.json"),
        r#"{"name":"store","version":"1.0.9"}"#,
    );
    write(
        &dir.join("store/.env"),
        "NEXT_PUBLIC_API=http://127.0.0.1:4000\n",
    );
    write(
        &dir.join("ecosystem.config.js"),
        "module.exports = { apps: [] }\n",
    );
    dir
}

fn backups(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join("backups"))
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn listed(host: &Host) -> Vec<String> {
    let out = run(host
        .cmd()
        .args(["backups", "list", "--customer", DOMAIN, "--json"]));
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap().to_owned())
        .collect()
}

fn files_of(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

fn backup(host: &Host, params: &[&str]) -> std::process::Output {
    let mut c = host.cmd();
    c.args([
        "run",
        "backup",
        "--customer",
        DOMAIN,
        "--customer-id",
        "42",
        "--json",
    ]);
    for p in params {
        c.args(["--param", p]);
    }
    run(&mut c)
}

/// Backup ids are per second: make sure the next run gets a new one.
fn next_second() {
    std::thread::sleep(std::time::Duration::from_millis(1100));
}

#[test]
fn fast_backup_holds_a_dump_that_restores_to_the_same_rows() {
    let host = Host::new();
    let db = TestDb::shop("fast");
    let dir = customer(&host, &db);
    let out = backup(&host, &[]);
    assert!(out.status.success(), "fast backup failed");
    let all =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(!all.contains(SECRET), "a secret leaked into the output");

    let b = backups(&dir);
    assert_eq!(b.len(), 1, "{b:?}");
    let bdir = &b[0];
    assert_eq!(
        files_of(bdir),
        [
            "admin.tar.gz",
            "backend.tar.gz",
            "backup.json",
            "db.dump",
            "env-pm2.tar.gz",
            "store.tar.gz",
            "uploads.tar.gz"
        ]
    );
    assert_eq!(mode(bdir), 0o700);
    for f in files_of(bdir) {
        assert_eq!(mode(&bdir.join(&f)), 0o600, "{f}");
    }

    // backup.json has every §6.2 field and its hashes verify.
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bdir.join("backup.json")).unwrap()).unwrap();
    assert_eq!(m["customer"]["domain"], DOMAIN);
    assert_eq!(m["customer"]["id"], "42");
    assert_eq!(m["id"], bdir.file_name().unwrap().to_str().unwrap());
    assert!(m["timestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(m["type"], "fast");
    assert_eq!(
        m["include"],
        serde_json::json!({"db": true, "uploads": true, "envPm2": true, "logs": false, "artifacts": false})
    );
    assert_eq!(
        m["versions"],
        serde_json::json!({"backend": "2.3.4", "admin": "1.1.0", "store": "1.0.9"})
    );
    assert_eq!(m["paths"]["uploadsPath"], "backend/uploads");
    assert!(
        m["engine"]["node"].as_str().unwrap().starts_with('v'),
        "{}",
        m["engine"]
    );
    assert!(
        m["engine"]["postgres"].as_str().unwrap().starts_with("15"),
        "{}",
        m["engine"]
    );
    assert!(m["engine"]["packageManager"].is_string());
    assert!(m["stats"]["totalMB"].is_number() && m["stats"]["durationSeconds"].is_number());
    for a in m["artifacts"].as_array().unwrap() {
        let f = bdir.join(a["file"].as_str().unwrap());
        assert_eq!(a["sha256"].as_str().unwrap(), sha256_file(&f));
        assert_eq!(
            a["size"].as_u64().unwrap(),
            std::fs::metadata(&f).unwrap().len()
        );
    }
    let out = run(host.cmd().args(["backups", "verify", "--customer", DOMAIN]));
    assert!(out.status.success());

    // The dump restores, with the real pg_restore, to identical rows.
    let fresh = TestDb::empty("fresh");
    let st = Command::new("pg_restore")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "--no-owner",
            "-d",
            &fresh.name,
        ])
        .arg(bdir.join("db.dump"))
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(fresh.checksums(), db.checksums());

    // Archives are the source trees minus the excludes.
    let skip = |r: &str| {
        let p: Vec<&str> = r.split('/').collect();
        p.iter()
            .any(|c| ["node_modules", ".next", "dist", "logs"].contains(c))
            || p[0] == "uploads"
    };
    assert_eq!(
        archive_tree(&bdir.join("backend.tar.gz")),
        tree(&dir.join("backend"), &skip)
    );
    assert_eq!(
        archive_tree(&bdir.join("uploads.tar.gz")),
        tree(&dir.join("backend/uploads"), &|_| false)
    );
    assert_eq!(
        listed(&host),
        [bdir.file_name().unwrap().to_string_lossy().into_owned()]
    );
}

#[test]
fn custom_backup_takes_exactly_what_the_flags_ask_for() {
    let host = Host::new();
    let db = TestDb::shop("custom");
    let dir = customer(&host, &db);
    let out = backup(
        &host,
        &[
            "type=custom",
            "include.db=false",
            "include.uploads=false",
            "include.logs=true",
        ],
    );
    assert!(out.status.success());
    let b = backups(&dir);
    assert_eq!(
        files_of(&b[0]),
        [
            "admin.tar.gz",
            "backend.tar.gz",
            "backup.json",
            "env-pm2.tar.gz",
            "store.tar.gz"
        ]
    );
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(b[0].join("backup.json")).unwrap()).unwrap();
    assert_eq!(
        m["include"],
        serde_json::json!({"db": false, "uploads": false, "envPm2": true, "logs": true, "artifacts": false})
    );
    assert!(archive_tree(&b[0].join("backend.tar.gz")).contains_key("logs/app.log"));
    assert!(m["engine"]["postgres"].is_null());
}

#[test]
fn blue_green_layout_takes_uploads_from_shared() {
    let host = Host::new();
    let db = TestDb::shop("bluegreen");
    let dir = host.customer(DOMAIN);
    let rel = dir.join("releases/v1.4.0");
    write(
        &rel.join("backend/package.json"),
        r#"{"name":"backend","version":"1.4.0"}"#,
    );
    write(
        &rel.join("backend/.env"),
        format!("DATABASE_URL={}\n", db.url(SECRET)),
    );
    write(
        &rel.join("admin/package.json"),
        r#"{"name":"admin","version":"1.4.0"}"#,
    );
    write(
        &rel.join("store/package.json"),
        r#"{"name":"store","version":"1.4.0"}"#,
    );
    write(&dir.join("shared/uploads/p/1.jpg"), noise(10_000, 5));
    std::os::unix::fs::symlink("../../../shared/uploads", rel.join("backend/uploads")).unwrap();
    std::os::unix::fs::symlink("releases/v1.4.0", dir.join("current")).unwrap();
    for svc in ["backend", "admin", "store"] {
        std::os::unix::fs::symlink(format!("current/{svc}"), dir.join(svc)).unwrap();
    }
    let out = backup(&host, &[]);
    assert!(out.status.success());
    let b = backups(&dir);
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(b[0].join("backup.json")).unwrap()).unwrap();
    assert_eq!(m["paths"]["uploadsPath"], "shared/uploads");
    assert_eq!(m["versions"]["backend"], "v1.4.0");
    assert_eq!(
        archive_tree(&b[0].join("uploads.tar.gz")),
        tree(&dir.join("shared/uploads"), &|_| false)
    );
}

#[test]
fn retention_keeps_the_newest_successful_backups_and_failures_count_for_nothing() {
    let host = Host::new();
    let db = TestDb::shop("retention");
    let dir = customer(&host, &db);
    let mut made = Vec::new();
    for i in 0..7 {
        if i > 0 {
            next_second();
        }
        if i == 3 {
            // A failed run in between: the database is gone for a moment.
            let env = dir.join("backend/.env");
            let good = std::fs::read_to_string(&env).unwrap();
            std::fs::write(&env, good.replace(&db.name, "no_such_database_here")).unwrap();
            let before = backups(&dir);
            let out = backup(&host, &["retention=5"]);
            assert_eq!(out.status.code(), Some(1));
            let text = String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr);
            assert!(
                text.contains("no_such_database_here") && text.contains("does not exist"),
                "cause not named"
            );
            assert!(!text.contains(SECRET), "secret leaked");
            assert_eq!(
                backups(&dir),
                before,
                "a failed run left something behind or deleted something"
            );
            std::fs::write(&env, good).unwrap();
            next_second();
        }
        let out = backup(&host, &["retention=5"]);
        assert!(out.status.success());
        made.push(run_result(&out)["backup"].as_str().unwrap().to_owned());
        if i == 0 {
            // Pin the oldest, as an upgrade does with its pre-upgrade backup.
            write(
                &dir.join("backups/.pins").join(&made[0]),
                "pre-upgrade v2.0.0",
            );
        }
    }
    let mut want: Vec<String> = made[2..].to_vec();
    want.push(made[0].clone());
    want.sort();
    want.reverse();
    assert_eq!(listed(&host), want, "newest five plus the pinned one");
    let out = run(host
        .cmd()
        .args(["backups", "delete", "--customer", DOMAIN, &made[0]]));
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("pinned"));
}

#[test]
fn a_killed_backup_lists_nothing_and_the_next_run_cleans_up() {
    let host = Host::new();
    let db = TestDb::shop("crash");
    let dir = customer(&host, &db);
    // Enough uploads that the run is still writing when it is killed.
    for i in 0..8 {
        write(
            &dir.join(format!("backend/uploads/big{i}.bin")),
            noise(16 << 20, i),
        );
    }
    let mut child = host
        .cmd()
        .args(["run", "backup", "--customer", DOMAIN, "--json"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        let partial = backups(&dir).iter().any(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(".partial-")
        });
        if partial {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(listed(&host).is_empty(), "a partial backup was listed");
    next_second();
    let out = backup(&host, &[]);
    assert!(
        out.status.success(),
        "the lock of the killed run blocked the next one"
    );
    let names: Vec<String> = backups(&dir)
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(!names[0].starts_with('.'));
    assert_eq!(listed(&host), names);
}

#[test]
fn a_flipped_byte_makes_verify_fail_and_name_the_file() {
    let host = Host::new();
    let db = TestDb::shop("flip");
    let dir = customer(&host, &db);
    assert!(backup(&host, &[]).status.success());
    let b = &backups(&dir)[0];
    let f = b.join("store.tar.gz");
    let mut bytes = std::fs::read(&f).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&f, bytes).unwrap();
    let out = run(host.cmd().args(["backups", "verify", "--customer", DOMAIN]));
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("store.tar.gz") && text.contains("sha256"),
        "{text}"
    );
    let _ = psql(&db.name, "SELECT 1");
}
