//! `qodify-host serve` through real HTTP on a loopback port, with real PostgreSQL behind the
//! backup pipeline: register, back up, follow the live events over SSE until `backup-completed`,
//! read the history; a 500 MiB customer's progress (byte-weighted percents, ETA, warnings, the
//! preflight in the run view); one active run per customer under 100 parallel POSTs; and a
//! `kill -9` of the server in the middle of a backup.

mod common;
mod pg;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use pg::TestDb;

const TOKEN: &str = "test-token-123";
const DOMAIN: &str = "shop.example.com";

fn serve(host: &Host) -> Server {
    serve_with(host, &[])
}

fn serve_with(host: &Host, extra: &[&str]) -> Server {
    host.serve(TOKEN, extra)
}

fn customer(host: &Host, db: &TestDb, uploads_mib: usize) {
    let dir = host.customer(DOMAIN);
    write(
        &dir.join("backend/package.json"),
        r#"{"name":"backend","version":"1.0.0"}"#,
    );
    write(
        &dir.join("backend/.env"),
        format!("DATABASE_URL={}\n", db.url("pw")),
    );
    for i in 0..uploads_mib {
        write(
            &dir.join(format!("backend/uploads/f{i}.bin")),
            noise(1 << 20, i as u64),
        );
    }
}

fn register(s: &Server) {
    let (code, body) = json_of(
        api(TOKEN, "PUT", &format!("{}/api/customers/42", s.base))
            .send_json(serde_json::json!({"domain": DOMAIN})),
    );
    assert_eq!(code, 200, "{body}");
}

/// Reads the run's SSE stream to its end; returns the event names in order.
fn follow(s: &Server, run_id: &str) -> Vec<(String, serde_json::Value)> {
    let resp = api(
        TOKEN,
        "GET",
        &format!("{}/api/runs/{run_id}/events", s.base),
    )
    .timeout(Duration::from_secs(120))
    .call()
    .unwrap();
    let mut events = Vec::new();
    let mut name = String::new();
    for line in BufReader::new(resp.into_reader()).lines() {
        let line = line.unwrap();
        if let Some(n) = line.strip_prefix("event:") {
            name = n.trim().to_owned();
        } else if let Some(d) = line.strip_prefix("data:") {
            events.push((
                name.clone(),
                serde_json::from_str(d.trim()).unwrap_or(serde_json::Value::Null),
            ));
        }
    }
    events
}

#[test]
fn a_backup_posted_over_http_completes_with_live_events_and_history() {
    let host = Host::new();
    let db = TestDb::shop("svc");
    customer(&host, &db, 2);
    let s = serve(&host);
    register(&s);

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
    let events = follow(&s, &run_id);
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert!(names.contains(&"backup-progress"), "{names:?}");
    assert_eq!(names.last().copied(), Some("backup-completed"), "{names:?}");
    let backup_id = events.last().unwrap().1["backupId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        host.customer(DOMAIN)
            .join("backups")
            .join(&backup_id)
            .join("backup.json")
            .is_file()
    );

    // A late client gets the whole story again from the store.
    let again = follow(&s, &run_id);
    assert_eq!(again.len(), events.len());

    let (code, run) = json_of(api(TOKEN, "GET", &format!("{}/api/runs/{run_id}", s.base)).call());
    assert_eq!(code, 200);
    assert_eq!(run["state"], "succeeded");
    let (code, history) = json_of(
        api(
            TOKEN,
            "GET",
            &format!("{}/api/customers/42/backups", s.base),
        )
        .call(),
    );
    assert_eq!(code, 200, "{history}");
    let first = &history["backups"].as_array().unwrap()[0];
    assert_eq!(first["result"], "succeeded");
    assert_eq!(first["backupId"], backup_id.as_str());
    assert_eq!(first["triggeredBy"], "ayse@qodify");

    // No token, no API.
    let (code, _) = json_of(ureq::get(&format!("{}/api/customers/42", s.base)).call());
    assert_eq!(code, 401);
}

fn post_backup(s: &Server) -> String {
    let (code, body) = json_of(
        api(
            TOKEN,
            "POST",
            &format!("{}/api/customers/42/backups", s.base),
        )
        .send_json(serde_json::json!({"type": "fast"})),
    );
    assert_eq!(code, 202, "{body}");
    body["runId"].as_str().unwrap().to_owned()
}

