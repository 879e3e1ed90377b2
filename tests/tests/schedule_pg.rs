//! Schedules end to end: a real `serve` whose customer's tier schedules a backup every minute
//! (the rules themselves — slots, jitter, catch-up once, busy customers, `max_concurrent` — are
//! tested with a controlled clock in `host/src/ops/schedule.rs`). The scheduled backup starts at
//! the minute, runs through the queue as `schedule`, shows in `GET /api/schedules`, the history
//! and the audit log, and restores the database it was taken from.

mod common;
mod pg;

use std::time::{Duration, Instant};

use common::*;
use pg::{TestDb, psql};

const TOKEN: &str = "schedule-token";
const DOMAIN: &str = "shop.example.com";

fn get(s: &Server, path: &str) -> serde_json::Value {
    get_ok(s, TOKEN, path)
}

fn unix_ms(rfc3339: &str) -> i64 {
    let t = time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("{rfc3339}: {e}"));
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

#[test]
fn a_tier_s_one_minute_schedule_backs_up_at_the_minute_as_schedule() {
    let host = Host::new();
    let db = TestDb::shop("sched");
    let dir = host.customer(DOMAIN);
    write(
        &dir.join("backend/package.json"),
        r#"{"name":"backend","version":"1.0.0"}"#,
    );
    write(
        &dir.join("backend/.env"),
        format!("DATABASE_URL={}\n", db.url("pw")),
    );
    write(&dir.join("backend/uploads/logo.png"), noise(64 << 10, 7));

    // The shipped pipelines plus a tier that backs up every minute, without jitter.
    let pipelines = host.tmp.path().join("pipelines");
    std::fs::create_dir_all(pipelines.join("tiers")).unwrap();
    for entry in std::fs::read_dir(repo().join("pipelines")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            std::fs::copy(&path, pipelines.join(path.file_name().unwrap())).unwrap();
        }
    }
    write(
        &pipelines.join("tiers/minutely.toml"),
        "[schedule.backup]\nat = \"every 1m\"\nwindow = \"30s\"\njitter = \"0s\"\n\
         params = { type = \"fast\" }\n",
    );
    let config = host.tmp.path().join("qodify-host.toml");
    write(&config, "[schedule]\ntick = \"1s\"\n");
    let mut cmd = host.cmd_with_pipelines(&pipelines);
    cmd.env("QODIFY_CONFIG", &config);
    let s = serve_cmd(cmd, TOKEN, &[]);

    let (code, body) = json_of(
        api(TOKEN, "PUT", &format!("{}/api/customers/42", s.base))
            .send_json(serde_json::json!({"domain": DOMAIN, "tier": "minutely"})),
    );
    assert_eq!(code, 200, "{body}");

    // Listed with its next run: the next whole minute, or now when this minute's slot is still
    // in its 30 s window.
    let listed = get(&s, "/api/schedules?customer=42");
    let entry = &listed["schedules"][0];
    assert_eq!(entry["pipeline"], "backup", "{listed}");
    assert_eq!(entry["origin"], "tier:minutely");
    assert_eq!(entry["at"], "every 1m");
    assert_eq!(entry["window"], "30s");
    assert_eq!(entry["params"]["type"], "fast");
    let next = unix_ms(entry["nextRunAt"].as_str().unwrap());
    if entry["due"] == true {
        assert!(
            now_ms() % 60_000 <= 31_000,
            "due outside the window: {entry}"
        );
    } else {
        assert_eq!(next % 60_000, 0, "{entry}");
        assert!(
            next > now_ms() - 2_000 && next <= now_ms() + 60_000,
            "{entry}"
        );
    }

    // The scheduled run appears in its slot's window (the tick is 1 s), triggered by `schedule`.
    let until = Instant::now() + Duration::from_secs(90);
    let scheduled = loop {
        let runs = get(&s, "/api/runs?customer=42");
        if let Some(r) = runs["runs"].as_array().unwrap().first() {
            break r.clone();
        }
        assert!(Instant::now() < until, "no scheduled run within 90 s");
        std::thread::sleep(Duration::from_millis(250));
    };
    let queued_at = now_ms();
    assert!(
        queued_at >= next,
        "queued before its slot: {queued_at} < {next}"
    );
    assert!(
        queued_at < next + 10_000,
        "queued {} ms after its slot",
        queued_at - next
    );
    assert_eq!(scheduled["triggeredBy"], "schedule", "{scheduled}");
    assert_eq!(scheduled["pipeline"], "backup");
    let run_id = scheduled["id"].as_str().unwrap().to_owned();

    let until = Instant::now() + Duration::from_secs(120);
    let done = loop {
        let r = get(&s, &format!("/api/runs/{run_id}"));
        if !matches!(r["state"].as_str(), Some("queued" | "running")) {
            break r;
        }
        assert!(
            Instant::now() < until,
            "the scheduled backup did not end: {r}"
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(done["state"], "succeeded", "{done}");
    let backup_id = done["backupId"].as_str().unwrap().to_owned();

    // The history and the audit log say who took it; the schedule says how its slot went.
    let history = get(&s, "/api/customers/42/backups");
    let line = history["backups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["runId"] == run_id.as_str())
        .unwrap_or_else(|| panic!("no history line for {run_id}: {history}"))
        .clone();
    assert_eq!(line["triggeredBy"], "schedule");
    assert_eq!(line["result"], "succeeded");
    let audit = get(&s, "/api/audit?customer=42");
    let actions: Vec<(String, String)> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap_or_default().to_owned(),
                e["actor"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert!(
        actions.contains(&("schedule.queued".into(), "schedule".into())),
        "{actions:?}"
    );
    assert!(actions.contains(&("backup.requested".into(), "schedule".into())));
    let listed = get(&s, "/api/schedules?customer=42");
    let last = &listed["schedules"][0]["last"];
    assert_eq!(last["outcome"], "queued", "{listed}");
    assert_eq!(last["runId"], run_id.as_str());
    // The slot is a whole minute, and the run was queued inside its window.
    let slot = unix_ms(last["slot"].as_str().unwrap());
    assert_eq!(slot % 60_000, 0, "{last}");
    assert!(
        (slot..slot + 31_000).contains(&queued_at),
        "queued at {queued_at}, slot {slot}"
    );
    assert!(unix_ms(listed["schedules"][0]["nextRunAt"].as_str().unwrap()) > slot);

    // A customer's own schedule turns the tier's off for it.
    let (code, body) = json_of(
        api(
            TOKEN,
            "PUT",
            &format!("{}/api/customers/42/schedules/backup", s.base),
        )
        .send_json(serde_json::json!({"at": "off"})),
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["schedules"][0]["origin"], "customer");
    assert_eq!(body["schedules"][0]["nextRunAt"], serde_json::Value::Null);
    // A bad one is refused with what is wrong.
    let (code, body) = json_of(
        api(
            TOKEN,
            "PUT",
            &format!("{}/api/customers/42/schedules/backup", s.base),
        )
        .send_json(serde_json::json!({"at": "daily 3am"})),
    );
    assert_eq!(code, 422, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("`3am` is not a time of day"),
        "{body}"
    );
    drop(s);

    // The scheduled backup restores the database it was taken from.
    let before = db.checksums();
    psql(
        &db.name,
        "DELETE FROM orders WHERE id % 3 = 0; UPDATE customers SET name = 'x'",
    );
    assert_ne!(db.checksums(), before);
    let out = run(host
        .cmd_with_pipelines(&pipelines)
        .args(["run", "restore", "--customer", DOMAIN, "--param"])
        .arg(format!("backup={backup_id}")));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(db.checksums(), before);
}
