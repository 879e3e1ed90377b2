//! `/api/tokens`: named tokens, for admins (the CLI's `qodify-host tokens` does the same): list
//! them, add one (its secret is in that answer only), revoke one (its sessions end at once).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{Caller, access_error};
use super::blocking;
use super::error::{ApiError, ApiProblem, PROBLEM_JSON};
use super::extract::{ApiJson, ApiPath};
use crate::auth::Role;
use crate::ops::AppState;
use crate::ops::access;
use crate::store::TokenRecord;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, add))
        .routes(routes!(revoke))
}

/// A named token (never its secret).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = TokenInfo)]
struct TokenView {
    /// Its name: the actor of what it does.
    #[schema(example = "ops-anna")]
    name: String,
    /// What it may do.
    role: Role,
    /// RFC 3339 UTC.
    created_at: String,
    /// Who added it.
    created_by: Option<String>,
    /// RFC 3339 UTC (to the minute): last sign-in or API call.
    last_used_at: Option<String>,
}

impl From<TokenRecord> for TokenView {
    fn from(t: TokenRecord) -> Self {
        TokenView {
            name: t.name,
            role: t.role,
            created_at: t.created_at,
            created_by: t.created_by,
            last_used_at: t.last_used_at,
        }
    }
}

/// `GET /api/tokens`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = TokenList)]
struct TokenList {
    /// By name.
    tokens: Vec<TokenView>,
}

/// `POST /api/tokens`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NewToken)]
struct NewTokenBody {
    /// 1-64 characters from `A-Z a-z 0-9 . _ @ -`, starting with a letter or digit; not `service`.
    #[schema(example = "ops-anna", pattern = "^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")]
    name: String,
    /// What it may do.
    role: Role,
}

/// The answer to `POST /api/tokens`: the only one that carries the secret.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = CreatedToken)]
struct CreatedToken {
    /// Its name.
    name: String,
    /// Its role.
    role: Role,
    /// The secret (`qdf_…`): shown this once; only its hash is kept.
    token: String,
}

/// `{name}`: a token.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct TokenPath {
    /// The token's name.
    #[param(example = "ops-anna")]
    name: String,
}

/// Lists the named tokens (admin).
#[utoipa::path(
    get,
    path = "/tokens",
    tag = "tokens",
    operation_id = "listTokens",
    responses(
        (status = 200, description = "Every named token, by name.", body = TokenList),
        (status = 403, description = "Not an admin.", body = ApiProblem, content_type = PROBLEM_JSON),
    ),
)]
async fn list(State(state): State<AppState>) -> Result<Json<TokenList>, ApiError> {
    let tokens = blocking(move || access::tokens(&state).map_err(access_error)).await?;
    Ok(Json(TokenList {
        tokens: tokens.into_iter().map(TokenView::from).collect(),
    }))
}

/// Adds a named token (admin); the answer has its secret, once.
#[utoipa::path(
    post,
    path = "/tokens",
    tag = "tokens",
    operation_id = "addToken",
    request_body = NewTokenBody,
    responses(
        (status = 201, description = "Added; `token` is shown this once.", body = CreatedToken),
        (status = 400, description = "A bad name or role.", body = ApiProblem, content_type = PROBLEM_JSON),
        (status = 403, description = "Not an admin.", body = ApiProblem, content_type = PROBLEM_JSON),
        (status = 409, description = "A token of that name exists.", body = ApiProblem, content_type = PROBLEM_JSON),
        (status = 413, description = "The body is too large.", body = ApiProblem, content_type = PROBLEM_JSON),
        (status = 415, description = "The body is not JSON.", body = ApiProblem, content_type = PROBLEM_JSON),
    ),
)]
async fn add(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<NewTokenBody>,
) -> Result<Response, ApiError> {
    let actor = caller.0.name;
    let new = blocking(move || {
        access::add_token(&state, &body.name, body.role, &actor).map_err(access_error)
    })
    .await?;
    let body = CreatedToken {
        name: new.record.name,
        role: new.record.role,
        token: new.secret,
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// Revokes a named token (admin); its sessions end at once.
#[utoipa::path(
    delete,
    path = "/tokens/{name}",
    tag = "tokens",
    operation_id = "revokeToken",
    params(TokenPath),
    responses(
        (status = 204, description = "Revoked."),
        (status = 403, description = "Not an admin.", body = ApiProblem, content_type = PROBLEM_JSON),
        (status = 404, description = "No such token.", body = ApiProblem, content_type = PROBLEM_JSON),
    ),
)]
async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(TokenPath { name }): ApiPath<TokenPath>,
) -> Result<StatusCode, ApiError> {
    let actor = caller.0.name;
    blocking(move || access::revoke_token(&state, &name, &actor).map_err(access_error)).await?;
    Ok(StatusCode::NO_CONTENT)
}
