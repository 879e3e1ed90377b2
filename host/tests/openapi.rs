//! The OpenAPI document at `GET /openapi.json`: served without a token, the same as the committed
//! `docs/openapi.json` (`UPDATE_EXPECT=1` rewrites it), structurally valid OpenAPI 3.1, matching
//! the router both ways, and describing what the handlers really answer.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt as _;
use qodify_host::api;
use qodify_host::store::sqlite::SqliteStore;
use serde_json::{Value, json};
use tower::ServiceExt as _;

mod common;
use common::{Env, env_on};

const TOKEN: &str = "t0ken";
const DOMAIN: &str = "shop.example.com";
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn env() -> Env {
    env_on(
        Arc::new(SqliteStore::open_in_memory().unwrap()),
        Some(TOKEN),
    )
}

struct Reply {
    status: StatusCode,
    content_type: String,
    text: String,
}

async fn send(env: &Env, method: &str, uri: &str, body: Option<Value>) -> Reply {
    send_as(env, Some(TOKEN), method, uri, body).await
}

async fn send_as(
    env: &Env,
    token: Option<&str>,
    method: &str,
    uri: &str,
    body: Option<Value>,
) -> Reply {
    let mut b = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let body = match body {
        Some(v) => {
            b = b.header(header::CONTENT_TYPE, "application/json");
            Body::from(v.to_string())
        }
        None => Body::empty(),
    };
    let res = api::router(env.state.clone())
        .oneshot(b.body(body).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let content_type = res
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        content_type,
        text: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

/// The served document, fetched without a token.
async fn document(env: &Env) -> Value {
    serde_json::from_str(&document_text(env).await).unwrap()
}

async fn document_text(env: &Env) -> String {
    let res = api::router(env.state.clone())
        .oneshot(
            Request::builder()
                .uri("/openapi.json")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[header::CONTENT_TYPE], "application/json");
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn committed() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json")
}

/// Every (path, method) the document lists.
fn operations(doc: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for m in METHODS {
            if item.get(m).is_some() {
                out.push((path.clone(), m.to_owned()));
            }
        }
    }
    out
}

/// A concrete URI for a path template: each parameter replaced with a value of its shape.
fn concrete(template: &str) -> String {
    template
        .replace("{id}", "42")
        .replace("{backupId}", "20260101-120000")
        .replace("{runId}", "0190f1c2-7a3b-7c4d-8e5f-0123456789ab")
}

/// Is this the router's own answer for an unknown path or method (not a handler's)?
fn is_fallback(r: &Reply) -> bool {
    let detail = serde_json::from_str::<Value>(&r.text).unwrap_or(Value::Null)["detail"].clone();
    (r.status == StatusCode::NOT_FOUND && detail == "no such route")
        || r.status == StatusCode::METHOD_NOT_ALLOWED
}

#[tokio::test]
async fn the_served_document_is_the_committed_docs_openapi_json() {
    let env = env();
    let served = document_text(&env).await;
    let path = committed();
    if std::env::var_os("UPDATE_EXPECT").is_some_and(|v| v == "1") {
        std::fs::write(&path, &served).unwrap();
        return;
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == served,
        "docs/openapi.json differs from what GET /openapi.json serves: run \
         `UPDATE_EXPECT=1 cargo test -p qodify-host --test openapi` and review the diff"
    );
}

#[tokio::test]
async fn the_document_is_valid_openapi_3_1() {
    let env = env();
    let doc = document(&env).await;
    let problems = check_openapi(&doc);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[tokio::test]
async fn every_documented_operation_is_routed_and_no_other_method_is() {
    let env = env();
    let doc = document(&env).await;
    let ops = operations(&doc);
    assert!(ops.len() >= 17, "{ops:?}");
    for (path, method) in &ops {
        let r = send(&env, &method.to_uppercase(), &concrete(path), None).await;
        assert!(
            !is_fallback(&r),
            "{method} {path} is documented but not routed: {} {}",
            r.status,
            r.text
        );
        // The security the document states is the one the router applies.
        let bearer = doc["paths"][path][method]["security"]
            .as_array()
            .is_some_and(|s| {
                s.iter()
                    .any(|r| r.get("bearer").is_some() || r.get("session").is_some())
            });
        let anonymous = send_as(&env, None, &method.to_uppercase(), &concrete(path), None).await;
        assert_eq!(
            anonymous.status == StatusCode::UNAUTHORIZED,
            bearer,
            "{method} {path} without a token: {} {}",
            anonymous.status,
            anonymous.text
        );
    }
    // A method the document does not list for a path is refused by the router, so no handler
    // hides behind a documented path. (axum answers HEAD with the GET handler.)
    let paths: BTreeSet<&String> = ops.iter().map(|(p, _)| p).collect();
    for path in paths {
        let listed: BTreeSet<&str> = ops
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, m)| m.as_str())
            .collect();
        for m in ["get", "put", "post", "delete", "patch", "options"] {
            if listed.contains(m) {
                continue;
            }
            let r = send(&env, &m.to_uppercase(), &concrete(path), None).await;
            assert_eq!(
                r.status,
                StatusCode::METHOD_NOT_ALLOWED,
                "{m} {path} is answered but not documented: {}",
                r.text
            );
        }
    }
}

