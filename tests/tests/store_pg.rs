//! `qodify-host serve` keeping its state in PostgreSQL (`QODIFY_STORE=postgres://…`): a backup
//! posted over HTTP runs and lands in the history, in the database rather than the data dir, so a
//! `serve` on another data dir reads the same history; the URL's password shows nowhere; an
//! unreachable server stops `serve` with a message saying what to check.

mod common;
mod pg;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use pg::{TestDb, psql};

const TOKEN: &str = "test-token-store";
const DOMAIN: &str = "shop.example.com";
/// The server trusts local connections, so any password gets in; it must show nowhere.
const PASSWORD: &str = "pw-never-shown";

/// `serve` on `data_dir` with the state in `store`, its log (info and up) in `log`.
fn serve(host: &Host, data_dir: &Path, store: &str, log: &Path) -> Server {
    let mut cmd = host.cmd();
    cmd.env("QODIFY_DATA_DIR", data_dir)
        .env("QODIFY_STORE", store)
        .env("QODIFY_LOG", "info");
    serve_logged(cmd, TOKEN, log)
}

fn get(s: &Server, path: &str) -> serde_json::Value {
    get_ok(s, TOKEN, path)
}

/// Waits for the run to end; the run as the API shows it.
fn wait_for_end(s: &Server, run: &str) -> serde_json::Value {
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        let r = get(s, &format!("/api/runs/{run}"));
        if !matches!(r["state"].as_str(), Some("queued" | "running")) {
            return r;
        }
        assert!(Instant::now() < until, "the run did not end: {r}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_backup_through_a_serve_with_its_state_in_postgres_succeeds_and_stays_in_the_history() {
    let host = Host::new();
    let shop = TestDb::empty("store_shop");
    psql(
        &shop.name,
        "CREATE TABLE orders (id serial PRIMARY KEY, note text); \
         INSERT INTO orders (note) SELECT md5(i::text) FROM generate_series(1, 100) i;",
    );
    let dir = host.customer(DOMAIN);
    write(
        &dir.join("backend/package.json"),
        r#"{"name":"backend","version":"1.0.0"}"#,
    );
    write(
        &dir.join("backend/.env"),
        format!("DATABASE_URL={}\n", shop.url("pw")),
    );
    write(&dir.join("backend/uploads/a.jpg"), noise(64 << 10, 1));

    let state = TestDb::empty("store_state");
    let store = format!(
        "postgres://postgres:{PASSWORD}@127.0.0.1:5432/{}",
        state.name
    );
    let data_a = host.tmp.path().join("data-a");
    let log_a = host.tmp.path().join("serve-a.log");
    let s = serve(&host, &data_a, &store, &log_a);

    let (code, body) = json_of(
        api(TOKEN, "PUT", &format!("{}/api/customers/42", s.base))
            .send_json(serde_json::json!({"domain": DOMAIN})),
    );
    assert_eq!(code, 200, "{body}");
    let (code, body) = json_of(
        api(
            TOKEN,
            "POST",
            &format!("{}/api/customers/42/backups", s.base),
        )
        .send_json(serde_json::json!({"type": "fast", "triggeredBy": "ayse@qodify"})),
    );
    assert_eq!(code, 202, "{body}");
    let run_id = body["runId"].as_str().unwrap().to_owned();
    let run = wait_for_end(&s, &run_id);
    assert_eq!(run["state"], "succeeded", "{run}");
    let backup_id = run["backupId"].as_str().unwrap().to_owned();
    assert!(
        dir.join("backups")
            .join(&backup_id)
            .join("backup.json")
            .is_file()
    );

    let history = get(&s, "/api/customers/42/backups");
    let first = &history["backups"][0];
    assert_eq!(first["result"], "succeeded", "{history}");
    assert_eq!(first["backupId"], backup_id.as_str(), "{history}");
    assert_eq!(first["triggeredBy"], "ayse@qodify", "{history}");
    // The run's events were stored too: a late client gets them again.
    let (code, _) = json_of(
        api(
            TOKEN,
            "GET",
            &format!("{}/api/runs/{run_id}/events", s.base),
        )
        .call(),
    );
    assert_eq!(code, 200);

    // The state is in the database, not in the data dir.
    assert!(!data_a.join("state.sqlite").exists());
    assert_eq!(
        psql(
            &state.name,
            &format!("SELECT state || ' ' || backup_id FROM runs WHERE id = '{run_id}'")
        ),
        format!("succeeded {backup_id}")
    );
    assert_ne!(
        psql(
            &state.name,
            &format!("SELECT count(*) FROM events WHERE run_id = '{run_id}'")
        ),
        "0"
    );
    drop(s);

    // Another serve, with a data dir of its own, on the same database: the same history.
    let log_b = host.tmp.path().join("serve-b.log");
    let s = serve(&host, &host.tmp.path().join("data-b"), &store, &log_b);
    let history = get(&s, "/api/customers/42/backups");
    assert_eq!(
        history["backups"][0]["backupId"],
        backup_id.as_str(),
        "{history}"
    );
    assert_eq!(
        get(&s, &format!("/api/runs/{run_id}"))["state"],
        "succeeded"
    );
    drop(s);

    for log in [&log_a, &log_b] {
        let text = std::fs::read_to_string(log).unwrap();
        assert!(text.contains("state store: PostgreSQL"), "{text}");
        assert!(
            text.contains(&format!(
                "postgres://postgres:***@127.0.0.1:5432/{}",
                state.name
            )),
            "{text}"
        );
        assert!(!text.contains(PASSWORD), "{text}");
    }
}

#[test]
fn serve_stops_with_what_to_check_when_the_store_is_unreachable_or_not_a_url() {
    let host = Host::new();
    let refused = run(host
        .cmd()
        .env(
            "QODIFY_STORE",
            format!("postgres://qodify:{PASSWORD}@127.0.0.1:1/state"),
        )
        .args(["serve", "--listen", "127.0.0.1:0"]));
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("cannot connect to PostgreSQL at postgres://qodify@127.0.0.1:1/state"),
        "{err}"
    );
    assert!(err.contains("QODIFY_STORE"), "{err}");
    assert!(!err.contains(PASSWORD), "{err}");

    let bad = run(host
        .cmd()
        .env(
            "QODIFY_STORE",
            format!("mysql://qodify:{PASSWORD}@db/state"),
        )
        .args(["serve", "--listen", "127.0.0.1:0"]));
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("QODIFY_STORE in the environment"), "{err}");
    assert!(!err.contains(PASSWORD), "{err}");
}