/// The `backup-progress` payloads of a run, in order.
fn progress_of(events: &[(String, serde_json::Value)]) -> Vec<&serde_json::Value> {
    events
        .iter()
        .filter(|(n, _)| n == "backup-progress")
        .map(|(_, d)| d)
        .collect()
}

#[test]
fn a_500_mib_backup_streams_byte_weighted_percents_an_eta_and_warnings() {
    const MIB: u64 = 1 << 20;
    let host = Host::new();
    let db = TestDb::shop("progress");
    customer(&host, &db, 500);
    let s = serve(&host);
    register(&s);

    // First backup: no history, so no ETA from the preflight; the uploads weigh 500 MiB.
    let first = post_backup(&s);
    let events = follow(&s, &first);
    assert_eq!(
        events.last().map(|e| e.0.as_str()),
        Some("backup-completed"),
        "{events:?}"
    );
    let (_, run) = json_of(api(TOKEN, "GET", &format!("{}/api/runs/{first}", s.base)).call());
    let pre = &run["preflight"];
    assert_eq!(pre["step"], "preflight", "{run}");
    assert!(pre["estimateBytes"].as_u64().unwrap() >= 500 * MIB, "{run}");
    assert!(pre["freeBytes"].as_u64().unwrap() > 0, "{run}");
    assert_eq!(pre["etaSeconds"], serde_json::Value::Null, "{run}");
    let uploads = pre["stepBytes"]["archive-uploads"].as_u64().unwrap();
    assert!((500 * MIB..501 * MIB).contains(&uploads), "{run}");
    assert!(
        pre["stepBytes"]["archive-backend"].as_u64().unwrap() < MIB,
        "{run}"
    );

    let progress = progress_of(&events);
    let percents: Vec<f64> = progress
        .iter()
        .filter_map(|d| d["percent"].as_f64())
        .collect();
    assert!(
        percents.windows(2).all(|w| w[0] <= w[1]),
        "percents go back: {percents:?}"
    );
    // The uploads are nearly all of the bytes: while they are archived the run's percent moves
    // through most of its range, in several steps (counted per step, as before, their archive
    // would be one eighth of it).
    let during_uploads: std::collections::BTreeSet<u64> = progress
        .iter()
        .filter(|d| d["step"] == "archive-uploads" && d["message"] != "done")
        .filter_map(|d| d["percent"].as_f64())
        .map(|p| p as u64)
        .collect();
    let (low, high) = (
        *during_uploads.first().unwrap(),
        *during_uploads.last().unwrap(),
    );
    assert!(
        during_uploads.len() >= 3 && high - low >= 50,
        "the uploads' archive moved the run's percent only through {during_uploads:?}"
    );
    assert!(*percents.last().unwrap() > 90.0, "{percents:?}");

    // Four older copies make six backups with the next one: retention (5) will delete the
    // oldest, and the preflight says so; the first backup's pace gives the ETA.
    let backups = host.customer(DOMAIN).join("backups");
    let first_id = run["backupId"].as_str().unwrap().to_owned();
    for i in 1..=4 {
        let older = format!("2020010{i}-000000");
        let status = Command::new("cp")
            .arg("-al")
            .arg(backups.join(&first_id))
            .arg(backups.join(&older))
            .status()
            .unwrap();
        assert!(status.success());
        // Its own manifest (not a link to the first's), naming its own folder.
        let manifest = backups.join(&older).join("backup.json");
        let mut doc: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
        doc["id"] = older.clone().into();
        std::fs::remove_file(&manifest).unwrap();
        std::fs::write(&manifest, doc.to_string()).unwrap();
    }
    let second = post_backup(&s);
    let events = follow(&s, &second);
    assert_eq!(
        events.last().map(|e| e.0.as_str()),
        Some("backup-completed"),
        "{events:?}"
    );
    let progress = progress_of(&events);
    let after_preflight: Vec<&&serde_json::Value> = progress
        .iter()
        .skip_while(|d| !(d["step"] == "preflight" && d["message"] == "done"))
        .collect();
    assert!(!after_preflight.is_empty(), "{progress:?}");
    assert!(
        after_preflight[0]["preflight"]["etaSeconds"].is_u64(),
        "{:?}",
        after_preflight[0]
    );
    assert!(
        after_preflight.iter().all(|d| d["etaSeconds"].is_u64()),
        "every event after the preflight carries the time left: {after_preflight:?}"
    );
    let warning = "retention will delete backup 20200101-000000";
    assert!(
        progress
            .iter()
            .any(|d| d["warning"].as_str().is_some_and(|w| w.contains(warning))),
        "{progress:?}"
    );
    assert!(
        after_preflight
            .iter()
            .all(|d| d["warnings"].to_string().contains(warning)),
        "{after_preflight:?}"
    );
    let (_, run) = json_of(api(TOKEN, "GET", &format!("{}/api/runs/{second}", s.base)).call());
    assert!(run["preflight"]["etaSeconds"].is_u64(), "{run}");
    assert!(
        run["warnings"].to_string().contains(warning),
        "{}",
        run["warnings"]
    );
}

