//! The OpenAPI 3.1 document of the API, served open at `GET /openapi.json` so installer-api can
//! generate its client. It is made by the same `OpenApiRouter` as the router: every route is
//! registered from its handler's `#[utoipa::path]`, so a route cannot be served undocumented.

use axum::Extension;
use axum::body::Bytes;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::ComponentsBuilder;
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{Content, OpenApi as Document, Ref, RefOr, ResponseBuilder, Schema};
use utoipa::{OpenApi, PartialSchema, ToSchema};

use super::error::{ApiProblem, PROBLEM_JSON};

/// Name of the bearer security scheme.
pub const BEARER: &str = "bearer";
/// Name of the session cookie security scheme.
pub const SESSION: &str = "session";

/// What the document says before the routes add their paths.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "qodify-host",
        description = "Runs Qodify backup, restore and upgrade pipelines for customers: register a \
            customer, queue backups, restores and blue/green upgrades, approve what an upgrade \
            asks, follow runs live (SSE), read the history and \
            the audit log, download backups. Every `/api` route but `/api/session`, and \
            `/metrics`, need a token, `Authorization: Bearer <token>` (the service token \
            QODIFY_API_TOKEN, or a named token from `qodify-host tokens add`), or the web \
            console's session cookie with `X-CSRF-Token` on changes; each operation's \
            `x-required-role` says which role it needs (viewer < operator < admin; the service \
            token is an admin). Errors are `application/problem+json` (`ApiProblem`).",
    ),
    servers((url = "/", description = "The host that serves this document.")),
    components(schemas(ApiProblem)),
    tags(
        (name = "customers", description = "installer-api's customers: id, domain (folder), tier."),
        (name = "backups", description = "Queue backups, read the history, delete a backup."),
        (name = "restores", description = "Queue a restore of a complete backup."),
        (name = "upgrades", description = "Queue a blue/green upgrade to another release."),
        (name = "runs", description = "Runs of pipelines: state, cancellation, live events."),
        (name = "downloads", description = "Backup files and signed, expiring links to them."),
        (name = "audit", description = "Who triggered what."),
        (name = "schedules", description = "What runs on its own, when: tiers' and customers' schedules."),
        (name = "nodes", description = "The hosts sharing one store, their heartbeats and runs."),
        (name = "tokens", description = "Named tokens people and programs sign in with (admins)."),
        (name = "session", description = "The web console's sign-in: a session cookie for a token."),
        (name = "service", description = "Health, metrics and this document."),
    ),
)]
pub struct ApiDoc;

/// A response body of raw bytes (`type: string, format: binary`).
pub struct Binary;

impl PartialSchema for Binary {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
            .into()
    }
}

impl ToSchema for Binary {}

/// Marks every operation of `doc` as needing the bearer token, with the answers the token check
/// gives (401 without or with a wrong token, 503 when the host has none configured). Called
/// where the check is layered on, so the document says it exactly where the router does it.
pub(super) fn require_bearer(doc: &mut Document) {
    let components = doc
        .components
        .get_or_insert_with(|| ComponentsBuilder::new().build());
    components.security_schemes.insert(
        BEARER.to_owned(),
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "The service token (QODIFY_API_TOKEN) or a named token (`qdf_…`).",
                ))
                .build(),
        ),
    );
    components.security_schemes.insert(
        SESSION.to_owned(),
        SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
            super::auth::SESSION_COOKIE,
            "The web console's session (POST /api/session); changes also need X-CSRF-Token.",
        ))),
    );
    for_each_operation(doc, |op| {
        let security = op.security.get_or_insert_with(Vec::new);
        security.push(SecurityRequirement::new::<_, _, &str>(BEARER, []));
        security.push(SecurityRequirement::new::<_, _, &str>(SESSION, []));
        add_problem(op, 401, "No token or session, or a wrong or revoked one.");
        add_problem(
            op,
            403,
            "The caller's role may not do this (`x-required-role`), or a change made with the \
             session cookie lacks its X-CSRF-Token.",
        );
        add_problem(
            op,
            503,
            "The API is disabled: the host has no API token configured.",
        );
    });
}

/// Adds the 500 answer (a reference into the host log, never the cause) to every operation that
/// has problem answers already.
fn add_internal_errors(doc: &mut Document) {
    for_each_operation(doc, |op| {
        let has_problems = op.responses.responses.values().any(|r| match r {
            RefOr::T(r) => r.content.contains_key(PROBLEM_JSON),
            RefOr::Ref(_) => false,
        });
        if has_problems {
            add_problem(
                op,
                500,
                "Internal error; `detail` has a reference to the host log.",
            );
        }
    });
}

/// States [`super::auth::required_role`] on every operation behind it as `x-required-role`:
/// the document and the router read the one policy.
fn add_required_roles(doc: &mut Document) {
    use axum::http::Method;
    for (path, item) in doc.paths.paths.iter_mut() {
        let below_api = match path.strip_prefix("/api") {
            Some("/session") => continue,
            Some(rest) => rest,
            None if path == "/metrics" => path.as_str(),
            None => continue,
        };
        for (method, op) in [
            (Method::GET, &mut item.get),
            (Method::PUT, &mut item.put),
            (Method::POST, &mut item.post),
            (Method::DELETE, &mut item.delete),
            (Method::HEAD, &mut item.head),
            (Method::PATCH, &mut item.patch),
        ] {
            if let Some(op) = op {
                let role = super::auth::required_role(&method, below_api);
                op.extensions
                    .get_or_insert_with(Default::default)
                    .insert("x-required-role".to_owned(), role.as_str().into());
            }
        }
    }
}

fn for_each_operation(doc: &mut Document, mut f: impl FnMut(&mut Operation)) {
    for item in doc.paths.paths.values_mut() {
        for op in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.options,
            &mut item.head,
            &mut item.patch,
            &mut item.trace,
        ]
        .into_iter()
        .flatten()
        {
            f(op);
        }
    }
}

fn add_problem(op: &mut Operation, status: u16, description: &str) {
    let response = ResponseBuilder::new()
        .description(description)
        .content(
            PROBLEM_JSON,
            Content::new(Some(Ref::from_schema_name(ApiProblem::name()))),
        )
        .build();
    op.responses
        .responses
        .entry(status.to_string())
        .or_insert(RefOr::T(response));
}

/// The finished document, rendered once.
#[derive(Clone)]
pub struct Served(Bytes);

impl Served {
    /// Finishes the document the routes made and renders it.
    pub(super) fn new(mut doc: Document) -> Self {
        add_internal_errors(&mut doc);
        add_required_roles(&mut doc);
        let json = doc
            .to_pretty_json()
            .expect("an OpenAPI document always serialises");
        Self(Bytes::from(json + "\n"))
    }
}

/// This document (OpenAPI 3.1), for generating clients.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "service",
    operation_id = "openapi",
    // Open: no token.
    security(()),
    responses((status = 200, description = "The OpenAPI document of this API.", body = Object)),
)]
pub(super) async fn openapi_json(Extension(doc): Extension<Served>) -> Response {
    let mut response = doc.0.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