/// Routes can only be registered through `utoipa_axum::routes!`, which takes path and method
/// from the handler's `#[utoipa::path]`; so nothing in `host/src/api` may build an axum router or
/// method router by hand (that route would be served without being in the document).
#[test]
fn no_route_bypasses_the_document() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api");
    let forbidden = [
        "axum::routing",
        "Router::new(",
        ".route(",
        ".route_service(",
        ".nest_service(",
    ];
    let mut found = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_none_or(|x| x != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            // `OpenApiRouter::new(` is fine; `Router::new(` alone is not.
            let hit = forbidden.iter().any(|f| {
                code.match_indices(f).any(|(i, _)| {
                    !code[..i]
                        .chars()
                        .next_back()
                        .is_some_and(|c| c.is_alphanumeric() || c == '_')
                })
            });
            if hit {
                found.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "register routes with `OpenApiRouter::routes(routes!(handler))` and a \
         `#[utoipa::path]` on the handler, so /openapi.json documents them:\n{}",
        found.join("\n")
    );
}

#[tokio::test]
async fn real_answers_match_their_documented_schemas() {
    let env = env();
    let doc = document(&env).await;
    let backup = make_backup(&env.customers_root, "20260101-120000");
    let mut checked = BTreeSet::new();
    let mut check = async |method: &str, uri: &str, body: Option<Value>, want: u16| -> Value {
        let r = send(&env, method, uri, body).await;
        assert_eq!(r.status.as_u16(), want, "{method} {uri}: {}", r.text);
        let json = conforms(&doc, method, uri, &r);
        checked.insert((method.to_owned(), r.status.as_u16()));
        json
    };

    check("GET", "/healthz", None, 200).await;
    check("GET", "/metrics", None, 200).await;
    check("GET", "/api/customers/42", None, 404).await;
    check("GET", "/api/customers/a%20b", None, 400).await;
    check(
        "PUT",
        "/api/customers/42",
        Some(json!({ "domain": DOMAIN, "tier": "paid" })),
        200,
    )
    .await;
    check(
        "PUT",
        "/api/customers/43",
        Some(json!({ "domain": DOMAIN })),
        409,
    )
    .await;
    check(
        "PUT",
        "/api/customers/42",
        Some(json!({ "domain": 1 })),
        400,
    )
    .await;
    check("GET", "/api/customers/42", None, 200).await;
    let submitted = check(
        "POST",
        "/api/customers/42/backups",
        Some(json!({ "type": "custom", "include": { "logs": true }, "triggeredBy": "ayse" })),
        202,
    )
    .await;
    let run_id = submitted["runId"].as_str().unwrap().to_owned();
    // Busy: the problem names the active run.
    let busy = check("POST", "/api/customers/42/backups", None, 409).await;
    assert_eq!(busy["activeRunId"], run_id.as_str());
    check(
        "POST",
        "/api/customers/42/restores",
        Some(json!({ "backup": "20260101-120000", "include": { "db": false, "services": false, "uploads": false, "envPm2": false } })),
        422,
    )
    .await;
    check("GET", &format!("/api/runs/{run_id}"), None, 200).await;
    check("GET", "/api/runs?customer=42&limit=5", None, 200).await;
    check("GET", "/api/runs?limit=0", None, 400).await;
    check(
        "POST",
        &format!("/api/runs/{run_id}/cancel"),
        Some(Value::Null),
        202,
    )
    .await;
    let finished = check("POST", &format!("/api/runs/{run_id}/cancel"), None, 409).await;
    assert_eq!(finished["state"], "cancelled");
    check(
        "POST",
        "/api/customers/42/restores",
        Some(json!({ "backup": "20260101-120000", "queue": true })),
        202,
    )
    .await;
    check("GET", "/api/customers/42/backups", None, 200).await;
    check("GET", "/api/audit?customer=42", None, 200).await;
    let link = check(
        "POST",
        "/api/customers/42/backups/20260101-120000/download-url",
        Some(json!({ "file": "db.dump", "ttlSeconds": 60 })),
        200,
    )
    .await;
    // JSON Schema's integers include 60.0 (Schemathesis sends such); a fraction is refused.
    check(
        "POST",
        "/api/customers/42/backups/20260101-120000/download-url",
        Some(json!({ "ttlSeconds": 60.0 })),
        200,
    )
    .await;
    let fraction = check(
        "POST",
        "/api/customers/42/backups/20260101-120000/download-url",
        Some(json!({ "ttlSeconds": 60.5 })),
        400,
    )
    .await;
    assert!(
        fraction["detail"]
            .as_str()
            .unwrap()
            .contains("whole number"),
        "{fraction}"
    );
    check(
        "GET",
        "/api/customers/42/backups/20260101-120000/download?file=db.dump",
        None,
        200,
    )
    .await;
    check(
        "GET",
        "/api/customers/42/backups/20260101-120000/download?file=nope.bin",
        None,
        404,
    )
    .await;
    check("GET", link["url"].as_str().unwrap(), None, 200).await;
    check(
        "GET",
        "/download/42/20260101-120000?exp=1&kid=k0&sig=00",
        None,
        403,
    )
    .await;
    assert!(backup.is_dir());
    assert!(checked.len() >= 10, "{checked:?}");

    // The validator itself refuses what does not conform.
    let problem = json!({ "$ref": "#/components/schemas/ApiProblem" });
    for wrong in [
        json!({ "type": 1, "title": "x", "status": 400, "detail": "x" }),
        json!({ "title": "x", "status": 400, "detail": "x" }),
        json!({ "type": "about:blank", "title": "x", "status": 400, "detail": "x", "state": "nope" }),
    ] {
        let mut errors = Vec::new();
        validate(&doc, &problem, &wrong, "$", &mut errors);
        assert!(!errors.is_empty(), "{wrong} passed");
    }
}

