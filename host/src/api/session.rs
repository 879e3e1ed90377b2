//! `/api/session`: the web console signs in with a token and gets an HttpOnly, SameSite=Strict
//! session cookie (`qodify_session`) plus the CSRF token its changes must carry; it reads the
//! session back after a reload and signs out. The token itself never leaves the sign-in request.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{CSRF_HEADER, SESSION_COOKIE, access_error, cookie};
use super::blocking;
use super::error::{ApiError, ApiProblem, PROBLEM_JSON};
use super::extract::ApiJson;
use crate::auth::{Role, secrets_match};
use crate::ops::AppState;
use crate::ops::access;
use crate::store::SessionRecord;

/// Open routes (they do their own checks), with full paths: not behind the token.
pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(read, sign_in, sign_out))
}

/// `POST /api/session`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct SignIn {
    /// A named token (`qdf_…`, from `qodify-host tokens add`) or the service token.
    #[schema(example = "qdf_…")]
    token: String,
}

/// Who is signed in, until when, and the CSRF token for changes.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Session)]
struct SessionView {
    /// The token's name (`service` for the service token): the actor of what the session does.
    #[schema(example = "ops-anna")]
    name: String,
    /// What the session may do.
    role: Role,
    /// RFC 3339 UTC: when the session ends by itself.
    expires_at: String,
    /// Send it as `X-CSRF-Token` with every request that changes something.
    csrf_token: String,
}

impl From<&SessionRecord> for SessionView {
    fn from(s: &SessionRecord) -> Self {
        SessionView {
            name: s.principal.clone(),
            role: s.role,
            expires_at: access::rfc3339(s.expires_unix),
            csrf_token: s.csrf.clone(),
        }
    }
}

/// The session of the request's cookie, or 401.
async fn current(state: &AppState, headers: &HeaderMap) -> Result<SessionRecord, ApiError> {
    let Some(cookie) = cookie(headers, SESSION_COOKIE).map(str::to_owned) else {
        return Err(ApiError::unauthorized("not signed in"));
    };
    let state = state.clone();
    blocking(move || access::session(&state, &cookie).map_err(access_error))
        .await?
        .ok_or_else(|| {
            ApiError::unauthorized(
                "your session has ended (it expired, you signed out, or its token was revoked); \
                 sign in again",
            )
        })
}

fn set_cookie(response: &mut Response, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    // A session answer is for this browser only.
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// Signs in with a token: sets the session cookie and answers the session.
#[utoipa::path(
    post,
    path = "/api/session",
    tag = "session",
    operation_id = "signIn",
    // Open: this is where a token is given.
    security(()),
    request_body = SignIn,
    responses(
        (status = 200, description = "Signed in; the `qodify_session` cookie is set (HttpOnly, SameSite=Strict).", body = SessionView,
         headers(("Set-Cookie" = String, description = "`qodify_session=…; Path=/; HttpOnly; SameSite=Strict; Max-Age=…`"))),
        (status = 400, description = "A bad body.", body = ApiProblem, content_type = PROBLEM_JSON),
        (status = 401, description = "The token is not valid (mistyped, revoked, never added).", body = ApiProblem, content_type = PROBLEM_JSON),
        (status = 413, description = "The body is too large.", body = ApiProblem, content_type = PROBLEM_JSON),
        (status = 415, description = "The body is not JSON.", body = ApiProblem, content_type = PROBLEM_JSON),
    ),
)]
async fn sign_in(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<SignIn>,
) -> Result<Response, ApiError> {
    let ttl = state.settings.console.session_ttl;
    let secure = state.settings.console.cookie_secure;
    let token = body.token.trim().to_owned();
    let new = blocking(move || access::sign_in(&state, &token, ttl).map_err(access_error)).await?;
    let mut response = Json(SessionView::from(&new.record)).into_response();
    set_cookie(
        &mut response,
        &format!(
            "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
            new.cookie,
            ttl.as_secs(),
            if secure { "; Secure" } else { "" }
        ),
    );
    Ok(response)
}

/// The session of this browser (after a reload), with its CSRF token.
#[utoipa::path(
    get,
    path = "/api/session",
    tag = "session",
    operation_id = "getSession",
    // The cookie is the credential.
    security(("session" = [])),
    responses(
        (status = 200, description = "Signed in.", body = SessionView),
        (status = 401, description = "No session: not signed in, expired, signed out or revoked.", body = ApiProblem, content_type = PROBLEM_JSON),
    ),
)]
async fn read(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let session = current(&state, &headers).await?;
    let mut response = Json(SessionView::from(&session)).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// Signs out: ends the session and clears the cookie (needs `X-CSRF-Token`).
#[utoipa::path(
    delete,
    path = "/api/session",
    tag = "session",
    operation_id = "signOut",
    security(("session" = [])),
    responses(
        (status = 204, description = "Signed out; the cookie is cleared."),
        (status = 401, description = "No session.", body = ApiProblem, content_type = PROBLEM_JSON),
        (status = 403, description = "No or a wrong `X-CSRF-Token`.", body = ApiProblem, content_type = PROBLEM_JSON),
    ),
)]
async fn sign_out(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let session = current(&state, &headers).await?;
    let given = headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !secrets_match(given, &session.csrf) {
        return Err(ApiError::forbidden(
            "signing out needs the session's CSRF token in X-CSRF-Token",
        ));
    }
    let secure = state.settings.console.cookie_secure;
    blocking(move || access::sign_out(&state, &session).map_err(access_error)).await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    set_cookie(
        &mut response,
        &format!(
            "{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{}",
            if secure { "; Secure" } else { "" }
        ),
    );
    Ok(response)
}
