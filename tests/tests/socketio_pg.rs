//! Live events over Socket.IO with the real `socket.io-client` (node, `tests/socketio-client`)
//! against the real `qodify-host serve` and a real PostgreSQL behind the backup: a client that
//! joins late gets the replay and then the live events, exactly the SSE stream's (same seq, name
//! and payload, no gaps, no duplicates); a customer room gets a run it subscribed before; and a
//! connection without the right token is refused.

mod common;
mod pg;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use common::*;
use pg::TestDb;
use serde_json::{Value, json};

const TOKEN: &str = "test-token-sio";
const DOMAIN: &str = "shop.example.com";

struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `qodify-host serve` on a free port, with `token` as its API token (none: no token at all).
fn serve(host: &Host, token: Option<&str>) -> Server {
    let mut c: Command = host.cmd();
    c.args(["serve", "--listen", "127.0.0.1:0", "--workers", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(t) = token {
        c.env("QODIFY_API_TOKEN", t);
    }
    let mut child = c.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    Server { child, base }
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
            .send_json(json!({"domain": DOMAIN})),
    );
    assert_eq!(code, 200, "{body}");
}

fn post_backup(s: &Server) -> String {
    let (code, body) = json_of(
        api(
            TOKEN,
            "POST",
            &format!("{}/api/customers/42/backups", s.base),
        )
        .send_json(json!({"type": "fast"})),
    );
    assert_eq!(code, 202, "{body}");
    body["runId"].as_str().unwrap().to_owned()
}

/// The whole SSE stream of a finished run: `(seq, name, data)`.
fn sse(s: &Server, run_id: &str) -> Vec<(u64, String, Value)> {
    let resp = api(
        TOKEN,
        "GET",
        &format!("{}/api/runs/{run_id}/events", s.base),
    )
    .timeout(Duration::from_secs(120))
    .call()
    .unwrap();
    let (mut events, mut id, mut name) = (Vec::new(), 0, String::new());
    for line in BufReader::new(resp.into_reader()).lines() {
        let line = line.unwrap();
        if let Some(v) = line.strip_prefix("id:") {
            id = v.trim().parse().unwrap();
        } else if let Some(n) = line.strip_prefix("event:") {
            name = n.trim().to_owned();
        } else if let Some(d) = line.strip_prefix("data:") {
            events.push((id, name.clone(), serde_json::from_str(d.trim()).unwrap()));
        }
    }
    events
}

/// A running `watch.mjs`, its JSON lines read as they come.
struct Watcher {
    child: Child,
    lines: Receiver<Value>,
    seen: Vec<Value>,
}

impl Watcher {
    fn start(s: &Server, args: &[&str]) -> Self {
        common::ensure_socketio_client();
        let mut child = Command::new("node")
            .arg(common::socketio_client_dir().join("watch.mjs"))
            .arg(&s.base)
            .args(args)
            .args(["--timeout", "120"])
            .env_remove("QODIFY_API_TOKEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node must be installed");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let v = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("watch.mjs printed {line:?}: {e}"));
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for the next line that has `key`.
    fn wait_for(&mut self, key: &str) -> Value {
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            let left = until.saturating_duration_since(Instant::now());
            let v = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no {key} from watch.mjs; got {:?}", self.seen));
            self.seen.push(v.clone());
            if v.get(key).is_some() {
                return v[key].clone();
            }
        }
    }

    /// Waits for the exit; returns its code and every line it printed.
    fn finish(mut self) -> (i32, Vec<Value>) {
        let until = Instant::now() + Duration::from_secs(150);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > until {
                let _ = self.child.kill();
                panic!("watch.mjs did not end; got {:?}", self.seen);
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        // The reader thread ends with the pipe.
        self.seen.extend(self.lines.iter());
        (status.code().unwrap_or(-1), self.seen)
    }
}

/// Runs `watch.mjs` to its end.
fn watch(s: &Server, args: &[&str]) -> (i32, Vec<Value>) {
    Watcher::start(s, args).finish()
}

/// The `(seq, name, data)` of every event line, in order.
fn events(lines: &[Value]) -> Vec<(u64, String, Value)> {
    lines
        .iter()
        .filter_map(|l| {
            let name = l["event"].as_str()?;
            Some((
                l["data"]["seq"].as_u64()?,
                name.to_owned(),
                l["data"].clone(),
            ))
        })
        .collect()
}

fn ack(lines: &[Value]) -> &Value {
    lines
        .iter()
        .find_map(|l| l.get("ack"))
        .unwrap_or_else(|| panic!("no ack in {lines:?}"))
}

/// The SSE payload with what Socket.IO adds: `customerId` and `seq`.
fn with_ids(data: &Value, seq: u64) -> Value {
    let mut d = data.clone();
    d["customerId"] = json!("42");
    d["seq"] = json!(seq);
    numbers_as_f64(d)
}

/// JavaScript has one number type: `0.0` comes back from node as `0`.
fn numbers_as_f64(v: Value) -> Value {
    match v {
        Value::Number(n) => json!(n.as_f64()),
        Value::Array(a) => a.into_iter().map(numbers_as_f64).collect(),
        Value::Object(o) => o.into_iter().map(|(k, v)| (k, numbers_as_f64(v))).collect(),
        other => other,
    }
}

#[test]
fn a_late_socketio_client_gets_the_replay_then_live_events_exactly_as_sse() {
    let host = Host::new();
    let db = TestDb::shop("sio");
    customer(&host, &db, 8);
    let s = serve(&host, Some(TOKEN));
    register(&s);
    let run_id = post_backup(&s);
    // Join once the run is under way: what came before is replayed, the rest arrives live.
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, run) = json_of(api(TOKEN, "GET", &format!("{}/api/runs/{run_id}", s.base)).call());
        let under_way = run["progress"].as_f64().is_some_and(|p| p > 0.0);
        let ended = !["queued", "running"].contains(&run["state"].as_str().unwrap_or(""));
        if under_way || ended || Instant::now() > until {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let (code, lines) = watch(&s, &["--run", &run_id, "--token", TOKEN]);
    assert_eq!(code, 0, "{lines:?}");
    let first = ack(&lines);
    assert_eq!(first["ok"], true, "{first}");
    assert!(first["replayed"].as_u64().unwrap() >= 1, "{first}");

    let got: Vec<_> = events(&lines)
        .into_iter()
        .map(|(seq, name, data)| (seq, name, numbers_as_f64(data)))
        .collect();
    let names: Vec<&str> = got.iter().map(|(_, n, _)| n.as_str()).collect();
    assert!(names.contains(&"backup-progress"), "{names:?}");
    assert_eq!(names.last().copied(), Some("backup-completed"), "{names:?}");
    for pair in got.windows(2) {
        assert!(pair[0].0 < pair[1].0, "seq must increase: {got:?}");
    }
    for (_, _, data) in &got {
        assert_eq!(data["runId"], run_id.as_str());
        assert_eq!(data["customerId"], "42");
    }
    // The same story as SSE: every event, same seq, name and payload.
    let story = sse(&s, &run_id);
    let expected: Vec<(u64, String, Value)> = story
        .iter()
        .map(|(seq, name, data)| (*seq, name.clone(), with_ids(data, *seq)))
        .collect();
    assert_eq!(got, expected);

    // Reconnecting with `after` replays only what came later.
    let after = story[story.len() - 3].0;
    let (code, lines) = watch(
        &s,
        &[
            "--run",
            &run_id,
            "--after",
            &after.to_string(),
            "--token",
            TOKEN,
        ],
    );
    assert_eq!(code, 0, "{lines:?}");
    assert_eq!(ack(&lines)["replayed"], 2);
    let again: Vec<_> = events(&lines)
        .into_iter()
        .map(|(seq, name, data)| (seq, name, numbers_as_f64(data)))
        .collect();
    assert_eq!(again, expected[expected.len() - 2..].to_vec());
}

#[test]
fn a_customer_room_gets_the_runs_of_that_customer_live() {
    let host = Host::new();
    let db = TestDb::shop("siocust");
    customer(&host, &db, 2);
    let s = serve(&host, Some(TOKEN));
    register(&s);

    let mut w = Watcher::start(&s, &["--customer", "42", "--token", TOKEN]);
    let subscribed = w.wait_for("ack");
    assert_eq!(subscribed, json!({"ok": true, "replayed": 0}));
    let run_id = post_backup(&s);
    let (code, lines) = w.finish();
    assert_eq!(code, 0, "{lines:?}");
    let got = events(&lines);
    assert_eq!(got.first().map(|e| e.0), Some(1), "{got:?}");
    assert_eq!(got.last().map(|e| e.1.as_str()), Some("backup-completed"));
    for pair in got.windows(2) {
        assert_eq!(pair[0].0 + 1, pair[1].0, "no gaps, no duplicates: {got:?}");
    }
    for (_, _, data) in &got {
        assert_eq!(data["runId"], run_id.as_str());
        assert_eq!(data["customerId"], "42");
    }

    let (code, lines) = watch(&s, &["--customer", "43", "--token", TOKEN]);
    assert_eq!(code, 3, "{lines:?}");
    assert_eq!(
        ack(&lines),
        &json!({"ok": false, "error": "no customer 43"})
    );
}

#[test]
fn socketio_connections_without_the_right_token_are_refused() {
    let host = Host::new();
    let s = serve(&host, Some(TOKEN));
    let unknown = "0190f1c2-7a3b-7c4d-8e5f-0123456789ab";

    let refused = |args: &[&str]| -> String {
        let (code, lines) = watch(&s, args);
        assert_eq!(code, 2, "{args:?} must be refused: {lines:?}");
        let message = lines.iter().find_map(|l| l["connectError"].as_str());
        message.unwrap().to_owned()
    };
    let m = refused(&["--run", unknown, "--no-token"]);
    assert!(m.contains("send a token"), "{m}");
    let m = refused(&["--run", unknown, "--token", "wrong"]);
    assert_eq!(m, "the token is wrong, or it was revoked");
    let m = refused(&["--run", unknown, "--header-token", "wrong"]);
    assert_eq!(m, "the token is wrong, or it was revoked");

    // The right token, in the handshake or as a header, connects; what it subscribes to is checked.
    let (code, lines) = watch(&s, &["--run", unknown, "--token", TOKEN]);
    assert_eq!(code, 3, "{lines:?}");
    assert_eq!(
        ack(&lines),
        &json!({"ok": false, "error": format!("no run {unknown}")})
    );
    let (code, lines) = watch(&s, &["--run", "nope", "--header-token", TOKEN]);
    assert_eq!(code, 3, "{lines:?}");
    let error = ack(&lines)["error"].as_str().unwrap();
    assert!(error.contains("is not a run id"), "{error}");

    // Without a configured token, nothing connects.
    let other = Host::new();
    let open = serve(&other, None);
    let (code, lines) = watch(&open, &["--run", unknown, "--token", ""]);
    assert_eq!(code, 2, "{lines:?}");
    let m = lines
        .iter()
        .find_map(|l| l["connectError"].as_str())
        .unwrap();
    assert!(m.contains("no token is configured"), "{m}");
}
