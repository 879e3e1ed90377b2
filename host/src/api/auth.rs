//! Who a request is and what it may do: the bearer token (the service token or a named one) or
//! the console's session cookie, the CSRF check on cookie mutations, and the one role policy
//! ([`required_role`]) the router enforces and the OpenAPI document states (`x-required-role`).
//! Also the security headers every answer carries.

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::blocking;
use super::error::ApiError;
use crate::auth::{Principal, Role};
use crate::ops::AppState;
use crate::ops::access::{self, AccessError};

/// The console's session cookie (HttpOnly, SameSite=Strict).
pub const SESSION_COOKIE: &str = "qodify_session";
/// The header cookie-authenticated mutations carry the session's CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The role a request needs, from its method and its path below `/api` (`/customers/42`) or a
/// route's template (`/customers/{id}`): the one policy, for the router and the document alike.
/// Tokens are an admin's; streaming a backup out is an operator's, like every change; reading
/// is a viewer's.
pub fn required_role(method: &Method, path: &str) -> Role {
    let mut segments = path.trim_start_matches('/').split('/');
    if segments.next() == Some("tokens") {
        return Role::Admin;
    }
    let last = path.rsplit('/').next().unwrap_or_default();
    match *method {
        // A backup's bytes are customer data: reading them is more than reading about them.
        Method::GET | Method::HEAD if last == "download" => Role::Operator,
        Method::GET | Method::HEAD => Role::Viewer,
        _ => Role::Operator,
    }
}

/// The middleware in front of `/api` and `/metrics`: authenticates, checks CSRF on cookie
/// mutations and the role, and hands the [`Principal`] to the handler. Deny by default: with
/// neither a service token nor any named token, every request is refused.
pub(super) async fn require_principal(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let principal = match authenticate(&state, req.method(), req.headers()).await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let needed = required_role(req.method(), req.uri().path());
    if principal.role < needed {
        return ApiError::forbidden(format!(
            "{} is a{} {}; this needs the {needed} role (an admin can add a token with it: \
             qodify-host tokens add NAME --role {needed})",
            principal.name,
            if principal.role == Role::Operator || principal.role == Role::Admin {
                "n"
            } else {
                ""
            },
            principal.role,
        ))
        .into_response();
    }
    req.extensions_mut().insert(principal);
    next.run(req).await
}

async fn authenticate(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Principal, ApiError> {
    if let Some(token) = bearer(headers) {
        let state2 = state.clone();
        let token = token.to_owned();
        let found =
            blocking(move || access::authenticate(&state2, &token).map_err(access_error)).await?;
        return match found {
            Some(p) => Ok(p),
            None => Err(refused(state, "the bearer token is wrong, or it was revoked").await),
        };
    }
    if let Some(cookie) = cookie(headers, SESSION_COOKIE) {
        let state2 = state.clone();
        let cookie = cookie.to_owned();
        let session =
            blocking(move || access::session(&state2, &cookie).map_err(access_error)).await?;
        let Some(session) = session else {
            return Err(ApiError::unauthorized(
                "your session has ended (it expired, you signed out, or its token was revoked); \
                 sign in again",
            ));
        };
        if !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
            let given = headers
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            if !crate::auth::secrets_match(given, &session.csrf) {
                return Err(ApiError::forbidden(
                    "a change made with the session cookie must carry the session's CSRF token \
                     in X-CSRF-Token (the console does this; GET /api/session gives it)",
                ));
            }
        }
        return Ok(Principal {
            name: session.principal,
            role: session.role,
        });
    }
    Err(refused(
        state,
        "send a token as `Authorization: Bearer <token>`, or sign in to the console",
    )
    .await)
}

/// 401, or 503 when nobody could ever sign in (no service token, no named token).
async fn refused(state: &AppState, detail: &str) -> ApiError {
    let state = state.clone();
    let enabled = blocking(move || access::enabled(&state).map_err(access_error)).await;
    match enabled {
        Ok(false) => ApiError::unavailable(
            "the API is disabled because no token is configured: set QODIFY_API_TOKEN (or \
             api_token in qodify-host.toml) and restart qodify-host serve, or add a named token \
             with qodify-host tokens add NAME --role admin",
        ),
        Ok(true) => ApiError::unauthorized(detail),
        Err(e) => e,
    }
}

