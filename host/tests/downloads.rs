//! Backup downloads driven in-process with `oneshot`: one file (whole, `Range`, `If-Range`),
//! the whole backup as a tar, refused names and incomplete backups, and signed expiring links
//! (no token; tampered, expired, unknown-kid and deleted-backup links refused). With several
//! hosts on one store, a host that does not hold the backup redirects both kinds of download to
//! the node that does (two in-process hosts sharing one store), or names that node in a 409.
//!
//! The signing key is the one derived from the API token (these tests expect
//! `QODIFY_SIGNING_KEYS` to be unset).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use http_body_util::BodyExt as _;
use qodify_host::api;
use qodify_host::api::downloads;
use qodify_host::store::sqlite::SqliteStore;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tower::ServiceExt as _;

mod common;
use common::{Env, env_on};

const TOKEN: &str = "t0ken";
const DOMAIN: &str = "shop.example.com";
const CUSTOMER: &str = "42";
const BACKUP: &str = "20260101-000000";

fn env_with(token: Option<&str>) -> Env {
    env_on(Arc::new(SqliteStore::open_in_memory().unwrap()), token)
}

#[derive(Debug)]
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    bytes: Vec<u8>,
    json: Value,
}

impl Reply {
    fn header(&self, name: header::HeaderName) -> &str {
        self.headers
            .get(&name)
            .unwrap_or_else(|| panic!("no {name} header"))
            .to_str()
            .unwrap()
    }

    fn problem(&self, status: StatusCode) -> String {
        let text = String::from_utf8_lossy(&self.bytes);
        assert_eq!(self.status, status, "{text}");
        assert_eq!(
            self.headers[header::CONTENT_TYPE],
            "application/problem+json",
            "{text}"
        );
        assert_eq!(self.json["status"], status.as_u16(), "{text}");
        self.json["detail"].as_str().unwrap().to_owned()
    }
}

/// The first file: 100 bytes, every value different so any offset is recognisable.
fn db_bytes() -> Vec<u8> {
    (0u8..100)
        .map(|i| i.wrapping_mul(7).wrapping_add(3))
        .collect()
}

fn uploads_bytes() -> Vec<u8> {
    b"pretend uploads archive \x00\xff binary".to_vec()
}

