//! One record for the CLI and the service, matching the disk: what `serve`'s API lists as a
//! customer's backup history after retention, CLI runs and deletes, a folder removed by hand and
//! downloads, with real PostgreSQL behind the backups and the real binary for both surfaces.

mod common;
mod pg;

use std::time::Duration;

use common::*;
use pg::TestDb;

const TOKEN: &str = "record-token";
const DOMAIN: &str = "shop.example.com";

fn url(s: &Server, path: &str) -> String {
    format!("{}{path}", s.base)
}

fn small_customer(host: &Host, db: &TestDb) {
    let dir = host.customer(DOMAIN);
    write(
        &dir.join("backend/package.json"),
        r#"{"name":"backend","version":"1.0.0"}"#,
    );
    write(
        &dir.join("backend/.env"),
        format!("DATABASE_URL={}\n", db.url("pw")),
    );
    write(&dir.join("backend/uploads/a.jpg"), noise(4096, 1));
}

/// Posts a backup and waits for its end (polling the run); its backup id.
fn api_backup(s: &Server) -> String {
    let (code, body) = json_of(
        api(TOKEN, "POST", &url(s, "/api/customers/42/backups"))
            .send_json(serde_json::json!({"queue": true, "triggeredBy": "ayse"})),
    );
    assert_eq!(code, 202, "{body}");
    let run = body["runId"].as_str().unwrap().to_owned();
    let until = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let (_, r) = json_of(api(TOKEN, "GET", &url(s, &format!("/api/runs/{run}"))).call());
        match r["state"].as_str() {
            Some("succeeded") => return r["backupId"].as_str().unwrap().to_owned(),
            Some("queued" | "running") => {}
            other => panic!("backup run ended {other:?}: {r}"),
        }
        assert!(std::time::Instant::now() < until, "backup did not end");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The API's history: (backupId, result, note, triggeredBy), newest first.
fn history(s: &Server) -> Vec<(String, String, String, String)> {
    let (code, h) = json_of(api(TOKEN, "GET", &url(s, "/api/customers/42/backups")).call());
    assert_eq!(code, 200, "{h}");
    h["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            let s = |k: &str| b[k].as_str().unwrap_or_default().to_owned();
            (s("backupId"), s("result"), s("note"), s("triggeredBy"))
        })
        .collect()
}

fn audit(s: &Server) -> Vec<serde_json::Value> {
    let (code, a) = json_of(api(TOKEN, "GET", &url(s, "/api/audit?customer=42&limit=1000")).call());
    assert_eq!(code, 200, "{a}");
    a["entries"].as_array().unwrap().clone()
}

