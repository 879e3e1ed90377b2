//! Signing in and what each role may do, driven in-process: named tokens (API and use case),
//! the session cookie and its CSRF token, revocation, the actor the audit log and history
//! record, the security headers, the console at `/`, and `x-required-role` in the document.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use http_body_util::BodyExt as _;
use qodify_host::api;
use qodify_host::auth::Role;
use qodify_host::ops::access;
use qodify_host::store::sqlite::SqliteStore;
use serde_json::{Value, json};
use tower::ServiceExt as _;

mod common;
use common::{Env, env_on};

const SERVICE_TOKEN: &str = "s3rvice-t0ken";

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    text: String,
    json: Value,
}

/// How a request signs in.
#[derive(Clone, Copy)]
enum Cred<'a> {
    None,
    Bearer(&'a str),
    /// The session cookie, with a CSRF token or not.
    Cookie(&'a str, Option<&'a str>),
}

async fn send(env: &Env, method: &str, uri: &str, cred: Cred<'_>, body: Option<Value>) -> Reply {
    let mut b = Request::builder().method(method).uri(uri);
    match cred {
        Cred::None => {}
        Cred::Bearer(t) => b = b.header(header::AUTHORIZATION, format!("Bearer {t}")),
        Cred::Cookie(c, csrf) => {
            b = b.header(header::COOKIE, format!("other=1; qodify_session={c}"));
            if let Some(csrf) = csrf {
                b = b.header("x-csrf-token", csrf);
            }
        }
    }
    let req = match body {
        Some(v) => b
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(v.to_string()))
            .unwrap(),
        None => b.body(Body::empty()).unwrap(),
    };
    let res = api::router(env.state.clone()).oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = tokio::time::timeout(Duration::from_secs(20), res.into_body().collect())
        .await
        .unwrap()
        .unwrap()
        .to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        text,
        json,
    }
}

fn env() -> Env {
    env_on(
        Arc::new(SqliteStore::open_in_memory().unwrap()),
        Some(SERVICE_TOKEN),
    )
}

/// Adds a token through the use case the CLI calls; its secret.
fn token(env: &Env, name: &str, role: Role) -> String {
    access::add_token(&env.state, name, role, "cli:test")
        .unwrap()
        .secret
}

