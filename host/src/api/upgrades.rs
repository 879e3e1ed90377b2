//! `POST /api/customers/{id}/upgrades` queues the shipped `upgrade` pipeline (blue/green, with a
//! pre-upgrade backup and automatic rollback: docs/upgrades.md), `GET` shows what the customer
//! runs and which releases of the catalog it may upgrade to (and why not the others), and
//! `POST /api/runs/{runId}/approval` decides what a waiting run asks (an upgrade's `.env`
//! changes).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Caller;
use super::error::{ApiError, ApiProblem, PROBLEM_JSON};
use super::extract::{self, ApiJson, ApiPath, CustomerPath, RunPath};
use super::runs::Submitted;
use super::{blocking, customers, runs};
use crate::engine::caps::approvals::DecideError;
use crate::ops::AppState;
use crate::ops::customers::{EnvKey, EnvKeys, Installed, Layout, Target, UpgradesError};

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(targets, create))
        .routes(routes!(approve))
}

/// Body of `POST /api/customers/{id}/upgrades`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CreateUpgrade {
    /// The release to upgrade to, as named in the release catalog (releases.json).
    #[schema(pattern = "^[A-Za-z0-9_+-][A-Za-z0-9._+-]{0,63}$", example = "v1.1.0")]
    target_version: String,
    /// The build's Node.js heap in MiB (`--max-old-space-size`); default 4096.
    #[serde(rename = "heapMB")]
    #[schema(minimum = 256, maximum = 65536)]
    heap_mb: Option<u32>,
    /// Skip the type check in the build; default false.
    skip_type_check: Option<bool>,
    /// Who asked (a user name or id), for the history and the audit log.
    triggered_by: Option<extract::Actor>,
    /// Queue behind the customer's active run instead of answering 409.
    #[serde(default)]
    queue: bool,
}

/// Queues an upgrade of the customer to another release (the shipped `upgrade` pipeline).
#[utoipa::path(
    post,
    path = "/customers/{id}/upgrades",
    tag = "upgrades",
    operation_id = "createUpgrade",
    params(CustomerPath),
    request_body = CreateUpgrade,
    responses(
        (status = 202, description = "Queued; follow it at `runUrl` and `eventsUrl` (`upgrade-progress`, `upgrade-completed`, `upgrade-failed` with `failedStep` and `rolledBack`).", body = Submitted,
         headers(("Location" = String, description = "The run's URL."))),
        (status = 400, description = "A bad id or body.", body = ApiProblem, content_type = PROBLEM_JSON),
        (status = 404, description = "No such customer.", body = ApiProblem, content_type = PROBLEM_JSON),
        (status = 409, description = "The customer has an active run (named in `activeRunId`) and `queue` was not set.", body = ApiProblem, content_type = PROBLEM_JSON),
        (status = 413, description = "The body is too large.", body = ApiProblem, content_type = PROBLEM_JSON),
        (status = 415, description = "The body is not JSON.", body = ApiProblem, content_type = PROBLEM_JSON),
    ),
)]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(CustomerPath { id }): ApiPath<CustomerPath>,
    ApiJson(body): ApiJson<CreateUpgrade>,
) -> Result<Response, ApiError> {
    let id = extract::customer_id(&id)?.to_owned();
    let actor = Some(caller.actor(body.triggered_by)?);
    if !crate::releases::is_version_name(&body.target_version) {
        return Err(ApiError::bad_request(
            "targetVersion must be a release name from releases.json: 1-64 characters from A-Z, a-z, 0-9, `.`, `_`, `+` and `-`, not starting with `.`",
        ));
    }
    if let Some(heap) = body.heap_mb
        && !(256..=65536).contains(&heap)
    {
        return Err(ApiError::bad_request(
            "heapMB must be between 256 and 65536",
        ));
    }
    let mut params = BTreeMap::new();
    params.insert("targetVersion".to_owned(), body.target_version);
    if let Some(heap) = body.heap_mb {
        params.insert("heapMB".to_owned(), heap.to_string());
    }
    if let Some(skip) = body.skip_type_check {
        params.insert("skipTypeCheck".to_owned(), skip.to_string());
    }
    {
        let (state, id) = (state.clone(), id.clone());
        blocking(move || customers::require(state.store.as_ref(), &id).map(|_| ())).await?;
    }
    runs::submit(state, id, "upgrade", params, actor, body.queue).await
}

