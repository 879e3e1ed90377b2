//! End to end: `upgrade` on a real shop (three Node.js apps under a real PM2 daemon, a real
//! PostgreSQL database), after `migrate-layout`. A successful upgrade v1.0.0 → v1.1.0 (new
//! `.env` key added, old values kept, migration applied, every PM2 app running v1.1.0's code,
//! the pre-upgrade backup complete and pinned), and failures injected at each step, after which
//! the shop serves v1.0.0 again from v1.0.0's real path, with the database as before.

mod common;
mod pg;
mod shop;

use common::run;
use pg::psql;
use shop::{Poller, SERVICES, Shop, link, pm2_available};

/// A serving shop in the blue/green layout on v1.0.0, with v1.1.0 in its catalog (`switches`
/// break it on purpose). `None` when pm2 is missing outside CI.
fn shop(tag: &str, switches: impl Fn(&Shop) -> Vec<String>) -> Option<Shop> {
    if !pm2_available() {
        return None;
    }
    let shop = Shop::new(tag);
    shop.start();
    let out = run(shop
        .qodify()
        .args(["run", "migrate-layout", "--customer", &shop.domain]));
    assert!(out.status.success(), "migrate-layout failed");
    shop.add_release("1.0.0", &[]);
    let s = switches(&shop);
    shop.add_release("1.1.0", &s);
    Some(shop)
}

fn upgrade(shop: &Shop) -> (std::process::Output, serde_json::Value) {
    upgrade_to(shop, "v1.1.0", &[])
}

/// `run upgrade --json` to `version` with the fixture tier, heapMB=512 and `params`.
fn upgrade_to(
    shop: &Shop,
    version: &str,
    params: &[&str],
) -> (std::process::Output, serde_json::Value) {
    let target = format!("targetVersion={version}");
    let mut cmd = shop.qodify();
    cmd.args([
        "run",
        "upgrade",
        "--customer",
        &shop.domain,
        "--tier",
        "fixture",
        "--json",
        "--param",
        &target,
        "--param",
        "heapMB=512",
    ]);
    for p in params {
        cmd.args(["--param", p]);
    }
    let out = run(&mut cmd);
    let result = common::run_result(&out);
    (out, result)
}

/// The shop is on v1.0.0 as before: current, the real cwd of every app, what they answer, the
/// database (only migration 001), no journal, no v1.1.0 left.
fn assert_on_v1_0_0(shop: &Shop) {
    let c = shop.dir();
    assert_eq!(link(&c.join("current")), "releases/v1.0.0");
    for svc in SERVICES {
        shop.wait_ok(svc, "/version");
    }
    assert_eq!(shop.versions(), ["1.0.0", "1.0.0", "1.0.0"]);
    shop.wait_ok("backend", "/health");
    for (name, _, real) in shop.app_cwds() {
        let svc = name.rsplit('-').next().unwrap();
        assert!(
            real.ends_with(format!("releases/v1.0.0/{svc}")),
            "{name} runs {}",
            real.display()
        );
    }
    assert_eq!(
        psql(
            &shop.db.name,
            "SELECT string_agg(name, ',' ORDER BY name) FROM _migrations"
        ),
        "001_init.sql"
    );
    assert!(!c.join("releases/.upgrade.json").exists());
    assert!(!c.join("releases/v1.1.0").exists());
}

