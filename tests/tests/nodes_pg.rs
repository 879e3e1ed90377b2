//! Two hosts on this machine, nodes `node-a` and `node-b`: two `qodify-host serve` processes
//! sharing one fresh PostgreSQL database, each with its own data dir, customers root and node
//! name. The customer's folder is on B only: registered through A, B claims it at once (woken by
//! `NOTIFY`); a backup posted to A runs on B, claimed once and promptly, well before the
//! workers' 30 s safety re-check could have found it; moving the customer is refused while the
//! run is active and works after it; `GET /api/nodes` on either host shows both nodes.

mod common;
mod pg;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use pg::{TestDb, psql};

const TOKEN: &str = "test-token-nodes";
const DOMAIN: &str = "shop.example.com";

/// `serve` of `host` as node `node`, with the state in `store`, its log in `log`.
fn serve(host: &Host, node: &str, store: &str, log: &Path) -> Server {
    let mut cmd = host.cmd();
    cmd.env("QODIFY_NODE", node)
        .env("QODIFY_STORE", store)
        .env("QODIFY_LOG", "info");
    serve_logged(cmd, TOKEN, log)
}

fn get(s: &Server, path: &str) -> serde_json::Value {
    get_ok(s, TOKEN, path)
}

fn put_customer(s: &Server, body: serde_json::Value) -> (u16, serde_json::Value) {
    json_of(api(TOKEN, "PUT", &format!("{}/api/customers/42", s.base)).send_json(body))
}

/// Unix milliseconds of a time as the store writes it (`YYYY-MM-DDTHH:MM:SS.mmmZ`).
fn ms(t: &serde_json::Value) -> i64 {
    let t = t.as_str().unwrap();
    let n = |range: std::ops::Range<usize>| -> i64 { t[range].parse().unwrap() };
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    // Days since 1970-01-01 of a proleptic Gregorian date.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    ((days * 24 + n(11..13)) * 60 + n(14..16)) * 60_000 + n(17..19) * 1000 + n(20..23)
}

#[test]
fn a_backup_posted_to_one_host_runs_promptly_on_the_node_that_has_the_customer() {
    let (host_a, host_b) = (Host::new(), Host::new());
    let shop = TestDb::empty("nodes_shop");
    psql(
        &shop.name,
        "CREATE TABLE orders (id serial PRIMARY KEY, note text); \
         INSERT INTO orders (note) SELECT md5(i::text) FROM generate_series(1, 100) i;",
    );
    // The customer's folder is on B only.
    let dir = host_b.customer(DOMAIN);
    write(
        &dir.join("backend/package.json"),
        r#"{"name":"backend","version":"1.0.0"}"#,
    );
    write(
        &dir.join("backend/.env"),
        format!("DATABASE_URL={}\n", shop.url("pw")),
    );
    write(&dir.join("backend/uploads/a.jpg"), noise(256 << 10, 1));

    let state = TestDb::empty("nodes_state");
    let store = format!("postgres://postgres@127.0.0.1:5432/{}", state.name);
    let log_a = host_a.tmp.path().join("serve-a.log");
    let log_b = host_b.tmp.path().join("serve-b.log");
    let a = serve(&host_a, "node-a", &store, &log_a);
    let b = serve(&host_b, "node-b", &store, &log_b);
    let logs = || {
        format!(
            "A:\n{}\nB:\n{}",
            std::fs::read_to_string(&log_a).unwrap_or_default(),
            std::fs::read_to_string(&log_b).unwrap_or_default()
        )
    };

    // Registered through A, which does not have the folder: B claims it, at once.
    let (code, body) = put_customer(&a, serde_json::json!({"domain": DOMAIN}));
    assert_eq!(code, 200, "{body}");
    let asked = Instant::now();
    loop {
        let c = get(&a, "/api/customers/42");
        if c["node"] == "node-b" {
            break;
        }
        assert!(c["node"].is_null(), "{c}");
        assert!(
            asked.elapsed() < Duration::from_secs(5),
            "node-b did not claim the customer: {c}\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // A backup posted to A.
    let (code, body) = json_of(
        api(
            TOKEN,
            "POST",
            &format!("{}/api/customers/42/backups", a.base),
        )
        .send_json(serde_json::json!({"type": "fast", "triggeredBy": "ayse@qodify"})),
    );
    assert_eq!(code, 202, "{body}");
    let run_id = body["runId"].as_str().unwrap().to_owned();
    // Moving the customer is refused while its run is active.
    let (code, body) = put_customer(&a, serde_json::json!({"domain": DOMAIN, "node": "node-a"}));
    assert_eq!(code, 409, "{body}");
    assert_eq!(body["activeRunId"], run_id.as_str(), "{body}");

    let until = Instant::now() + Duration::from_secs(120);
    let run = loop {
        let r = get(&a, &format!("/api/runs/{run_id}"));
        if !matches!(r["state"].as_str(), Some("queued" | "running")) {
            break r;
        }
        assert!(
            Instant::now() < until,
            "the run did not end: {r}\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(run["state"], "succeeded", "{run}\n{}", logs());
    // B ran it: its node, its customers root; claimed once (epoch 1), so A never had it.
    assert_eq!(run["node"], "node-b", "{run}");
    let backup_id = run["backupId"].as_str().unwrap();
    assert!(
        dir.join("backups")
            .join(backup_id)
            .join("backup.json")
            .is_file()
    );
    assert!(!host_a.customer(DOMAIN).exists());
    assert_eq!(
        psql(
            &state.name,
            &format!("SELECT epoch || ' ' || node FROM runs WHERE id = '{run_id}'")
        ),
        "1 node-b"
    );
    // Woken by NOTIFY, not found by the 30 s safety re-check.
    let waited = ms(&run["startedAt"]) - ms(&run["createdAt"]);
    assert!(
        (0..3000).contains(&waited),
        "claimed {waited} ms after it was queued\n{}",
        logs()
    );

    // Both hosts show both nodes, alive, and the customer's node.
    for s in [&a, &b] {
        let nodes = get(s, "/api/nodes");
        let names: Vec<&str> = nodes["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["node-a", "node-b"], "{nodes}");
        for n in nodes["nodes"].as_array().unwrap() {
            assert!(n["heartbeatAgeMs"].as_u64().unwrap() < 15_000, "{nodes}");
            assert_eq!(n["activeRuns"], serde_json::json!([]), "{nodes}");
            assert_eq!(n["thisNode"], n["name"] == nodes["thisNode"], "{nodes}");
        }
        let list = get(s, "/api/customers");
        assert_eq!(list["customers"][0]["node"], "node-b", "{list}");
    }
    assert_eq!(get(&a, "/api/nodes")["thisNode"], "node-a");

    // With the run ended, the customer moves (an explicit call, through either host).
    let (code, body) = put_customer(&b, serde_json::json!({"domain": DOMAIN, "node": "node-a"}));
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["node"], "node-a", "{body}");
    let audit = get(&a, "/api/audit?customer=42&action=customer.moved");
    assert_eq!(
        audit["entries"][0]["detail"],
        serde_json::json!({"from": "node-b", "to": "node-a"}),
        "{audit}"
    );
}