/// What a customer runs.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = InstalledRelease)]
struct InstalledView {
    layout: Layout,
    /// The live release (`releases/<version>` that `current` names; in the current layout the
    /// version in `backend/package.json`); `null` when neither tells.
    #[schema(required = true)]
    release: Option<String>,
}

impl From<Installed> for InstalledView {
    fn from(i: Installed) -> Self {
        Self {
            layout: i.layout,
            release: i.release,
        }
    }
}

/// A release of the catalog, for one customer.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = UpgradeTarget)]
struct TargetView {
    /// The release version (`targetVersion` of `POST /api/customers/{id}/upgrades`).
    version: String,
    /// The upgrade's check would let it through (Node.js and PostgreSQL versions aside: those
    /// are checked when it runs, against `compat`).
    allowed: bool,
    /// Why the upgrade would be refused, when it would.
    #[schema(required = true)]
    reason: Option<String>,
    /// Release notes.
    #[schema(required = true)]
    notes: Option<String>,
    /// What the release runs on.
    compat: CompatView,
    /// The `.env` keys the release's catalog entry adds, changes or removes in the customer's
    /// live `.env` files (names only; keys new in the release's `.env.example` are added too
    /// when it runs). `null` when those files cannot be read.
    #[schema(required = true)]
    env_changes: Option<EnvChangesView>,
}

/// Engine versions a release supports.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = UpgradeCompat)]
struct CompatView {
    /// Node.js versions, a semver range such as `>=18.17 <23`.
    node: String,
    /// PostgreSQL server versions, a semver range.
    postgres: String,
}

/// `.env` keys by what a release does to them.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = EnvChanges)]
struct EnvChangesView {
    /// Set by the release, not in the live file.
    added: Vec<EnvKeyView>,
    /// In the live file, set to another value by the release (needs approval).
    changed: Vec<EnvKeyView>,
    /// In the live file, removed by the release (needs approval).
    removed: Vec<EnvKeyView>,
}

/// One key of one service's `.env`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = EnvKey)]
struct EnvKeyView {
    /// `backend`, `admin` or `store`.
    service: String,
    /// The variable's name.
    key: String,
}

impl From<EnvKeys> for EnvChangesView {
    fn from(k: EnvKeys) -> Self {
        let keys = |v: Vec<EnvKey>| {
            v.into_iter()
                .map(|k| EnvKeyView {
                    service: k.service,
                    key: k.key,
                })
                .collect()
        };
        Self {
            added: keys(k.added),
            changed: keys(k.changed),
            removed: keys(k.removed),
        }
    }
}

impl From<Target> for TargetView {
    fn from(t: Target) -> Self {
        Self {
            version: t.version,
            allowed: t.allowed,
            reason: t.reason,
            notes: t.notes,
            compat: CompatView {
                node: t.node,
                postgres: t.postgres,
            },
            env_changes: t.env_changes.map(EnvChangesView::from),
        }
    }
}

/// What a customer runs and where it may go.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = UpgradeTargets)]
struct TargetsView {
    /// What the customer runs now.
    current: InstalledView,
    /// Every release of the catalog, newest first.
    targets: Vec<TargetView>,
}