#[test]
fn an_upgrade_moves_the_shop_to_the_new_release_and_keeps_its_backup() {
    let Some(shop) = shop("upgradeok", |_| vec![]) else {
        return;
    };
    let c = shop.dir();
    // Dependencies the release carries (the fixture's have none): the new release will need as
    // much again, which the preflight must count.
    std::fs::create_dir_all(c.join("releases/v1.0.0/backend/node_modules/dep")).unwrap();
    std::fs::write(
        c.join("releases/v1.0.0/backend/node_modules/dep/blob.bin"),
        vec![7u8; 4 << 20],
    )
    .unwrap();
    let poller = Poller::start(&shop.ports, "/version");
    let (out, result) = upgrade(&shop);
    let polled = poller.stop();
    assert!(out.status.success(), "upgrade failed: {result}");
    eprintln!(
        "upgrade: polls ok {} failed {}; longest outage {:?}",
        polled.ok, polled.failed, polled.longest_outage
    );

    assert_eq!(link(&c.join("current")), "releases/v1.1.0");
    assert_eq!(shop.versions(), ["1.1.0", "1.1.0", "1.1.0"]);
    assert_apps_run_from(&shop, "v1.1.0");
    shop.wait_ok("backend", "/health");
    let (_, up) = shop.get("backend", "/uploads/hello.txt");
    assert_eq!(up.trim(), "hello from upgradeok.shop.test uploads");

    // The preflight counted the new release (as big as the current one, node_modules included)
    // on top of the pre-upgrade backup.
    let figure = |name: &str| -> u64 {
        step_output(&out, "preflight", name)
            .parse()
            .unwrap_or_else(|_| panic!("preflight output {name}: {result}"))
    };
    let (estimate, needed) = (figure("estimate-bytes"), figure("needed-bytes"));
    let node_modules = dir_bytes(&c.join("releases/v1.0.0/backend/node_modules"));
    assert!(
        node_modules >= 4 << 20 && needed as f64 >= (estimate + node_modules) as f64 * 1.2,
        "needed {needed}, estimate {estimate}, backend node_modules {node_modules}"
    );
    assert!(figure("free-bytes") > 0);

    // .env: the new key added, the old values kept.
    let old = std::fs::read_to_string(c.join("releases/v1.0.0/backend/.env")).unwrap();
    let new = std::fs::read_to_string(c.join("releases/v1.1.0/backend/.env")).unwrap();
    for line in old.lines().filter(|l| l.contains('=')) {
        assert!(new.contains(line), "{line} kept");
    }
    assert!(new.contains("FEATURE_REVIEWS="), "{new}");
    // The migration ran; the build saw heapMB.
    assert_eq!(
        psql(
            &shop.db.name,
            "SELECT string_agg(name, ',' ORDER BY name) FROM _migrations"
        ),
        "001_init.sql,002_reviews.sql"
    );
    let build = std::fs::read_to_string(c.join("releases/v1.1.0/backend/dist/build.json")).unwrap();
    assert!(build.contains("--max-old-space-size=512"), "{build}");

    // The pre-upgrade backup is complete, typed and pinned; the journal is gone.
    let backup = result["backup"].as_str().expect("a backup id").to_owned();
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(c.join("backups").join(&backup).join("backup.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["type"], "pre-upgrade");
    let pin = std::fs::read_to_string(c.join("backups/.pins").join(&backup)).unwrap();
    assert!(pin.contains("pre-upgrade to v1.1.0"), "{pin}");
    assert!(!c.join("releases/.upgrade.json").exists());
    let marker = std::fs::read_to_string(c.join("releases/v1.1.0/.qodify-release.json")).unwrap();
    assert!(marker.contains("\"succeeded\""), "{marker}");
}

#[test]
fn a_shop_in_blue_green_without_the_compatibility_links_upgrades() {
    let Some(shop) = shop("nolinks", |_| vec![]) else {
        return;
    };
    let c = shop.dir();
    // As if installed straight into the plan's layout: no top-level service names at all.
    for svc in SERVICES {
        let top = c.join(svc);
        assert!(top.is_symlink(), "{} after migrate-layout", top.display());
        std::fs::remove_file(&top).unwrap();
    }
    let (out, result) = upgrade(&shop);
    assert!(out.status.success(), "upgrade failed: {result}");
    assert_eq!(link(&c.join("current")), "releases/v1.1.0");
    assert_eq!(shop.versions(), ["1.1.0", "1.1.0", "1.1.0"]);
    assert_apps_run_from(&shop, "v1.1.0");
    for svc in SERVICES {
        assert!(!c.join(svc).exists(), "the upgrade put back {svc}");
    }
    let backup = result["backup"].as_str().expect("a backup id");
    let manifest =
        std::fs::read_to_string(c.join("backups").join(backup).join("backup.json")).unwrap();
    assert!(manifest.contains("\"pre-upgrade\""), "{manifest}");
}

/// Every PM2 app of the shop runs from `releases/<version>/<its service>` (the kernel's cwd).
fn assert_apps_run_from(shop: &Shop, version: &str) {
    for (name, _, real) in shop.app_cwds() {
        let svc = name.rsplit('-').next().unwrap();
        assert!(
            real.ends_with(format!("releases/{version}/{svc}")),
            "{name}: {}",
            real.display()
        );
    }
}

/// Runs an upgrade whose v1.1.0 breaks as `switches` say, and checks the rollback; the run's
/// error. `None` only where pm2 is missing outside CI (under CI that fails instead).
fn fails_and_rolls_back(
    tag: &str,
    switches: impl Fn(&Shop) -> Vec<String>,
    step: &str,
) -> Option<String> {
    let shop = shop(tag, switches)?;
    let (out, result) = upgrade(&shop);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the upgrade must fail: {result}"
    );
    let error = result["error"].as_str().unwrap_or_default().to_owned();
    assert!(
        error.contains(&format!("step {step} failed")),
        "the error names step {step}: {error}"
    );
    assert!(error.contains("rolled back"), "{error}");
    assert_on_v1_0_0(&shop);
    // The pre-upgrade backup survives the failed upgrade.
    assert!(result["backup"].is_string(), "{result}");
    Some(error)
}

#[test]
fn a_failing_build_rolls_back() {
    fails_and_rolls_back("upgbuild", |_| vec!["admin:FAIL_BUILD".into()], "build");
}

#[test]
fn a_failing_migration_rolls_back_code_and_database() {
    let Some(error) = fails_and_rolls_back("upgmigr", |_| vec!["FAIL_MIGRATION".into()], "migrate")
    else {
        return;
    };
    assert!(error.contains("database: restored"), "{error}");
}

#[test]
fn an_unhealthy_candidate_never_goes_live() {
    fails_and_rolls_back(
        "upghealth",
        |_| vec!["FAIL_HEALTH".into()],
        "health-candidate",
    );
}

#[test]
fn unhealthy_on_the_live_port_after_the_swap_rolls_back() {
    let Some(error) = fails_and_rolls_back(
        "upglive",
        |shop| vec![format!("FAIL_HEALTH_ON_PORT={}", shop.port("backend"))],
        "health-live",
    ) else {
        return;
    };
    assert!(
        error.contains("code: current back to releases/v1.0.0"),
        "{error}"
    );
    assert!(error.contains("database: restored"), "{error}");
}

/// `kill -9` of `serve` right after the swap: the next start rolls the upgrade back before
/// anything else, and the run says so.
#[test]
fn a_host_killed_right_after_the_swap_rolls_back_at_its_next_start() {
    let Some(shop) = shop("upgcrash", |_| vec![]) else {
        return;
    };
    let token = "crash-token";
    let req = |s: &common::Server, method: &str, path: &str| {
        ureq::request(method, &format!("{}{path}", s.base))
            .set("Authorization", &format!("Bearer {token}"))
    };
    let server = common::serve_cmd(shop.qodify(), token, &[]);
    req(&server, "PUT", "/api/customers/c1")
        .send_json(serde_json::json!({ "domain": shop.domain, "tier": "fixture" }))
        .unwrap();
    let posted: serde_json::Value = req(&server, "POST", "/api/customers/c1/upgrades")
        .send_json(serde_json::json!({ "targetVersion": "v1.1.0", "heapMB": 512 }))
        .unwrap()
        .into_json()
        .unwrap();
    let run_id = posted["runId"].as_str().unwrap().to_owned();

    // Kill the host the moment `current` moves to the new release.
    let current = shop.dir().join("current");
    let until = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while link(&current) != "releases/v1.1.0" {
        assert!(std::time::Instant::now() < until, "the swap never happened");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let mut server = server;
    let pid = server.child.id();
    std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    let _ = server.child.wait();
    assert!(
        shop.dir().join("releases/.upgrade.json").exists(),
        "killed mid-upgrade"
    );

    // The next start finishes the rollback before it serves anything else.
    let server = common::serve_cmd(shop.qodify(), token, &[]);
    let run: serde_json::Value = req(&server, "GET", &format!("/api/runs/{run_id}"))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    assert_eq!(run["state"], "interrupted", "{run}");
    let error = run["error"].as_str().unwrap_or_default();
    assert!(error.contains("the host stopped during the run"), "{error}");
    assert!(
        error.contains("code: current back to releases/v1.0.0"),
        "{error}"
    );
    assert!(error.contains("database: restored"), "{error}");
    assert_on_v1_0_0(&shop);

    // The customer is free: a backup starts at once.
    let backup = req(&server, "POST", "/api/customers/c1/backups").send_json(serde_json::json!({}));
    assert_eq!(backup.unwrap().status(), 202);
}

/// A release that changes an existing `.env` value waits for approval through the API, shows
/// what it waits for in `GET /api/runs/:runId` (key names only), refuses an overlapping backup,
/// and goes on once approved.
#[test]
fn an_env_change_waits_for_approval_through_the_api() {
    let Some(shop) = shop("upgapprove", |_| vec![]) else {
        return;
    };
    // The same v1.1.0, but it sets APP_NAME on purpose.
    shop.add_release_with(
        "1.1.0",
        &[],
        serde_json::json!({ "env": { "backend": { "set": { "APP_NAME": "renamed-shop" } } } }),
    );
    let token = "approve-token";
    let req = |s: &common::Server, method: &str, path: &str| {
        ureq::request(method, &format!("{}{path}", s.base))
            .set("Authorization", &format!("Bearer {token}"))
    };
    let server = common::serve_cmd(shop.qodify(), token, &[]);
    req(&server, "PUT", "/api/customers/c1")
        .send_json(serde_json::json!({ "domain": shop.domain, "tier": "fixture" }))
        .unwrap();
    let posted: serde_json::Value = req(&server, "POST", "/api/customers/c1/upgrades")
        .send_json(serde_json::json!({ "targetVersion": "v1.1.0", "triggeredBy": "ayse" }))
        .unwrap()
        .into_json()
        .unwrap();
    let run_id = posted["runId"].as_str().unwrap().to_owned();
    let get = || -> serde_json::Value {
        req(&server, "GET", &format!("/api/runs/{run_id}"))
            .call()
            .unwrap()
            .into_json()
            .unwrap()
    };
    let until = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let approval = loop {
        let run = get();
        if !run["approval"].is_null() {
            break run["approval"].clone();
        }
        // Queued for the moment it takes a worker to claim it, then running until it asks.
        assert!(
            matches!(run["state"].as_str(), Some("queued" | "running")),
            "{run}"
        );
        assert!(std::time::Instant::now() < until, "never asked: {run}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let shown = approval.to_string();
    assert!(shown.contains("APP_NAME"), "{shown}");
    assert!(
        !shown.contains("renamed-shop"),
        "values never shown: {shown}"
    );
    // Nothing switched while waiting, and a backup cannot overlap the upgrade.
    assert_eq!(link(&shop.dir().join("current")), "releases/v1.0.0");
    match req(&server, "POST", "/api/customers/c1/backups").send_json(serde_json::json!({})) {
        Err(ureq::Error::Status(409, r)) => {
            let problem: serde_json::Value = r.into_json().unwrap();
            assert_eq!(problem["activeRunId"], run_id.as_str(), "{problem}");
        }
        other => panic!("a backup during the upgrade: {other:?}"),
    }

    let decided = req(&server, "POST", &format!("/api/runs/{run_id}/approval"))
        .send_json(serde_json::json!({ "approve": true, "by": "ayse" }))
        .unwrap();
    assert_eq!(decided.status(), 200);
    // A second decision finds nothing waiting.
    let again = req(&server, "POST", &format!("/api/runs/{run_id}/approval"))
        .send_json(serde_json::json!({ "approve": true }));
    assert!(matches!(again, Err(ureq::Error::Status(409, _))));

    let run = loop {
        let run = get();
        if run["state"] != "running" && run["state"] != "queued" {
            break run;
        }
        assert!(std::time::Instant::now() < until, "never ended: {run}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert_eq!(run["state"], "succeeded", "{run}");
    assert_eq!(shop.versions(), ["1.1.0", "1.1.0", "1.1.0"]);
    let env = std::fs::read_to_string(shop.dir().join("releases/v1.1.0/backend/.env")).unwrap();
    assert!(env.contains("APP_NAME=renamed-shop"), "{env}");
    // The run view has the upgrade's preflight; the history lists the pre-upgrade backup,
    // pinned while the upgrade can still be rolled back to it.
    let pre = &run["preflight"];
    assert!(
        pre["neededBytes"].as_u64().unwrap() > pre["estimateBytes"].as_u64().unwrap(),
        "{run}"
    );
    let history: serde_json::Value = req(&server, "GET", "/api/customers/c1/backups")
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    let line = history["backups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["runId"] == run_id.as_str())
        .unwrap_or_else(|| panic!("{history}"))
        .clone();
    assert_eq!(line["type"], "pre-upgrade", "{line}");
    assert_eq!(line["result"], "succeeded", "{line}");
    assert_eq!(line["backupId"], run["backupId"], "{line} {run}");
    assert!(
        line["pinned"]
            .as_str()
            .is_some_and(|p| p.contains("pre-upgrade to v1.1.0")),
        "{line}"
    );
}

/// Output `name` of step `step` in a `run --json` output ("" when absent).
fn step_output(out: &std::process::Output, step: &str, name: &str) -> String {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["event"] == "step-succeeded" && v["step"] == step)
        .and_then(|v| {
            v["outputs"].as_array()?.iter().find_map(|pair| {
                (pair[0] == name).then(|| pair[1].as_str().unwrap_or_default().to_owned())
            })
        })
        .unwrap_or_default()
}

/// Bytes of the regular files under `dir`, symlinks not followed.
fn dir_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}

/// The release folders of the shop, sorted.
fn releases(shop: &Shop) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(shop.dir().join("releases"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    names
}

/// The pinned backups of the shop, sorted.
fn pins(shop: &Shop) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(shop.dir().join("backups/.pins"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Cleanup after a mix of good and failed upgrades, keeping 2 releases: a failed release is
/// removed by its rollback and never pushes a good one out; the newest good releases stay (the
/// live one and its rollback target); a pre-upgrade backup loses its pin once its upgrade can no
/// longer be rolled back, and no backup is ever deleted.
#[test]
fn cleanup_keeps_the_right_releases_after_good_and_failed_upgrades() {
    if !pm2_available() {
        return;
    }
    let shop = Shop::new("upgclean");
    shop.start();
    let out = run(shop
        .qodify()
        .args(["run", "migrate-layout", "--customer", &shop.domain]));
    assert!(out.status.success(), "migrate-layout failed");
    let from = |versions: &[&str]| serde_json::json!({ "compat": { "node": ">=18", "postgres": ">=13", "upgradeFrom": versions } });
    shop.add_release("1.0.0", &[]);
    shop.add_release("1.1.0", &[]);
    shop.add_release_with("1.2.0", &["admin:FAIL_BUILD".into()], from(&["v1.1.0"]));
    shop.add_release_with("1.2.1", &[], from(&["v1.1.0"]));
    let live_fail = format!("FAIL_HEALTH_ON_PORT={}", shop.port("backend"));
    shop.add_release_with("1.3.0", &[live_fail], from(&["v1.2.1"]));
    shop.add_release_with("1.3.1", &[], from(&["v1.2.1"]));
    let keep = ["keepReleases=2"];
    let mut backups = Vec::new();

    // 1. Good: v1.0.0 -> v1.1.0. Both stay: the live release and its rollback target.
    let (out, result) = upgrade_to(&shop, "v1.1.0", &keep);
    assert!(out.status.success(), "{result}");
    backups.push(result["backup"].as_str().unwrap().to_owned());
    assert_eq!(releases(&shop), ["v1.0.0", "v1.1.0"]);
    assert_eq!(pins(&shop), backups[..1]);

    // 2. Failed at the build: v1.2.0 is removed by the rollback; nothing else changes, and the
    //    failed upgrade's backup is kept.
    let (out, result) = upgrade_to(&shop, "v1.2.0", &keep);
    assert_eq!(out.status.code(), Some(1), "{result}");
    backups.push(result["backup"].as_str().unwrap().to_owned());
    assert_eq!(link(&shop.dir().join("current")), "releases/v1.1.0");
    assert_eq!(releases(&shop), ["v1.0.0", "v1.1.0"]);

    // 3. Good: v1.1.0 -> v1.2.1. Three good releases, keep 2: v1.0.0 goes. The pins of
    //    upgrades that can no longer be rolled back go (to v1.1.0: its v1.0.0 is gone; to
    //    v1.2.0: it failed); the new one stays.
    let (out, result) = upgrade_to(&shop, "v1.2.1", &keep);
    assert!(out.status.success(), "{result}");
    backups.push(result["backup"].as_str().unwrap().to_owned());
    assert_eq!(releases(&shop), ["v1.1.0", "v1.2.1"]);
    assert_eq!(pins(&shop), backups[2..3]);
    assert_eq!(step_output(&out, "finish", "removed"), "v1.0.0");
    assert_eq!(step_output(&out, "finish", "kept"), "v1.2.1,v1.1.0");
    let mut unpinned: Vec<String> = step_output(&out, "finish", "unpinned")
        .split(',')
        .map(str::to_owned)
        .collect();
    unpinned.sort();
    assert_eq!(unpinned, backups[..2]);

    // 4. Failed on the live ports after the swap: back on v1.2.1, v1.3.0 removed.
    let (out, result) = upgrade_to(&shop, "v1.3.0", &keep);
    assert_eq!(out.status.code(), Some(1), "{result}");
    let error = result["error"].as_str().unwrap_or_default();
    assert!(error.contains("step health-live failed"), "{error}");
    // The second database restore of this shop: the first one (step 2) must have left `public`
    // as initdb makes it, or this restore fails (pg_restore never creates `public`).
    assert!(error.contains("database: restored"), "{error}");
    backups.push(result["backup"].as_str().unwrap().to_owned());
    assert_eq!(link(&shop.dir().join("current")), "releases/v1.2.1");
    assert_eq!(releases(&shop), ["v1.1.0", "v1.2.1"]);

    // 5. Good: v1.2.1 -> v1.3.1. The failed v1.3.0 did not count: v1.3.1 and v1.2.1 stay,
    //    v1.1.0 goes.
    let (out, result) = upgrade_to(&shop, "v1.3.1", &keep);
    assert!(out.status.success(), "{result}");
    backups.push(result["backup"].as_str().unwrap().to_owned());
    assert_eq!(releases(&shop), ["v1.2.1", "v1.3.1"]);
    assert_eq!(step_output(&out, "finish", "removed"), "v1.1.0");
    assert_eq!(step_output(&out, "finish", "kept"), "v1.3.1,v1.2.1");
    assert_eq!(pins(&shop), backups[4..5]);
    assert_eq!(link(&shop.dir().join("current")), "releases/v1.3.1");
    assert_eq!(shop.versions(), ["1.3.1", "1.3.1", "1.3.1"]);
    for (name, _, real) in shop.app_cwds() {
        let svc = name.rsplit('-').next().unwrap();
        assert!(
            real.ends_with(format!("releases/v1.3.1/{svc}")),
            "{name}: {}",
            real.display()
        );
    }
    let marker =
        std::fs::read_to_string(shop.dir().join("releases/v1.3.1/.qodify-release.json")).unwrap();
    assert!(
        marker.contains("\"v1.2.1\""),
        "rolls back to v1.2.1: {marker}"
    );

    // Unpinned is not deleted: every pre-upgrade backup is still there and listed.
    for b in &backups {
        assert!(
            shop.dir()
                .join("backups")
                .join(b)
                .join("backup.json")
                .is_file(),
            "backup {b} kept"
        );
    }
    let listed = run(shop
        .qodify()
        .args(["backups", "list", "--customer", &shop.domain, "--json"]));
    let listed = String::from_utf8_lossy(&listed.stdout);
    for b in &backups {
        assert!(listed.contains(b.as_str()), "{b} listed: {listed}");
    }
}

/// Starts `run upgrade` to v1.1.0 from the CLI and `kill -9`s it the moment `current` moves to
/// the new release: no store anywhere knows of that run.
fn kill_cli_upgrade_after_the_swap(shop: &Shop) {
    let mut child = shop
        .qodify()
        .args([
            "run",
            "upgrade",
            "--customer",
            &shop.domain,
            "--tier",
            "fixture",
            "--param",
            "targetVersion=v1.1.0",
            "--param",
            "heapMB=512",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let current = shop.dir().join("current");
    let until = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while link(&current) != "releases/v1.1.0" {
        assert!(std::time::Instant::now() < until, "the swap never happened");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the upgrade ended early"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    let _ = child.wait();
    assert!(
        shop.dir().join("releases/.upgrade.json").exists(),
        "killed mid-upgrade"
    );
}

fn run_journal(shop: &Shop) -> std::path::PathBuf {
    shop.dir()
        .parent()
        .unwrap()
        .join(".qodify-locks")
        .join(format!("{}.run.json", shop.domain))
}

/// Recovery is driven by the disk, not by a store: an upgrade started with `qodify-host run` and
/// killed with -9 is rolled back by the next command that takes the customer's lock (here a
/// backup, which says so and then runs), or by `qodify-host recover`.
#[test]
fn a_cli_upgrade_killed_after_the_swap_is_rolled_back_by_whatever_runs_next() {
    let Some(shop) = shop("upgclikill", |_| vec![]) else {
        return;
    };
    kill_cli_upgrade_after_the_swap(&shop);
    let journal = run_journal(&shop);
    assert!(journal.is_file(), "no run journal at {}", journal.display());

    // The next run of the customer finishes the upgrade's rollback first, then backs up.
    let out = run(shop
        .qodify()
        .args(["run", "backup", "--customer", &shop.domain, "--json"]));
    assert!(out.status.success(), "the backup after the crash failed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let recovered: serde_json::Value = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["event"] == "recovered")
        .expect("the backup did not report the recovery");
    assert_eq!(recovered["complete"], true, "{recovered}");
    assert_eq!(recovered["pipeline"], "upgrade");
    let error = recovered["result"]["error"].as_str().unwrap_or_default();
    assert!(error.contains("the host stopped during the run"), "{error}");
    assert!(
        error.contains("code: current back to releases/v1.0.0"),
        "{error}"
    );
    assert_on_v1_0_0(&shop);
    assert!(!journal.exists(), "the run journal is still there");
    assert!(common::run_result(&out)["backup"].is_string());

    // The same through the ops command, which then has nothing left to do.
    kill_cli_upgrade_after_the_swap(&shop);
    let out = run(shop.qodify().args(["recover", "--customer", &shop.domain]));
    assert!(out.status.success(), "recover failed");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("had been interrupted"), "{stderr}");
    assert_on_v1_0_0(&shop);
    let out = run(shop.qodify().args(["recover", "--customer", &shop.domain]));
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("has no interrupted run"),
        "a second recover found work"
    );
}
