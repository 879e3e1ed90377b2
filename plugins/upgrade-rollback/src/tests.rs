use super::*;
use crate::db::*;

fn journal() -> Journal {
    Journal {
        run: "r1".into(),
        from: "v1.0.0".into(),
        to: "v1.1.0".into(),
        backup: Some("20250101-000000".into()),
        db_policy: DbPolicy::Restore,
        unpacked: true,
        migrate: Migrate::None,
        swapped: false,
        started: "20250101-000000".into(),
    }
}

fn plan(json: serde_json::Value) -> Result<Plan, Error> {
    let config: Config = qodify_plugin_sdk::__private::parse_config(&json.to_string())?;
    Plan::new(config)
}

fn apps() -> serde_json::Value {
    serde_json::json!([
        {"name": "shop.test-backend", "service": "backend"},
        {"name": "shop.test-admin", "service": "admin"}
    ])
}

#[test]
fn config_defaults_and_refusals() {
    let p = plan(serde_json::json!({"apps": apps(), "candidates_prefix": "shop.test"})).unwrap();
    assert_eq!(p.releases, "/customer/releases");
    assert_eq!(p.db.backups, "/backups");
    assert_eq!(p.db.env_file, "backend/.env");
    assert_eq!(p.db.work, "/work");
    for (json, needle) in [
        (
            serde_json::json!({"apps": apps(), "candidates_prefix": "-x"}),
            "candidates_prefix",
        ),
        (
            serde_json::json!({"apps": apps(), "candidates_prefix": "s", "db": {"env_file": "../.env"}}),
            "db.env_file",
        ),
        (
            serde_json::json!({"apps": apps(), "candidates_prefix": "s", "db": {"env_file": "/x/.env"}}),
            "db.env_file",
        ),
        (
            serde_json::json!({"apps": apps(), "candidates_prefix": "s", "db": {"variable": "A B"}}),
            "db.variable",
        ),
        (
            serde_json::json!({"apps": apps(), "candidates_prefix": "s", "db": {"dump": "x"}}),
            "unknown field",
        ),
        (
            serde_json::json!({"apps": apps(), "candidates_prefix": "s", "releases": "/customer/r"}),
            "must be `/customer/releases`",
        ),
    ] {
        let e = plan(json.clone()).expect_err(&json.to_string());
        assert_eq!(e.kind(), ErrorKind::InvalidConfig, "{e}");
        assert!(e.message().contains(needle), "{json}: {e}");
    }
}

#[test]
fn code_is_swapped_back_when_current_may_point_at_the_new_release() {
    let mut j = journal();
    // Failed before the swap: only check.
    assert_eq!(actions(&j, Some("v1.0.0")).unwrap().code, CodeAction::Check);
    // Crashed between setting `swapped` and the rename: current is old, swap anyway (harmless).
    j.swapped = true;
    assert_eq!(
        actions(&j, Some("v1.0.0")).unwrap().code,
        CodeAction::SwapBack
    );
    // Swapped and failed verification.
    assert_eq!(
        actions(&j, Some("v1.1.0")).unwrap().code,
        CodeAction::SwapBack
    );
    // `current` at the target although the journal says not swapped: still swap back.
    j.swapped = false;
    assert_eq!(
        actions(&j, Some("v1.1.0")).unwrap().code,
        CodeAction::SwapBack
    );
}

#[test]
fn a_current_pointing_elsewhere_stops_before_any_change() {
    let j = journal();
    let e = actions(&j, Some("v0.9.0")).unwrap_err();
    assert!(
        e.message().contains("neither") && e.message().contains("docs/upgrades.md"),
        "{e}"
    );
    assert!(actions(&j, None).is_err());
}

#[test]
fn database_by_migration_state_and_tier_policy() {
    let mut j = journal();
    assert_eq!(actions(&j, Some("v1.0.0")).unwrap().db, DbAction::Nothing);
    for m in [Migrate::Started, Migrate::Done] {
        j.migrate = m;
        j.db_policy = DbPolicy::Restore;
        assert_eq!(
            actions(&j, Some("v1.0.0")).unwrap().db,
            DbAction::Restore("20250101-000000".into())
        );
        j.db_policy = DbPolicy::Keep;
        assert_eq!(actions(&j, Some("v1.0.0")).unwrap().db, DbAction::Keep);
    }
    j.db_policy = DbPolicy::Restore;
    j.backup = None;
    assert!(matches!(
        actions(&j, Some("v1.0.0")).unwrap().db,
        DbAction::Impossible(_)
    ));
    j.backup = Some("../../etc".into());
    assert!(matches!(
        actions(&j, Some("v1.0.0")).unwrap().db,
        DbAction::Impossible(_)
    ));
}

