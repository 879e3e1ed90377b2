//! `POST /api/customers/{id}/restores` queues the shipped `restore` pipeline for one of the
//! customer's complete backups.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Caller;
use super::error::{ApiError, ApiProblem, PROBLEM_JSON};
use super::extract::{self, ApiJson, ApiPath, CustomerPath};
use super::runs::Submitted;
use super::{backups, blocking, customers, runs};
use crate::ops::AppState;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create))
}

/// What to restore; the flags left out keep the pipeline's defaults (everything).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RestoreInclude {
    /// The database, from `db.dump` (default true).
    db: Option<bool>,
    /// backend, admin and store, from their archives (default true).
    services: Option<bool>,
    /// The uploads (default true).
    uploads: Option<bool>,
    /// The `.env` files and PM2 ecosystem file(s) (default true).
    env_pm2: Option<bool>,
}

/// Body of `POST /api/customers/{id}/restores`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CreateRestore {
    /// The backup id (`YYYYMMDD-HHMMSS`).
    #[schema(pattern = "^[0-9]{8}-[0-9]{6}$", example = "20261126-101500")]
    backup: String,
    /// What to restore.
    #[serde(default)]
    include: RestoreInclude,
    /// Restore the database into this existing database instead of the customer's own.
    #[schema(pattern = "^[A-Za-z0-9_][A-Za-z0-9_-]{0,62}$")]
    target_db: Option<String>,
    /// Who asked (a user name or id), for the history and the audit log.
    triggered_by: Option<extract::Actor>,
    /// Queue behind the customer's active run instead of answering 409.
    #[serde(default)]
    queue: bool,
}

/// A database name safe to hand to `pg_restore -d`: never an option, never quoted.
fn valid_db_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && !s.starts_with('-')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Queues a restore of one of the customer's complete backups (the shipped `restore` pipeline).
#[utoipa::path(
    post,
    path = "/customers/{id}/restores",
    tag = "restores",
    operation_id = "createRestore",
    params(CustomerPath),
    request_body = CreateRestore,
    responses(
        (status = 202, description = "Queued; follow it at `runUrl` and `eventsUrl`.", body = Submitted,
         headers(("Location" = String, description = "The run's URL."))),
        (status = 400, description = "A bad id or body.", body = ApiProblem, content_type = PROBLEM_JSON),
        (status = 404, description = "No such customer, or no such complete backup.", body = ApiProblem, content_type = PROBLEM_JSON),
        (status = 409, description = "The customer has an active run (named in `activeRunId`) and `queue` was not set.", body = ApiProblem, content_type = PROBLEM_JSON),
        (status = 413, description = "The body is too large.", body = ApiProblem, content_type = PROBLEM_JSON),
        (status = 415, description = "The body is not JSON.", body = ApiProblem, content_type = PROBLEM_JSON),
        (status = 422, description = "Nothing to restore (every include flag false), or `targetDb` with `include.db` false.", body = ApiProblem, content_type = PROBLEM_JSON),
    ),
)]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(CustomerPath { id }): ApiPath<CustomerPath>,
    ApiJson(body): ApiJson<CreateRestore>,
) -> Result<Response, ApiError> {
    let id = extract::customer_id(&id)?.to_owned();
    let backup_id = extract::backup_id(&body.backup)?.to_owned();
    let actor = Some(caller.actor(body.triggered_by)?);
    if let Some(db) = &body.target_db
        && !valid_db_name(db)
    {
        return Err(ApiError::bad_request(
            "targetDb must be 1-63 characters from A-Z, a-z, 0-9, `_` and `-`, not starting with `-`",
        ));
    }
    let i = &body.include;
    let flags = [
        ("include.db", i.db),
        ("include.services", i.services),
        ("include.uploads", i.uploads),
        ("include.envPm2", i.env_pm2),
    ];
    if flags.iter().all(|(_, f)| *f == Some(false)) {
        return Err(ApiError::unprocessable(
            "every include flag is false, so there is nothing to restore",
        ));
    }
    if body.target_db.is_some() && i.db == Some(false) {
        return Err(ApiError::unprocessable(
            "targetDb is set but include.db is false; leave one of them out",
        ));
    }

    let mut params = BTreeMap::new();
    params.insert("backup".to_owned(), backup_id.clone());
    for (name, flag) in flags {
        if let Some(flag) = flag {
            params.insert(name.to_owned(), flag.to_string());
        }
    }
    if let Some(db) = body.target_db {
        params.insert("targetDb".to_owned(), db);
    }

    {
        let (state, id, backup_id) = (state.clone(), id.clone(), backup_id.clone());
        blocking(move || {
            let customer = customers::require(state.store.as_ref(), &id)?;
            backups::find_complete(&state, &customer, &backup_id).map(|_| ())
        })
        .await?;
    }
    runs::submit(state, id, "restore", params, actor, body.queue).await
}
