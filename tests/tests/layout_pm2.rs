//! End to end: `migrate-layout` on a real shop (three Node.js apps under a real PM2 daemon, a
//! real PostgreSQL database): the blue/green layout afterwards, uploads reachable through
//! `backend/uploads`, PM2 apps running through `current/`, the apps answering all along (the
//! poller's figures are printed, not asserted: downtime is measured, not timed), a refused
//! second run, a backup of the new layout, and a failed migration that puts everything back.
//! With apps that take a second to listen (like NestJS or Next.js), the migration loses no
//! request: each PM2 process is replaced only once its successor listens; an app that never
//! listens fails the migration, and the old app keeps serving.

mod common;
mod pg;
mod shop;

use std::time::Duration;

use common::{run, tree};
use shop::{Poller, SERVICES, Shop, link, pm2_available};

fn migrate(shop: &Shop) -> std::process::Output {
    run(shop
        .qodify()
        .args(["run", "migrate-layout", "--customer", &shop.domain]))
}

/// Combined stdout and stderr.
fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Names of this shop's PM2 apps.
fn app_names(shop: &Shop) -> Vec<String> {
    shop.app_cwds()
        .into_iter()
        .map(|(name, _, _)| name)
        .collect()
}

#[test]
fn migrate_layout_loses_no_request_while_the_apps_take_a_second_to_listen() {
    if !pm2_available() {
        return;
    }
    // `pm2 start` returns when a process starts, not when it listens: a handover that deletes
    // the old process then leaves the port without a listener for the new one's warm-up.
    // `none`: the daemon's own scheduling loses nothing either (docs/upgrades.md, Downtime), so
    // a failed poll here is the handover's.
    let shop = Shop::with_warmup("layoutwarm", Duration::from_secs(1)).cluster_sched("none");
    shop.start();
    let c = shop.dir();

    let poller = Poller::start(&shop.ports, "/version");
    let started = std::time::Instant::now();
    let out = migrate(&shop);
    let took = started.elapsed();
    let polled = poller.stop();
    eprintln!(
        "layout migration, apps listening 1 s after they start: {took:?}; polls ok {} failed {}; longest outage {:?}",
        polled.ok, polled.failed, polled.longest_outage
    );
    assert!(out.status.success(), "migrate-layout failed");
    assert_eq!(
        polled.failed, 0,
        "requests were lost while the apps were handed over (longest outage {:?})",
        polled.longest_outage
    );

    assert_eq!(link(&c.join("current")), "releases/v1.0.0");
    let apps = shop.app_cwds();
    assert_eq!(apps.len(), 3, "no handover copy is left: {apps:?}");
    for (name, pm_cwd, real) in &apps {
        let svc = name.rsplit('-').next().unwrap();
        assert!(
            pm_cwd.ends_with(&format!("/current/{svc}")),
            "{name}: {pm_cwd}"
        );
        assert!(
            real.ends_with(format!("releases/v1.0.0/{svc}")),
            "{name}: {}",
            real.display()
        );
    }
}

#[test]
fn migrate_layout_moves_a_serving_shop_to_blue_green() {
    if !pm2_available() {
        return;
    }
    let shop = Shop::new("layout");
    shop.start();
    let c = shop.dir();
    let before_uploads = tree(&c.join("backend/uploads"), &|_| false);

    let poller = Poller::start(&shop.ports, "/version");
    let started = std::time::Instant::now();
    let out = migrate(&shop);
    let took = started.elapsed();
    let polled = poller.stop();
    assert!(out.status.success(), "migrate-layout failed");
    eprintln!(
        "layout migration: {took:?}; polls ok {} failed {}; longest outage {:?}",
        polled.ok, polled.failed, polled.longest_outage
    );

    // The layout of plan §3.2.
    assert_eq!(link(&c.join("current")), "releases/v1.0.0");
    for svc in SERVICES {
        assert_eq!(link(&c.join(svc)), format!("current/{svc}"));
        assert!(c.join("releases/v1.0.0").join(svc).is_dir(), "{svc}");
    }
    assert_eq!(
        link(&c.join("releases/v1.0.0/backend/uploads")),
        "../../../shared/uploads"
    );
    assert_eq!(tree(&c.join("shared/uploads"), &|_| false), before_uploads);
    assert!(c.join("releases/v1.0.0/.qodify-release.json").is_file());
    assert!(!c.join(".migrate-layout.json").exists());

    // The apps serve, uploads are reachable through backend/uploads.
    for svc in SERVICES {
        shop.wait_ok(svc, "/version");
    }
    let (status, body) = shop.get("backend", "/uploads/hello.txt");
    assert_eq!(
        (status, body.trim()),
        (200, "hello from layout.shop.test uploads")
    );
    shop.wait_ok("backend", "/health");

    // PM2 now runs every app through current/, and the processes run the release's code.
    let apps = shop.app_cwds();
    assert_eq!(apps.len(), 3, "{apps:?}");
    for (name, pm_cwd, real) in &apps {
        let svc = name.rsplit('-').next().unwrap();
        assert!(
            pm_cwd.ends_with(&format!("/current/{svc}")),
            "{name}: {pm_cwd}"
        );
        assert!(
            real.ends_with(format!("releases/v1.0.0/{svc}")),
            "{name}: {}",
            real.display()
        );
    }

    // Twice is refused, and changes nothing.
    let snapshot = tree(&c, &|_| false);
    let again = migrate(&shop);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already in the blue/green layout")
            || String::from_utf8_lossy(&again.stdout).contains("already in the blue/green layout")
    );
    assert_eq!(tree(&c, &|_| false), snapshot);

    // A backup of the new layout holds the uploads and the services.
    let backup = run(shop
        .qodify()
        .args(["run", "backup", "--customer", &shop.domain]));
    assert!(backup.status.success(), "backup after the migration failed");
}