#[test]
fn the_new_release_is_removed_only_when_this_upgrade_unpacked_it() {
    let mut j = journal();
    assert!(actions(&j, Some("v1.0.0")).unwrap().remove_release);
    j.unpacked = false;
    assert!(!actions(&j, Some("v1.0.0")).unwrap().remove_release);
    // Never the old release, even with a journal that names it twice.
    j.unpacked = true;
    j.to = j.from.clone();
    assert!(!actions(&j, Some("v1.0.0")).unwrap().remove_release);
}

#[test]
fn only_this_customer_s_candidates_are_deleted() {
    let app = |name: &str| upgrade_kit::pm2::App {
        name: name.into(),
        pid: 1,
        status: "online".into(),
        cwd: String::new(),
        exec_path: String::new(),
        exec_mode: "cluster_mode".into(),
        restart_time: 0,
        exit_code: None,
        listen_timeout: None,
    };
    let list = [
        app("shop.test-backend"),
        app("shop.test-backend-candidate"),
        app("shop.test-store-candidate"),
        app("shop.test-store-candidate"),
        app("shop.test2-backend-candidate"),
        app("other.test-backend-candidate"),
        app("shop.test-candidate-x"),
    ];
    assert_eq!(
        candidate_names(&list, "shop.test"),
        ["shop.test-backend-candidate", "shop.test-store-candidate"]
    );
}

#[test]
fn backup_ids() {
    assert!(is_backup_id("20250101-000000"));
    assert!(!is_backup_id("2025010-1000000"));
    assert!(!is_backup_id("20250101-00000a"));
    assert!(!is_backup_id("../20250101-0000"));
    assert!(!is_backup_id(""));
}

#[test]
fn schemas_come_from_the_table_of_contents() {
    let toc = "\
;
; Archive created at 2026-11-26 10:28:15 UTC
;     dbname: shop
;
; Selected TOC Entries:
;
6; 2615 16385 SCHEMA - shop root
7; 2615 16386 SCHEMA - odd name root
3362; 0 0 COMMENT - SCHEMA public pg_database_owner
216; 1259 16960 TABLE public _migrations root
215; 1259 16950 TABLE shop items root
";
    assert_eq!(toc_schemas(toc), ["shop", "odd name"]);
    assert!(toc_schemas("").is_empty());
}

#[test]
fn psql_runs_one_transaction_that_drops_then_restores() {
    let url =
        pg_conn::url::parse("postgres://shop:hunter2@db:6432/shop_prod?sslmode=require").unwrap();
    let args = psql_args(&url, "shop_prod");
    assert_eq!(
        args,
        [
            "-X",
            "-q",
            "-1",
            "-v",
            "ON_ERROR_STOP=1",
            "--no-password",
            "--host=db",
            "--port=6432",
            "--username=shop",
            "--dbname=shop_prod",
            "-f",
            "restore-public.sql",
            "-f",
            "restore-db.sql"
        ]
    );
    assert!(!args.iter().any(|a| a.contains("hunter2")));
    let sql = drop_and_public_sql(&["shop".to_string()]);
    assert!(
        sql.starts_with(
            "DROP SCHEMA IF EXISTS \"public\" CASCADE;\nDROP SCHEMA IF EXISTS \"shop\" CASCADE;\n"
        ),
        "{sql}"
    );
    assert!(sql.ends_with(PUBLIC_SQL));
    // A dump that lists `public` (its owner or privileges were not initdb's) still gets it
    // dropped once and created first: pg_restore never creates `public`.
    let with_public = drop_and_public_sql(&["public".to_string()]);
    assert_eq!(with_public.matches("DROP SCHEMA").count(), 1);
    assert!(with_public.contains("CREATE SCHEMA public"));
    assert_eq!(
        pg_env(&url),
        [
            ("PGPASSWORD", "hunter2".to_string()),
            ("PGSSLMODE", "require".to_string())
        ]
    );
    assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
}

#[test]
fn database_names_that_libpq_would_misread_are_refused() {
    let mut url = pg_conn::url::parse("postgres://u@h/db").unwrap();
    assert_eq!(database_of(&url, "DATABASE_URL", "/e").unwrap(), "db");
    url.database = "host=evil".into();
    assert!(database_of(&url, "DATABASE_URL", "/e").is_err());
}

#[test]
fn the_url_is_read_from_the_old_release_env_without_quoting_it() {
    let t = tempfile::tempdir().unwrap();
    let env = t.path().join(".env");
    std::fs::write(
        &env,
        "PORT=1\nDATABASE_URL=postgres://u:secretpw@h:5432/shop\n",
    )
    .unwrap();
    let url = read_url(env.to_str().unwrap(), "DATABASE_URL").unwrap();
    assert_eq!(url.database, "shop");
    std::fs::write(&env, "DATABASE_URL=mysql://u:secretpw@h/shop\n").unwrap();
    let e = read_url(env.to_str().unwrap(), "DATABASE_URL").unwrap_err();
    assert!(!e.message().contains("secretpw"), "{e}");
    let e = read_url(env.to_str().unwrap(), "OTHER").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
}
