//! What operations watch, from the real `qodify-host serve` with real PostgreSQL behind its
//! backups: with `QODIFY_LOG_FORMAT=json` every line of stderr is one JSON object and the lines
//! of a run carry its run, customer and pipeline (and the step, while one runs), plugins' log
//! lines among them; `/metrics` counts the runs that ran by pipeline and result with their
//! durations, and gives each customer's newest backup (time, age, size) as the API reports it.
//! A log format the host does not know is refused, naming the flag, the variable and the choices.

mod common;
mod pg;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use pg::{TestDb, psql};

const TOKEN: &str = "ops-token-123";
const SHOP: &str = "shop.example.com";
const BROKEN: &str = "broken.example.com";
const NEW: &str = "new.example.com";
/// The target of a run's events and its steps' log lines in the host's log.
const RUN_EVENTS: &str = "qodify_host::run_events";
/// The node `serve` runs as: every metric sample names it.
const NODE: &str = "ops-1";

/// `serve` with the JSON log; its stderr lines are collected as they come.
fn serve_json(host: &Host) -> (Server, Arc<Mutex<Vec<String>>>, std::thread::JoinHandle<()>) {
    let mut child = host
        .cmd()
        .args(["serve", "--listen", "127.0.0.1:0", "--workers", "2"])
        .env("QODIFY_API_TOKEN", TOKEN)
        .env("QODIFY_NODE", NODE)
        .env("QODIFY_LOG_FORMAT", "json")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let reader = {
        let (stderr, lines) = (child.stderr.take().unwrap(), lines.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                lines.lock().unwrap().push(line.unwrap());
            }
        })
    };
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let base = first
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .to_owned();
    (Server { child, base }, lines, reader)
}

/// A customer folder whose backend's database is `url`.
fn customer(host: &Host, domain: &str, url: &str) {
    let dir = host.customer(domain);
    write(
        &dir.join("backend/package.json"),
        r#"{"name":"backend","version":"1.0.0"}"#,
    );
    write(&dir.join("backend/.env"), format!("DATABASE_URL={url}\n"));
    write(&dir.join("backend/uploads/logo.bin"), noise(64 << 10, 7));
}

fn register(s: &Server, id: &str, domain: &str) {
    let (code, body) = json_of(
        api(TOKEN, "PUT", &format!("{}/api/customers/{id}", s.base))
            .send_json(serde_json::json!({ "domain": domain })),
    );
    assert_eq!(code, 200, "{body}");
}

fn post_backup(s: &Server, id: &str) -> String {
    let (code, body) = json_of(
        api(
            TOKEN,
            "POST",
            &format!("{}/api/customers/{id}/backups", s.base),
        )
        .send_json(serde_json::json!({ "type": "fast" })),
    );
    assert_eq!(code, 202, "{body}");
    body["runId"].as_str().unwrap().to_owned()
}

/// Reads the run's SSE stream to its end; returns the last event's name.
fn last_event(s: &Server, run_id: &str) -> String {
    let resp = api(
        TOKEN,
        "GET",
        &format!("{}/api/runs/{run_id}/events", s.base),
    )
    .timeout(Duration::from_secs(120))
    .call()
    .unwrap();
    let mut name = String::new();
    for line in BufReader::new(resp.into_reader()).lines() {
        if let Some(n) = line.unwrap().strip_prefix("event:") {
            name = n.trim().to_owned();
        }
    }
    name
}