/// Signs in with `token`: the cookie's value and the CSRF token.
async fn sign_in(env: &Env, token: &str) -> (String, String, Reply) {
    let r = send(
        env,
        "POST",
        "/api/session",
        Cred::None,
        Some(json!({ "token": token })),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let set_cookie = r.headers[header::SET_COOKIE].to_str().unwrap().to_owned();
    let value = set_cookie
        .strip_prefix("qodify_session=")
        .and_then(|v| v.split(';').next())
        .unwrap()
        .to_owned();
    let csrf = r.json["csrfToken"].as_str().unwrap().to_owned();
    (value, csrf, r)
}

fn problem(r: &Reply, status: StatusCode) -> String {
    assert_eq!(r.status, status, "{}", r.text);
    assert_eq!(r.headers[header::CONTENT_TYPE], "application/problem+json");
    r.json["detail"].as_str().unwrap().to_owned()
}

async fn register(env: &Env, id: &str, domain: &str, cred: Cred<'_>) -> Reply {
    send(
        env,
        "PUT",
        &format!("/api/customers/{id}"),
        cred,
        Some(json!({ "domain": domain })),
    )
    .await
}

#[tokio::test]
async fn each_role_may_do_what_the_policy_says_and_no_more() {
    let env = env();
    let viewer = token(&env, "support-veli", Role::Viewer);
    let operator = token(&env, "ops-anna", Role::Operator);
    let admin = token(&env, "admin-deniz", Role::Admin);

    // Reads: every role.
    for t in [&viewer, &operator, &admin] {
        let r = send(&env, "GET", "/api/customers", Cred::Bearer(t), None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let r = send(&env, "GET", "/metrics", Cred::Bearer(t), None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }
    // Changes: operators and admins; the viewer is told what role it needs.
    let r = register(&env, "c1", "shop.example.com", Cred::Bearer(&viewer)).await;
    let detail = problem(&r, StatusCode::FORBIDDEN);
    assert!(
        detail.contains("support-veli is a viewer") && detail.contains("operator"),
        "{detail}"
    );
    let r = register(&env, "c1", "shop.example.com", Cred::Bearer(&operator)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = send(
        &env,
        "POST",
        "/api/customers/c1/backups",
        Cred::Bearer(&viewer),
        None,
    )
    .await;
    problem(&r, StatusCode::FORBIDDEN);
    // A backup's bytes are an operator's to take.
    let r = send(
        &env,
        "GET",
        "/api/customers/c1/backups/20261126-101500/download",
        Cred::Bearer(&viewer),
        None,
    )
    .await;
    problem(&r, StatusCode::FORBIDDEN);
    // Tokens: admins only (the service token is one).
    for t in [&viewer, &operator] {
        let r = send(&env, "GET", "/api/tokens", Cred::Bearer(t), None).await;
        problem(&r, StatusCode::FORBIDDEN);
    }
    for t in [admin.as_str(), SERVICE_TOKEN] {
        let r = send(&env, "GET", "/api/tokens", Cred::Bearer(t), None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let names: Vec<&str> = r.json["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["admin-deniz", "ops-anna", "support-veli"]);
        assert!(
            !r.text.contains("qdf_"),
            "no secret is ever listed: {}",
            r.text
        );
    }
    // A wrong or unknown token is refused as such.
    let r = send(&env, "GET", "/api/customers", Cred::Bearer("qdf_00"), None).await;
    problem(&r, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn admins_add_and_revoke_tokens_over_the_api_and_revoking_ends_sessions() {
    let env = env();
    let admin = token(&env, "admin-deniz", Role::Admin);
    let r = send(
        &env,
        "POST",
        "/api/tokens",
        Cred::Bearer(&admin),
        Some(json!({ "name": "ops-new", "role": "operator" })),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(
        (r.json["name"].as_str(), r.json["role"].as_str()),
        (Some("ops-new"), Some("operator"))
    );
    let secret = r.json["token"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("qdf_"));
    // The same name again, a bad name, the service's name: refused with the reason.
    let again = send(
        &env,
        "POST",
        "/api/tokens",
        Cred::Bearer(&admin),
        Some(json!({ "name": "ops-new", "role": "viewer" })),
    )
    .await;
    problem(&again, StatusCode::CONFLICT);
    for bad in ["service", "a b", ""] {
        let r = send(
            &env,
            "POST",
            "/api/tokens",
            Cred::Bearer(&admin),
            Some(json!({ "name": bad, "role": "viewer" })),
        )
        .await;
        problem(&r, StatusCode::BAD_REQUEST);
    }
    let r = send(
        &env,
        "POST",
        "/api/tokens",
        Cred::Bearer(&admin),
        Some(json!({ "name": "x", "role": "root" })),
    )
    .await;
    problem(&r, StatusCode::BAD_REQUEST);

    // The new token works, and a session opened with it ends when it is revoked.
    let (cookie, _, _) = sign_in(&env, &secret).await;
    let r = send(
        &env,
        "GET",
        "/api/customers",
        Cred::Cookie(&cookie, None),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = send(
        &env,
        "DELETE",
        "/api/tokens/ops-new",
        Cred::Bearer(&admin),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    let r = send(
        &env,
        "GET",
        "/api/customers",
        Cred::Cookie(&cookie, None),
        None,
    )
    .await;
    let detail = problem(&r, StatusCode::UNAUTHORIZED);
    assert!(detail.contains("sign in again"), "{detail}");
    let r = send(&env, "GET", "/api/customers", Cred::Bearer(&secret), None).await;
    problem(&r, StatusCode::UNAUTHORIZED);
    let r = send(
        &env,
        "DELETE",
        "/api/tokens/ops-new",
        Cred::Bearer(&admin),
        None,
    )
    .await;
    problem(&r, StatusCode::NOT_FOUND);

    // All of it is in the audit log, by who did it.
    let r = send(
        &env,
        "GET",
        "/api/audit?limit=50",
        Cred::Bearer(&admin),
        None,
    )
    .await;
    let entries = r.json["entries"].as_array().unwrap();
    let find = |action: &str| {
        entries
            .iter()
            .find(|e| e["action"] == action)
            .unwrap_or_else(|| panic!("no {action} in {entries:?}"))
    };
    assert_eq!(find("token.added")["actor"], "admin-deniz");
    assert_eq!(find("token.revoked")["actor"], "admin-deniz");
    assert_eq!(find("session.started")["actor"], "ops-new");
}

#[tokio::test]
async fn a_session_is_an_http_only_strict_cookie_and_changes_need_its_csrf_token() {
    let env = env();
    let operator = token(&env, "ops-anna", Role::Operator);

    let bad = send(
        &env,
        "POST",
        "/api/session",
        Cred::None,
        Some(json!({ "token": "qdf_nope" })),
    )
    .await;
    let detail = problem(&bad, StatusCode::UNAUTHORIZED);
    assert!(detail.contains("not valid"), "{detail}");
    assert!(!bad.headers.contains_key(header::SET_COOKIE));

    let (cookie, csrf, r) = sign_in(&env, &operator).await;
    let set_cookie = r.headers[header::SET_COOKIE].to_str().unwrap();
    for part in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(set_cookie.contains(part), "{set_cookie}");
    }
    assert!(
        !set_cookie.contains("Secure"),
        "serve speaks plain HTTP by default"
    );
    assert_eq!(r.json["name"], "ops-anna");
    assert_eq!(r.json["role"], "operator");
    assert!(r.json["expiresAt"].as_str().unwrap().ends_with('Z'));
    assert!(!r.text.contains(&operator), "the token never comes back");
    assert!(!cookie.contains(&operator) && cookie.len() >= 64);

    // The session reads itself back (after a reload) with the same CSRF token.
    let me = send(
        &env,
        "GET",
        "/api/session",
        Cred::Cookie(&cookie, None),
        None,
    )
    .await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.text);
    assert_eq!(me.json["csrfToken"], csrf.as_str());

    // Reads need no CSRF token; changes do, and a wrong one is as good as none.
    let r = send(
        &env,
        "GET",
        "/api/customers",
        Cred::Cookie(&cookie, None),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    for given in [None, Some("wrong")] {
        let r = register(&env, "c1", "shop.example.com", Cred::Cookie(&cookie, given)).await;
        let detail = problem(&r, StatusCode::FORBIDDEN);
        assert!(detail.contains("X-CSRF-Token"), "{detail}");
    }
    let r = register(
        &env,
        "c1",
        "shop.example.com",
        Cred::Cookie(&cookie, Some(&csrf)),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);

    // What the session does is recorded under the token's name.
    let r = send(
        &env,
        "POST",
        "/api/customers/c1/backups",
        Cred::Cookie(&cookie, Some(&csrf)),
        Some(json!({})),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let run = send(
        &env,
        "GET",
        r.json["runUrl"].as_str().unwrap(),
        Cred::Cookie(&cookie, None),
        None,
    )
    .await;
    assert_eq!(run.json["triggeredBy"], "ops-anna");
    // A named token cannot claim to be someone else.
    let r = send(
        &env,
        "POST",
        "/api/customers/c1/backups",
        Cred::Bearer(&operator),
        Some(json!({ "triggeredBy": "someone-else", "queue": true })),
    )
    .await;
    problem(&r, StatusCode::BAD_REQUEST);
    // The service token may name the person installer-api acts for, and is `service` otherwise.
    let r = send(
        &env,
        "POST",
        "/api/customers/c1/backups",
        Cred::Bearer(SERVICE_TOKEN),
        Some(json!({ "triggeredBy": "ayse@qodify.com", "queue": true })),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let audit = send(
        &env,
        "GET",
        "/api/audit?customer=c1",
        Cred::Bearer(SERVICE_TOKEN),
        None,
    )
    .await;
    let actors: Vec<&str> = audit.json["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["actor"].as_str())
        .collect();
    assert!(
        actors.contains(&"ops-anna") && actors.contains(&"ayse@qodify.com"),
        "{actors:?}"
    );

    // Signing out needs the CSRF token too, then the cookie is cleared and the session gone.
    let r = send(
        &env,
        "DELETE",
        "/api/session",
        Cred::Cookie(&cookie, None),
        None,
    )
    .await;
    problem(&r, StatusCode::FORBIDDEN);
    let r = send(
        &env,
        "DELETE",
        "/api/session",
        Cred::Cookie(&cookie, Some(&csrf)),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    assert!(
        r.headers[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let r = send(
        &env,
        "GET",
        "/api/session",
        Cred::Cookie(&cookie, None),
        None,
    )
    .await;
    problem(&r, StatusCode::UNAUTHORIZED);
    let r = send(
        &env,
        "GET",
        "/api/customers",
        Cred::Cookie(&cookie, None),
        None,
    )
    .await;
    problem(&r, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_service_token_signs_in_as_an_admin_named_service() {
    let env = env();
    let (_, _, r) = sign_in(&env, SERVICE_TOKEN).await;
    assert_eq!(
        (r.json["name"].as_str(), r.json["role"].as_str()),
        (Some("service"), Some("admin"))
    );
}

#[tokio::test]
async fn named_tokens_alone_enable_the_api() {
    let env = env_on(Arc::new(SqliteStore::open_in_memory().unwrap()), None);
    let r = send(&env, "GET", "/api/customers", Cred::None, None).await;
    let detail = problem(&r, StatusCode::SERVICE_UNAVAILABLE);
    assert!(detail.contains("tokens add"), "{detail}");
    let t = token(&env, "ops-anna", Role::Operator);
    let r = send(&env, "GET", "/api/customers", Cred::None, None).await;
    problem(&r, StatusCode::UNAUTHORIZED);
    let r = send(&env, "GET", "/api/customers", Cred::Bearer(&t), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

#[tokio::test]
async fn every_answer_carries_the_security_headers_and_the_console_is_at_the_root() {
    let env = env();
    for (uri, cred) in [
        ("/", Cred::None),
        ("/healthz", Cred::None),
        ("/api/customers", Cred::Bearer(SERVICE_TOKEN)),
        ("/api/customers", Cred::None),
        ("/api/nothing", Cred::Bearer(SERVICE_TOKEN)),
    ] {
        let r = send(&env, "GET", uri, cred, None).await;
        let csp = r.headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
            "{csp}"
        );
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert_eq!(
            r.headers[header::X_CONTENT_TYPE_OPTIONS],
            "nosniff",
            "{uri}"
        );
        assert_eq!(r.headers[header::X_FRAME_OPTIONS], "DENY", "{uri}");
    }
    let root = send(&env, "GET", "/", Cred::None, None).await;
    assert_eq!(root.status, StatusCode::OK);
    assert!(
        root.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    // Either the built console or the page that says how to build it; never an inline script.
    assert!(
        root.text.contains("<div id=\"root\">") || root.text.contains("cargo xtask build"),
        "{}",
        root.text
    );
    assert!(!root.text.contains("<script>"), "{}", root.text);
    // /api paths stay problem+json 404s; other methods are not the console's.
    let r = send(
        &env,
        "GET",
        "/api/nothing",
        Cred::Bearer(SERVICE_TOKEN),
        None,
    )
    .await;
    problem(&r, StatusCode::NOT_FOUND);
    let r = send(&env, "POST", "/", Cred::None, None).await;
    problem(&r, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_document_states_the_role_each_operation_needs() {
    let env = env();
    let doc = send(&env, "GET", "/openapi.json", Cred::None, None)
        .await
        .json;
    let role = |path: &str, method: &str| {
        doc["paths"][path][method]["x-required-role"]
            .as_str()
            .map(str::to_owned)
    };
    assert_eq!(role("/api/customers", "get").as_deref(), Some("viewer"));
    assert_eq!(
        role("/api/customers/{id}/backups", "post").as_deref(),
        Some("operator")
    );
    assert_eq!(
        role("/api/customers/{id}/backups/{backupId}/download", "get").as_deref(),
        Some("operator")
    );
    assert_eq!(role("/api/tokens", "post").as_deref(), Some("admin"));
    assert_eq!(
        role("/api/tokens/{name}", "delete").as_deref(),
        Some("admin")
    );
    assert_eq!(role("/metrics", "get").as_deref(), Some("viewer"));
    assert_eq!(role("/api/session", "post"), None, "signing in is open");
    assert!(doc["paths"]["/api/session"]["post"]["security"] == json!([{}]));
    // Every other /api operation states one.
    for (path, item) in doc["paths"].as_object().unwrap() {
        if path.starts_with("/api/") && path != "/api/session" {
            for (method, op) in item.as_object().unwrap() {
                assert!(op["x-required-role"].is_string(), "{method} {path}");
            }
        }
    }
}