/// Shows what the customer runs and every release of the catalog, each allowed or refused by
/// the rule the upgrade's first step applies (with the reason), newest first.
#[utoipa::path(
    get,
    path = "/customers/{id}/upgrades",
    tag = "upgrades",
    operation_id = "listUpgradeTargets",
    params(CustomerPath),
    responses(
        (status = 200, description = "The live release and the catalog's releases.", body = TargetsView),
        (status = 400, description = "The id is not a customer id.", body = ApiProblem, content_type = PROBLEM_JSON),
        (status = 404, description = "No such customer.", body = ApiProblem, content_type = PROBLEM_JSON),
        (status = 500, description = "The release catalog cannot be read (the host log says why; `qodify-host validate` checks it).", body = ApiProblem, content_type = PROBLEM_JSON),
    ),
)]
async fn targets(
    State(state): State<AppState>,
    ApiPath(CustomerPath { id }): ApiPath<CustomerPath>,
) -> Result<Json<TargetsView>, ApiError> {
    let id = extract::customer_id(&id)?.to_owned();
    blocking(move || {
        let settings = &state.settings;
        let upgrades = crate::ops::customers::upgrades(
            state.store.as_ref(),
            &settings.customers_root,
            &settings.releases_dir,
            &id,
        )
        .map_err(|e| match e {
            UpgradesError::UnknownCustomer(_) => ApiError::not_found(e.to_string()),
            UpgradesError::Store(e) => e.into(),
            UpgradesError::Catalog(e) => ApiError::internal("reading the release catalog", e),
        })?;
        Ok(Json(TargetsView {
            current: upgrades.current.into(),
            targets: upgrades.targets.into_iter().map(TargetView::from).collect(),
        }))
    })
    .await
}

/// Body of `POST /api/runs/{runId}/approval`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Decide {
    /// Approve (`true`) or reject (`false`: the step fails and the upgrade rolls back).
    approve: bool,
    /// Who decides, for the run's events and the audit log.
    by: Option<extract::Actor>,
}

/// What was decided.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct Decided {
    /// The run.
    run_id: String,
    /// The step that asked.
    step: String,
    /// What it asked.
    summary: String,
    /// The decision.
    approved: bool,
}

/// Decides what a waiting run asks (e.g. an upgrade's `.env` changes); the run goes on at once.
#[utoipa::path(
    post,
    path = "/runs/{runId}/approval",
    tag = "runs",
    operation_id = "decideApproval",
    params(RunPath),
    request_body = Decide,
    responses(
        (status = 200, description = "Decided; the run continues (or, rejected, fails and rolls back).", body = Decided),
        (status = 400, description = "A bad id or body.", body = ApiProblem, content_type = PROBLEM_JSON),
        (status = 404, description = "No such run.", body = ApiProblem, content_type = PROBLEM_JSON),
        (status = 409, description = "The run is not waiting for an approval.", body = ApiProblem, content_type = PROBLEM_JSON),
        (status = 415, description = "The body is not JSON.", body = ApiProblem, content_type = PROBLEM_JSON),
    ),
)]
async fn approve(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(RunPath { run_id }): ApiPath<RunPath>,
    ApiJson(body): ApiJson<Decide>,
) -> Result<Json<Decided>, ApiError> {
    let run_id = extract::run_id(&run_id)?;
    let by = Some(caller.actor(body.by)?);
    blocking(move || {
        use crate::ops::approvals::{ApproveError, decide};
        let request =
            decide(&state, &run_id, body.approve, by.as_deref()).map_err(|e| match e {
                ApproveError::NoSuchRun(_) => ApiError::not_found(e.to_string()),
                ApproveError::Decide(
                    DecideError::NotWaiting(_) | DecideError::AlreadyDecided(_),
                ) => ApiError::conflict(e.to_string()),
                ApproveError::Decide(DecideError::BadRunId(_)) => {
                    ApiError::bad_request(e.to_string())
                }
                ApproveError::Decide(DecideError::Io { .. }) => {
                    ApiError::internal("deciding an approval", e)
                }
                ApproveError::Store(e) => e.into(),
            })?;
        Ok(Json(Decided {
            run_id,
            step: request.step,
            summary: request.summary,
            approved: body.approve,
        }))
    })
    .await
}