/// A complete backup folder of customer [`DOMAIN`] with one artifact.
fn make_backup(customers_root: &Path, id: &str) -> PathBuf {
    let dir = customers_root.join(DOMAIN).join("backups").join(id);
    std::fs::create_dir_all(&dir).unwrap();
    let data = b"pretend pg_dump output";
    std::fs::write(dir.join("db.dump"), data).unwrap();
    let manifest = json!({
        "formatVersion": 1,
        "id": id,
        "artifacts": [{ "name": "db", "file": "db.dump", "size": data.len(), "sha256": "00" }],
    });
    std::fs::write(dir.join("backup.json"), manifest.to_string()).unwrap();
    dir
}

/// Checks an answer against the document: its status and content type are listed for the
/// operation, and a JSON body conforms to the schema. Returns the JSON body (or null).
fn conforms(doc: &Value, method: &str, uri: &str, r: &Reply) -> Value {
    let path = uri.split('?').next().unwrap();
    let template = doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .find(|t| matches_template(t, path))
        .unwrap_or_else(|| panic!("{path} matches no documented path"));
    let op = &doc["paths"][template][method.to_lowercase()];
    let response = &op["responses"][r.status.as_str()];
    assert!(
        response.is_object(),
        "{method} {template}: {} is not documented",
        r.status
    );
    if r.status == StatusCode::NO_CONTENT {
        return Value::Null;
    }
    let media = r.content_type.split(';').next().unwrap().trim();
    let content = &response["content"][media];
    assert!(
        content.is_object(),
        "{method} {template} {}: content type {media} is not documented",
        r.status
    );
    if !media.ends_with("json") {
        return Value::Null;
    }
    let body: Value = serde_json::from_str(&r.text).unwrap();
    let mut errors = Vec::new();
    validate(doc, &content["schema"], &body, "$", &mut errors);
    assert!(
        errors.is_empty(),
        "{method} {uri} {}: {}\n{}",
        r.status,
        errors.join("\n"),
        r.text
    );
    body
}

fn matches_template(template: &str, path: &str) -> bool {
    let (t, p): (Vec<&str>, Vec<&str>) = (template.split('/').collect(), path.split('/').collect());
    t.len() == p.len()
        && t.iter()
            .zip(&p)
            .all(|(t, p)| (t.starts_with('{') && t.ends_with('}')) || t == p)
}

fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => {
            let name = r.strip_prefix("#/components/schemas/").unwrap();
            &doc["components"]["schemas"][name]
        }
        None => schema,
    }
}