fn sha(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
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
            .to_bytes()
            .to_vec();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            bytes,
            json,
        }
    }

    /// A GET with the token and extra headers.
    async fn get(&self, uri: &str, headers: &[(&str, &str)]) -> Reply {
        self.get_as(uri, Some(TOKEN), headers).await
    }

    async fn get_as(&self, uri: &str, token: Option<&str>, headers: &[(&str, &str)]) -> Reply {
        let mut b = Request::builder().method("GET").uri(uri);
        if let Some(t) = token {
            b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        self.send(b.body(Body::empty()).unwrap()).await
    }

    async fn call(&self, method: &str, uri: &str, body: Option<Value>) -> Reply {
        let mut b = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"));
        let body = match body {
            Some(v) => {
                b = b.header(header::CONTENT_TYPE, "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        self.send(b.body(body).unwrap()).await
    }

    /// Registers customer 42 and writes its complete backup `BACKUP` (two artifacts).
    async fn with_backup(self) -> Self {
        let r = self
            .call(
                "PUT",
                &format!("/api/customers/{CUSTOMER}"),
                Some(json!({ "domain": DOMAIN })),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK);
        let dir = self.backup_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let (db, up) = (db_bytes(), uploads_bytes());
        std::fs::write(dir.join("db.dump"), &db).unwrap();
        std::fs::write(dir.join("uploads.bin"), &up).unwrap();
        let manifest = json!({
            "formatVersion": 1,
            "id": BACKUP,
            "artifacts": [
                { "name": "db", "file": "db.dump", "size": db.len(), "sha256": sha(&db) },
                { "name": "uploads", "file": "uploads.bin", "size": up.len(), "sha256": sha(&up) },
            ],
        });
        std::fs::write(dir.join("backup.json"), manifest.to_string()).unwrap();
        self
    }

    fn backup_dir(&self) -> PathBuf {
        self.customers_root
            .join(DOMAIN)
            .join("backups")
            .join(BACKUP)
    }

    /// Asks for a signed link; returns its path and query.
    async fn link(&self, body: Option<Value>) -> String {
        let r = self
            .call(
                "POST",
                &format!("/api/customers/{CUSTOMER}/backups/{BACKUP}/download-url"),
                body,
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "{}",
            String::from_utf8_lossy(&r.bytes)
        );
        assert!(r.json["expiresAt"].is_string(), "{}", r.json);
        r.json["url"].as_str().unwrap().to_owned()
    }
}

fn file_url(file: &str) -> String {
    format!("/api/customers/{CUSTOMER}/backups/{BACKUP}/download?file={file}")
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Replaces the value of query parameter `name` in a link.
fn with_param(url: &str, name: &str, value: &str) -> String {
    let (path, query) = url.split_once('?').unwrap();
    let query: Vec<String> = query
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some((k, _)) if k == name => format!("{k}={value}"),
            _ => kv.to_owned(),
        })
        .collect();
    format!("{path}?{}", query.join("&"))
}

fn param(url: &str, name: &str) -> String {
    url.split_once('?')
        .unwrap()
        .1
        .split('&')
        .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn one_file_whole_and_in_ranges() {
    let env = env_with(Some(TOKEN)).with_backup().await;
    let db = db_bytes();
    let etag = format!("\"{}\"", sha(&db));

    let r = env.get(&file_url("db.dump"), &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.bytes, db);
    assert_eq!(r.header(header::ETAG), etag);
    assert_eq!(r.header(header::CONTENT_LENGTH), "100");
    assert_eq!(r.header(header::ACCEPT_RANGES), "bytes");
    assert_eq!(r.header(header::CONTENT_TYPE), "application/octet-stream");
    assert_eq!(
        r.header(header::CONTENT_DISPOSITION),
        "attachment; filename=\"db.dump\""
    );

    let r = env
        .get(&file_url("db.dump"), &[("range", "bytes=10-19")])
        .await;
    assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.bytes, &db[10..20]);
    assert_eq!(r.header(header::CONTENT_RANGE), "bytes 10-19/100");
    assert_eq!(r.header(header::CONTENT_LENGTH), "10");

    let r = env
        .get(&file_url("db.dump"), &[("range", "bytes=-5")])
        .await;
    assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.bytes, &db[95..]);
    assert_eq!(r.header(header::CONTENT_RANGE), "bytes 95-99/100");

    let r = env
        .get(&file_url("db.dump"), &[("range", "bytes=90-")])
        .await;
    assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.bytes, &db[90..]);

    let r = env
        .get(&file_url("db.dump"), &[("range", "bytes=100-200")])
        .await;
    r.problem(StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(r.header(header::CONTENT_RANGE), "bytes */100");

    // If-Range: another file's tag gets the whole file, this one's the range.
    let r = env
        .get(
            &file_url("db.dump"),
            &[("range", "bytes=10-19"), ("if-range", "\"0000\"")],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.bytes, db);
    let r = env
        .get(
            &file_url("db.dump"),
            &[("range", "bytes=10-19"), ("if-range", &etag)],
        )
        .await;
    assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.bytes, &db[10..20]);

    // backup.json itself, tagged with its own hash.
    let r = env.get(&file_url("backup.json"), &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    let manifest = std::fs::read(env.backup_dir().join("backup.json")).unwrap();
    assert_eq!(r.bytes, manifest);
    assert_eq!(r.header(header::ETAG), format!("\"{}\"", sha(&manifest)));
}

#[tokio::test]
async fn whole_backup_is_a_tar() {
    let env = env_with(Some(TOKEN)).with_backup().await;
    let r = env
        .get(
            &format!("/api/customers/{CUSTOMER}/backups/{BACKUP}/download"),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header(header::CONTENT_TYPE), "application/x-tar");
    assert_eq!(
        r.header(header::CONTENT_DISPOSITION),
        format!("attachment; filename=\"{BACKUP}.tar\"")
    );
    let mut archive = tar::Archive::new(r.bytes.as_slice());
    let mut entries = std::collections::BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
        entries.insert(path, data);
    }
    let names: Vec<&str> = entries.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            format!("{BACKUP}/backup.json"),
            format!("{BACKUP}/db.dump"),
            format!("{BACKUP}/uploads.bin"),
        ]
    );
    assert_eq!(entries[&format!("{BACKUP}/db.dump")], db_bytes());
    assert_eq!(entries[&format!("{BACKUP}/uploads.bin")], uploads_bytes());
}

