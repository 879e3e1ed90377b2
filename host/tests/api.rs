//! The HTTP API driven in-process with `oneshot` (no socket, no worker: runs are queued and stay
//! queued): bearer-token auth, problem+json errors, customers, backups and their history,
//! restores, runs and cancellation, and SSE replay and live events.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use http_body_util::BodyExt as _;
use qodify_host::api;
use qodify_host::store::sqlite::SqliteStore;
use qodify_host::store::{
    AuditEntry, BackupRecord, CustomerRecord, EventRecord, NewRun, RunFilter, RunFinish, RunRecord,
    Store, StoreError, StoreResult,
};
use serde_json::{Value, json};
use tower::ServiceExt as _;

mod common;
use common::{Env, env_on};

const TOKEN: &str = "t0ken";
const DOMAIN: &str = "shop.example.com";

fn env_with(token: Option<&str>) -> Env {
    env_on(Arc::new(SqliteStore::open_in_memory().unwrap()), token)
}

fn env() -> Env {
    env_with(Some(TOKEN))
}

impl Env {
    fn app(&self) -> Router {
        api::router(self.state.clone())
    }

    async fn send(&self, req: Request<Body>) -> Reply {
        let res = self.app().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = tokio::time::timeout(Duration::from_secs(20), res.into_body().collect())
            .await
            .expect("the response body did not end")
            .unwrap()
            .to_bytes();
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            text,
            json,
        }
    }

    /// An authorised request; `body` is sent as JSON.
    async fn call(&self, method: &str, uri: &str, body: Option<Value>) -> Reply {
        self.send(request(method, uri, Some(TOKEN), body)).await
    }

    async fn register(&self, id: &str, domain: &str) {
        let r = self
            .call(
                "PUT",
                &format!("/api/customers/{id}"),
                Some(json!({ "domain": domain })),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }

    /// Writes a complete backup folder (its manifest matching its one artifact).
    fn make_backup(&self, domain: &str, id: &str) -> PathBuf {
        let dir = self.customers_root.join(domain).join("backups").join(id);
        std::fs::create_dir_all(&dir).unwrap();
        let data = b"pretend pg_dump output";
        std::fs::write(dir.join("db.dump"), data).unwrap();
        let manifest = json!({
            "formatVersion": 1,
            "id": id,
            "artifacts": [{
                "name": "db",
                "file": "db.dump",
                "size": data.len(),
                "sha256": "00",
            }],
        });
        std::fs::write(dir.join("backup.json"), manifest.to_string()).unwrap();
        dir
    }
}

fn request(method: &str, uri: &str, token: Option<&str>, body: Option<Value>) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    match body {
        Some(v) => b
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(v.to_string()))
            .unwrap(),
        None => b.body(Body::empty()).unwrap(),
    }
}

fn raw(method: &str, uri: &str, content_type: Option<&str>, body: &str) -> Request<Body> {
    let mut b = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"));
    if let Some(ct) = content_type {
        b = b.header(header::CONTENT_TYPE, ct);
    }
    b.body(Body::from(body.to_owned())).unwrap()
}

#[derive(Debug)]
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    text: String,
    json: Value,
}

impl Reply {
    /// Asserts a problem+json answer with this status and returns its detail.
    fn problem(&self, status: StatusCode) -> String {
        assert_eq!(self.status, status, "{}", self.text);
        assert_eq!(
            self.headers[header::CONTENT_TYPE],
            "application/problem+json",
            "{}",
            self.text
        );
        assert_eq!(self.json["status"], status.as_u16(), "{}", self.text);
        assert!(self.json["type"].is_string(), "{}", self.text);
        assert!(self.json["title"].is_string(), "{}", self.text);
        self.json["detail"].as_str().unwrap().to_owned()
    }
}

/// Parses an SSE body into (id, event, data) triples.
fn sse_events(body: &str) -> Vec<(Option<u64>, String, Value)> {
    body.split("\n\n")
        .filter_map(|block| {
            let (mut id, mut name, mut data) = (None, None, String::new());
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = Some(v.trim().parse().unwrap());
                } else if let Some(v) = line.strip_prefix("event:") {
                    name = Some(v.trim().to_owned());
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim());
                }
            }
            name.map(|n| (id, n, serde_json::from_str(&data).unwrap()))
        })
        .collect()
}

fn exists(p: &Path) -> bool {
    p.symlink_metadata().is_ok()
}

#[tokio::test]
async fn healthz_is_open() {
    let env = env_with(None);
    let r = env.send(request("GET", "/healthz", None, None)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json, json!({ "status": "ok" }));
}