/// The API error of an access failure.
pub(super) fn access_error(e: AccessError) -> ApiError {
    match e {
        AccessError::BadName(m) => ApiError::bad_request(m),
        e @ AccessError::Exists(_) => ApiError::conflict(e.to_string()),
        e @ AccessError::NoSuchToken(_) => ApiError::not_found(e.to_string()),
        e @ AccessError::BadToken => ApiError::unauthorized(e.to_string()),
        AccessError::Store(e) => e.into(),
    }
}

/// The token of `Authorization: Bearer <token>`.
pub(super) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub(super) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// The principal the auth middleware found (a handler's extractor).
#[derive(Debug, Clone)]
pub struct Caller(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .map(Caller)
            .ok_or_else(|| ApiError::internal("auth", "a handler ran without a principal"))
    }
}

impl Caller {
    /// Who the history and audit log record: a named token's name; for the service token, the
    /// person installer-api names (`triggeredBy`), else `service`. A named token cannot act as
    /// someone else.
    pub fn actor(&self, triggered_by: Option<super::extract::Actor>) -> Result<String, ApiError> {
        let named = super::extract::actor(triggered_by)?;
        if self.0.is_service() {
            return Ok(named.unwrap_or_else(|| self.0.name.clone()));
        }
        match named {
            Some(n) if n != self.0.name => Err(ApiError::bad_request(format!(
                "triggeredBy is for the service token; {} acts as itself (leave triggeredBy out)",
                self.0.name
            ))),
            _ => Ok(self.0.name.clone()),
        }
    }
}

/// The Content-Security-Policy of every answer: only this origin's own scripts, styles, images
/// and connections (Socket.IO included), no inline script, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; font-src 'self'; connect-src 'self'; \
     manifest-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Adds the security headers to every answer (the console's pages, the API, errors).
pub(super) async fn security_headers(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let h = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
        (
            HeaderName::from_static("permissions-policy"),
            "camera=(), microphone=(), geolocation=()",
        ),
    ] {
        h.entry(name).or_insert(HeaderValue::from_static(value));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_gives_reads_to_viewers_changes_to_operators_tokens_to_admins() {
        let cases = [
            (Method::GET, "/customers", Role::Viewer),
            (Method::GET, "/customers/{id}/backups", Role::Viewer),
            (Method::GET, "/runs/r1/events", Role::Viewer),
            (Method::GET, "/metrics", Role::Viewer),
            (Method::PUT, "/customers/42", Role::Operator),
            (Method::POST, "/customers/42/backups", Role::Operator),
            (
                Method::DELETE,
                "/customers/42/backups/20261126-101500",
                Role::Operator,
            ),
            (Method::POST, "/runs/r1/approval", Role::Operator),
            (
                Method::GET,
                "/customers/42/backups/20261126-101500/download",
                Role::Operator,
            ),
            (
                Method::HEAD,
                "/customers/{id}/backups/{backupId}/download",
                Role::Operator,
            ),
            (
                Method::POST,
                "/customers/42/backups/20261126-101500/download-url",
                Role::Operator,
            ),
            (Method::GET, "/tokens", Role::Admin),
            (Method::POST, "/tokens", Role::Admin),
            (Method::DELETE, "/tokens/anna", Role::Admin),
        ];
        for (method, path, role) in cases {
            assert_eq!(required_role(&method, path), role, "{method} {path}");
        }
    }

    #[test]
    fn cookies_are_found_by_name() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; qodify_session=abc"),
        );
        h.append(header::COOKIE, HeaderValue::from_static("b=2"));
        assert_eq!(cookie(&h, "qodify_session"), Some("abc"));
        assert_eq!(cookie(&h, "b"), Some("2"));
        assert_eq!(cookie(&h, "qodify"), None);
    }
}