#[test]
fn one_active_run_per_customer_under_a_hundred_parallel_posts() {
    let host = Host::new();
    let db = TestDb::shop("svc100");
    customer(&host, &db, 8);
    let s = serve(&host);
    register(&s);
    let url = format!("{}/api/customers/42/backups", s.base);
    let codes: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..100)
            .map(|_| {
                scope.spawn(|| {
                    json_of(api(TOKEN, "POST", &url).send_json(serde_json::json!({"type": "fast"})))
                        .0
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(codes.iter().filter(|c| **c == 202).count(), 1, "{codes:?}");
    assert_eq!(codes.iter().filter(|c| **c == 409).count(), 99, "{codes:?}");
}

#[test]
fn a_killed_server_marks_the_run_interrupted_and_the_next_backup_starts_at_once() {
    let host = Host::new();
    let db = TestDb::shop("svckill");
    customer(&host, &db, 128);
    let mut s = serve(&host);
    register(&s);
    let (code, body) = json_of(
        api(
            TOKEN,
            "POST",
            &format!("{}/api/customers/42/backups", s.base),
        )
        .send_json(serde_json::json!({})),
    );
    assert_eq!(code, 202, "{body}");
    let run_id = body["runId"].as_str().unwrap().to_owned();
    let backups = host.customer(DOMAIN).join("backups");
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let partial = std::fs::read_dir(&backups)
            .map(|rd| {
                rd.flatten()
                    .any(|e| e.file_name().to_string_lossy().starts_with(".partial-"))
            })
            .unwrap_or(false);
        if partial {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    s.child.kill().unwrap(); // SIGKILL
    s.child.wait().unwrap();

    let s = serve(&host);
    let (_, run) = json_of(api(TOKEN, "GET", &format!("{}/api/runs/{run_id}", s.base)).call());
    assert_eq!(run["state"], "interrupted", "{run}");
    let leftovers: Vec<String> = std::fs::read_dir(&backups)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        leftovers.iter().all(|n| !n.starts_with(".partial-")),
        "{leftovers:?}"
    );
    let (code, body) = json_of(
        api(
            TOKEN,
            "POST",
            &format!("{}/api/customers/42/backups", s.base),
        )
        .send_json(serde_json::json!({})),
    );
    assert_eq!(code, 202, "the customer is still blocked: {body}");
    let events = follow(&s, body["runId"].as_str().unwrap());
    assert_eq!(
        events.last().map(|e| e.0.as_str()),
        Some("backup-completed"),
        "{events:?}"
    );
}

fn pg_dump_running(db: &str) -> bool {
    Command::new("pgrep")
        .args(["-f", &format!("pg_dump .*--dbname={db}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn partial_exists(host: &Host) -> bool {
    std::fs::read_dir(host.customer(DOMAIN).join("backups"))
        .map(|rd| {
            rd.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with(".partial-"))
        })
        .unwrap_or(false)
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn cancel_and_check(s: &Server, host: &Host, run_id: &str) {
    let (code, body) = json_of(
        api(
            TOKEN,
            "POST",
            &format!("{}/api/runs/{run_id}/cancel", s.base),
        )
        .send_json(serde_json::json!({})),
    );
    assert_eq!(code, 202, "{body}");
    let events = follow(s, run_id);
    let (name, data) = events.last().unwrap();
    assert_eq!(name, "backup-failed", "{events:?}");
    assert_eq!(data["state"], "cancelled", "{data}");
    let (_, run) = json_of(api(TOKEN, "GET", &format!("{}/api/runs/{run_id}", s.base)).call());
    assert_eq!(run["state"], "cancelled");
    assert!(
        !partial_exists(host),
        "a partial backup folder was left behind"
    );
    let listed: Vec<_> = std::fs::read_dir(host.customer(DOMAIN).join("backups"))
        .map(|rd| {
            rd.flatten()
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    assert!(listed.is_empty(), "{listed:?}");
    // The customer is free again.
    let (code, body) = json_of(
        api(
            TOKEN,
            "POST",
            &format!("{}/api/customers/42/backups", s.base),
        )
        .send_json(serde_json::json!({"type": "custom", "include": {"db": false}})),
    );
    assert_eq!(code, 202, "{body}");
    let done = follow(s, body["runId"].as_str().unwrap());
    assert_eq!(done.last().map(|e| e.0.as_str()), Some("backup-completed"));
}

#[test]
fn cancel_during_the_database_dump_kills_pg_dump_and_leaves_nothing() {
    let host = Host::new();
    let db = TestDb::shop("svccanceldump");
    customer(&host, &db, 1);
    // Hold a lock pg_dump must wait for, so the cancel lands while it runs.
    let mut blocker = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-X",
            "-q",
            "-d",
            &db.name,
            "-c",
        ])
        .arg("BEGIN; LOCK TABLE orders IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(120);")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let s = serve(&host);
    register(&s);
    let (code, body) = json_of(
        api(
            TOKEN,
            "POST",
            &format!("{}/api/customers/42/backups", s.base),
        )
        .send_json(serde_json::json!({})),
    );
    assert_eq!(code, 202, "{body}");
    let run_id = body["runId"].as_str().unwrap().to_owned();
    wait_for("pg_dump to start", || pg_dump_running(&db.name));
    // pg_dump is waiting for the lock: the cancel lands while it runs.
    let (code, _) = json_of(
        api(
            TOKEN,
            "POST",
            &format!("{}/api/runs/{run_id}/cancel", s.base),
        )
        .send_json(serde_json::json!({})),
    );
    assert_eq!(code, 202);
    wait_for("pg_dump to be killed", || !pg_dump_running(&db.name));
    let _ = blocker.kill();
    let _ = blocker.wait();
    let events = follow(&s, &run_id);
    assert_eq!(events.last().unwrap().1["state"], "cancelled", "{events:?}");
    assert!(!partial_exists(&host));
}

#[test]
fn cancel_during_an_archive_leaves_nothing_and_frees_the_customer() {
    let host = Host::new();
    let db = TestDb::empty("svccancelarch");
    customer(&host, &db, 256);
    let s = serve(&host);
    register(&s);
    let run_id = start_files_backup_until_uploads(&s);
    cancel_and_check(&s, &host, &run_id);
}

#[test]
fn runs_of_different_customers_proceed_in_parallel_up_to_the_global_limit() {
    let host = Host::new();
    let s = serve(&host); // --workers 2
    let db = TestDb::empty("svcpar");
    let domains = ["a.example.com", "b.example.com", "c.example.com"];
    for (i, d) in domains.iter().enumerate() {
        let dir = host.customer(d);
        write(
            &dir.join("backend/.env"),
            format!("DATABASE_URL={}\n", db.url("pw")),
        );
        for j in 0..48 {
            write(
                &dir.join(format!("backend/uploads/f{j}.bin")),
                noise(1 << 20, (i * 100 + j) as u64),
            );
        }
        let (code, body) = json_of(
            api(TOKEN, "PUT", &format!("{}/api/customers/c{i}", s.base))
                .send_json(serde_json::json!({"domain": d})),
        );
        assert_eq!(code, 200, "{body}");
    }
    let mut ids = Vec::new();
    for i in 0..domains.len() {
        let (code, body) = json_of(
            api(
                TOKEN,
                "POST",
                &format!("{}/api/customers/c{i}/backups", s.base),
            )
            .send_json(serde_json::json!({"type": "custom", "include": {"db": false}})),
        );
        assert_eq!(code, 202, "{body}");
        ids.push(body["runId"].as_str().unwrap().to_owned());
    }
    let mut max_running = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, runs) = json_of(api(TOKEN, "GET", &format!("{}/api/runs?limit=10", s.base)).call());
        let runs = runs["runs"].as_array().cloned().unwrap_or_default();
        let running = runs.iter().filter(|r| r["state"] == "running").count();
        max_running = max_running.max(running);
        if runs.iter().filter(|r| r["state"] == "succeeded").count() == domains.len() {
            break;
        }
        assert!(Instant::now() < deadline, "runs did not finish: {runs:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        max_running, 2,
        "two workers: two customers at once, never three"
    );
}

#[test]
fn downloads_resume_with_range_and_signed_links_expire_with_any_change() {
    let host = Host::new();
    let db = TestDb::shop("svcdl");
    customer(&host, &db, 3);
    let s = serve(&host);
    register(&s);
    let (_, body) = json_of(
        api(
            TOKEN,
            "POST",
            &format!("{}/api/customers/42/backups", s.base),
        )
        .send_json(serde_json::json!({})),
    );
    let events = follow(&s, body["runId"].as_str().unwrap());
    let id = events.last().unwrap().1["backupId"]
        .as_str()
        .unwrap()
        .to_owned();
    let on_disk = std::fs::read(
        host.customer(DOMAIN)
            .join("backups")
            .join(&id)
            .join("db.dump"),
    )
    .unwrap();

    let url = format!(
        "{}/api/customers/42/backups/{id}/download?file=db.dump",
        s.base
    );
    let whole = api(TOKEN, "GET", &url).call().unwrap();
    let etag = whole.header("ETag").unwrap().to_owned();
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut whole.into_reader(), &mut bytes).unwrap();
    assert_eq!(bytes, on_disk);
    // Resume from the middle.
    let half = on_disk.len() / 2;
    let part = api(TOKEN, "GET", &url)
        .set("Range", &format!("bytes={half}-"))
        .set("If-Range", &etag)
        .call()
        .unwrap();
    assert_eq!(part.status(), 206);
    let mut rest = Vec::new();
    std::io::Read::read_to_end(&mut part.into_reader(), &mut rest).unwrap();
    assert_eq!(rest, on_disk[half..]);

    // A signed link works without the token …
    let (code, link) = json_of(
        api(
            TOKEN,
            "POST",
            &format!("{}/api/customers/42/backups/{id}/download-url", s.base),
        )
        .send_json(serde_json::json!({"file": "db.dump", "ttlSeconds": 60})),
    );
    assert_eq!(code, 200, "{link}");
    let signed = format!("{}{}", s.base, link["url"].as_str().unwrap());
    let r = ureq::get(&signed).call().unwrap();
    let mut got = Vec::new();
    std::io::Read::read_to_end(&mut r.into_reader(), &mut got).unwrap();
    assert_eq!(got, on_disk);
    // … and fails with any byte of it changed.
    let last = signed.chars().last().unwrap();
    let tampered = format!(
        "{}{}",
        &signed[..signed.len() - 1],
        if last == '0' { '1' } else { '0' }
    );
    assert_eq!(json_of(ureq::get(&tampered).call()).0, 403);
    let other_file = signed.replace("file=db.dump", "file=backup.json");
    assert_eq!(json_of(ureq::get(&other_file).call()).0, 403);

    // Deleted: the link dies with the backup.
    assert_eq!(
        json_of(
            api(
                TOKEN,
                "DELETE",
                &format!("{}/api/customers/42/backups/{id}", s.base)
            )
            .call()
        )
        .0,
        204
    );
    assert_eq!(json_of(ureq::get(&signed).call()).0, 404);
}

#[test]
fn sigterm_past_the_grace_period_cancels_running_runs_cleanly() {
    let host = Host::new();
    let db = TestDb::empty("svcterm");
    customer(&host, &db, 256);
    let mut s = serve_with(&host, &["--grace", "0"]);
    register(&s);
    let run_id = start_files_backup_until_uploads(&s);
    let pid = s.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let stopped = Instant::now();
    let status = s.child.wait().unwrap();
    assert!(status.success(), "serve did not exit cleanly: {status}");
    assert!(
        stopped.elapsed() < Duration::from_secs(20),
        "shutdown took {:?}",
        stopped.elapsed()
    );

    let s = serve(&host);
    let (_, run) = json_of(api(TOKEN, "GET", &format!("{}/api/runs/{run_id}", s.base)).call());
    assert_eq!(run["state"], "cancelled", "{run}");
    assert!(
        !partial_exists(&host),
        "a partial backup folder was left behind"
    );
}

/// Posts a files-only backup for customer 42 and waits until its uploads archive is being written.
fn start_files_backup_until_uploads(s: &Server) -> String {
    let (code, body) = json_of(
        api(
            TOKEN,
            "POST",
            &format!("{}/api/customers/42/backups", s.base),
        )
        .send_json(serde_json::json!({"type": "custom", "include": {"db": false}})),
    );
    assert_eq!(code, 202, "{body}");
    let run_id = body["runId"].as_str().unwrap().to_owned();
    wait_for("the uploads archive to start", || {
        let (_, run) = json_of(api(TOKEN, "GET", &format!("{}/api/runs/{run_id}", s.base)).call());
        run["message"]
            .as_str()
            .is_some_and(|m| m.contains("archiving uploads"))
    });
    run_id
}

/// Posts a run and follows it to its end; the last event's name and payload.
fn post_and_follow(s: &Server, path: &str, body: serde_json::Value) -> (String, serde_json::Value) {
    let (code, posted) = json_of(api(TOKEN, "POST", &format!("{}{path}", s.base)).send_json(body));
    assert_eq!(code, 202, "{posted}");
    let run_id = posted["runId"].as_str().unwrap().to_owned();
    let mut events = follow(s, &run_id);
    let (name, mut data) = events.pop().expect("no events");
    data["runId"] = run_id.into();
    (name, data)
}

#[test]
fn one_backup_is_shown_and_verified_over_http_and_damage_is_named() {
    let host = Host::new();
    let db = TestDb::shop("svcverify");
    customer(&host, &db, 1);
    let s = serve(&host);
    register(&s);
    let (name, done) = post_and_follow(&s, "/api/customers/42/backups", serde_json::json!({}));
    assert_eq!(name, "backup-completed", "{done}");
    let id = done["backupId"].as_str().unwrap().to_owned();
    let url = format!("{}/api/customers/42/backups/{id}", s.base);

    let (code, detail) = json_of(api(TOKEN, "GET", &url).call());
    assert_eq!(code, 200, "{detail}");
    assert_eq!(detail["id"], id.as_str());
    assert_eq!(detail["type"], "fast");
    assert_eq!(detail["verifiedAt"], serde_json::Value::Null);
    let files: Vec<&str> = detail["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["file"].as_str().unwrap())
        .collect();
    assert!(
        files.contains(&"db.dump") && files.contains(&"uploads.tar.gz"),
        "{files:?}"
    );
    let on_disk: u64 = files
        .iter()
        .map(|f| {
            std::fs::metadata(host.customer(DOMAIN).join("backups").join(&id).join(f))
                .unwrap()
                .len()
        })
        .sum();
    assert_eq!(detail["size"], on_disk);

    // Verified as a run; the backup then says when.
    let verify = format!("/api/customers/42/backups/{id}/verify");
    let (name, ok) = post_and_follow(&s, &verify, serde_json::json!({"triggeredBy": "ops"}));
    assert_eq!(name, "run-completed", "{ok}");
    let (_, detail) = json_of(api(TOKEN, "GET", &url).call());
    assert!(detail["verifiedAt"].is_string(), "{detail}");
    assert_eq!(detail["verifiedByRun"], ok["runId"]);

    // One flipped byte: the run fails naming the file; verifiedAt stays the earlier one.
    let dump = host
        .customer(DOMAIN)
        .join("backups")
        .join(&id)
        .join("db.dump");
    let mut bytes = std::fs::read(&dump).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&dump, bytes).unwrap();
    let (name, bad) = post_and_follow(&s, &verify, serde_json::json!({}));
    assert_eq!(name, "run-failed", "{bad}");
    assert!(bad["error"].as_str().unwrap().contains("db.dump"), "{bad}");
    let (_, after) = json_of(api(TOKEN, "GET", &url).call());
    assert_eq!(after["verifiedByRun"], ok["runId"]);

    // What is not a complete backup is not found: no folder, or a folder without backup.json.
    std::fs::create_dir_all(host.customer(DOMAIN).join("backups/20200101-000001")).unwrap();
    for missing in ["20200101-000000", "20200101-000001"] {
        let (code, body) = json_of(
            api(
                TOKEN,
                "GET",
                &format!("{}/api/customers/42/backups/{missing}", s.base),
            )
            .call(),
        );
        assert_eq!(code, 404, "{body}");
        let (code, _) = json_of(
            api(
                TOKEN,
                "POST",
                &format!("{}/api/customers/42/backups/{missing}/verify", s.base),
            )
            .send_json(serde_json::json!({})),
        );
        assert_eq!(code, 404);
    }
}

/// Backup ids never repeat and always sort by age, also when runs queued back to back on a small
/// shop start within the same second, or when the newest backup's id is ahead of the clock (set
/// back since): each backup takes the next free id, so retention, which keeps the newest ids,
/// never takes a new backup for an old one.
#[test]
fn backups_queued_back_to_back_each_get_a_newer_id() {
    let host = Host::new();
    let db = TestDb::shop("svcsecond");
    customer(&host, &db, 0);
    // A backup made while the clock was ahead (the folder name is all that counts).
    let ahead = "20991231-235958";
    std::fs::create_dir_all(host.customer(DOMAIN).join("backups").join(ahead)).unwrap();
    let s = serve(&host);
    register(&s);
    let url = format!("{}/api/customers/42/backups", s.base);
    let runs: Vec<String> = (0..3)
        .map(|_| {
            let (code, body) =
                json_of(api(TOKEN, "POST", &url).send_json(serde_json::json!({"queue": true})));
            assert_eq!(code, 202, "{body}");
            body["runId"].as_str().unwrap().to_owned()
        })
        .collect();
    let mut ids = vec![ahead.to_owned()];
    for run in &runs {
        let events = follow(&s, run);
        let (name, data) = events.last().unwrap();
        assert_eq!(name, "backup-completed", "{data}");
        ids.push(data["backupId"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        ids,
        [
            "20991231-235958",
            "20991231-235959",
            "21000101-000000",
            "21000101-000001"
        ],
        "each backup must take the next free id"
    );
}

/// Signing keys rotate without breaking links: a new key put first signs, the old one still
/// verifies the links it signed until it is removed, and then they are refused.
#[test]
fn signing_keys_rotate_new_signs_old_verifies_until_removed() {
    let host = Host::new();
    let db = TestDb::shop("svcrotate");
    customer(&host, &db, 0);
    let serve_with_keys = |keys: &str| {
        let mut cmd = host.cmd();
        cmd.env("QODIFY_SIGNING_KEYS", keys);
        common::serve_cmd(cmd, TOKEN, &[])
    };
    let link = |s: &Server, id: &str| -> String {
        let (code, body) = json_of(
            api(
                TOKEN,
                "POST",
                &format!("{}/api/customers/42/backups/{id}/download-url", s.base),
            )
            .send_json(serde_json::json!({"file": "backup.json"})),
        );
        assert_eq!(code, 200, "{body}");
        body["url"].as_str().unwrap().to_owned()
    };
    let fetch = |s: &Server, url: &str| -> u16 {
        match ureq::get(&format!("{}{url}", s.base)).call() {
            Ok(r) => r.status(),
            Err(ureq::Error::Status(code, _)) => code,
            Err(e) => panic!("{e}"),
        }
    };

    let s = serve_with_keys("old:first-secret-0123456789");
    register(&s);
    let (name, done) = {
        let (code, posted) = json_of(
            api(
                TOKEN,
                "POST",
                &format!("{}/api/customers/42/backups", s.base),
            )
            .send_json(serde_json::json!({})),
        );
        assert_eq!(code, 202, "{posted}");
        let events = follow(&s, posted["runId"].as_str().unwrap());
        events.last().cloned().unwrap()
    };
    assert_eq!(name, "backup-completed", "{done}");
    let id = done["backupId"].as_str().unwrap().to_owned();
    let old_link = link(&s, &id);
    assert!(old_link.contains("kid=old"), "{old_link}");
    assert_eq!(fetch(&s, &old_link), 200);
    drop(s);

    // Rotation: the new key first, the old one kept.
    let s = serve_with_keys("new:second-secret-9876543210,old:first-secret-0123456789");
    let new_link = link(&s, &id);
    assert!(new_link.contains("kid=new"), "{new_link}");
    assert_eq!(fetch(&s, &new_link), 200);
    assert_eq!(fetch(&s, &old_link), 200, "the old key no longer verifies");
    drop(s);

    // The old key removed: its links stop working, the new ones keep working.
    let s = serve_with_keys("new:second-secret-9876543210");
    assert_eq!(fetch(&s, &old_link), 403);
    assert_eq!(fetch(&s, &new_link), 200);
}