#[tokio::test]
async fn api_requests_need_the_bearer_token() {
    let env = env();
    let missing = env
        .send(request("GET", "/api/customers/c1", None, None))
        .await;
    missing.problem(StatusCode::UNAUTHORIZED);
    assert!(missing.headers.contains_key(header::WWW_AUTHENTICATE));

    let wrong = env
        .send(request("GET", "/api/customers/c1", Some("t0kem"), None))
        .await;
    wrong.problem(StatusCode::UNAUTHORIZED);
    let longer = env
        .send(request("GET", "/api/customers/c1", Some("t0ken0"), None))
        .await;
    longer.problem(StatusCode::UNAUTHORIZED);
    let basic = env
        .send(
            Request::builder()
                .uri("/api/customers/c1")
                .header(header::AUTHORIZATION, "Basic dDBrZW4=")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    basic.problem(StatusCode::UNAUTHORIZED);

    // Unknown /api paths do not reveal themselves to a caller without the token.
    let unknown = env
        .send(request("GET", "/api/nothing-here", None, None))
        .await;
    unknown.problem(StatusCode::UNAUTHORIZED);

    let right = env
        .send(request("GET", "/api/customers/c1", Some(TOKEN), None))
        .await;
    right.problem(StatusCode::NOT_FOUND);
    let unknown = env.call("GET", "/api/nothing-here", None).await;
    unknown.problem(StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn without_a_configured_token_every_api_request_is_refused() {
    for token in [None, Some("")] {
        let env = env_with(token);
        for t in [None, Some(""), Some(TOKEN)] {
            let r = env.send(request("GET", "/api/customers/c1", t, None)).await;
            let detail = r.problem(StatusCode::SERVICE_UNAVAILABLE);
            assert!(detail.contains("QODIFY_API_TOKEN"), "{detail}");
        }
        let r = env.send(request("GET", "/healthz", None, None)).await;
        assert_eq!(r.status, StatusCode::OK);
    }
}

#[tokio::test]
async fn customers_are_registered_updated_and_read_back() {
    let env = env();
    let r = env
        .call(
            "PUT",
            "/api/customers/c-42",
            Some(json!({ "domain": "Shop.Example.com", "tier": "paid" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["id"], "c-42");
    assert_eq!(r.json["domain"], DOMAIN);
    assert_eq!(r.json["tier"], "paid");
    assert!(r.json["createdAt"].is_string());

    let r = env
        .call(
            "PUT",
            "/api/customers/c-42",
            Some(json!({ "domain": DOMAIN })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["tier"], Value::Null);

    let r = env.call("GET", "/api/customers/c-42", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json["domain"], DOMAIN);

    env.call("GET", "/api/customers/c-43", None)
        .await
        .problem(StatusCode::NOT_FOUND);

    // Another customer cannot take the same domain.
    let detail = env
        .call(
            "PUT",
            "/api/customers/c-43",
            Some(json!({ "domain": DOMAIN })),
        )
        .await
        .problem(StatusCode::CONFLICT);
    assert!(detail.contains(DOMAIN), "{detail}");

    let audit = env.call("GET", "/api/audit?customer=c-42", None).await;
    assert_eq!(audit.status, StatusCode::OK, "{}", audit.text);
    let actions: Vec<&str> = audit.json["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["customer.updated", "customer.registered"]);
}

/// One bad request and how it must be refused.
struct Bad {
    method: &'static str,
    uri: String,
    /// `None`: no body; otherwise the raw body, sent as `content_type`.
    body: Option<&'static str>,
    content_type: &'static str,
    status: StatusCode,
    /// What the problem's detail must mention (empty: anything).
    mentions: &'static str,
}

fn bad(method: &'static str, uri: impl Into<String>, body: Option<&'static str>) -> Bad {
    Bad {
        method,
        uri: uri.into(),
        body,
        content_type: "application/json",
        status: StatusCode::BAD_REQUEST,
        mentions: "",
    }
}

impl Bad {
    fn mentions(self, mentions: &'static str) -> Self {
        Bad { mentions, ..self }
    }
    fn status(self, status: StatusCode) -> Self {
        Bad { status, ..self }
    }
    fn content_type(self, content_type: &'static str) -> Self {
        Bad {
            content_type,
            ..self
        }
    }
}

/// Every refusal of bad input in one table: ids in paths, domains and tiers, bodies that do not
/// parse or do not fit the schema, media types and methods. Each gets a problem+json with the
/// right status and a detail saying what; none of them touches a file or queues a run.
#[tokio::test]
async fn bad_requests_are_refused_with_a_problem_before_anything_is_touched() {
    let env = env();
    env.register("c1", DOMAIN).await;
    let victim = env.make_backup(DOMAIN, "20260101-120000");
    let backups = "/api/customers/c1/backups";
    let restores = "/api/customers/c1/restores";
    let mut table = Vec::new();
    for domain in [
        r#"{"domain": "../etc"}"#,
        r#"{"domain": "shop"}"#,
        r#"{"domain": "a/b.com"}"#,
        r#"{"domain": "1.2.3.4"}"#,
        r#"{"domain": "x..com"}"#,
        r#"{"domain": ""}"#,
    ] {
        table.push(bad("PUT", "/api/customers/c2", Some(domain)).mentions("domain"));
    }
    table.extend([
        bad(
            "PUT",
            "/api/customers/c2",
            Some(r#"{"domain": "shop.example.com", "tier": "../paid"}"#),
        ),
        bad(
            "PUT",
            "/api/customers/c2",
            Some(r#"{"domain": "shop.example.com", "tier": 3}"#),
        ),
        bad("PUT", "/api/customers/c2", Some("")),
    ]);
    for (method, uri) in [
        ("GET", "/api/customers/..".to_owned()),
        ("GET", "/api/customers/%2E%2E%2Fetc".to_owned()),
        ("GET", "/api/customers/a%20b".to_owned()),
        ("GET", format!("/api/customers/{}", "x".repeat(65))),
        ("GET", "/api/customers/..%2F..%2Fetc/backups".to_owned()),
        ("POST", "/api/customers/..%2Fc1/backups".to_owned()),
        ("DELETE", "/api/customers/c1/backups/..".to_owned()),
        (
            "DELETE",
            "/api/customers/c1/backups/..%2F20260101-120000".to_owned(),
        ),
        ("DELETE", "/api/customers/c1/backups/2026-01-01".to_owned()),
        ("GET", "/api/runs/not-a-uuid".to_owned()),
        ("GET", "/api/runs/..%2F..%2Fetc".to_owned()),
        ("POST", "/api/runs/123/cancel".to_owned()),
        ("GET", "/api/runs/xyz/events".to_owned()),
        ("GET", "/api/runs?customer=..%2Fc1".to_owned()),
        ("GET", "/api/runs?limit=0".to_owned()),
        ("GET", "/api/runs?limit=many".to_owned()),
        ("GET", "/api/audit?customer=%2Fetc".to_owned()),
    ] {
        table.push(bad(method, uri, None));
    }
    for body in [
        "{",
        "not json",
        r#"{"type": "weekly"}"#,
        r#"{"type": 5}"#,
        r#"{"include": {"db": "yes"}}"#,
        r#"{"include": {"database": true}}"#,
        r#"{"unknown": 1}"#,
        r#"{"queue": "true"}"#,
        "[]",
    ] {
        table.push(bad("POST", backups, Some(body)));
    }
    table.extend([
        bad("POST", backups, Some(r#"{"triggeredBy": "eve\nadmin"}"#)).mentions("triggeredBy"),
        bad("POST", backups, Some(r#"{"type":"fast"}"#))
            .content_type("text/plain")
            .status(StatusCode::UNSUPPORTED_MEDIA_TYPE),
        bad(
            "POST",
            restores,
            Some(r#"{"backup": "../20260101-120000"}"#),
        )
        .mentions("backup id"),
        bad(
            "POST",
            restores,
            Some(r#"{"backup": "20260101-120000", "targetDb": "--help"}"#),
        ),
        bad("POST", restores, Some(r#"{"include": {"db": false}}"#)),
        bad("PATCH", "/api/customers/c1", None).status(StatusCode::METHOD_NOT_ALLOWED),
    ]);

    for row in &table {
        let req = match row.body {
            Some(body) => raw(row.method, &row.uri, Some(row.content_type), body),
            None => request(row.method, &row.uri, Some(TOKEN), None),
        };
        let reply = env.send(req).await;
        let what = format!("{} {} {:?}", row.method, row.uri, row.body);
        assert_eq!(reply.status, row.status, "{what}: {}", reply.text);
        let detail = reply.problem(row.status);
        assert!(!detail.is_empty(), "{what}");
        assert!(detail.contains(row.mentions), "{what}: {detail}");
    }

    assert!(exists(&victim));
    env.call("GET", "/api/customers/c2", None)
        .await
        .problem(StatusCode::NOT_FOUND);
    let runs = env.call("GET", "/api/runs", None).await;
    assert_eq!(runs.json["runs"], json!([]), "nothing was queued");
}

#[tokio::test]
async fn unknown_customers_are_404() {
    let env = env();
    env.call("GET", "/api/customers/nobody", None)
        .await
        .problem(StatusCode::NOT_FOUND);
    let detail = env
        .call("POST", "/api/customers/nobody/backups", Some(json!({})))
        .await
        .problem(StatusCode::NOT_FOUND);
    assert!(detail.contains("PUT /api/customers/nobody"), "{detail}");
    env.call("GET", "/api/customers/nobody/backups", None)
        .await
        .problem(StatusCode::NOT_FOUND);
    env.call(
        "DELETE",
        "/api/customers/nobody/backups/20260101-120000",
        None,
    )
    .await
    .problem(StatusCode::NOT_FOUND);
    env.call(
        "POST",
        "/api/customers/nobody/restores",
        Some(json!({ "backup": "20260101-120000" })),
    )
    .await
    .problem(StatusCode::NOT_FOUND);
    env.call("GET", "/api/runs?customer=nobody", None)
        .await
        .problem(StatusCode::NOT_FOUND);
    env.call(
        "GET",
        "/api/runs/0190f1c2-7a3b-7c4d-8e5f-0123456789ab",
        None,
    )
    .await
    .problem(StatusCode::NOT_FOUND);
    env.call(
        "POST",
        "/api/runs/0190f1c2-7a3b-7c4d-8e5f-0123456789ab/cancel",
        None,
    )
    .await
    .problem(StatusCode::NOT_FOUND);
    env.call(
        "GET",
        "/api/runs/0190f1c2-7a3b-7c4d-8e5f-0123456789ab/events",
        None,
    )
    .await
    .problem(StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_second_backup_is_refused_with_409_naming_the_first_unless_queued() {
    let env = env();
    env.register("c1", DOMAIN).await;
    let first = env
        .call(
            "POST",
            "/api/customers/c1/backups",
            Some(json!({
                "type": "custom",
                "include": { "db": true, "logs": true },
                "triggeredBy": "ayse",
            })),
        )
        .await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.text);
    let run_id = first.json["runId"].as_str().unwrap().to_owned();
    assert_eq!(first.json["customer"], "c1");
    assert_eq!(first.json["state"], "queued");
    assert_eq!(
        first.json["eventsUrl"],
        format!("/api/runs/{run_id}/events")
    );
    assert_eq!(
        first.headers[header::LOCATION],
        format!("/api/runs/{run_id}")
    );

    let run = env.call("GET", &format!("/api/runs/{run_id}"), None).await;
    assert_eq!(run.status, StatusCode::OK, "{}", run.text);
    assert_eq!(run.json["id"], run_id);
    assert_eq!(run.json["customerId"], "c1");
    assert_eq!(run.json["pipeline"], "backup");
    assert_eq!(run.json["state"], "queued");
    assert_eq!(run.json["triggeredBy"], "ayse");
    assert_eq!(
        run.json["params"],
        json!({ "type": "custom", "include.db": "true", "include.logs": "true" })
    );
    for field in [
        "createdAt",
        "startedAt",
        "finishedAt",
        "error",
        "backupId",
        "progress",
        "message",
    ] {
        assert!(
            run.json.get(field).is_some(),
            "{field} missing: {}",
            run.text
        );
    }
    assert!(run.json.get("epoch").is_none() && run.json.get("leaseOwner").is_none());

    let second = env
        .call(
            "POST",
            "/api/customers/c1/backups",
            Some(json!({ "type": "fast" })),
        )
        .await;
    let detail = second.problem(StatusCode::CONFLICT);
    assert!(detail.contains(&run_id), "{detail}");
    assert!(detail.contains("queued"), "{detail}");
    assert_eq!(second.json["activeRunId"], run_id.as_str());

    // An empty body is a fast backup; `queue: true` waits behind the active run.
    let queued = env
        .send(raw("POST", "/api/customers/c1/backups", None, ""))
        .await;
    queued.problem(StatusCode::CONFLICT);
    let queued = env
        .call(
            "POST",
            "/api/customers/c1/backups",
            Some(json!({ "queue": true })),
        )
        .await;
    assert_eq!(queued.status, StatusCode::ACCEPTED, "{}", queued.text);
    assert_eq!(queued.json["state"], "queued");
    assert_ne!(queued.json["runId"], run_id.as_str());
    let queued_run = env
        .call(
            "GET",
            &format!("/api/runs/{}", queued.json["runId"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(queued_run.json["params"], json!({ "type": "fast" }));

    // Another customer is not blocked.
    env.register("c2", "other.example.com").await;
    let other = env
        .call("POST", "/api/customers/c2/backups", Some(json!({})))
        .await;
    assert_eq!(other.status, StatusCode::ACCEPTED, "{}", other.text);

    let list = env
        .call("GET", "/api/runs?customer=c1&limit=10", None)
        .await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text);
    let ids: Vec<&str> = list.json["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [queued.json["runId"].as_str().unwrap(), run_id.as_str()]
    );
    let all = env.call("GET", "/api/runs", None).await;
    assert_eq!(all.json["runs"].as_array().unwrap().len(), 3);
    let one = env.call("GET", "/api/runs?limit=1", None).await;
    assert_eq!(one.json["runs"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_queued_run_is_cancelled_and_a_finished_one_refuses() {
    let env = env();
    env.register("c1", DOMAIN).await;
    let run = env
        .call("POST", "/api/customers/c1/backups", Some(json!({})))
        .await;
    let run_id = run.json["runId"].as_str().unwrap().to_owned();
    let cancel = format!("/api/runs/{run_id}/cancel");

    let r = env
        .call("POST", &cancel, Some(json!({ "triggeredBy": "mehmet" })))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    assert_eq!(r.json["id"], run_id.as_str());
    assert_eq!(r.json["state"], "cancelled");

    let again = env.send(request("POST", &cancel, Some(TOKEN), None)).await;
    let detail = again.problem(StatusCode::CONFLICT);
    assert!(detail.contains("already cancelled"), "{detail}");

    let got = env.call("GET", &format!("/api/runs/{run_id}"), None).await;
    assert_eq!(got.json["state"], "cancelled");

    // The customer is free again.
    let next = env
        .call("POST", "/api/customers/c1/backups", Some(json!({})))
        .await;
    assert_eq!(next.status, StatusCode::ACCEPTED, "{}", next.text);

    let audit = env
        .call("GET", "/api/audit?customer=c1&limit=50", None)
        .await;
    let entries = audit.json["entries"].as_array().unwrap();
    assert!(entries.iter().any(|e| e["action"] == "run.cancel-requested"
        && e["actor"] == "mehmet"
        && e["runId"] == run_id.as_str()));
    assert!(entries.iter().any(|e| e["action"] == "backup.requested"));

    // Live clients of the cancelled run see it end.
    let events = env
        .call("GET", &format!("/api/runs/{run_id}/events"), None)
        .await;
    let names: Vec<String> = sse_events(&events.text).into_iter().map(|e| e.1).collect();
    assert_eq!(names, ["backup-progress", "backup-failed"]);
}

#[tokio::test]
async fn backup_history_comes_from_the_store_newest_first() {
    const R1: &str = "0190f1c2-7a3b-7c4d-8e5f-000000000001";
    const R2: &str = "0190f1c2-7a3b-7c4d-8e5f-000000000002";
    let env = env();
    env.register("c1", DOMAIN).await;
    let empty = env.call("GET", "/api/customers/c1/backups", None).await;
    assert_eq!(empty.status, StatusCode::OK, "{}", empty.text);
    assert_eq!(empty.json["backups"], json!([]));

    // A folder alone is not history: the listing never scans folders.
    env.make_backup(DOMAIN, "20260101-120000");
    let still = env.call("GET", "/api/customers/c1/backups", None).await;
    assert_eq!(still.json["backups"], json!([]));

    for (run, backup, result, at) in [
        (
            "0190f1c2-7a3b-7c4d-8e5f-000000000001",
            Some("20260101-120000"),
            "succeeded",
            "2026-01-01T12:00:00Z",
        ),
        (
            "0190f1c2-7a3b-7c4d-8e5f-000000000002",
            None,
            "failed",
            "2026-01-02T12:00:00Z",
        ),
    ] {
        env.state
            .store
            .record_backup(&BackupRecord {
                customer_id: "c1".into(),
                run_id: run.into(),
                backup_id: backup.map(str::to_owned),
                kind: "fast".into(),
                size: backup.map(|_| 1234),
                duration_ms: Some(5000),
                result: result.into(),
                triggered_by: Some("ayse".into()),
                created_at: at.into(),
                note: None,
            })
            .unwrap();
    }
    let r = env.call("GET", "/api/customers/c1/backups", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json["customer"], "c1");
    let rows = r.json["backups"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["runId"], R2);
    assert_eq!(rows[0]["result"], "failed");
    assert_eq!(rows[0]["backupId"], Value::Null);
    assert_eq!(rows[1]["runId"], R1);
    assert_eq!(rows[1]["backupId"], "20260101-120000");
    assert_eq!(rows[1]["date"], "2026-01-01T12:00:00Z");
    assert_eq!(rows[1]["type"], "fast");
    assert_eq!(rows[1]["size"], 1234);
    assert_eq!(rows[1]["durationMs"], 5000);
    assert_eq!(rows[1]["triggeredBy"], "ayse");
    assert!(r.json.get("nextBefore").is_none(), "{}", r.text);

    // Pages: `nextBefore` leads to the next one, and the last page has none.
    let first = env
        .call("GET", "/api/customers/c1/backups?limit=1", None)
        .await;
    assert_eq!(first.json["backups"][0]["runId"], R2);
    assert_eq!(first.json["nextBefore"], R2);
    let second = env
        .call(
            "GET",
            &format!("/api/customers/c1/backups?limit=1&before={R2}"),
            None,
        )
        .await;
    assert_eq!(second.json["backups"][0]["runId"], R1);
    assert!(second.json.get("nextBefore").is_none(), "{}", second.text);
    for bad in ["limit=0", "limit=1001", "before=r2", "page=2"] {
        let r = env
            .call("GET", &format!("/api/customers/c1/backups?{bad}"), None)
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.text);
    }
}

#[tokio::test]
async fn deleting_a_backup_marks_its_history_and_refuses_pinned_or_busy() {
    let env = env();
    env.register("c1", DOMAIN).await;
    let folder = env.make_backup(DOMAIN, "20260101-120000");
    let pinned = env.make_backup(DOMAIN, "20260102-120000");
    let pins = env.customers_root.join(DOMAIN).join("backups/.pins");
    std::fs::create_dir_all(&pins).unwrap();
    std::fs::write(pins.join("20260102-120000"), "pre-upgrade v1.1.0").unwrap();
    env.state
        .store
        .record_backup(&BackupRecord {
            customer_id: "c1".into(),
            run_id: "r1".into(),
            backup_id: Some("20260101-120000".into()),
            kind: "fast".into(),
            size: Some(22),
            duration_ms: Some(1000),
            result: "succeeded".into(),
            triggered_by: None,
            created_at: "2026-01-01T12:00:00Z".into(),
            note: None,
        })
        .unwrap();

    let detail = env
        .call("DELETE", "/api/customers/c1/backups/20260102-120000", None)
        .await
        .problem(StatusCode::CONFLICT);
    assert!(detail.contains("pre-upgrade v1.1.0"), "{detail}");
    assert!(exists(&pinned));

    // Not while the customer has an active run.
    let run = env
        .call("POST", "/api/customers/c1/backups", Some(json!({})))
        .await;
    let run_id = run.json["runId"].as_str().unwrap().to_owned();
    let busy = env
        .call("DELETE", "/api/customers/c1/backups/20260101-120000", None)
        .await;
    let detail = busy.problem(StatusCode::CONFLICT);
    assert!(detail.contains(&run_id), "{detail}");
    assert!(exists(&folder));
    env.call("POST", &format!("/api/runs/{run_id}/cancel"), None)
        .await;

    let r = env
        .call(
            "DELETE",
            "/api/customers/c1/backups/20260101-120000?triggeredBy=ayse",
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    assert!(!exists(&folder));
    let history = env.call("GET", "/api/customers/c1/backups", None).await;
    let row = &history.json["backups"].as_array().unwrap()[0];
    assert_eq!(row["backupId"], "20260101-120000");
    assert_eq!(row["result"], "deleted");
    let audit = env.call("GET", "/api/audit?customer=c1", None).await;
    assert!(
        audit.json["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "backup.deleted"
                && e["actor"] == "ayse"
                && e["detail"]["backupId"] == "20260101-120000")
    );

    env.call("DELETE", "/api/customers/c1/backups/20260101-120000", None)
        .await
        .problem(StatusCode::NOT_FOUND);
    // A customer without a folder has no backups.
    env.register("c2", "other.example.com").await;
    env.call("DELETE", "/api/customers/c2/backups/20260101-120000", None)
        .await
        .problem(StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn restores_need_an_existing_backup_and_something_to_restore() {
    let env = env();
    env.register("c1", DOMAIN).await;
    env.make_backup(DOMAIN, "20260101-120000");
    let uri = "/api/customers/c1/restores";

    let detail = env
        .call("POST", uri, Some(json!({ "backup": "20250101-000000" })))
        .await
        .problem(StatusCode::NOT_FOUND);
    assert!(detail.contains("20250101-000000"), "{detail}");

    env.call(
        "POST",
        uri,
        Some(json!({
            "backup": "20260101-120000",
            "include": { "db": false, "services": false, "uploads": false, "envPm2": false },
        })),
    )
    .await
    .problem(StatusCode::UNPROCESSABLE_ENTITY);

    let r = env
        .call(
            "POST",
            uri,
            Some(json!({
                "backup": "20260101-120000",
                "include": { "uploads": false },
                "targetDb": "shop_restore_check",
                "triggeredBy": "ayse",
            })),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let run_id = r.json["runId"].as_str().unwrap();
    assert_eq!(r.json["eventsUrl"], format!("/api/runs/{run_id}/events"));
    let run = env.call("GET", &format!("/api/runs/{run_id}"), None).await;
    assert_eq!(run.json["pipeline"], "restore");
    assert_eq!(
        run.json["params"],
        json!({
            "backup": "20260101-120000",
            "include.uploads": "false",
            "targetDb": "shop_restore_check",
        })
    );

    // One active run per customer, across pipelines.
    let backup = env
        .call("POST", "/api/customers/c1/backups", Some(json!({})))
        .await;
    let detail = backup.problem(StatusCode::CONFLICT);
    assert!(detail.contains(run_id), "{detail}");
}

#[tokio::test]
async fn sse_replays_stored_events_and_ends_after_the_final_one() {
    let env = env();
    env.register("c1", DOMAIN).await;
    let run = env
        .call("POST", "/api/customers/c1/backups", Some(json!({})))
        .await;
    let run_id = run.json["runId"].as_str().unwrap().to_owned();
    let hub = &env.state.hub;
    hub.publish(&run_id, "c1", "backup-progress", json!({ "percent": 40.0 }));
    hub.publish(&run_id, "c1", "run-log", json!({ "line": "dumping" }));
    hub.publish(&run_id, "c1", "backup-progress", json!({ "percent": 90.0 }));
    hub.publish(
        &run_id,
        "c1",
        "backup-completed",
        json!({ "runId": run_id, "backupId": "20260101-120000" }),
    );
    // Another run's events never show up.
    hub.publish("other-run", "c2", "backup-failed", json!({}));

    let uri = format!("/api/runs/{run_id}/events");
    let r = env.call("GET", &uri, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let events = sse_events(&r.text);
    let got: Vec<(Option<u64>, &str)> = events.iter().map(|e| (e.0, e.1.as_str())).collect();
    assert_eq!(
        got,
        [
            (Some(1), "backup-progress"),
            (Some(2), "backup-progress"),
            (Some(3), "run-log"),
            (Some(4), "backup-progress"),
            (Some(5), "backup-completed"),
        ]
    );
    assert_eq!(events[0].2["message"], "queued");
    assert_eq!(events[4].2["backupId"], "20260101-120000");

    // Last-Event-ID (a reconnecting browser) and ?after= skip what the client has.
    let mut req = request("GET", &uri, Some(TOKEN), None);
    req.headers_mut()
        .insert("last-event-id", "3".parse().unwrap());
    let resumed = env.send(req).await;
    let ids: Vec<Option<u64>> = sse_events(&resumed.text).iter().map(|e| e.0).collect();
    assert_eq!(ids, [Some(4), Some(5)]);
    let after = env.call("GET", &format!("{uri}?after=4"), None).await;
    let names: Vec<String> = sse_events(&after.text).into_iter().map(|e| e.1).collect();
    assert_eq!(names, ["backup-completed"]);

    let mut req = request("GET", &uri, Some(TOKEN), None);
    req.headers_mut()
        .insert("last-event-id", "soon".parse().unwrap());
    env.send(req).await.problem(StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn sse_follows_live_events_until_the_run_ends() {
    let env = env();
    env.register("c1", DOMAIN).await;
    let run = env
        .call(
            "POST",
            "/api/customers/c1/restores",
            Some(json!({ "backup": "20260101-120000" })),
        )
        .await;
    // No such backup yet: make one and try again.
    run.problem(StatusCode::NOT_FOUND);
    env.make_backup(DOMAIN, "20260101-120000");
    let run = env
        .call(
            "POST",
            "/api/customers/c1/restores",
            Some(json!({ "backup": "20260101-120000" })),
        )
        .await;
    let run_id = run.json["runId"].as_str().unwrap().to_owned();

    let res = env
        .app()
        .oneshot(request(
            "GET",
            &format!("/api/runs/{run_id}/events?after=1"),
            Some(TOKEN),
            None,
        ))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let reader = tokio::spawn(async move {
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    });
    // The stream is open and waiting: publish while it listens.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let hub = env.state.hub.clone();
    hub.publish(
        &run_id,
        "c1",
        "restore-progress",
        json!({ "percent": 50.0 }),
    );
    hub.publish("another", "c1", "restore-progress", json!({}));
    hub.publish(&run_id, "c1", "restore-failed", json!({ "error": "boom" }));
    hub.publish(&run_id, "c1", "restore-progress", json!({ "late": true }));
    let body = tokio::time::timeout(Duration::from_secs(10), reader)
        .await
        .expect("the stream did not end after restore-failed")
        .unwrap();
    let got: Vec<(Option<u64>, String)> =
        sse_events(&body).into_iter().map(|e| (e.0, e.1)).collect();
    assert_eq!(
        got,
        [
            (Some(2), "restore-progress".to_owned()),
            (Some(3), "restore-failed".to_owned()),
        ]
    );
}

#[tokio::test]
async fn sse_of_a_finished_run_without_a_final_event_ends_by_itself() {
    let env = env();
    env.register("c1", DOMAIN).await;
    let run = env
        .call("POST", "/api/customers/c1/backups", Some(json!({})))
        .await;
    let run_id = run.json["runId"].as_str().unwrap().to_owned();
    // Cancelled behind the API's back: no final event was published.
    env.state.store.request_cancel(&run_id).unwrap();
    let r = env
        .call("GET", &format!("/api/runs/{run_id}/events"), None)
        .await;
    let names: Vec<String> = sse_events(&r.text).into_iter().map(|e| e.1).collect();
    assert_eq!(names, ["backup-progress"]);
}

/// A store whose backup history and audit log fail with an error full of things that must not
/// reach a client.
struct LeakyStore(SqliteStore);

const SECRET_ERROR: &str =
    "disk I/O error at /var/lib/qodify-host/state.sqlite (DATABASE_URL=postgres://u:hunter2@db)";

impl Store for LeakyStore {
    fn upsert_customer(
        &self,
        id: &str,
        domain: &str,
        tier: Option<&str>,
    ) -> StoreResult<CustomerRecord> {
        self.0.upsert_customer(id, domain, tier)
    }
    fn customer(&self, id: &str) -> StoreResult<Option<CustomerRecord>> {
        self.0.customer(id)
    }
    fn enqueue_run(&self, run: &NewRun, queue_if_busy: bool) -> StoreResult<RunRecord> {
        self.0.enqueue_run(run, queue_if_busy)
    }
    fn run(&self, id: &str) -> StoreResult<Option<RunRecord>> {
        self.0.run(id)
    }
    fn runs(&self, filter: &RunFilter) -> StoreResult<Vec<RunRecord>> {
        self.0.runs(filter)
    }
    fn claim_next(
        &self,
        by: &qodify_host::store::Claimant<'_>,
        lease: Duration,
    ) -> StoreResult<Option<RunRecord>> {
        self.0.claim_next(by, lease)
    }
    fn move_customer(&self, id: &str, node: &str) -> StoreResult<CustomerRecord> {
        self.0.move_customer(id, node)
    }
    fn adopt_customer(&self, id: &str, node: &str) -> StoreResult<bool> {
        self.0.adopt_customer(id, node)
    }
    fn unassigned_customers(&self) -> StoreResult<Vec<CustomerRecord>> {
        self.0.unassigned_customers()
    }
    fn heartbeat(&self, beat: &qodify_host::store::NodeBeat) -> StoreResult<()> {
        self.0.heartbeat(beat)
    }
    fn nodes(&self) -> StoreResult<Vec<qodify_host::store::NodeRecord>> {
        self.0.nodes()
    }
    fn active_runs_by_node(&self) -> StoreResult<Vec<(Option<String>, RunRecord)>> {
        self.0.active_runs_by_node()
    }
    fn listen(&self, node: &str, on_notice: qodify_host::store::Notice) -> bool {
        self.0.listen(node, on_notice)
    }
    fn renew_lease(
        &self,
        run_id: &str,
        owner: &str,
        epoch: i64,
        lease: Duration,
    ) -> StoreResult<bool> {
        self.0.renew_lease(run_id, owner, epoch, lease)
    }
    fn set_progress(
        &self,
        run_id: &str,
        epoch: i64,
        percent: f32,
        message: &str,
    ) -> StoreResult<bool> {
        self.0.set_progress(run_id, epoch, percent, message)
    }
    fn set_insight(
        &self,
        run_id: &str,
        epoch: i64,
        insight: &serde_json::Value,
    ) -> StoreResult<bool> {
        self.0.set_insight(run_id, epoch, insight)
    }
    fn start_run(&self, run: &NewRun, owner: &str, lease: Duration) -> StoreResult<RunRecord> {
        self.0.start_run(run, owner, lease)
    }
    fn all_customers(&self) -> StoreResult<Vec<CustomerRecord>> {
        self.0.all_customers()
    }
    fn customer_by_domain(&self, domain: &str) -> StoreResult<Option<CustomerRecord>> {
        self.0.customer_by_domain(domain)
    }
    fn set_backup_id(&self, run_id: &str, epoch: i64, backup_id: &str) -> StoreResult<bool> {
        self.0.set_backup_id(run_id, epoch, backup_id)
    }
    fn finish_run(&self, run_id: &str, epoch: i64, finish: &RunFinish) -> StoreResult<bool> {
        self.0.finish_run(run_id, epoch, finish)
    }
    fn request_cancel(&self, run_id: &str) -> StoreResult<Option<RunRecord>> {
        self.0.request_cancel(run_id)
    }
    fn recover_interrupted(&self, owner: &str) -> StoreResult<Vec<RunRecord>> {
        self.0.recover_interrupted(owner)
    }
    fn annotate_run(&self, run_id: &str, error: &str) -> StoreResult<()> {
        self.0.annotate_run(run_id, error)
    }
    fn append_event(&self, run_id: &str, name: &str, data: &Value) -> StoreResult<u64> {
        self.0.append_event(run_id, name, data)
    }
    fn append_event_fenced(
        &self,
        run_id: &str,
        epoch: i64,
        name: &str,
        data: &Value,
    ) -> StoreResult<Option<u64>> {
        self.0.append_event_fenced(run_id, epoch, name, data)
    }
    fn expire_leases(&self) -> StoreResult<Vec<RunRecord>> {
        self.0.expire_leases()
    }
    fn ask_approval(&self, run_id: &str, epoch: i64, request: &Value) -> StoreResult<bool> {
        self.0.ask_approval(run_id, epoch, request)
    }
    fn approval(&self, run_id: &str) -> StoreResult<Option<qodify_host::store::ApprovalRecord>> {
        self.0.approval(run_id)
    }
    fn decide_approval(
        &self,
        run_id: &str,
        decision: &Value,
    ) -> StoreResult<qodify_host::store::Decided> {
        self.0.decide_approval(run_id, decision)
    }
    fn clear_approval(&self, run_id: &str) -> StoreResult<()> {
        self.0.clear_approval(run_id)
    }
    fn schedule_slots(
        &self,
        customer_id: Option<&str>,
    ) -> StoreResult<Vec<qodify_host::store::ScheduleSlot>> {
        self.0.schedule_slots(customer_id)
    }
    fn schedule_seen(
        &self,
        customer_id: &str,
        pipeline: &str,
        since_ms: i64,
    ) -> StoreResult<qodify_host::store::ScheduleSlot> {
        self.0.schedule_seen(customer_id, pipeline, since_ms)
    }
    fn record_slot(
        &self,
        slot: &qodify_host::store::ScheduleSlot,
        only_if_newer: bool,
    ) -> StoreResult<bool> {
        self.0.record_slot(slot, only_if_newer)
    }
    fn customer_schedules(
        &self,
        customer_id: Option<&str>,
    ) -> StoreResult<Vec<qodify_host::store::CustomerSchedule>> {
        self.0.customer_schedules(customer_id)
    }
    fn set_customer_schedule(
        &self,
        customer_id: &str,
        pipeline: &str,
        spec: Option<&serde_json::Value>,
    ) -> StoreResult<()> {
        self.0.set_customer_schedule(customer_id, pipeline, spec)
    }
    fn events(&self, run_id: &str, after_seq: u64) -> StoreResult<Vec<EventRecord>> {
        self.0.events(run_id, after_seq)
    }
    fn record_backup(&self, b: &BackupRecord) -> StoreResult<()> {
        self.0.record_backup(b)
    }
    fn backups(
        &self,
        _customer_id: &str,
        _limit: usize,
        _before: Option<&str>,
    ) -> StoreResult<Vec<BackupRecord>> {
        Err(StoreError::Db(SECRET_ERROR.into()))
    }
    fn record_drill(&self, d: &qodify_host::store::DrillRecord) -> StoreResult<()> {
        self.0.record_drill(d)
    }
    fn drills(
        &self,
        customer_id: &str,
        backup_ids: &[String],
    ) -> StoreResult<Vec<qodify_host::store::DrillRecord>> {
        self.0.drills(customer_id, backup_ids)
    }
    fn last_good_drills(&self) -> StoreResult<Vec<(String, i64)>> {
        self.0.last_good_drills()
    }
    fn audit(&self, entry: &AuditEntry) -> StoreResult<()> {
        self.0.audit(entry)
    }
    fn audit_log(&self, _customer_id: Option<&str>, _limit: usize) -> StoreResult<Vec<AuditEntry>> {
        Err(StoreError::Db(SECRET_ERROR.into()))
    }
    fn backup_summaries(&self) -> StoreResult<Vec<qodify_host::store::BackupSummary>> {
        self.0.backup_summaries()
    }
    fn run_durations(
        &self,
        bounds_ms: &[u64],
    ) -> StoreResult<Vec<qodify_host::store::DurationHistogram>> {
        self.0.run_durations(bounds_ms)
    }
    fn customer_overviews(
        &self,
        query: &qodify_host::store::CustomerQuery,
    ) -> StoreResult<Vec<qodify_host::store::CustomerOverview>> {
        self.0.customer_overviews(query)
    }
    fn runs_page(&self, query: &qodify_host::store::RunQuery) -> StoreResult<Vec<RunRecord>> {
        self.0.runs_page(query)
    }
    fn audit_page(
        &self,
        _query: &qodify_host::store::AuditQuery,
    ) -> StoreResult<Vec<qodify_host::store::AuditRow>> {
        Err(StoreError::Db(SECRET_ERROR.into()))
    }

    fn add_token(&self, token: &qodify_host::store::TokenRecord, hash: &str) -> StoreResult<()> {
        self.0.add_token(token, hash)
    }

    fn tokens(&self) -> StoreResult<Vec<qodify_host::store::TokenRecord>> {
        self.0.tokens()
    }

    fn use_token(
        &self,
        hash: &str,
        now: &str,
        now_unix: i64,
    ) -> StoreResult<Option<qodify_host::store::TokenRecord>> {
        self.0.use_token(hash, now, now_unix)
    }

    fn revoke_token(&self, name: &str) -> StoreResult<bool> {
        self.0.revoke_token(name)
    }

    fn add_session(
        &self,
        session: &qodify_host::store::SessionRecord,
        now_unix: i64,
    ) -> StoreResult<()> {
        self.0.add_session(session, now_unix)
    }

    fn session(
        &self,
        hash: &str,
        now_unix: i64,
    ) -> StoreResult<Option<qodify_host::store::SessionRecord>> {
        self.0.session(hash, now_unix)
    }

    fn end_session(&self, hash: &str) -> StoreResult<bool> {
        self.0.end_session(hash)
    }
}

#[tokio::test]
async fn store_failures_are_500_without_internals() {
    let env = env_on(
        Arc::new(LeakyStore(SqliteStore::open_in_memory().unwrap())),
        Some(TOKEN),
    );
    env.register("c1", DOMAIN).await;
    for uri in ["/api/customers/c1/backups", "/api/audit"] {
        let r = env.call("GET", uri, None).await;
        let detail = r.problem(StatusCode::INTERNAL_SERVER_ERROR);
        assert!(detail.contains("reference"), "{detail}");
        for leak in ["/var", "hunter2", "sqlite", "disk"] {
            assert!(!r.text.contains(leak), "{uri} leaked {leak}: {}", r.text);
        }
    }
}

#[tokio::test]
async fn metrics_count_runs_by_state_behind_the_token() {
    let env = env();
    let r = env.send(request("GET", "/metrics", None, None)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    env.register("c1", "a.example.com").await;
    let r = env
        .call("POST", "/api/customers/c1/backups", Some(json!({})))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let r = env.call("GET", "/metrics", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.text
            .contains("qodify_runs{node=\"test\",state=\"queued\"} 1"),
        "{}",
        r.text
    );
    assert!(
        r.text
            .contains("qodify_runs{node=\"test\",state=\"running\"} 0"),
        "{}",
        r.text
    );
    assert!(
        r.text.contains("qodify_runs_executing{node=\"test\"} 0"),
        "{}",
        r.text
    );
    // With no node in the store yet (this host beats only when serving), the customer's
    // queued run is one of no node.
    assert!(
        r.text
            .contains("qodify_unassigned_active_runs{node=\"test\",state=\"queued\"} 1"),
        "{}",
        r.text
    );
    // Says whether granted programs run confined on this kernel, and the mode asked for.
    let enforced = qodify_host::engine::confine::Confinement::new(Default::default()).enforced();
    let line = format!(
        "qodify_commands_confined{{node=\"test\",mode=\"landlock\"}} {}",
        u8::from(enforced)
    );
    assert!(r.text.contains(&line), "{}", r.text);
}

#[tokio::test]
async fn upgrades_and_approvals_refuse_bad_input_with_4xx() {
    let env = env();
    env.register("c1", DOMAIN).await;
    let uri = "/api/customers/c1/upgrades";
    env.call(
        "POST",
        "/api/customers/nobody/upgrades",
        Some(json!({ "targetVersion": "v1.1.0" })),
    )
    .await
    .problem(StatusCode::NOT_FOUND);
    for body in [
        json!({ "targetVersion": "../v1" }),
        json!({ "targetVersion": ".hidden" }),
        json!({ "targetVersion": "" }),
        json!({ "targetVersion": 11 }),
        json!({ "targetVersion": "v1.1.0", "heapMB": 12 }),
        json!({ "targetVersion": "v1.1.0", "heapMb": 512 }),
        json!({}),
    ] {
        let r = env.call("POST", uri, Some(body.clone())).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.text);
    }
    let r = env
        .call(
            "POST",
            uri,
            Some(json!({ "targetVersion": "v1.1.0", "heapMB": 512, "skipTypeCheck": true })),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let run_id = r.json["runId"].as_str().unwrap().to_owned();
    assert_eq!(r.json["pipeline"], "upgrade");

    // Approval: unknown runs 404, a run that waits for nothing 409, bad bodies 400.
    let unknown = "0190f1c2-7a3b-7c4d-8e5f-0123456789ab";
    env.call(
        "POST",
        &format!("/api/runs/{unknown}/approval"),
        Some(json!({ "approve": true })),
    )
    .await
    .problem(StatusCode::NOT_FOUND);
    env.call(
        "POST",
        &format!("/api/runs/{run_id}/approval"),
        Some(json!({ "approve": true })),
    )
    .await
    .problem(StatusCode::CONFLICT);
    for body in [json!({}), json!({ "approve": "yes" })] {
        let r = env
            .call("POST", &format!("/api/runs/{run_id}/approval"), Some(body))
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    }
}
