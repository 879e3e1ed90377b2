//! The shipped pipelines' command grants, resolved for a customer as the host does: database
//! arguments are fixed to the customer's own database, so a plugin cannot point `pg_dump`,
//! `pg_restore` or `psql` (and the password they get) at another server or database, and PM2
//! grants name this customer's apps only.

use std::collections::BTreeMap;
use std::path::Path;

use qodify_host::customer;
use qodify_host::engine::bindings::commands::{Command, OutputTarget};
use qodify_host::engine::caps::commands::check_grant;
use qodify_host::pipeline::{self, CommandGrant, Plan, RunInputs};

fn shipped(name: &str) -> pipeline::Pipeline {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../pipelines/{name}.toml"));
    pipeline::load_pipeline(&path).unwrap_or_else(|d| panic!("{d}"))
}

/// A customer folder whose backend/.env names the database, and the plan for it.
fn plan_for(name: &str, domain: &str, params: &[(&str, &str)]) -> Plan {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(domain);
    std::fs::create_dir_all(dir.join("backend")).unwrap();
    std::fs::write(
        dir.join("backend/.env"),
        "DATABASE_URL=postgresql://shop_user:pw@127.0.0.1:5432/shop_db\n",
    )
    .unwrap();
    let inputs = RunInputs {
        customer_id: "42".into(),
        customer_domain: domain.into(),
        run_id: "r1".into(),
        timestamp: "20261205-000000".into(),
        params: params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        database: customer::database(&dir),
        paths: customer::service_paths(&dir),
    };
    pipeline::resolve(&shipped(name), &inputs).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn grants(plan: &Plan) -> Vec<(String, CommandGrant)> {
    [
        &plan.stages,
        &plan.on_success,
        &plan.on_failure,
        &plan.finally,
    ]
    .into_iter()
    .flatten()
    .flat_map(|s| &s.steps)
    .flat_map(|s| s.commands.iter().map(|c| (s.id.clone(), c.clone())))
    .collect()
}

fn call(program: &str, args: &[String]) -> Command {
    Command {
        program: program.into(),
        args: args.to_vec(),
        env: vec![],
        cwd: None,
        stdout: OutputTarget::Discard,
        stderr: OutputTarget::Discard,
        timeout_ms: None,
    }
}

/// The connection arguments a database plugin sends, with one of them replaced.
fn connection(host: &str, port: &str, user: &str, db: &str) -> Vec<String> {
    vec![
        format!("--host={host}"),
        format!("--port={port}"),
        format!("--username={user}"),
        format!("--dbname={db}"),
    ]
}

#[test]
fn database_programs_reach_only_the_customers_own_database() {
    let plans = [
        plan_for("backup", "shop.example.com", &[]),
        plan_for(
            "restore",
            "shop.example.com",
            &[("backup", "20261205-000000")],
        ),
        plan_for(
            "upgrade",
            "shop.example.com",
            &[("targetVersion", "v1.1.0")],
        ),
    ];
    let mut checked = 0;
    for plan in &plans {
        for (step, grant) in grants(plan) {
            if !["pg_dump", "pg_restore", "psql"].contains(&grant.program.as_str())
                || !grant.args.iter().any(|a| a.starts_with("--host="))
            {
                continue;
            }
            let g = std::slice::from_ref(&grant);
            let own = connection("127.0.0.1", "5432", "shop_user", "shop_db");
            check_grant(g, &call(&grant.program, &own))
                .unwrap_or_else(|e| panic!("{} {step}: {e}", plan.pipeline));
            for other in [
                connection("evil.example", "5432", "shop_user", "shop_db"),
                connection("127.0.0.1", "6432", "shop_user", "shop_db"),
                connection("127.0.0.1", "5432", "postgres", "shop_db"),
                connection("127.0.0.1", "5432", "shop_user", "other_shop"),
                vec!["--host=127.0.0.1".into(), "--hostaddr=10.0.0.1".into()],
            ] {
                let err = check_grant(g, &call(&grant.program, &other))
                    .expect_err(&format!("{} {step} admitted {other:?}", plan.pipeline));
                assert!(
                    err.contains("matches none of the granted patterns"),
                    "{err}"
                );
            }
            // No SQL text is granted as a pattern.
            assert!(
                !grant
                    .args
                    .iter()
                    .any(|a| a.contains('*') && a.contains(' ')),
                "{} {step}: {:?}",
                plan.pipeline,
                grant.args
            );
            checked += 1;
        }
    }
    // backup: db-dump; restore: safety dump, db-restore, undo; upgrade: check, dump, rollback.
    assert!(checked >= 6, "only {checked} database grants found");
}

#[test]
fn restore_into_another_database_names_exactly_that_database() {
    let plan = plan_for(
        "restore",
        "shop.example.com",
        &[("backup", "20261205-000000"), ("targetDb", "shop_check")],
    );
    let (_, grant) = grants(&plan)
        .into_iter()
        .find(|(step, _)| step == "db-restore-into")
        .expect("db-restore-into is planned");
    let g = std::slice::from_ref(&grant);
    let mut args = connection("127.0.0.1", "5432", "shop_user", "shop_check");
    args.push("db.dump".into());
    check_grant(g, &call("pg_restore", &args)).unwrap();
    args[3] = "--dbname=shop_db".into();
    assert!(check_grant(g, &call("pg_restore", &args)).is_err());
}

#[test]
fn pm2_grants_name_this_customers_apps_only() {
    // shop.com-* would also match the apps of the customer shop.com-x.net.
    let mut found = 0;
    for (name, params) in [
        ("migrate-layout", vec![]),
        ("upgrade", vec![("targetVersion", "v1.1.0")]),
    ] {
        let plan = plan_for(name, "shop.com", &params);
        for (step, grant) in grants(&plan)
            .into_iter()
            .filter(|(_, g)| g.program == "pm2")
        {
            let g = std::slice::from_ref(&grant);
            for other in [
                "shop.com-x.net-backend",
                "shop.com-x.net-backend-candidate",
                "shop.com-x.net-backend-handover",
            ] {
                assert!(
                    check_grant(g, &call("pm2", &["delete".into(), other.into()])).is_err(),
                    "{name} {step} admits the app {other}"
                );
            }
            found += 1;
        }
    }
    assert!(found >= 4, "only {found} pm2 grants found");
}

#[test]
fn a_drill_reaches_only_its_own_scratch_database_and_runs_no_other_sql() {
    let plan = plan_for(
        "drill",
        "shop.example.com",
        &[("probe", "SELECT 1 FROM orders LIMIT 1")],
    );
    let all = grants(&plan);
    let grant = |program: &str| {
        let found: Vec<CommandGrant> = all
            .iter()
            .filter(|(_, g)| g.program == program)
            .map(|(_, g)| g.clone())
            .collect();
        assert_eq!(found.len(), 1, "one {program} grant");
        found
    };
    let scratch = connection("127.0.0.1", "5432", "shop_user", "qodify_drill_r1");
    // Restore and count: the customer's role, in the run's scratch database only.
    let restore = grant("pg_restore");
    let mut args = vec!["--single-transaction".to_owned(), "--no-owner".into()];
    args.extend(scratch.clone());
    args.push("db.dump".into());
    check_grant(&restore, &call("pg_restore", &args)).unwrap();
    for db in ["shop_db", "qodify_drill_r2", "postgres"] {
        let mut other = args.clone();
        other[5] = format!("--dbname={db}");
        assert!(
            check_grant(&restore, &call("pg_restore", &other)).is_err(),
            "{db}"
        );
    }
    let psql = grant("psql");
    let sql = |text: &str| {
        let mut a = scratch.clone();
        a.extend(["-c".to_owned(), text.to_owned()]);
        a
    };
    check_grant(&psql, &call("psql", &sql("SELECT 1 FROM orders LIMIT 1"))).unwrap();
    for text in ["DROP DATABASE shop_db", "SELECT 1 FROM orders", "\\! sh"] {
        assert!(
            check_grant(&psql, &call("psql", &sql(text))).is_err(),
            "{text}"
        );
    }
    let mut own = sql("SELECT 1 FROM orders LIMIT 1");
    own[3] = "--dbname=shop_db".into();
    assert!(check_grant(&psql, &call("psql", &own)).is_err());
    // Create and drop: the drill role, the scratch database of this run only, owned by the
    // customer's role.
    let createdb = grant("createdb");
    let base = [
        "--no-password".to_owned(),
        "--host=127.0.0.1".into(),
        "--port=5432".into(),
    ];
    let mut create = base.to_vec();
    create.extend(["--owner=shop_user".into(), "qodify_drill_r1".into()]);
    check_grant(&createdb, &call("createdb", &create)).unwrap();
    for (i, bad) in [
        (3, "--owner=postgres"),
        (4, "shop_db"),
        (4, "qodify_drill_r2"),
    ] {
        let mut other = create.clone();
        other[i] = bad.into();
        assert!(
            check_grant(&createdb, &call("createdb", &other)).is_err(),
            "{bad}"
        );
    }
    let dropdb = grant("dropdb");
    let mut drop = base.to_vec();
    drop.extend([
        "--if-exists".into(),
        "--force".into(),
        "qodify_drill_r1".into(),
    ]);
    check_grant(&dropdb, &call("dropdb", &drop)).unwrap();
    for bad in ["shop_db", "postgres", "qodify_drill_r2"] {
        let mut other = drop.clone();
        other[5] = bad.into();
        assert!(
            check_grant(&dropdb, &call("dropdb", &other)).is_err(),
            "{bad}"
        );
    }
    // Only these two inherit the host's drill role.
    for (_, g) in &all {
        let drill_role = ["createdb", "dropdb"].contains(&g.program.as_str());
        assert_eq!(!g.inherit.is_empty(), drill_role, "{}", g.program);
    }
}