#[test]
fn the_history_follows_retention_cli_runs_cli_deletes_hand_removals_and_downloads() {
    let host = Host::new();
    let db = TestDb::shop("record");
    small_customer(&host, &db);
    let s = host.serve(TOKEN, &[]);
    let (code, _) = json_of(
        api(TOKEN, "PUT", &url(&s, "/api/customers/42"))
            .send_json(serde_json::json!({"domain": DOMAIN})),
    );
    assert_eq!(code, 200);

    // Six backups, retention 5: the oldest is deleted, and the history says so.
    let ids: Vec<String> = (0..6).map(|_| api_backup(&s)).collect();
    let h = history(&s);
    assert_eq!(h.len(), 6, "{h:?}");
    let oldest = h.iter().find(|l| l.0 == ids[0]).unwrap();
    assert_eq!(
        (oldest.1.as_str(), oldest.2.as_str()),
        ("deleted", "retention"),
        "{h:?}"
    );
    for id in &ids[1..] {
        let line = h.iter().find(|l| &l.0 == id).unwrap();
        assert_eq!(line.1, "succeeded", "{h:?}");
        // Every backup the history calls succeeded downloads.
        let r = api(
            TOKEN,
            "GET",
            &url(
                &s,
                &format!("/api/customers/42/backups/{id}/download?file=backup.json"),
            ),
        )
        .call()
        .unwrap();
        assert_eq!(r.status(), 200);
    }
    assert!(!host.customer(DOMAIN).join("backups").join(&ids[0]).exists());

    // A backup from the CLI, beside the running serve, on the same data dir: in the same
    // history and audit log, as `cli:<user>`.
    let out = run(host
        .cmd()
        .env("USER", "ops-anna")
        .env_remove("SUDO_USER")
        .args(["run", "backup", "--customer", DOMAIN, "--json"]));
    assert!(out.status.success(), "CLI backup failed");
    let cli_id = run_result(&out)["backup"].as_str().unwrap().to_owned();
    let h = history(&s);
    let line = h
        .iter()
        .find(|l| l.0 == cli_id)
        .expect("CLI backup not in the history");
    assert_eq!(
        (line.1.as_str(), line.3.as_str()),
        ("succeeded", "cli:ops-anna"),
        "{h:?}"
    );
    // Its retention deleted the next oldest.
    let second = h.iter().find(|l| l.0 == ids[1]).unwrap();
    assert_eq!(
        (second.1.as_str(), second.2.as_str()),
        ("deleted", "retention"),
        "{h:?}"
    );

    // A delete from the CLI.
    let out = run(host
        .cmd()
        .env("USER", "ops-anna")
        .env_remove("SUDO_USER")
        .args(["backups", "delete", "--customer", DOMAIN, &ids[2]]));
    assert!(out.status.success(), "CLI delete failed");
    let h = history(&s);
    let line = h.iter().find(|l| l.0 == ids[2]).unwrap();
    assert_eq!(
        (line.1.as_str(), line.2.as_str()),
        ("deleted", "deleted by cli:ops-anna"),
        "{h:?}"
    );
    let entries = audit(&s);
    assert!(
        entries.iter().any(|e| e["action"] == "backup.deleted"
            && e["actor"] == "cli:ops-anna"
            && e["detail"]["backupId"] == ids[2].as_str()),
        "{entries:#?}"
    );
    assert!(
        entries
            .iter()
            .any(|e| e["action"] == "run.finished" && e["actor"] == "cli:ops-anna"),
        "the CLI run is not audited"
    );

    // A folder removed by hand: reconcile finds it and says so.
    std::fs::remove_dir_all(host.customer(DOMAIN).join("backups").join(&ids[3])).unwrap();
    let out = run(host
        .cmd()
        .args(["backups", "reconcile", "--customer", DOMAIN]));
    assert!(out.status.success());
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains(&format!("deleted  {}", ids[3])), "{said}");
    let h = history(&s);
    let line = h.iter().find(|l| l.0 == ids[3]).unwrap();
    assert_eq!(
        (line.1.as_str(), line.2.as_str()),
        ("deleted", "missing on disk")
    );
    let out = run(host
        .cmd()
        .args(["backups", "reconcile", "--customer", DOMAIN]));
    assert!(String::from_utf8_lossy(&out.stdout).contains("matches its backup folders"));

    // Downloads are audited: with the token and through a signed link, with the bytes sent.
    let (code, link) = json_of(
        api(
            TOKEN,
            "POST",
            &url(
                &s,
                &format!("/api/customers/42/backups/{}/download-url", ids[4]),
            ),
        )
        .send_json(serde_json::json!({"file": "backup.json"})),
    );
    assert_eq!(code, 200, "{link}");
    let r = ureq::get(&url(&s, link["url"].as_str().unwrap()))
        .call()
        .unwrap();
    let sent = r.into_string().unwrap().len() as u64;
    let until = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let entries = audit(&s);
        let found = entries.iter().find(|e| {
            e["action"] == "backup.downloaded"
                && e["detail"]["via"]
                    .as_str()
                    .is_some_and(|v| v.starts_with("signed-link:"))
        });
        if let Some(e) = found {
            assert_eq!(e["detail"]["backupId"], ids[4].as_str());
            assert_eq!(e["detail"]["file"], "backup.json");
            assert_eq!(e["detail"]["bytes"], sent);
            assert!(
                entries.iter().any(
                    |e| e["action"] == "backup.downloaded" && e["detail"]["via"] == "api-token"
                ),
                "the token download is not audited"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < until,
            "no audit entry for the signed download"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
