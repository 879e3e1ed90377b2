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
    let metrics = OpenApiRouter::new().routes(routes!(metrics));
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(healthz))
        .routes(routes!(openapi::openapi_json))
        .merge(behind_token(metrics, state))
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

/// Prometheus text exposition: runs by state (from the store, so across restarts) and runs
/// executing on this host now.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "service",
    operation_id = "metrics",
    responses((
        status = 200,
        description = "Prometheus text format: `qodify_runs{state=…}`, `qodify_runs_executing`, `qodify_build_info`, `qodify_commands_confined` (1 when granted programs run in a Landlock domain, 0 when they run with the host's rights or are refused).",
        body = String,
        content_type = "text/plain",
    )),
)]
async fn metrics(State(state): State<AppState>) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse as _;
    let store = state.store.clone();
    let counts = tokio::task::spawn_blocking(move || store.run_counts())
        .await
        .map_err(|e| ApiError::internal("metrics task", e))?
        .map_err(|e| ApiError::internal("counting runs", e))?;
    let executing = state.running.lock().map(|m| m.len()).unwrap_or(0);
    let mut out = String::from(
        "# HELP qodify_runs Runs in the state store, by state.\n# TYPE qodify_runs gauge\n",
    );
    for st in [
        "queued",
        "running",
        "succeeded",
        "failed",
        "cancelled",
        "interrupted",
    ] {
        let n = counts
            .iter()
            .find(|(s, _)| s.to_string() == st)
            .map_or(0, |(_, n)| *n);
        out.push_str(&format!("qodify_runs{{state=\"{st}\"}} {n}\n"));
    }
    out.push_str("# HELP qodify_runs_executing Runs executing on this host now.\n# TYPE qodify_runs_executing gauge\n");
    out.push_str(&format!("qodify_runs_executing {executing}\n"));
    let confinement = crate::engine::confine::Confinement::new(state.settings.commands.confinement);
    out.push_str(&format!(
        "# HELP qodify_commands_confined 1 when granted programs run confined. {}\n# TYPE qodify_commands_confined gauge\n",
        confinement.describe()
    ));
    out.push_str(&format!(
        "qodify_commands_confined{{mode=\"{}\"}} {}\n",
        match confinement.mode {
            crate::engine::confine::Mode::Landlock => "landlock",
            crate::engine::confine::Mode::Off => "off",
        },
        u8::from(confinement.enforced())
    ));
    out.push_str(
        "# HELP qodify_build_info The running qodify-host.\n# TYPE qodify_build_info gauge\n",
    );
    out.push_str(&format!(
        "qodify_build_info{{version=\"{}\"}} 1\n",
        env!("CARGO_PKG_VERSION")
    ));
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response())
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