#[test]
fn a_failed_migration_puts_everything_back_and_the_apps_keep_serving() {
    if !pm2_available() {
        return;
    }
    let shop = Shop::new("layoutfail");
    // An ecosystem file the migration does not know how to rewrite: it fails after moving
    // the folders, so the revert has everything to undo.
    let eco = shop.dir().join("ecosystem.config.js");
    let text = std::fs::read_to_string(&eco).unwrap();
    std::fs::write(
        &eco,
        text.replace(
            "path.join(__dirname, service)",
            "path.resolve(__dirname, service)",
        ),
    )
    .unwrap();
    shop.start();
    let c = shop.dir();
    let before = tree(&c, &|_| false);

    let poller = Poller::start(&shop.ports, "/version");
    let out = migrate(&shop);
    let polled = poller.stop();
    assert_eq!(out.status.code(), Some(1), "the migration must fail");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("ecosystem_rewrite"), "{text}");
    eprintln!(
        "failed migration: polls ok {} failed {}; longest outage {:?}",
        polled.ok, polled.failed, polled.longest_outage
    );

    // Back exactly as it was (the apps wrote nothing into the folder meanwhile).
    assert_eq!(tree(&c, &|_| false), before);
    for svc in SERVICES {
        shop.wait_ok(svc, "/version");
    }
    let (status, _) = shop.get("backend", "/uploads/hello.txt");
    assert_eq!(status, 200);
}

#[test]
fn an_app_that_never_listens_fails_the_migration_and_the_old_app_keeps_serving() {
    if !pm2_available() {
        return;
    }
    let shop = Shop::new("layoutdeaf").cluster_sched("none");
    shop.start();
    let c = shop.dir();
    // From now on a new admin process starts but never listens (like an app stuck while it
    // loads); the one running keeps serving. Backend is handed over before admin, store after.
    std::fs::write(c.join("admin/FAIL_LISTEN"), "").unwrap();
    // The ecosystem file is rewritten, then put back: the same text, a new mtime.
    let ecosystem = std::fs::read(c.join("ecosystem.config.js")).unwrap();
    let skip = |p: &str| p == "ecosystem.config.js";
    let before = tree(&c, &skip);

    let poller = Poller::start(&shop.ports, "/version");
    let started = std::time::Instant::now();
    let out = run(shop.qodify().args([
        "run",
        "migrate-layout",
        "--customer",
        &shop.domain,
        "--param",
        "listenTimeoutMs=5000",
    ]));
    let took = started.elapsed();
    let polled = poller.stop();
    eprintln!(
        "migration with an app that never listens: {took:?}; polls ok {} failed {}; longest outage {:?}",
        polled.ok, polled.failed, polled.longest_outage
    );
    assert_eq!(out.status.code(), Some(1), "the migration must fail");
    let text = text(&out);
    assert!(
        text.contains("layoutdeaf.shop.test-admin") && text.contains("did not listen within 5 s"),
        "the error names the app and the wait: {text}"
    );

    // Everything back as it was, and no serving process was replaced by one that does not
    // listen: not one request lost.
    assert_eq!(tree(&c, &skip), before);
    assert_eq!(
        std::fs::read(c.join("ecosystem.config.js")).unwrap(),
        ecosystem
    );
    assert_eq!(
        polled.failed, 0,
        "requests were lost (longest outage {:?})",
        polled.longest_outage
    );
    for svc in SERVICES {
        shop.wait_ok(svc, "/version");
    }
    let names = app_names(&shop);
    assert_eq!(names.len(), 3, "no handover copy is left: {names:?}");
    for (name, pm_cwd, _) in shop.app_cwds() {
        assert!(
            !pm_cwd.contains("/current/"),
            "{name} runs from the old paths: {pm_cwd}"
        );
    }
}