/// A JSON Schema validator for the keywords utoipa writes (`$ref`, `type`, `enum`, `required`,
/// `properties`, `additionalProperties`, `items`, `oneOf`, `allOf`, bounds); formats and
/// patterns are left to Schemathesis.
fn validate(doc: &Value, schema: &Value, v: &Value, at: &str, errors: &mut Vec<String>) {
    let s = resolve(doc, schema);
    if let Some(t) = s.get("type") {
        let types: Vec<&str> = match t {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let ok = types.iter().any(|t| match *t {
            "null" => v.is_null(),
            "boolean" => v.is_boolean(),
            "integer" => v.is_i64() || v.is_u64(),
            "number" => v.is_number(),
            "string" => v.is_string(),
            "array" => v.is_array(),
            "object" => v.is_object(),
            _ => false,
        });
        if !ok {
            errors.push(format!("{at}: {v} is not of type {t}"));
            return;
        }
    }
    if let Some(e) = s.get("enum").and_then(Value::as_array)
        && !e.contains(v)
    {
        errors.push(format!("{at}: {v} is not one of {e:?}"));
    }
    if let Some(n) = v.as_f64()
        && (s["minimum"].as_f64().is_some_and(|m| n < m)
            || s["maximum"].as_f64().is_some_and(|m| n > m))
    {
        errors.push(format!("{at}: {n} is out of bounds"));
    }
    if let Some(one) = s.get("oneOf").and_then(Value::as_array) {
        let matching = one
            .iter()
            .filter(|alt| {
                let mut e = Vec::new();
                validate(doc, alt, v, at, &mut e);
                e.is_empty()
            })
            .count();
        if matching != 1 {
            errors.push(format!("{at}: {v} matches {matching} of oneOf"));
        }
    }
    for all in s
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        validate(doc, all, v, at, errors);
    }
    if let Some(obj) = v.as_object() {
        for r in s
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if !obj.contains_key(r.as_str().unwrap()) {
                errors.push(format!("{at}: required {r} is missing"));
            }
        }
        let props = s.get("properties").and_then(Value::as_object);
        for (k, val) in obj {
            match props.and_then(|p| p.get(k)) {
                Some(p) => validate(doc, p, val, &format!("{at}.{k}"), errors),
                None => match s.get("additionalProperties") {
                    Some(Value::Bool(false)) => {
                        errors.push(format!("{at}: {k} is not a documented property"));
                    }
                    Some(a @ Value::Object(_)) => {
                        validate(doc, a, val, &format!("{at}.{k}"), errors)
                    }
                    _ => {}
                },
            }
        }
    }
    if let (Some(items), Some(arr)) = (s.get("items"), v.as_array()) {
        for (i, x) in arr.iter().enumerate() {
            validate(doc, items, x, &format!("{at}[{i}]"), errors);
        }
    }
}