#[tokio::test]
async fn refused_files_and_backups() {
    let env = env_with(Some(TOKEN)).with_backup().await;
    // Needs the token.
    let r = env.get_as(&file_url("db.dump"), None, &[]).await;
    r.problem(StatusCode::UNAUTHORIZED);
    // Not listed in backup.json, or not a plain name.
    std::fs::write(env.backup_dir().join("stray"), b"x").unwrap();
    env.get(&file_url("stray"), &[])
        .await
        .problem(StatusCode::NOT_FOUND);
    env.get(&file_url("nope.bin"), &[])
        .await
        .problem(StatusCode::NOT_FOUND);
    for bad in ["../x", "..%2Fx", "a%2Fb", "..", ""] {
        let r = env.get(&file_url(bad), &[]).await;
        assert!(
            matches!(r.status, StatusCode::BAD_REQUEST | StatusCode::NOT_FOUND),
            "{bad}: {}",
            r.status
        );
        assert_ne!(r.status, StatusCode::OK);
    }
    // Unknown backup, bad backup id, unknown customer.
    env.get(
        &format!("/api/customers/{CUSTOMER}/backups/20250101-000000/download"),
        &[],
    )
    .await
    .problem(StatusCode::NOT_FOUND);
    env.get(
        &format!("/api/customers/{CUSTOMER}/backups/..%2F..%2Fetc/download"),
        &[],
    )
    .await
    .problem(StatusCode::BAD_REQUEST);
    env.get(
        &format!("/api/customers/7/backups/{BACKUP}/download?file=db.dump"),
        &[],
    )
    .await
    .problem(StatusCode::NOT_FOUND);
    // An incomplete backup (an artifact of the wrong size) is not served.
    std::fs::write(env.backup_dir().join("uploads.bin"), b"short").unwrap();
    env.get(&file_url("db.dump"), &[])
        .await
        .problem(StatusCode::NOT_FOUND);
    env.get(
        &format!("/api/customers/{CUSTOMER}/backups/{BACKUP}/download"),
        &[],
    )
    .await
    .problem(StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn signed_links_work_without_a_token() {
    let env = env_with(Some(TOKEN)).with_backup().await;
    let url = env.link(Some(json!({ "file": "db.dump" }))).await;
    assert!(
        url.starts_with(&format!("/download/{CUSTOMER}/{BACKUP}?file=db.dump&exp=")),
        "{url}"
    );
    assert_eq!(param(&url, "kid"), downloads::DERIVED_KID);
    let exp: u64 = param(&url, "exp").parse().unwrap();
    let now = unix_now();
    assert!(exp > now + 800 && exp <= now + 901, "{exp} vs {now}");

    let r = env.get_as(&url, None, &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.bytes, db_bytes());
    assert_eq!(r.header(header::ETAG), format!("\"{}\"", sha(&db_bytes())));
    let r = env.get_as(&url, None, &[("range", "bytes=10-19")]).await;
    assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.bytes, &db_bytes()[10..20]);

    // The whole backup, with a chosen lifetime.
    let url = env.link(Some(json!({ "ttlSeconds": 60 }))).await;
    assert!(!url.contains("file="), "{url}");
    let exp: u64 = param(&url, "exp").parse().unwrap();
    assert!(exp <= unix_now() + 60);
    let r = env.get_as(&url, None, &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header(header::CONTENT_TYPE), "application/x-tar");
    // An empty body is fine too.
    env.link(None).await;

    // Bad requests for links.
    let base = format!("/api/customers/{CUSTOMER}/backups/{BACKUP}/download-url");
    for body in [
        json!({ "ttlSeconds": 0 }),
        json!({ "ttlSeconds": 86401 }),
        json!({ "file": "../x" }),
        json!({ "surprise": 1 }),
    ] {
        env.call("POST", &base, Some(body.clone()))
            .await
            .problem(StatusCode::BAD_REQUEST);
    }
    env.call("POST", &base, Some(json!({ "file": "nope.bin" })))
        .await
        .problem(StatusCode::NOT_FOUND);
    env.call(
        "POST",
        &format!("/api/customers/{CUSTOMER}/backups/20250101-000000/download-url"),
        None,
    )
    .await
    .problem(StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn tampered_expired_and_foreign_links_are_refused() {
    let env = env_with(Some(TOKEN)).with_backup().await;
    let url = env.link(Some(json!({ "file": "db.dump" }))).await;
    let refused = |r: Reply| {
        let detail = r.problem(StatusCode::FORBIDDEN);
        assert_eq!(detail, "invalid or expired link");
    };

    // A later expiry than signed.
    let exp: u64 = param(&url, "exp").parse().unwrap();
    refused(
        env.get_as(&with_param(&url, "exp", &(exp + 1).to_string()), None, &[])
            .await,
    );
    // Another file than signed.
    refused(
        env.get_as(&with_param(&url, "file", "uploads.bin"), None, &[])
            .await,
    );
    // Every byte of the signature matters.
    let sig = param(&url, "sig");
    for i in 0..sig.len() {
        let mut bad = sig.clone().into_bytes();
        bad[i] = if bad[i] == b'0' { b'1' } else { b'0' };
        let bad = String::from_utf8(bad).unwrap();
        refused(env.get_as(&with_param(&url, "sig", &bad), None, &[]).await);
    }
    refused(
        env.get_as(&with_param(&url, "sig", &sig[..sig.len() - 2]), None, &[])
            .await,
    );
    refused(env.get_as(&with_param(&url, "sig", "zz"), None, &[]).await);
    // An unknown kid.
    refused(env.get_as(&with_param(&url, "kid", "k9"), None, &[]).await);
    // Missing parts.
    refused(
        env.get_as(&format!("/download/{CUSTOMER}/{BACKUP}"), None, &[])
            .await,
    );
    // Properly signed, but expired.
    let key = downloads::derived_key(TOKEN);
    let past = unix_now() - 10;
    let expired = downloads::signed_path(&key, CUSTOMER, BACKUP, Some("db.dump"), past, "k0");
    refused(env.get_as(&expired, None, &[]).await);
    // The same signing function with a future expiry is accepted (the check above is the expiry).
    let fresh = downloads::signed_path(
        &key,
        CUSTOMER,
        BACKUP,
        Some("db.dump"),
        unix_now() + 60,
        "k0",
    );
    assert_eq!(env.get_as(&fresh, None, &[]).await.status, StatusCode::OK);
    // Signed with another key.
    let foreign = downloads::signed_path(
        b"not the key",
        CUSTOMER,
        BACKUP,
        Some("db.dump"),
        unix_now() + 60,
        "k0",
    );
    refused(env.get_as(&foreign, None, &[]).await);

    // After the backup is deleted the genuine link no longer serves it.
    let r = env
        .call(
            "DELETE",
            &format!("/api/customers/{CUSTOMER}/backups/{BACKUP}"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = env.get_as(&url, None, &[]).await;
    assert!(
        matches!(r.status, StatusCode::NOT_FOUND | StatusCode::FORBIDDEN),
        "{}",
        r.status
    );
}

#[tokio::test]
async fn without_any_key_links_are_unavailable() {
    let env = env_with(None);
    let key = downloads::derived_key(TOKEN);
    let url = downloads::signed_path(&key, CUSTOMER, BACKUP, None, unix_now() + 60, "k0");
    env.get_as(&url, None, &[])
        .await
        .problem(StatusCode::SERVICE_UNAVAILABLE);
}

/// Slow clients of whole-backup tars hold no blocking thread: with a pool of two blocking
/// threads, four downloads whose clients stop reading leave room for a fifth that completes.
#[test]
fn stalled_tar_downloads_hold_no_thread() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // On failure, threads stuck in the old way would keep the runtime from shutting down.
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rt.block_on(async {
        let all = async {
        let env = env_with(Some(TOKEN)).with_backup().await;
        // 4 MiB of uploads: far more than any buffer between the file and a stalled client.
        let big: Vec<u8> = (0..4u32 << 20).map(|i| (i % 251) as u8).collect();
        let dir = env.backup_dir();
        std::fs::write(dir.join("uploads.bin"), &big).unwrap();
        let db = db_bytes();
        let manifest = json!({
            "formatVersion": 1,
            "id": BACKUP,
            "artifacts": [
                { "name": "db", "file": "db.dump", "size": db.len(), "sha256": sha(&db) },
                { "name": "uploads", "file": "uploads.bin", "size": big.len(), "sha256": sha(&big) },
            ],
        });
        std::fs::write(dir.join("backup.json"), manifest.to_string()).unwrap();
        let uri = format!("/api/customers/{CUSTOMER}/backups/{BACKUP}/download");
        let request = || {
            Request::builder()
                .uri(&uri)
                .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
                .body(Body::empty())
                .unwrap()
        };
        let mut stalled = Vec::new();
        for _ in 0..4 {
            let res = env.app().oneshot(request()).await.unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            let mut body = res.into_body();
            // Read one frame, then stop reading, as a client on a slow line would.
            body.frame().await.unwrap().unwrap();
            stalled.push(body);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let r = tokio::time::timeout(Duration::from_secs(20), env.send(request()))
            .await
            .expect("a download waited for the stalled ones");
        assert_eq!(r.status, StatusCode::OK);
        let mut archive = tar::Archive::new(r.bytes.as_slice());
        let sizes: Vec<u64> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().size())
            .collect();
        let manifest_len = std::fs::metadata(dir.join("backup.json")).unwrap().len();
        assert_eq!(
            sizes.iter().sum::<u64>(),
            (big.len() + db.len()) as u64 + manifest_len
        );
        drop(stalled);
        };
        tokio::time::timeout(Duration::from_secs(30), all)
            .await
            .expect("downloads waited for the stalled ones");
    })
    }));
    rt.shutdown_timeout(Duration::from_secs(1));
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// The node that holds the backup in the multi-node tests, and where it says its API is.
const OWNER: &str = "web-2";
const OWNER_URL: &str = "http://10.0.0.2:8610";

/// Two hosts on one store: `test` (this one, without the backup) and `OWNER`, which has customer
/// 42 with its backup in its folder and in the shared history. `OWNER` beat with `advertised`.
async fn two_nodes(advertised: Option<&str>) -> (Env, Env) {
    let store: Arc<dyn qodify_host::store::Store> =
        Arc::new(SqliteStore::open_in_memory().unwrap());
    let here = env_on(store.clone(), Some(TOKEN));
    let mut owner = env_on(store.clone(), Some(TOKEN));
    Arc::make_mut(&mut owner.state.settings).node = OWNER.into();
    let owner = owner.with_backup().await;
    store.move_customer(CUSTOMER, OWNER).unwrap();
    store
        .record_backup(&qodify_host::store::BackupRecord {
            customer_id: CUSTOMER.into(),
            run_id: "0193a000-0000-7000-8000-000000000001".into(),
            backup_id: Some(BACKUP.into()),
            kind: "fast".into(),
            size: Some(100),
            duration_ms: Some(1000),
            result: "succeeded".into(),
            triggered_by: None,
            created_at: "2026-01-01T00:00:01Z".into(),
            note: None,
        })
        .unwrap();
    store
        .heartbeat(&qodify_host::store::NodeBeat {
            name: OWNER.into(),
            version: "0".into(),
            started_at: "2026-01-01T00:00:00Z".into(),
            advertise_url: advertised.map(str::to_owned),
        })
        .unwrap();
    (here, owner)
}

/// Where a 307 sends the client, checked to be `OWNER_URL` + `path_and_query`, and that path.
fn redirected(r: &Reply, path_and_query: &str) -> String {
    assert_eq!(
        r.status,
        StatusCode::TEMPORARY_REDIRECT,
        "{}",
        String::from_utf8_lossy(&r.bytes)
    );
    assert_eq!(
        r.header(header::LOCATION),
        format!("{OWNER_URL}{path_and_query}")
    );
    assert_eq!(r.header(header::CACHE_CONTROL), "no-store");
    r.header(header::LOCATION)
        .strip_prefix(OWNER_URL)
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_host_without_the_backup_redirects_downloads_to_the_node_that_has_it() {
    let (here, owner) = two_nodes(Some(OWNER_URL)).await;
    let db = db_bytes();

    // One file, with its query and a range: the same path and query on the owner, which
    // serves it (the client sends the token and the range again).
    let r = here
        .get(&file_url("db.dump"), &[("range", "bytes=10-19")])
        .await;
    let there = redirected(&r, &file_url("db.dump"));
    let r = owner.get(&there, &[("range", "bytes=10-19")]).await;
    assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.bytes, &db[10..20]);
    let r = owner.get(&there, &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(sha(&r.bytes), sha(&db));
    // The whole backup: no query, none added.
    let whole = format!("/api/customers/{CUSTOMER}/backups/{BACKUP}/download");
    redirected(&here.get(&whole, &[]).await, &whole);
    // Still behind the token, and bad names are refused here rather than sent on.
    here.get_as(&file_url("db.dump"), None, &[])
        .await
        .problem(StatusCode::UNAUTHORIZED);
    here.get(&file_url(".."), &[])
        .await
        .problem(StatusCode::BAD_REQUEST);

    // A signed link issued through this host (checked against the shared history) is sent
    // as it is to the owner, where its signature verifies: both hosts have the same key.
    let link = here.link(Some(json!({ "file": "db.dump" }))).await;
    let there = redirected(&here.get_as(&link, None, &[]).await, &link);
    assert_eq!(there, link);
    let r = owner.get_as(&there, None, &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(sha(&r.bytes), sha(&db));
    // A tampered link gets the same 403 here as anywhere, not a redirect.
    let bad = with_param(&link, "file", "uploads.bin");
    here.get_as(&bad, None, &[])
        .await
        .problem(StatusCode::FORBIDDEN);
    // No link for a backup the history does not have.
    let r = here
        .call(
            "POST",
            &format!("/api/customers/{CUSTOMER}/backups/20250101-000000/download-url"),
            None,
        )
        .await;
    let detail = r.problem(StatusCode::NOT_FOUND);
    assert!(detail.contains(OWNER), "{detail}");
}

#[tokio::test]
async fn a_node_that_advertises_no_url_is_named_in_a_409() {
    let (here, owner) = two_nodes(None).await;
    let link = owner.link(Some(json!({ "file": "db.dump" }))).await;
    let r = here.get(&file_url("db.dump"), &[]).await;
    let detail = r.problem(StatusCode::CONFLICT);
    assert_eq!(r.json["node"], OWNER, "{}", r.json);
    assert!(
        detail.contains(&format!("on node {OWNER}")) && detail.contains("advertise_url"),
        "{detail}"
    );
    let r = here.get_as(&link, None, &[]).await;
    r.problem(StatusCode::CONFLICT);
    assert_eq!(r.json["node"], OWNER, "{}", r.json);
    // Nor is a link issued that could not be followed.
    let r = here
        .call(
            "POST",
            &format!("/api/customers/{CUSTOMER}/backups/{BACKUP}/download-url"),
            None,
        )
        .await;
    r.problem(StatusCode::CONFLICT);
    // The owner itself still serves it.
    let r = owner.get(&file_url("db.dump"), &[]).await;
    assert_eq!(r.status, StatusCode::OK);

    // A node that never beat: start it, or move the customer.
    here.state.store.move_customer(CUSTOMER, "web-9").unwrap();
    let r = here.get(&file_url("db.dump"), &[]).await;
    let detail = r.problem(StatusCode::CONFLICT);
    assert_eq!(r.json["node"], "web-9", "{}", r.json);
    assert!(
        detail.contains("never sent a heartbeat") && detail.contains("PUT /api/customers/42"),
        "{detail}"
    );
}

#[tokio::test]
async fn a_node_advertising_this_hosts_own_url_is_refused_rather_than_looped() {
    let (mut here, _owner) = two_nodes(Some(OWNER_URL)).await;
    Arc::make_mut(&mut here.state.settings).advertise_url = Some(OWNER_URL.into());
    let r = here.get(&file_url("db.dump"), &[]).await;
    let detail = r.problem(StatusCode::CONFLICT);
    assert!(
        detail.contains("its own node name and advertise_url"),
        "{detail}"
    );
}

#[tokio::test]
async fn a_customer_of_this_node_is_served_here_as_before() {
    let env = env_with(Some(TOKEN)).with_backup().await;
    env.state.store.move_customer(CUSTOMER, "test").unwrap();
    // Another node advertising a URL changes nothing for this node's customers.
    env.state
        .store
        .heartbeat(&qodify_host::store::NodeBeat {
            name: OWNER.into(),
            version: "0".into(),
            started_at: "2026-01-01T00:00:00Z".into(),
            advertise_url: Some(OWNER_URL.into()),
        })
        .unwrap();
    let r = env.get(&file_url("db.dump"), &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.bytes, db_bytes());
    let link = env.link(Some(json!({ "file": "db.dump" }))).await;
    let r = env.get_as(&link, None, &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.bytes, db_bytes());
}
