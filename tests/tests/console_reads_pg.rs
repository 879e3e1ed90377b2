//! What the web console reads, from the real `serve` over HTTP, with real PostgreSQL behind the
//! backups: the customers list (filter, cursor, the current and the blue/green layout as found
//! on disk, the last backup after a real backup, the active run while one runs), a customer's
//! upgrade targets (one allowed, one refused with the reason the upgrade would give), runs by
//! state and the audit log by action and actor with their cursors, and bad queries answered as
//! problem+json naming what was wrong.

mod common;
mod pg;

use std::time::{Duration, Instant};

use common::*;
use pg::TestDb;
use serde_json::{Value, json};

const TOKEN: &str = "console-token";
/// Current layout, registered as 42, backed up.
const SHOP: &str = "shop.example.com";
/// Blue/green layout on release 1.0.0, registered as 7.
const BLUE_GREEN: &str = "bg.example.com";
/// Registered as x-1, no folder.
const NO_FOLDER: &str = "nofolder.example.org";

fn get(s: &Server, path: &str) -> (u16, Value) {
    json_of(api(TOKEN, "GET", &format!("{}{path}", s.base)).call())
}

fn ok(s: &Server, path: &str) -> Value {
    let (code, body) = get(s, path);
    assert_eq!(code, 200, "GET {path}: {body}");
    body
}

/// The ids of a customers page, and its `nextBefore`.
fn customer_ids(page: &Value) -> (Vec<&str>, Option<&str>) {
    let ids = page["customers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    (ids, page["nextBefore"].as_str())
}

fn customer<'a>(page: &'a Value, id: &str) -> &'a Value {
    page["customers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("customer {id} not in {page}"))
}

/// The customer in the current layout, with a real database, 32 MiB of uploads (so a backup
/// runs long enough to be seen running).
fn shop(host: &Host, db: &TestDb) {
    let dir = host.customer(SHOP);
    write(
        &dir.join("backend/package.json"),
        r#"{"name":"backend","version":"1.0.3"}"#,
    );
    write(
        &dir.join("backend/.env"),
        format!("DATABASE_URL={}\n", db.url("pw")),
    );
    for i in 0..32 {
        write(
            &dir.join(format!("backend/uploads/f{i}.bin")),
            noise(1 << 20, i),
        );
    }
}

/// A customer installed straight into the blue/green layout: `releases/1.0.0/{backend,admin,
/// store}`, `current -> releases/1.0.0`, `shared/uploads`; its backend's `.env` sets `POOL` and
/// `OLD_FLAG`.
fn blue_green(host: &Host) {
    let dir = host.customer(BLUE_GREEN);
    let release = dir.join("releases/1.0.0");
    write(
        &release.join("backend/.env"),
        "DATABASE_URL=postgres://shop@127.0.0.1:5432/shop\nPOOL=10\nOLD_FLAG=1\n",
    );
    write(
        &release.join("backend/package.json"),
        r#"{"name":"backend","version":"1.0.0"}"#,
    );
    write(&release.join("admin/server.js"), "// admin");
    write(&release.join("store/server.js"), "// store");
    write(&dir.join("shared/uploads/a.jpg"), noise(1024, 7));
    std::os::unix::fs::symlink("releases/1.0.0", dir.join("current")).unwrap();
}

/// A release catalog: 1.0.0, 1.1.0 from 1.0.0 (sets `POOL` and `FEATURE_X`, removes
/// `OLD_FLAG`), 2.0.0 from 1.1.0 only; each with its package.
fn catalog(dir: &std::path::Path) {
    let release = |v: &str, from: &[&str], env: Value| {
        let path = format!("packages/qodify-{v}.tar.gz");
        write(&dir.join(&path), format!("package {v}"));
        json!({
            "version": v,
            "package": { "path": path, "sha256": sha256_file(&dir.join(&path)) },
            "compat": { "node": ">=18.17 <23", "postgres": ">=13 <18", "upgradeFrom": from },
            "env": env,
            "notes": format!("release {v}"),
        })
    };
    let doc = json!({
        "releases": [
            release("1.0.0", &[], json!({})),
            release("2.0.0", &["1.1.0"], json!({})),
            release("1.1.0", &["1.0.0"], json!({
                "backend": { "set": { "POOL": "20", "FEATURE_X": "on" }, "remove": ["OLD_FLAG"] }
            })),
        ]
    });
    write(&dir.join("releases.json"), doc.to_string());
}

