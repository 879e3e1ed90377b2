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
