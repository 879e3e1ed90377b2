use super::*;
use qodify_plugin_sdk::fs::{FileKind, Metadata, Timestamp};

fn plan(json: serde_json::Value) -> Result<Plan, Error> {
    let config: Config = qodify_plugin_sdk::__private::parse_config(&json.to_string())?;
    Plan::new(config)
}

fn release(version: &str, from: &[&str]) -> serde_json::Value {
    serde_json::json!({
        "version": version,
        "package": {"path": format!("packages/{version}.tar.gz"), "sha256": "0".repeat(64)},
        "compat": {"node": ">=18.17 <23", "postgres": ">=13 <18", "upgradeFrom": from},
    })
}

/// v1.0.0 → v1.1.0 → v1.2.0, and v2.0.0 only from v1.2.0 (built through serde, as read).
fn catalog() -> Catalog {
    serde_json::from_value(serde_json::json!({
        "releases": [
            release("v1.0.0", &[]),
            release("v1.1.0", &["v1.0.0"]),
            release("v1.2.0", &["v1.1.0"]),
            release("v2.0.0", &["v1.2.0"]),
        ]
    }))
    .unwrap()
}

fn link(target: &str) -> Metadata {
    Metadata {
        kind: FileKind::Symlink,
        mode: 0o777,
        size: target.len() as u64,
        mtime: Timestamp::default(),
        uid: 0,
        gid: 0,
        symlink_target: Some(target.into()),
    }
}

#[test]
fn config_defaults_and_checks() {
    let p = plan(serde_json::json!({"target": "v1.1.0"})).unwrap();
    assert_eq!(p.catalog, "/releases/releases.json");
    assert_eq!(p.catalog_dir, "/releases");
    assert_eq!(p.customer, "/customer");
    assert_eq!(p.releases_dir(), "/customer/releases");
    assert_eq!(p.env_file, "/customer/current/backend/.env");
    assert_eq!(p.variable, "DATABASE_URL");
    assert_eq!((p.backup, p.db_policy), (None, DbPolicy::Restore));

    let p = plan(serde_json::json!({
        "target": "v2", "backup": "20261126-101500", "db_policy": "keep",
        "customer": "/c/", "catalog": "/r/x/releases.json"
    }))
    .unwrap();
    assert_eq!(p.backup.as_deref(), Some("20261126-101500"));
    assert_eq!(p.db_policy, DbPolicy::Keep);
    assert_eq!(
        (p.customer.as_str(), p.catalog_dir.as_str()),
        ("/c", "/r/x")
    );
    assert_eq!(
        plan(serde_json::json!({"target": "v2", "backup": ""}))
            .unwrap()
            .backup,
        None
    );

    for (json, needle) in [
        (serde_json::json!({"target": ""}), "target is empty"),
        (
            serde_json::json!({"target": "../v1"}),
            "not a release version name",
        ),
        (
            serde_json::json!({"target": ".upgrade.json"}),
            "not a release version name",
        ),
        (
            serde_json::json!({"target": "v1", "db_policy": "drop"}),
            "db_policy",
        ),
        (
            serde_json::json!({"target": "v1", "catalog": "releases.json"}),
            "absolute",
        ),
        (
            serde_json::json!({"target": "v1", "customer": "/"}),
            "not `/`",
        ),
        (
            serde_json::json!({"target": "v1", "variable": "A-B"}),
            "plain environment",
        ),
        (
            serde_json::json!({"target": "v1", "verison": "x"}),
            "verison",
        ),
        (serde_json::json!({}), "target"),
    ] {
        let err = plan(json.clone()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{json}");
        assert!(err.message().contains(needle), "{json}: {err}");
    }
}

#[test]
fn the_layout_must_be_blue_green() {
    assert_eq!(
        current_version(Some(&link("releases/v1.0.0"))).unwrap(),
        "v1.0.0"
    );
    let folder = Metadata {
        kind: FileKind::Directory,
        symlink_target: None,
        ..link("x")
    };
    for meta in [
        None,
        Some(folder),
        Some(link("/abs/releases/v1")),
        Some(link("releases/../x")),
    ] {
        let err = current_version(meta.as_ref()).unwrap_err();
        assert!(
            err.message()
                .contains("run the migrate-layout pipeline first"),
            "{err}"
        );
    }
}

#[test]
fn a_left_over_journal_refuses_with_its_run_and_versions() {
    let j = Journal {
        run: "run-7".into(),
        from: "v1.0.0".into(),
        to: "v1.1.0".into(),
        backup: None,
        db_policy: DbPolicy::Restore,
        unpacked: true,
        migrate: Migrate::Started,
        swapped: false,
        started: "20261126-101500".into(),
    };
    let err = unfinished(&j, "/customer/releases", "shop.example.com");
    assert!(
        err.message().starts_with(
            "an earlier upgrade (run run-7, from v1.0.0 to v1.1.0) did not finish and was not \
             rolled back: run `qodify-host recover --customer shop.example.com`"
        ),
        "{err}"
    );
    assert!(
        err.message().contains("/customer/releases/.upgrade.json"),
        "{err}"
    );
}

#[test]
fn targets_must_be_known_new_and_reachable() {
    let c = catalog();
    assert_eq!(
        check_upgrade(&c, "v1.0.0", "v1.1.0").unwrap().version,
        "v1.1.0"
    );

    let err = check_upgrade(&c, "v1.0.0", "v9").unwrap_err();
    assert!(
        err.message()
            .starts_with("unknown release `v9`; the catalog has: v1.0.0, v1.1.0, v1.2.0, v2.0.0"),
        "{err}"
    );
    let err = check_upgrade(&c, "v1.1.0", "v1.1.0").unwrap_err();
    assert_eq!(
        err.message(),
        "the customer already runs v1.1.0; nothing to upgrade"
    );

    let err = check_upgrade(&c, "v1.0.0", "v2.0.0").unwrap_err();
    assert_eq!(
        err.message(),
        "v2.0.0 cannot be installed over v1.0.0: it upgrades from v1.2.0; upgrade through \
         v1.1.0, then v1.2.0 first (v1.0.0 → v1.1.0 → v1.2.0 → v2.0.0)"
    );
    let err = check_upgrade(&c, "v1.2.0", "v1.1.0").unwrap_err();
    assert!(
        err.message().ends_with(
            "no chain of releases in the catalog leads from v1.2.0 to v1.1.0; add v1.2.0 to a \
             release's upgradeFrom if that upgrade is supported"
        ),
        "{err}"
    );
    let err = check_upgrade(&c, "v0.9", "v1.0.0").unwrap_err();
    assert!(
        err.message().contains("it upgrades from no version"),
        "{err}"
    );
}

#[test]
fn upgrade_paths_are_shortest() {
    let mut c = catalog();
    assert_eq!(
        upgrade_path(&c, "v1.0.0", "v2.0.0").unwrap(),
        ["v1.0.0", "v1.1.0", "v1.2.0", "v2.0.0"]
    );
    c.releases[3].compat.upgrade_from.push("v1.0.0".into());
    assert_eq!(
        upgrade_path(&c, "v1.0.0", "v2.0.0").unwrap(),
        ["v1.0.0", "v2.0.0"]
    );
    assert_eq!(upgrade_path(&c, "v2.0.0", "v1.0.0"), None);
}

#[test]
fn engines_are_checked_against_the_ranges() {
    let fix = "install another";
    assert_eq!(
        check_engine("Node.js", "v20.20.2\n", ">=18.17 <23", "v1.1.0", fix).unwrap(),
        "20.20.2"
    );
    assert_eq!(
        check_engine(
            "PostgreSQL",
            "15.20 (Debian 15.20-0+deb12u1)",
            ">=13 <18",
            "v1.1.0",
            fix
        )
        .unwrap(),
        "15.20.0"
    );
    let err = check_engine("Node.js", "v16.20.0", ">=18.17 <23", "v1.1.0", fix).unwrap_err();
    assert_eq!(
        err.message(),
        "Node.js v16.20.0 is outside what v1.1.0 supports (`>=18.17 <23`); install another"
    );
    let err = check_engine("PostgreSQL", "18.1", ">=13, <18", "v1.1.0", fix).unwrap_err();
    assert!(
        err.message().starts_with("PostgreSQL 18.1 is outside"),
        "{err}"
    );
    let err = check_engine("Node.js", "v20", "twenty", "v1.1.0", fix).unwrap_err();
    assert!(
        err.message().contains("invalid version range `twenty`"),
        "{err}"
    );
    let err = check_engine("Node.js", "garbage", "^20", "v1.1.0", fix).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Internal);
}