fn register(s: &Server, id: &str, domain: &str) {
    let (code, body) = json_of(
        api(TOKEN, "PUT", &format!("{}/api/customers/{id}", s.base))
            .send_json(json!({ "domain": domain })),
    );
    assert_eq!(code, 200, "{body}");
}

fn post_backup(s: &Server, by: &str) -> String {
    let (code, body) = json_of(
        api(
            TOKEN,
            "POST",
            &format!("{}/api/customers/42/backups", s.base),
        )
        .send_json(json!({ "triggeredBy": by })),
    );
    assert_eq!(code, 202, "{body}");
    body["runId"].as_str().unwrap().to_owned()
}

/// Polls the run until it has ended; its final state.
fn wait_end(s: &Server, run: &str) -> Value {
    let until = Instant::now() + Duration::from_secs(180);
    loop {
        let r = ok(s, &format!("/api/runs/{run}"));
        if !matches!(r["state"].as_str(), Some("queued" | "running")) {
            return r;
        }
        assert!(Instant::now() < until, "run {run} did not end: {r}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_console_reads_customers_upgrades_runs_and_the_audit_log() {
    let host = Host::new();
    let db = TestDb::shop("console");
    shop(&host, &db);
    blue_green(&host);
    let releases = host.tmp.path().join("releases");
    catalog(&releases);
    let s = host.serve(TOKEN, &["--releases-dir", releases.to_str().unwrap()]);
    register(&s, "42", SHOP);
    register(&s, "7", BLUE_GREEN);
    register(&s, "x-1", NO_FOLDER);

    // By domain, with what each folder holds; nothing backed up or running yet.
    let all = ok(&s, "/api/customers");
    assert_eq!(customer_ids(&all), (vec!["7", "x-1", "42"], None));
    let want = [
        ("42", "current", json!("1.0.3")),
        ("7", "blue-green", json!("1.0.0")),
        ("x-1", "missing", Value::Null),
    ];
    for (id, layout, release) in want {
        let c = customer(&all, id);
        assert_eq!(
            (&c["layout"], &c["release"]),
            (&json!(layout), &release),
            "{c}"
        );
        assert_eq!(
            (&c["lastBackup"], &c["activeRun"]),
            (&Value::Null, &Value::Null)
        );
    }
    assert_eq!(customer(&all, "42")["domain"], SHOP);

    // Filter by a piece of the id or the domain, in any case; pages by the last domain.
    assert_eq!(customer_ids(&ok(&s, "/api/customers?q=BG.EX")).0, ["7"]);
    assert_eq!(customer_ids(&ok(&s, "/api/customers?q=42")).0, ["42"]);
    assert_eq!(
        customer_ids(&ok(&s, "/api/customers?q=.example.")).0.len(),
        3
    );
    assert!(
        customer_ids(&ok(&s, "/api/customers?q=nobody"))
            .0
            .is_empty()
    );
    let mut pages = Vec::new();
    let mut path = "/api/customers?limit=1".to_owned();
    loop {
        let page = ok(&s, &path);
        let (ids, next) = customer_ids(&page);
        pages.push(ids.iter().map(|i| i.to_string()).collect::<Vec<_>>());
        match next {
            Some(next) => path = format!("/api/customers?limit=1&before={next}"),
            None => break,
        }
    }
    assert_eq!(pages, [["7"], ["x-1"], ["42"]]);
    assert_eq!(
        customer_ids(&ok(
            &s,
            "/api/customers?q=example&limit=1&before=bg.example.com"
        )),
        (vec!["x-1"], Some(NO_FOLDER))
    );

    // A real backup: the newest history line shows.
    let first = post_backup(&s, "ayse");
    let done = wait_end(&s, &first);
    assert_eq!(done["state"], "succeeded", "{done}");
    let backup_id = done["backupId"].as_str().unwrap().to_owned();
    let page = ok(&s, "/api/customers?q=shop");
    let last = &customer(&page, "42")["lastBackup"];
    assert_eq!(last["backupId"], backup_id.as_str(), "{last}");
    assert_eq!(last["result"], "succeeded", "{last}");
    assert_eq!(last["runId"], first.as_str(), "{last}");
    assert!(last["size"].as_u64().unwrap() > 32 << 20, "{last}");
    assert!(last["date"].as_str().unwrap().starts_with("20"), "{last}");
    assert_eq!(customer(&page, "42")["activeRun"], Value::Null);

    // While a backup runs, the list shows it with its progress and step.
    let second = post_backup(&s, "bora");
    let until = Instant::now() + Duration::from_secs(60);
    let active = loop {
        let page = ok(&s, "/api/customers?q=shop");
        let active = customer(&page, "42")["activeRun"].clone();
        if active["state"] == "running" && active["step"].is_string() {
            break active;
        }
        assert!(
            active.is_null() || active["runId"] == second.as_str(),
            "{active}"
        );
        assert!(
            Instant::now() < until,
            "never saw the backup running: {active}"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(active["runId"], second.as_str(), "{active}");
    assert_eq!(active["pipeline"], "backup", "{active}");
    let percent = active["percent"]
        .as_f64()
        .expect("a percent beside the step");
    assert!((0.0..=100.0).contains(&percent), "{active}");
    let (code, body) = json_of(
        api(
            TOKEN,
            "POST",
            &format!("{}/api/runs/{second}/cancel", s.base),
        )
        .send_json(json!({})),
    );
    assert!(code == 202 || code == 409, "{code}: {body}");
    let second_state = wait_end(&s, &second)["state"].as_str().unwrap().to_owned();
    assert_eq!(
        customer(&ok(&s, "/api/customers?q=shop"), "42")["activeRun"],
        Value::Null
    );

    // Upgrade targets: the blue/green customer may go to 1.1.0, not yet to 2.0.0.
    let up = ok(&s, "/api/customers/7/upgrades");
    assert_eq!(
        up["current"],
        json!({ "layout": "blue-green", "release": "1.0.0" })
    );
    let targets = up["targets"].as_array().unwrap();
    let versions: Vec<&str> = targets
        .iter()
        .map(|t| t["version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["2.0.0", "1.1.0", "1.0.0"]);
    let (t200, t110, t100) = (&targets[0], &targets[1], &targets[2]);
    assert_eq!(t110["allowed"], true, "{t110}");
    assert_eq!(t110["reason"], Value::Null, "{t110}");
    assert_eq!(t110["notes"], "release 1.1.0");
    assert_eq!(t110["compat"]["node"], ">=18.17 <23");
    let key = |service: &str, key: &str| json!({ "service": service, "key": key });
    assert_eq!(
        t110["envChanges"],
        json!({
            "added": [key("backend", "FEATURE_X")],
            "changed": [key("backend", "POOL")],
            "removed": [key("backend", "OLD_FLAG")],
        })
    );
    assert_eq!(t200["allowed"], false, "{t200}");
    assert_eq!(
        t200["reason"],
        "2.0.0 cannot be installed over 1.0.0: it upgrades from 1.1.0; upgrade through 1.1.0 \
         first (1.0.0 → 1.1.0 → 2.0.0)"
    );
    assert_eq!(
        t100["reason"],
        "the customer already runs 1.0.0; nothing to upgrade"
    );
    // The customer in the current layout must migrate first, whatever the target.
    let up = ok(&s, "/api/customers/42/upgrades");
    assert_eq!(
        up["current"],
        json!({ "layout": "current", "release": "1.0.3" })
    );
    for t in up["targets"].as_array().unwrap() {
        assert_eq!(t["allowed"], false, "{t}");
        assert!(
            t["reason"]
                .as_str()
                .unwrap()
                .contains("run the migrate-layout pipeline first"),
            "{t}"
        );
    }

    // Runs by state, and by cursor.
    let run_ids = |path: &str| -> (Vec<String>, Option<String>) {
        let page = ok(&s, path);
        let runs = page["runs"].as_array().unwrap();
        (
            runs.iter()
                .map(|r| r["id"].as_str().unwrap().to_owned())
                .collect(),
            page["nextBefore"].as_str().map(str::to_owned),
        )
    };
    assert_eq!(run_ids("/api/runs?state=succeeded").0, {
        let mut want = vec![first.clone()];
        if second_state == "succeeded" {
            want.insert(0, second.clone());
        }
        want
    });
    assert_eq!(
        run_ids(&format!("/api/runs?customer=42&state={second_state}")).0,
        if second_state == "succeeded" {
            vec![second.clone(), first.clone()]
        } else {
            vec![second.clone()]
        }
    );
    assert_eq!(
        run_ids("/api/runs?state=succeeded&state=cancelled,failed").0,
        [second.clone(), first.clone()]
    );
    assert!(run_ids("/api/runs?state=queued,running").0.is_empty());
    assert!(run_ids("/api/runs?customer=7&state=succeeded").0.is_empty());
    let (page1, next) = run_ids("/api/runs?limit=1");
    assert_eq!(
        (page1, next.as_deref()),
        (vec![second.clone()], Some(second.as_str()))
    );
    let (page2, next) = run_ids(&format!("/api/runs?limit=1&before={second}"));
    assert_eq!((page2, next), (vec![first.clone()], None));

    // The audit log by action and actor, and by cursor.
    let entries = |path: &str| -> (Vec<Value>, Option<i64>) {
        let page = ok(&s, path);
        (
            page["entries"].as_array().unwrap().clone(),
            page["nextBefore"].as_i64(),
        )
    };
    let (by_ayse, _) = entries("/api/audit?action=backup.requested&actor=ayse");
    assert_eq!(by_ayse.len(), 1, "{by_ayse:?}");
    assert_eq!(by_ayse[0]["runId"], first.as_str());
    assert_eq!(by_ayse[0]["customerId"], "42");
    let (requested, _) = entries("/api/audit?customer=42&action=backup.requested");
    let runs: Vec<&str> = requested
        .iter()
        .map(|e| e["runId"].as_str().unwrap())
        .collect();
    assert_eq!(runs, [second.as_str(), first.as_str()]);
    let (registered, _) = entries("/api/audit?action=customer.registered");
    let customers: Vec<&str> = registered
        .iter()
        .map(|e| e["customerId"].as_str().unwrap())
        .collect();
    assert_eq!(customers, ["x-1", "7", "42"]);
    let (page1, next) = entries("/api/audit?action=customer.registered&limit=2");
    assert_eq!(page1, registered[..2]);
    let next = next.expect("a second page");
    assert_eq!(next, registered[1]["id"].as_i64().unwrap());
    let (page2, after) = entries(&format!(
        "/api/audit?action=customer.registered&limit=2&before={next}"
    ));
    assert_eq!((page2, after), (registered[2..].to_vec(), None));
    assert!(entries("/api/audit?actor=nobody").0.is_empty());

    // Bad queries: 400 (404 for an unknown customer) as problem+json saying what was wrong.
    for (path, code, says) in [
        ("/api/runs?state=bogus", 400, "unknown run state `bogus`"),
        (
            "/api/runs?state=queued,Running",
            400,
            "unknown run state `Running`",
        ),
        (
            "/api/runs?customer=42&customer=7",
            400,
            "`customer` is given twice",
        ),
        ("/api/runs?colour=red", 400, "unknown parameter `colour`"),
        ("/api/runs?limit=many", 400, "limit must be a whole number"),
        ("/api/runs?before=not-a-uuid", 400, "is not a run id"),
        (
            "/api/runs?customer=404&state=failed",
            404,
            "unknown customer 404",
        ),
        (
            "/api/customers?limit=0",
            400,
            "limit must be between 1 and 1000",
        ),
        ("/api/customers?before=..", 400, "before must be a domain"),
        ("/api/customers?page=2", 400, "invalid query"),
        ("/api/customers/404/upgrades", 404, "unknown customer 404"),
        ("/api/customers/a%20b/upgrades", 400, "is not a customer id"),
        (
            "/api/audit?action=Backup.Deleted",
            400,
            "action must be an audit action",
        ),
        ("/api/audit?before=0", 400, "before must be an entry id"),
        ("/api/audit?customer=404", 404, "unknown customer 404"),
    ] {
        let r = api(TOKEN, "GET", &format!("{}{path}", s.base)).call();
        let content_type = match &r {
            Ok(resp) | Err(ureq::Error::Status(_, resp)) => resp.content_type().to_owned(),
            Err(e) => panic!("{path}: {e}"),
        };
        let (got, body) = json_of(r);
        assert_eq!(got, code, "{path}: {body}");
        assert_eq!(content_type, "application/problem+json", "{path}");
        assert_eq!(body["status"], code, "{path}: {body}");
        assert!(
            body["detail"].as_str().unwrap().contains(says),
            "{path}: {body}"
        );
    }
}
