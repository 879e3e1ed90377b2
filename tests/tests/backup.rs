//! End to end through the real binary: file backups of a fixture customer with the shipped
//! `backup` pipeline; every archive is compared with its source tree, and the manifest's sizes
//! and sha256 values with the files.

mod common;

use std::path::Path;

use common::*;

const DOMAIN: &str = "shop.example.com";

/// A customer folder with the things backups get wrong: modes, absolute and relative symlinks,
/// unicode and long names, empty folders, excluded folders at several depths, and look-alikes
/// that must NOT be excluded (`a/tmp`, `logs.txt`, `distribution/`).
fn make_customer(dir: &Path) {
    let b = dir.join("backend");
    write(
        &b.join("package.json"),
        r#"{"name":"backend","version":"1.2.3"}"#,
    );
    write(
        &b.join("server.js"),
        "require('http').createServer().listen(4000)\n",
    );
    write(
        &b.join("scripts/start.sh"),
        "#!/bin/sh\nexec node server.js\n",
    );
    chmod(&b.join("scripts/start.sh"), 0o755);
    write(
        &b.join(".env"),
        "DATABASE_URL=postgres://u:secret@127.0.0.1/db\n",
    );
    chmod(&b.join(".env"), 0o600);
    write(&b.join("src/ürün-görseli ç.js"), "// unicode name\n");
    let long = "a-very-long-folder-name-that-goes-on-and-on".repeat(3);
    write(&b.join(format!("src/{long}/{long}.js")), "// long path\n");
    std::fs::create_dir_all(b.join("empty-folder")).unwrap();
    std::os::unix::fs::symlink("server.js", b.join("index.js")).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", b.join("abs-link")).unwrap();
    std::os::unix::fs::symlink("../admin/package.json", b.join("admin-pkg")).unwrap();
    write(
        &b.join("node_modules/express/index.js"),
        "module.exports = 1\n",
    );
    write(
        &b.join("src/lib/node_modules/deep/x.js"),
        "deep dependency\n",
    );
    write(&b.join("logs/app.log"), "log line\n".repeat(100));
    write(&b.join("dist/bundle.js"), "built\n");
    write(&b.join("logs.txt"), "not a logs folder\n");
    write(&b.join("distribution/readme.md"), "not dist\n");
    write(&b.join("a/tmp/b.txt"), "anchoring\n");
    write(&b.join("uploads/p1.jpg"), noise(50_000, 1));
    write(&b.join("uploads/sub/p2.png"), noise(20_000, 2));
    write(&b.join("big.bin"), noise(3 << 20, 9));

    let a = dir.join("admin");
    write(&a.join("package.json"), r#"{"name":"admin"}"#);
    write(&a.join(".next/cache/x"), noise(1000, 3));
    write(&a.join(".env.local"), "NEXT_PUBLIC_X=1\n");

    let s = dir.join("store");
    write(&s.join("package.json"), r#"{"name":"store"}"#);
    write(&s.join("public/logo.png"), noise(5000, 4));
    write(&s.join("node_modules/react/index.js"), "react\n");

    write(
        &dir.join("ecosystem.config.js"),
        "module.exports = { apps: [] }\n",
    );
}

fn is_excluded(rel: &str, logs: bool, artifacts: bool) -> bool {
    let parts: Vec<&str> = rel.split('/').collect();
    (!artifacts
        && parts
            .iter()
            .any(|p| ["node_modules", ".next", "dist"].contains(p)))
        || (!logs && parts.contains(&"logs"))
}

fn backup_dir(customer: &Path) -> std::path::PathBuf {
    let mut dirs: Vec<_> = std::fs::read_dir(customer.join("backups"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    dirs.sort();
    assert_eq!(dirs.len(), 1, "exactly one backup expected: {dirs:?}");
    dirs.pop().unwrap()
}

fn check_manifest(dir: &Path, expected_files: &[&str]) {
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("backup.json")).unwrap()).unwrap();
    let arts = manifest["artifacts"].as_array().unwrap();
    let mut names: Vec<&str> = arts.iter().map(|a| a["file"].as_str().unwrap()).collect();
    names.sort();
    let mut want = expected_files.to_vec();
    want.sort();
    assert_eq!(names, want);
    for a in arts {
        let file = dir.join(a["file"].as_str().unwrap());
        assert_eq!(
            a["sha256"].as_str().unwrap(),
            sha256_file(&file),
            "{}",
            file.display()
        );
        assert_eq!(
            a["size"].as_u64().unwrap(),
            std::fs::metadata(&file).unwrap().len()
        );
    }
    assert_eq!(manifest["customer"]["domain"], DOMAIN);
    assert_eq!(manifest["customer"]["id"], "42");
}

/// The fast backup's file set (uploads and .env/PM2 in, logs and build artifacts out) without the
/// database, which `backup_pg.rs` covers on a real server.
#[test]
fn file_backup_archives_exactly_the_source_minus_excludes() {
    let host = Host::new();
    let cust = host.customer(DOMAIN);
    make_customer(&cust);
    let out = run(host.cmd().args([
        "run",
        "backup",
        "--customer",
        DOMAIN,
        "--customer-id",
        "42",
        "--json",
        "--param",
        "type=custom",
        "--param",
        "include.db=false",
    ]));
    assert!(out.status.success(), "backup failed");
    let result = run_result(&out);
    assert_eq!(result["status"], "succeeded");

    let dir = backup_dir(&cust);
    check_manifest(
        &dir,
        &[
            "admin.tar.gz",
            "backend.tar.gz",
            "env-pm2.tar.gz",
            "store.tar.gz",
            "uploads.tar.gz",
        ],
    );

    let backend = archive_tree(&dir.join("backend.tar.gz"));
    let expected = tree(&cust.join("backend"), &|r| {
        is_excluded(r, false, false) || r == "uploads" || r.starts_with("uploads/")
    });
    assert_eq!(
        backend.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    assert_eq!(backend, expected);
    assert!(
        backend.contains_key("a/tmp/b.txt")
            && backend.contains_key("logs.txt")
            && backend.contains_key("distribution/readme.md")
    );
    assert_eq!(
        backend["abs-link"],
        Node::Symlink {
            target: "/etc/hostname".into()
        }
    );
    assert!(matches!(
        backend["scripts/start.sh"],
        Node::File { mode: 0o755, .. }
    ));
    assert!(matches!(backend[".env"], Node::File { mode: 0o600, .. }));

    assert_eq!(
        archive_tree(&dir.join("uploads.tar.gz")),
        tree(&cust.join("backend/uploads"), &|_| false)
    );
    assert_eq!(
        archive_tree(&dir.join("admin.tar.gz")),
        tree(&cust.join("admin"), &|r| is_excluded(r, false, false))
    );
    assert_eq!(
        archive_tree(&dir.join("store.tar.gz")),
        tree(&cust.join("store"), &|r| is_excluded(r, false, false))
    );

    let env = archive_tree(&dir.join("env-pm2.tar.gz"));
    let files: Vec<&String> = env
        .iter()
        .filter(|(_, n)| matches!(n, Node::File { .. }))
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        files,
        ["admin/.env.local", "backend/.env", "ecosystem.config.js"]
    );

    // GNU tar and gzip accept what the plugin wrote.
    for f in ["backend.tar.gz", "uploads.tar.gz", "env-pm2.tar.gz"] {
        let st = std::process::Command::new("tar")
            .arg("-tzf")
            .arg(dir.join(f))
            .output()
            .unwrap();
        assert!(
            st.status.success(),
            "GNU tar rejects {f}: {}",
            String::from_utf8_lossy(&st.stderr)
        );
    }
}

#[test]
fn custom_backup_follows_the_include_flags() {
    let host = Host::new();
    let cust = host.customer(DOMAIN);
    make_customer(&cust);
    let out = run(host.cmd().args([
        "run",
        "backup",
        "--customer",
        DOMAIN,
        "--customer-id",
        "42",
        "--json",
        "--param",
        "type=custom",
        "--param",
        "include.db=false",
        "--param",
        "include.logs=true",
        "--param",
        "include.uploads=false",
        "--param",
        "include.envPm2=false",
    ]));
    assert!(out.status.success());
    let dir = backup_dir(&cust);
    check_manifest(&dir, &["admin.tar.gz", "backend.tar.gz", "store.tar.gz"]);
    let backend = archive_tree(&dir.join("backend.tar.gz"));
    let expected = tree(&cust.join("backend"), &|r| {
        is_excluded(r, true, false) || r == "uploads" || r.starts_with("uploads/")
    });
    assert_eq!(backend, expected);
    assert!(backend.contains_key("logs/app.log"));
}

#[test]
fn a_bad_param_or_customer_is_refused_before_anything_runs() {
    let host = Host::new();
    make_customer(&host.customer(DOMAIN));
    let out = run(host.cmd().args([
        "run",
        "backup",
        "--customer",
        DOMAIN,
        "--param",
        "type=weekly",
    ]));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("weekly"));
    let out = run(host.cmd().args(["run", "backup", "--customer", "../etc"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a valid customer domain"));
    let out = run(host
        .cmd()
        .args(["run", "backup", "--customer", "missing.example.com"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
    assert!(!host.customer(DOMAIN).join("backups").exists());
}

#[test]
fn validate_accepts_the_shipped_pipelines() {
    let host = Host::new();
    let out = run(host.cmd().arg("validate"));
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok    "));
}

#[test]
fn validate_names_a_tier_param_no_pipeline_declares_with_its_place() {
    let host = Host::new();
    let tier = tempfile::tempdir().unwrap();
    let file = tier.path().join("tiers/typo.toml");
    write(
        &file,
        "description = \"a typo\"\n[params.\"offsite.repositry\"]\ndefault = \"rest:http://10.0.0.5:8000\"\n",
    );
    let out = run(host.cmd().arg("validate").arg(&file));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}:2:9: error: no pipeline declares the param `offsite.repositry`",
            file.display()
        )) && err.contains("did you mean `offsite.repository`?"),
        "{err}"
    );
}