/// `/metrics` as series (name and labels, as written) → value.
fn metrics(s: &Server) -> BTreeMap<String, f64> {
    let text = api(TOKEN, "GET", &format!("{}/metrics", s.base))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap();
            let value = match value {
                "+Inf" => f64::INFINITY,
                v => v.parse().unwrap_or_else(|e| panic!("{e}: {l}")),
            };
            (series.to_owned(), value)
        })
        .collect()
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn json_logs_name_the_run_and_step_and_metrics_count_runs_durations_and_backups() {
    let host = Host::new();
    let db = TestDb::empty("ops");
    psql(
        &db.name,
        "CREATE TABLE orders (id serial PRIMARY KEY, note text);
         INSERT INTO orders (note) SELECT md5(i::text) FROM generate_series(1, 1000) i;",
    );
    customer(&host, SHOP, &db.url("pw"));
    // A database that does not exist: its backup fails in a step.
    let missing = format!("{}_missing", db.name);
    customer(
        &host,
        BROKEN,
        &format!("postgres://postgres:pw@127.0.0.1:5432/{missing}"),
    );
    std::fs::create_dir_all(host.customer(NEW)).unwrap();
    let started = unix_now();
    let (mut s, stderr, reader) = serve_json(&host);
    register(&s, "42", SHOP);
    register(&s, "43", BROKEN);
    register(&s, "44", NEW);

    // Two customers at once (two workers), then the shop again.
    let first = post_backup(&s, "42");
    let broken = post_backup(&s, "43");
    assert_eq!(last_event(&s, &first), "backup-completed");
    assert_eq!(last_event(&s, &broken), "backup-failed");
    let second = post_backup(&s, "42");
    assert_eq!(last_event(&s, &second), "backup-completed");
    let wall = unix_now() - started;

    let (code, history) = json_of(
        api(
            TOKEN,
            "GET",
            &format!("{}/api/customers/42/backups", s.base),
        )
        .call(),
    );
    assert_eq!(code, 200, "{history}");
    let lines = history["backups"].as_array().unwrap();
    assert_eq!(lines[0]["runId"], second.as_str(), "{history}");
    let sizes: Vec<f64> = lines.iter().map(|l| l["size"].as_f64().unwrap()).collect();

    let m = metrics(&s);
    let get = |series: &str| {
        *m.get(series)
            .unwrap_or_else(|| panic!("no {series} in {m:#?}"))
    };
    // Every sample names the node that answered; this node is in the store, beating, with
    // nothing running.
    let node = format!("node=\"{NODE}\"");
    assert!(m.keys().all(|k| k.contains(&format!("{{{node}"))), "{m:#?}");
    assert!(
        get(&format!(
            "qodify_node_heartbeat_age_seconds{{{node},peer=\"{NODE}\"}}"
        )) < 60.0
    );
    assert_eq!(
        get(&format!(
            "qodify_node_active_runs{{{node},peer=\"{NODE}\",state=\"running\"}}"
        )),
        0.0
    );
    // Every run that ran, by pipeline and result, and nothing else.
    let histograms: Vec<&String> = m
        .keys()
        .filter(|k| k.starts_with(&format!("qodify_run_duration_seconds_count{{{node}")))
        .collect();
    assert_eq!(histograms.len(), 2, "{histograms:?}");
    for (result, n) in [("succeeded", 2.0), ("failed", 1.0)] {
        let labels = format!("{node},pipeline=\"backup\",result=\"{result}\"");
        assert_eq!(
            get(&format!("qodify_run_duration_seconds_count{{{labels}}}")),
            n
        );
        assert_eq!(
            get(&format!(
                "qodify_run_duration_seconds_bucket{{{labels},le=\"+Inf\"}}"
            )),
            n
        );
        let buckets: Vec<f64> = m
            .iter()
            .filter(|(k, _)| {
                k.starts_with(&format!("qodify_run_duration_seconds_bucket{{{labels},"))
            })
            .map(|(_, v)| *v)
            .collect();
        assert_eq!(buckets.len(), 14, "{buckets:?}");
        assert!(buckets.iter().all(|b| *b <= n), "{buckets:?}");
        // The runs took the time they took: more than nothing, less than the whole test.
        let sum = get(&format!("qodify_run_duration_seconds_sum{{{labels}}}"));
        assert!(sum > 0.0 && sum < wall, "{sum} of {wall}");
    }
    assert_eq!(
        get(&format!("qodify_runs{{{node},state=\"succeeded\"}}")),
        2.0
    );
    assert_eq!(get(&format!("qodify_runs{{{node},state=\"failed\"}}")), 1.0);
    assert_eq!(get(&format!("qodify_queue_depth{{{node}}}")), 0.0);
    assert_eq!(get(&format!("qodify_runs_running{{{node}}}")), 0.0);

    // The shop's newest backup: the size the API reports, made during the test.
    let shop = format!("{{{node},customer=\"42\",domain=\"{SHOP}\"}}");
    assert_eq!(get(&format!("qodify_backup_size_bytes{shop}")), sizes[0]);
    assert_eq!(get(&format!("qodify_backups_present{shop}")), 2.0);
    assert_eq!(
        get(&format!("qodify_backups_present_bytes{shop}")),
        sizes.iter().sum::<f64>()
    );
    let made = get(&format!(
        "qodify_last_successful_backup_timestamp_seconds{shop}"
    ));
    assert!(
        made >= started && made <= unix_now(),
        "{made} not after {started}"
    );
    let age = get(&format!("qodify_last_successful_backup_age_seconds{shop}"));
    assert!((0.0..wall + 5.0).contains(&age), "age {age}");
    // Customers without a backup: time 0 and age +Inf, so `age > 26h` fires for them too.
    for (id, domain) in [("43", BROKEN), ("44", NEW)] {
        let who = format!("{{{node},customer=\"{id}\",domain=\"{domain}\"}}");
        assert_eq!(
            get(&format!(
                "qodify_last_successful_backup_timestamp_seconds{who}"
            )),
            0.0
        );
        assert_eq!(
            get(&format!("qodify_last_successful_backup_age_seconds{who}")),
            f64::INFINITY
        );
        assert!(!m.contains_key(&format!("qodify_backup_size_bytes{who}")));
    }

    // A graceful stop, so that its lines are in the log too.
    let pid = s.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while s.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "serve did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
    reader.join().unwrap();
    let text = stderr.lock().unwrap().clone();
    let log: Vec<serde_json::Value> = text
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    for l in &log {
        assert!(l["timestamp"].is_string() && l["level"].is_string(), "{l}");
        assert!(l["target"].is_string() && l["message"].is_string(), "{l}");
    }
    assert!(
        log.iter()
            .any(|l| l["message"].as_str().unwrap().starts_with("stopping")),
        "{text:#?}"
    );
    let of_run =
        |id: &str| -> Vec<&serde_json::Value> { log.iter().filter(|l| l["run"] == id).collect() };
    for (id, customer) in [(&first, "42"), (&second, "42"), (&broken, "43")] {
        let lines = of_run(id);
        assert!(!lines.is_empty(), "no line of run {id}:\n{text:#?}");
        for l in &lines {
            assert_eq!(l["customer"], customer, "{l}");
            assert_eq!(l["pipeline"], "backup", "{l}");
        }
        // Each step's start and end, and the plugins' own lines, name the step.
        let steps: Vec<&str> = lines.iter().filter_map(|l| l["step"].as_str()).collect();
        assert!(steps.contains(&"preflight"), "{lines:#?}");
    }
    let of_first = of_run(&first);
    let said = |message: &str| of_first.iter().any(|l| l["message"] == message);
    assert!(
        said("run started") && said("run succeeded"),
        "{of_first:#?}"
    );
    let plugin_lines: Vec<&&serde_json::Value> = of_first
        .iter()
        .filter(|l| l["target"] == RUN_EVENTS && l["step"].is_string())
        .filter(|l| !l["message"].as_str().unwrap().starts_with("step "))
        .collect();
    assert!(
        plugin_lines.iter().any(|l| l["step"] == "db-dump"),
        "no log line of the db-dump plugin: {of_first:#?}"
    );
    for l in of_first.iter().filter(|l| l["step"].is_string()) {
        assert_eq!(l["domain"], SHOP, "{l}");
    }
    // The failed run: its failing step at `warn`, its end at `error` with the cause.
    let of_broken = of_run(&broken);
    let step_failed = of_broken
        .iter()
        .find(|l| l["message"] == "step failed")
        .unwrap_or_else(|| panic!("{of_broken:#?}"));
    assert_eq!(step_failed["level"], "warn");
    assert!(step_failed["step"].is_string(), "{step_failed}");
    let end = of_broken
        .iter()
        .find(|l| l["message"] == "run failed")
        .unwrap_or_else(|| panic!("{of_broken:#?}"));
    assert_eq!(end["level"], "error");
    assert_eq!(end["result"], "failed");
    assert!(
        end["error"].as_str().unwrap().contains(&missing),
        "the error names the missing database: {end}"
    );
}

#[test]
fn an_unknown_log_format_is_refused_naming_the_flag_the_variable_and_the_choices() {
    let host = Host::new();
    for (flag, env) in [(Some("xml"), None), (None, Some("yaml"))] {
        let mut cmd = host.cmd();
        if let Some(f) = flag {
            cmd.args(["--log-format", f]);
        }
        if let Some(v) = env {
            cmd.env("QODIFY_LOG_FORMAT", v);
        }
        let out = run(cmd.arg("validate"));
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        let value = flag.or(env).unwrap();
        for part in [
            format!("`{value}`"),
            "--log-format".into(),
            "QODIFY_LOG_FORMAT".into(),
            "`text` or `json`".into(),
        ] {
            assert!(err.contains(&part), "{err} lacks {part}");
        }
    }
}