#[test]
fn psql_asks_the_server_version_with_the_password_in_the_environment() {
    let env = "DATABASE_URL=\"postgresql://shop:s%3Acret@db:6000/shop_prod?sslmode=require\"\n";
    let db = url_from_env(env, "/customer/current/backend/.env", "DATABASE_URL").unwrap();
    assert_eq!(
        psql_args(&db),
        [
            "-X",
            "-A",
            "-t",
            "-q",
            "--no-password",
            "--host=db",
            "--port=6000",
            "--username=shop",
            "--dbname=shop_prod",
            "-c",
            "SHOW server_version"
        ]
    );
    assert_eq!(
        psql_env(&db),
        [
            ("PGPASSWORD", "s:cret".to_string()),
            ("PGSSLMODE", "require".to_string())
        ]
    );
    let db = url_from_env(
        "DATABASE_URL=postgres://root@127.0.0.1/shop",
        "/e",
        "DATABASE_URL",
    )
    .unwrap();
    assert!(psql_env(&db).is_empty());

    let err = url_from_env("X=1\n", "/b/.env", "DATABASE_URL").unwrap_err();
    assert!(
        err.message()
            .starts_with("DATABASE_URL is not set in /b/.env"),
        "{err}"
    );
    let err = url_from_env(
        "DATABASE_URL=mysql://root:hunter2@h/db\n",
        "/b/.env",
        "DATABASE_URL",
    )
    .unwrap_err();
    assert!(!err.message().contains("hunter2"), "{err}");
    let err = url_from_env(
        "DATABASE_URL=postgres://u@h/postgres:%2F%2Fh%2Fd\n",
        "/b/.env",
        "DATABASE_URL",
    )
    .unwrap_err();
    assert!(err.message().contains("connection settings"), "{err}");
}
