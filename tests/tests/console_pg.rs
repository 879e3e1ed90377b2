//! The web console in a real browser: Debian's Chromium driven by Playwright
//! (`tests/console-e2e/console.spec.ts`) against a real `qodify-host serve` with the console
//! built in, a real PM2 shop with a PostgreSQL database and a release catalog (v1.1.0 changes an
//! `.env` value, v1.2.0 upgrades only from v1.1.0), a big customer whose backup takes long enough
//! to cancel, and named tokens for each role made through the CLI.
//!
//! `UPDATE_SCREENSHOTS=1` saves the pages (1280 px and 390 px) into `docs/console/`.

mod common;
mod pg;
mod shop;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{repo, run};
use pg::TestDb;
use shop::{Shop, pm2_available};

const SERVICE_TOKEN: &str = "console-service-token";

/// Under CI a missing tool is a failure; elsewhere the test is skipped with a message.
fn have(what: &str, ok: bool, how: &str) -> bool {
    if !ok {
        assert!(std::env::var_os("CI").is_none(), "{what} is missing: {how}");
        eprintln!("skipped: {what} is missing ({how})");
    }
    ok
}

fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// `qodify-host tokens add <name> --role <role>`: the token it prints once.
fn add_token(shop: &Shop, name: &str, role: &str) -> String {
    let out = run(shop.qodify().args(["tokens", "add", name, "--role", role]));
    assert!(out.status.success(), "tokens add {name}");
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .find(|w| w.starts_with("qdf_"))
        .unwrap_or_else(|| panic!("no token in {text:?}"))
        .to_owned()
}

/// A second customer (no PM2 apps) with `mib` MiB of incompressible uploads.
fn big_customer(shop: &Shop, domain: &str, db: &TestDb, mib: usize) {
    let out = Command::new("bash")
        .arg(repo().join("tests/fixtures/upgrade/make-customer.sh"))
        .arg(shop.host.customers())
        .arg(domain)
        .arg(&db.name)
        .args(["41001", "41002", "41003"])
        .env("PGUSER", "postgres")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "make-customer.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let uploads = shop.host.customer(domain).join("backend/uploads/noise");
    std::fs::create_dir_all(&uploads).unwrap();
    for i in 0..mib / 16 {
        common::write(
            &uploads.join(format!("{i:03}.bin")),
            common::noise(16 << 20, i as u64 + 7),
        );
    }
}

#[test]
fn the_console_in_a_real_browser() {
    if !pm2_available() {
        return;
    }
    let e2e = repo().join("tests/console-e2e");
    if !have(
        "tests/console-e2e/node_modules",
        e2e.join("node_modules/@playwright/test").is_dir(),
        "run `PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci` in tests/console-e2e (.ci/run does it)",
    ) || !have(
        "Chromium",
        chromium().is_file(),
        "`apt-get install chromium` (.ci/run does it)",
    ) {
        return;
    }

    let shop = Shop::new("console");
    shop.start();
    let out = run(shop
        .qodify()
        .args(["run", "migrate-layout", "--customer", &shop.domain]));
    assert!(out.status.success(), "migrate-layout failed");
    shop.add_release("1.0.0", &[]);
    shop.add_release_with(
        "1.1.0",
        &[],
        serde_json::json!({ "env": { "backend": { "set": { "APP_NAME": "renamed-shop" } } } }),
    );
    shop.add_release_with(
        "1.2.0",
        &[],
        serde_json::json!({
            "compat": { "node": ">=18", "postgres": ">=13", "upgradeFrom": ["v1.1.0"] },
            "env": { "backend": { "set": { "APP_NAME": "renamed-again" } } },
        }),
    );

    let big_db = TestDb::empty("consolebig");
    let big_domain = "big.console.test";
    big_customer(&shop, big_domain, &big_db, 384);

    // Where the console restores the shop's database, to compare it with the source.
    let restore_db = TestDb::empty("consolerestore");

    let operator = add_token(&shop, "ops-anna", "operator");
    let viewer = add_token(&shop, "support-veli", "viewer");
    let admin = add_token(&shop, "admin-deniz", "admin");

    let server = common::serve_cmd(shop.qodify(), SERVICE_TOKEN, &[]);
    let (status, _) = common::json_of(
        common::api(
            SERVICE_TOKEN,
            "PUT",
            &format!("{}/api/customers/c-big", server.base),
        )
        .send_json(serde_json::json!({ "domain": big_domain })),
    );
    assert_eq!(status, 200);

    // The console is built in: `/` is the app, not the "not built" page.
    let index = ureq::get(&format!("{}/", server.base))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert!(
        index.contains("id=\"root\""),
        "serve answers `/` without the console (run `cargo xtask build`): {index}"
    );

    let screenshots = std::env::var_os("UPDATE_SCREENSHOTS").map(|_| repo().join("docs/console"));
    let out_dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new("npx");
    cmd.args(["--no-install", "playwright", "test"])
        .current_dir(&e2e)
        .env("QODIFY_BASE", &server.base)
        .env("QODIFY_SERVICE_TOKEN", SERVICE_TOKEN)
        .env("QODIFY_TOKEN_OPERATOR", &operator)
        .env("QODIFY_TOKEN_VIEWER", &viewer)
        .env("QODIFY_TOKEN_ADMIN", &admin)
        .env("SHOP_ID", "c-shop")
        .env("SHOP_DOMAIN", &shop.domain)
        .env("SHOP_TIER", "fixture")
        .env("SHOP_DB", &shop.db.name)
        .env("RESTORE_DB", &restore_db.name)
        .env("BIG_ID", "c-big")
        .env("BIG_DOMAIN", big_domain)
        .env("CHROMIUM", chromium())
        .env("QODIFY_E2E_OUT", out_dir.path());
    if let Some(dir) = &screenshots {
        cmd.env("QODIFY_SCREENSHOTS", dir);
    }
    let status = cmd.status().expect("npx playwright");
    if !status.success() {
        keep_results(out_dir.path());
    }
    assert!(
        status.success(),
        "the console's browser flows failed (see above)"
    );
}

/// Keeps Playwright's traces of a failed run where a person can open them
/// (`npx playwright show-trace <zip>`).
fn keep_results(dir: &Path) {
    let keep = common::target_dir().join("console-e2e-results");
    let _ = std::fs::remove_dir_all(&keep);
    let _ = Command::new("cp").arg("-a").arg(dir).arg(&keep).status();
    eprintln!("Playwright's traces: {}", keep.display());
}
