//! The HTTP API of `qodify-host serve` (paths fixed by the plan, §5): customers, backups and their
//! downloads (Range, signed expiring links), restores, runs with their live events (SSE), the
//! audit log, upgrades and approvals, `/healthz`, `/metrics`, and its OpenAPI document at
//! `/openapi.json`. It is a function
//! of the shared [`AppState`]: [`router`] builds it, one router per resource, all behind a bearer
//! token; every error is an [`ApiError`] answered as `application/problem+json`. Every route is
//! registered from its handler's `#[utoipa::path]`, so the document lists exactly what is served.
//! Live events also go out over Socket.IO at `/socket.io` (`socketio`; a layer, so not in the
//! document).

mod audit;
mod backups;
mod customers;
pub mod downloads;
mod error;
mod events;
mod extract;
mod metrics;
mod openapi;
mod restores;
mod runs;
mod socketio;
mod upgrades;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json, Router};
use sha2::{Digest as _, Sha256};
use utoipa::{OpenApi as _, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::ops::AppState;

pub use error::{ApiError, ApiProblem, PROBLEM_JSON};

/// The whole HTTP surface: `GET /healthz` and `GET /openapi.json` (open), `/api/*` and
/// `/metrics` (bearer token), signed `/download/…` links (open, checked by signature).
pub fn router(state: AppState) -> Router {
    let (router, doc) = routes(&state).split_for_parts();
    router
        .layer(Extension(openapi::Served::new(doc)))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Answers `/socket.io/` (live events; its own token check) and passes the rest on.
        .layer(socketio::layer(&state))
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
        .merge(downloads::api_router(signing_keys.clone()))
        .fallback(not_found);
    // Unknown paths and methods under /api answer only with a token, like the routes.
    let api = method_not_allowed_fallback(api);
    // Prometheus scrapes with the same bearer token (`authorization: credentials` in its config).
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(healthz))
        .routes(routes!(openapi::openapi_json))
        .merge(behind_token(metrics::router(), state))
        .nest("/api", behind_token(api, state))
        .merge(downloads::public_router(signing_keys))
}

/// Puts `routes` behind the bearer token, and says so in their OpenAPI operations.
fn behind_token(routes: OpenApiRouter<AppState>, state: &AppState) -> OpenApiRouter<AppState> {
    let mut routes = routes.layer(middleware::from_fn_with_state(state.clone(), require_token));
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

/// Deny by default: without a configured token every `/api` request is refused.
async fn require_token(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(expected) = state
        .settings
        .api_token
        .as_deref()
        .filter(|t| !t.is_empty())
    else {
        return ApiError::unavailable(
            "the API is disabled because no token is configured: set QODIFY_API_TOKEN (or api_token \
             in qodify-host.toml) and restart qodify-host serve",
        )
        .into_response();
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    match given {
        Some(token) if token_matches(token, expected) => next.run(req).await,
        Some(_) => ApiError::unauthorized("the bearer token is wrong").into_response(),
        None => ApiError::unauthorized("send the API token as `Authorization: Bearer <token>`")
            .into_response(),
    }
}

/// Compares in constant time; hashing first makes the time independent of the lengths too.
pub(crate) fn token_matches(given: &str, expected: &str) -> bool {
    let a = Sha256::digest(given.as_bytes());
    let b = Sha256::digest(expected.as_bytes());
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
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

#[cfg(test)]
mod tests {
    use super::token_matches;

    #[test]
    fn tokens_match_only_when_equal() {
        assert!(token_matches("t0ken", "t0ken"));
        assert!(!token_matches("t0ke", "t0ken"));
        assert!(!token_matches("t0kem", "t0ken"));
        assert!(!token_matches("", "t0ken"));
    }
}
