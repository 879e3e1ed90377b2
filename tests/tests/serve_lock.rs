//! Two hosts beside each other never touch each other's runs: a second `serve` on the same data
//! dir refuses to start before it opens the store (so it cannot take the first one's running
//! backup for interrupted and remove its partial folder), and a CLI `run` with another data dir
//! finds the customer busy (the customer's lock lives in the customers root) instead of starting
//! a backup that would clear the running one's partial folder.

mod common;
mod pg;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use pg::TestDb;

const TOKEN: &str = "test-token-123";
const DOMAIN: &str = "shop.example.com";

fn partials(host: &Host) -> Vec<String> {
    std::fs::read_dir(host.customer(DOMAIN).join("backups"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(".partial-"))
                .collect()
        })
        .unwrap_or_default()
}

/// Runs `cmd` to its end (at most 60 s: a second serve that wrongly starts would run forever).
fn finish(mut cmd: Command) -> (std::process::ExitStatus, String) {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= until {
            let _ = child.kill();
            let _ = child.wait();
            panic!("it did not exit within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    eprintln!("--- stderr\n{err}");
    (status, err)
}

#[test]
fn a_second_serve_or_a_cli_run_beside_a_running_backup_touches_nothing_of_it() {
    let host = Host::new();
    let db = TestDb::shop("svclock");
    let dir = host.customer(DOMAIN);
    write(
        &dir.join("backend/package.json"),
        r#"{"name":"backend","version":"1.0.0"}"#,
    );
    write(
        &dir.join("backend/.env"),
        format!("DATABASE_URL={}\n", db.url("pw")),
    );
    for i in 0..192 {
        write(
            &dir.join(format!("backend/uploads/f{i}.bin")),
            noise(1 << 20, i as u64),
        );
    }
    let a = host.serve(TOKEN, &[]);
    let (code, body) = json_of(
        api(TOKEN, "PUT", &format!("{}/api/customers/42", a.base))
            .send_json(serde_json::json!({"domain": DOMAIN})),
    );
    assert_eq!(code, 200, "{body}");
    let (code, body) = json_of(
        api(
            TOKEN,
            "POST",
            &format!("{}/api/customers/42/backups", a.base),
        )
        .send_json(serde_json::json!({})),
    );
    assert_eq!(code, 202, "{body}");
    let run_id = body["runId"].as_str().unwrap().to_owned();
    let until = Instant::now() + Duration::from_secs(60);
    while partials(&host).is_empty() {
        assert!(Instant::now() < until, "the backup never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    let partial = partials(&host);

    // A second serve on the same data dir, on another port.
    let mut b = host.cmd();
    b.args(["serve", "--listen", "127.0.0.1:0", "--workers", "2"])
        .env("QODIFY_API_TOKEN", TOKEN);
    let (status, err) = finish(b);
    assert!(!status.success(), "the second serve started");
    let data_dir = host.tmp.path().join("data");
    let expected = format!(
        "another qodify-host serve (pid {}) is using {}; stop it first or use another --data-dir",
        a.child.id(),
        data_dir.display()
    );
    assert!(err.contains(&expected), "{err}");

    // A CLI run for the same customer with its own data dir.
    let mut c = host.cmd();
    c.env("QODIFY_DATA_DIR", host.tmp.path().join("cli-data"))
        .args(["run", "backup", "--customer", DOMAIN, "--customer-id", "42"]);
    let (status, err) = finish(c);
    assert!(!status.success(), "the CLI run started beside serve's run");
    assert!(
        err.contains(&format!("customer {DOMAIN} already has an active run"))
            && err.contains(&format!("run {run_id}")),
        "{err}"
    );

    // Serve's run went on untouched: still running, its partial folder in place.
    let (_, run) = json_of(api(TOKEN, "GET", &format!("{}/api/runs/{run_id}", a.base)).call());
    assert_eq!(
        run["state"], "running",
        "the backup ended before the test could check it (make it larger): {run}"
    );
    assert_eq!(partials(&host), partial);
    let until = Instant::now() + Duration::from_secs(120);
    let run = loop {
        let (_, run) = json_of(api(TOKEN, "GET", &format!("{}/api/runs/{run_id}", a.base)).call());
        if run["state"] != "running" && run["state"] != "queued" {
            break run;
        }
        assert!(Instant::now() < until, "the backup did not end: {run}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(run["state"], "succeeded", "{run}");
    assert!(partials(&host).is_empty());
}
