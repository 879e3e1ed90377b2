//! Extractors whose rejections are [`ApiError`]s (so a bad body, path or query is answered as
//! problem+json, never axum's plain text), and the checks every id goes through before anything
//! is looked up.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::header;
use axum::http::request::Parts;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use utoipa::IntoParams;

use super::error::ApiError;

/// A JSON body (`Content-Type: application/json` required).
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

/// A JSON body that may be left out (an empty body or `null` means `T::default()`).
#[derive(Debug)]
pub struct JsonOrDefault<T>(pub T);

/// Path parameters.
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

/// Query parameters.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

fn is_json(req: &Request) -> bool {
    let Some(ct) = req.headers().get(header::CONTENT_TYPE) else {
        return false;
    };
    let Ok(ct) = ct.to_str() else {
        return false;
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

async fn read_json<T: DeserializeOwned, S: Send + Sync>(
    req: Request,
    state: &S,
    allow_empty: bool,
) -> Result<Option<T>, ApiError> {
    let json = is_json(&req);
    let bytes = Bytes::from_request(req, state).await.map_err(|e| {
        if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::payload_too_large("the request body is too large")
        } else {
            ApiError::bad_request(format!("cannot read the request body: {}", e.body_text()))
        }
    })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return if allow_empty {
            Ok(None)
        } else {
            Err(ApiError::bad_request(
                "a JSON body is required (send Content-Type: application/json)",
            ))
        };
    }
    if !json {
        return Err(ApiError::unsupported_media_type(
            "the body must be JSON: send Content-Type: application/json",
        ));
    }
    let invalid = |e: serde_json::Error| ApiError::bad_request(format!("invalid JSON body: {e}"));
    if allow_empty {
        // `null` is as good as no body.
        serde_json::from_slice::<Option<T>>(&bytes).map_err(invalid)
    } else {
        serde_json::from_slice(&bytes).map(Some).map_err(invalid)
    }
}

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match read_json(req, state, false).await? {
            Some(v) => Ok(Self(v)),
            None => Err(ApiError::bad_request("a JSON body is required")),
        }
    }
}

impl<T, S> FromRequest<S> for JsonOrDefault<T>
where
    T: DeserializeOwned + Default,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(read_json(req, state, true).await?.unwrap_or_default()))
    }
}

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| Self(v))
            .map_err(|e| {
                ApiError::bad_request(format!("invalid path: {}", shorten(&e.body_text(), 300)))
            })
    }
}

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| Self(v))
            .map_err(|e| {
                ApiError::bad_request(format!("invalid query: {}", shorten(&e.body_text(), 300)))
            })
    }
}

/// Checks a customer id: 1-64 characters from `A-Za-z0-9_-`.
pub fn customer_id(id: &str) -> Result<&str, ApiError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(id)
    } else {
        Err(ApiError::bad_request(format!(
            "`{}` is not a customer id: use 1-64 characters from A-Z, a-z, 0-9, `-` and `_`",
            shorten(id, 80)
        )))
    }
}

/// Checks a run id (a UUID) and returns it in the stored form (lowercase, hyphenated).
pub fn run_id(id: &str) -> Result<String, ApiError> {
    uuid::Uuid::parse_str(id)
        .map(|u| u.hyphenated().to_string())
        .map_err(|_| {
            ApiError::bad_request(format!(
                "`{}` is not a run id (a UUID such as 0190f1c2-7a3b-7c4d-8e5f-0123456789ab)",
                shorten(id, 80)
            ))
        })
}

/// Checks a backup id (`YYYYMMDD-HHMMSS`, its folder name).
pub fn backup_id(id: &str) -> Result<&str, ApiError> {
    if crate::backups::is_backup_id(id) {
        Ok(id)
    } else {
        Err(ApiError::bad_request(format!(
            "`{}` is not a backup id (YYYYMMDD-HHMMSS, e.g. 20261126-101500)",
            shorten(id, 80)
        )))
    }
}

/// Checks who triggered a request (a user name or id installer-api passes through): 1-200
/// characters, no control characters.
pub fn actor(who: Option<Actor>) -> Result<Option<String>, ApiError> {
    match who.map(|a| a.0) {
        Some(w) if w.is_empty() || w.chars().count() > 200 || w.chars().any(char::is_control) => {
            Err(ApiError::bad_request(
                "triggeredBy must be 1-200 characters without control characters",
            ))
        }
        other => Ok(other),
    }
}

/// Who asked for something (`triggeredBy`, `by`): a user name or id, for the history and the
/// audit log. Checked by [`actor`].
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(transparent)]
pub struct Actor(pub String);

impl utoipa::PartialSchema for Actor {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "Who asked (a user name or id), for the history and the audit log.",
            ))
            .min_length(Some(1))
            .max_length(Some(200))
            .pattern(Some("^[^\\u0000-\\u001f\\u007f-\\u009f]*$"))
            .examples([serde_json::json!("ayse@qodify.com")])
            .into()
    }
}

impl utoipa::ToSchema for Actor {}

/// Checks a `limit` query parameter: 1-1000, default 100.
pub fn limit(limit: Option<usize>) -> Result<usize, ApiError> {
    match limit {
        None => Ok(100),
        Some(n @ 1..=1000) => Ok(n),
        Some(_) => Err(ApiError::bad_request("limit must be between 1 and 1000")),
    }
}

/// Echoes at most `max` characters of a rejected value, with control characters escaped.
fn shorten(s: &str, max: usize) -> String {
    let cut: String = s.chars().take(max).collect();
    let mut out = cut.escape_debug().to_string();
    if s.chars().count() > max {
        out.push('…');
    }
    out
}

/// `{id}`: a customer.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct CustomerPath {
    /// installer-api's customer id: 1-64 characters from `A-Z`, `a-z`, `0-9`, `-` and `_`.
    #[param(pattern = "^[A-Za-z0-9_-]{1,64}$", example = "42")]
    pub id: String,
}

/// `{id}` and `{backupId}`: one backup of a customer.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
#[serde(rename_all = "camelCase")]
pub struct BackupPath {
    /// installer-api's customer id: 1-64 characters from `A-Z`, `a-z`, `0-9`, `-` and `_`.
    #[param(pattern = "^[A-Za-z0-9_-]{1,64}$", example = "42")]
    pub id: String,
    /// The backup id, its folder name: `YYYYMMDD-HHMMSS` (UTC).
    #[param(pattern = "^[0-9]{8}-[0-9]{6}$", example = "20261126-101500")]
    pub backup_id: String,
}

/// `{runId}`: a run.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
#[serde(rename_all = "camelCase")]
pub struct RunPath {
    /// The run id (a UUID).
    #[param(format = Uuid, example = "0190f1c2-7a3b-7c4d-8e5f-0123456789ab")]
    pub run_id: String,
}