/// The structural rules of OpenAPI 3.1 this document must keep (what a client generator relies
/// on): required fields, operation ids unique, every path template parameter declared (and only
/// those), every `$ref`, tag and security scheme defined, schemas well-formed.
fn check_openapi(doc: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    let mut err = |s: String| errors.push(s);
    if !doc["openapi"]
        .as_str()
        .is_some_and(|v| v.starts_with("3.1."))
    {
        err(format!("openapi must be 3.1.x, not {}", doc["openapi"]));
    }
    for f in ["title", "version"] {
        if !doc["info"][f].is_string() {
            err(format!("info.{f} must be a string"));
        }
    }
    let schemas = doc["components"]["schemas"].as_object();
    let schemes = doc["components"]["securitySchemes"].as_object();
    let tags: BTreeSet<&str> = doc["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["name"].as_str())
        .collect();
    let mut op_ids = BTreeMap::new();
    let Some(paths) = doc["paths"].as_object() else {
        return vec!["paths must be an object".into()];
    };
    for (path, item) in paths {
        if !path.starts_with('/') {
            err(format!("path {path} must start with /"));
        }
        let templated: BTreeSet<&str> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        for (key, op) in item.as_object().unwrap() {
            if !METHODS.contains(&key.as_str()) {
                if !["summary", "description", "servers", "parameters"].contains(&key.as_str()) {
                    err(format!("{path}: unknown field {key}"));
                }
                continue;
            }
            let at = format!("{} {path}", key.to_uppercase());
            match op["operationId"].as_str() {
                Some(id) => {
                    if let Some(other) = op_ids.insert(id.to_owned(), at.clone()) {
                        err(format!("{at}: operationId {id} is also {other}'s"));
                    }
                }
                None => err(format!("{at}: no operationId")),
            }
            for t in op["tags"].as_array().into_iter().flatten() {
                if !tags.contains(t.as_str().unwrap_or_default()) {
                    err(format!("{at}: tag {t} is not declared"));
                }
            }
            let mut declared = BTreeSet::new();
            let mut seen = BTreeSet::new();
            for p in op["parameters"].as_array().into_iter().flatten() {
                let (name, place) = (p["name"].as_str(), p["in"].as_str());
                let (Some(name), Some(place)) = (name, place) else {
                    err(format!("{at}: a parameter needs name and in"));
                    continue;
                };
                if !["path", "query", "header", "cookie"].contains(&place) {
                    err(format!("{at}: parameter {name} is in {place}"));
                }
                if !seen.insert((name, place)) {
                    err(format!("{at}: parameter {name} ({place}) is listed twice"));
                }
                if place == "path" {
                    declared.insert(name);
                    if p["required"] != true {
                        err(format!("{at}: path parameter {name} must be required"));
                    }
                }
                if p.get("schema").is_none() == p.get("content").is_none() {
                    err(format!("{at}: parameter {name} needs schema or content"));
                }
            }
            if declared != templated {
                err(format!(
                    "{at}: path parameters {declared:?} differ from the template's {templated:?}"
                ));
            }
            if let Some(body) = op.get("requestBody")
                && body["content"].as_object().is_none_or(|c| c.is_empty())
            {
                err(format!("{at}: requestBody needs content"));
            }
            match op["responses"].as_object() {
                Some(rs) if !rs.is_empty() => {
                    for (status, r) in rs {
                        let ok = status == "default"
                            || (status.len() == 3
                                && (b'1'..=b'5').contains(&status.as_bytes()[0])
                                && status[1..].bytes().all(|b| b.is_ascii_digit() || b == b'X'));
                        if !ok {
                            err(format!("{at}: response key {status}"));
                        }
                        if !r["description"].is_string() {
                            err(format!("{at} {status}: no description"));
                        }
                    }
                }
                _ => err(format!("{at}: no responses")),
            }
            for req in op["security"].as_array().into_iter().flatten() {
                for name in req.as_object().into_iter().flatten().map(|(k, _)| k) {
                    if !schemes.is_some_and(|s| s.contains_key(name)) {
                        err(format!("{at}: security scheme {name} is not defined"));
                    }
                }
            }
        }
    }
    // Every $ref resolves; every schema is well-formed.
    let mut refs = Vec::new();
    collect_refs(doc, &mut refs);
    for r in refs {
        let ok = r
            .strip_prefix("#/components/schemas/")
            .is_some_and(|n| schemas.is_some_and(|s| s.contains_key(n)));
        if !ok {
            errors.push(format!("$ref {r} does not resolve"));
        }
    }
    for (name, s) in schemas.into_iter().flatten() {
        check_schema(s, &format!("#/components/schemas/{name}"), &mut errors);
    }
    errors
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref") {
                out.push(r.clone());
            }
            m.values().for_each(|x| collect_refs(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| collect_refs(x, out)),
        _ => {}
    }
}

fn check_schema(s: &Value, at: &str, errors: &mut Vec<String>) {
    const TYPES: [&str; 7] = [
        "null", "boolean", "object", "array", "number", "string", "integer",
    ];
    let Some(m) = s.as_object() else {
        if !s.is_boolean() {
            errors.push(format!("{at}: a schema is an object or a boolean"));
        }
        return;
    };
    match m.get("type") {
        None => {}
        Some(Value::String(t)) if TYPES.contains(&t.as_str()) => {}
        Some(Value::Array(ts))
            if ts
                .iter()
                .all(|t| TYPES.contains(&t.as_str().unwrap_or("?"))) => {}
        Some(t) => errors.push(format!("{at}: bad type {t}")),
    }
    if let Some(req) = m.get("required") {
        let props = m.get("properties").and_then(Value::as_object);
        for r in req.as_array().into_iter().flatten() {
            if !props.is_some_and(|p| p.contains_key(r.as_str().unwrap_or_default())) {
                errors.push(format!("{at}: required {r} is not a property"));
            }
        }
    }
    for (k, sub) in m
        .get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        check_schema(sub, &format!("{at}/properties/{k}"), errors);
    }
    for k in ["items", "additionalProperties", "propertyNames"] {
        if let Some(sub) = m.get(k) {
            check_schema(sub, &format!("{at}/{k}"), errors);
        }
    }
    for k in ["oneOf", "anyOf", "allOf"] {
        for (i, sub) in m
            .get(k)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            check_schema(sub, &format!("{at}/{k}/{i}"), errors);
        }
    }
}
