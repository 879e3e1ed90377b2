//! The HTTP surface of `qodify-host serve` (API paths fixed by the plan, §5): customers, backups
//! and their downloads (Range, signed expiring links), restores, runs with their live events
//! (SSE), the audit log, upgrades and approvals, named tokens and the console's session,
//! `/healthz`, `/metrics`, its OpenAPI document at `/openapi.json`, and the web console at `/`
//! (`console`). It is a function of the shared [`AppState`]: [`router`] builds it, one router per
//! resource, all behind a token or the session cookie and one role policy (`auth`); every error
//! is an [`ApiError`] answered as `application/problem+json`. Every route is registered from its
//! handler's `#[utoipa::path]`, so the document lists exactly what is served. Live events also go
//! out over Socket.IO at `/socket.io` (`socketio`; a layer, so not in the document).

mod audit;
pub mod auth;
mod backups;
mod console;
mod customers;
pub mod downloads;
mod error;
mod events;
mod extract;
mod metrics;
mod nodes;
mod openapi;
mod restores;
mod runs;
mod schedules;
mod session;
mod socketio;
mod tokens;
mod upgrades;

use axum::middleware;
use axum::{Extension, Json, Router};
use utoipa::{OpenApi as _, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::ops::AppState;

pub use error::{ApiError, ApiProblem, PROBLEM_JSON};

/// The whole HTTP surface: `GET /healthz` and `GET /openapi.json` (open), `/api/session`
/// (signing in), `/api/*` and `/metrics` (a token or the session cookie, and the role the policy
/// asks), signed `/download/…` links (open, checked by signature), and the web console at `/`.
/// Every answer carries the security headers (a strict Content-Security-Policy among them).
pub fn router(state: AppState) -> Router {
    let (router, doc) = routes(&state).split_for_parts();
    router
        .layer(Extension(openapi::Served::new(doc)))
        .fallback(console::serve)
        .method_not_allowed_fallback(method_not_allowed)
        // Answers `/socket.io/` (live events; its own token check) and passes the rest on.
        .layer(socketio::layer(&state))
        .layer(middleware::from_fn(auth::security_headers))
        .with_state(state)
}

/// Every route with its OpenAPI operation; [`router`] and `/openapi.json` are both made from it.
fn routes(state: &AppState) -> OpenApiRouter<AppState> {
    let signing_keys = downloads::SigningKeys::from_env(&state.settings);
    let api = OpenApiRouter::new()
        .merge(customers::router())
        .merge(backups::router())
        .merge(restores::router())
        .merge(upgrades::router())
        .merge(runs::router())
        .merge(events::router())
        .merge(audit::router())
        .merge(nodes::router())
        .merge(schedules::router())
        .merge(downloads::api_router(signing_keys.clone()))
        .merge(tokens::router())
        .fallback(not_found);
    // Unknown paths and methods under /api answer only with a token, like the routes.
    let api = method_not_allowed_fallback(api);
    // Prometheus scrapes with the same bearer token (`authorization: credentials` in its config).
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(healthz))
        .routes(routes!(openapi::openapi_json))
        .merge(behind_token(metrics::router(), state))
        .merge(session::router())
        .nest("/api", behind_token(api, state))
        .merge(downloads::public_router(signing_keys))
}

/// Puts `routes` behind a token or the session cookie and the role policy, and says so in their
/// OpenAPI operations.
fn behind_token(routes: OpenApiRouter<AppState>, state: &AppState) -> OpenApiRouter<AppState> {
    let mut routes = routes.layer(middleware::from_fn_with_state(
        state.clone(),
        auth::require_principal,
    ));
    openapi::require_bearer(routes.get_openapi_mut());
    routes
}

/// [`Router::method_not_allowed_fallback`], which `OpenApiRouter` lacks.
fn method_not_allowed_fallback(routes: OpenApiRouter<AppState>) -> OpenApiRouter<AppState> {
    let (router, doc) = routes.split_for_parts();
    let mut routes = OpenApiRouter::from(router.method_not_allowed_fallback(method_not_allowed));
    *routes.get_openapi_mut() = doc;
    routes
}

/// The answer of `/healthz`.
#[derive(Debug, serde::Serialize, ToSchema)]
struct Health {
    /// Always `ok`.
    #[schema(example = "ok")]
    status: &'static str,
}

/// Liveness: answers while the process serves HTTP (no token).
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "service",
    operation_id = "healthz",
    // Open: no token.
    security(()),
    responses((status = 200, description = "The host is up.", body = Health)),
)]
async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::method_not_allowed()
}

/// Runs blocking work (the store: SQLite behind a std mutex; the file system) off the async
/// threads.
async fn blocking<T, F>(f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, ApiError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal("blocking task", e))?
}
