//! `PUT /api/customers/{id}` registers or updates a customer (installer-api calls it when it
//! creates one); `GET /api/customers/{id}` reads it back; `GET /api/customers` lists them, each
//! with its layout, live release, last backup and active run (the web console's list).

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Caller;
use super::error::{ApiError, ApiProblem, PROBLEM_JSON};
use super::extract::{self, ApiJson, ApiPath, ApiQuery, CustomerPath};
use super::{blocking, runs};
use crate::customer::Domain;
use crate::ops::AppState;
use crate::ops::customers::{Layout, ListQuery, Listed};
use crate::store::{CustomerRecord, RunState, Store};

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_customer, put_customer))
        .routes(routes!(list))
}

/// Body of `PUT /api/customers/{id}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PutCustomer)]
struct PutCustomer {
    /// The customer's DNS domain (its folder name under the customers root), e.g.
    /// `shop.example.com`.
    #[schema(
        max_length = 253,
        pattern = "^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\\.)+[A-Za-z]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$",
        example = "shop.example.com"
    )]
    domain: String,
    /// Tier, naming a `pipelines/tiers/<tier>.toml` overlay.
    #[serde(default)]
    #[schema(pattern = "^[a-z0-9][a-z0-9-]{0,62}$", example = "paid")]
    tier: Option<String>,
}

/// A customer as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Customer)]
struct CustomerView {
    /// installer-api's id.
    id: String,
    /// DNS domain (lowercase), the customer's folder name.
    domain: String,
    /// Tier overlay, if any.
    #[schema(required = true)]
    tier: Option<String>,
    /// RFC 3339 UTC.
    #[schema(format = DateTime)]
    created_at: String,
    /// RFC 3339 UTC.
    #[schema(format = DateTime)]
    updated_at: String,
}

impl From<CustomerRecord> for CustomerView {
    fn from(c: CustomerRecord) -> Self {
        Self {
            id: c.id,
            domain: c.domain,
            tier: c.tier,
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

/// The customer `id`, or 404.
pub(super) fn require(store: &dyn Store, id: &str) -> Result<CustomerRecord, ApiError> {
    store.customer(id)?.ok_or_else(|| {
        ApiError::not_found(format!(
            "unknown customer {id}; register it with PUT /api/customers/{id}"
        ))
    })
}

/// Reads a customer.
#[utoipa::path(
    get,
    path = "/customers/{id}",
    tag = "customers",
    operation_id = "getCustomer",
    params(CustomerPath),
    responses(
        (status = 200, description = "The customer.", body = CustomerView),
        (status = 400, description = "The id is not a customer id.", body = ApiProblem, content_type = PROBLEM_JSON),
        (status = 404, description = "No such customer.", body = ApiProblem, content_type = PROBLEM_JSON),
    ),
)]
async fn get_customer(
    State(state): State<AppState>,
    ApiPath(CustomerPath { id }): ApiPath<CustomerPath>,
) -> Result<Json<CustomerView>, ApiError> {
    let id = extract::customer_id(&id)?.to_owned();
    blocking(move || Ok(Json(require(state.store.as_ref(), &id)?.into()))).await
}

/// Registers a customer or updates its domain and tier (installer-api calls it when it creates
/// one).
#[utoipa::path(
    put,
    path = "/customers/{id}",
    tag = "customers",
    operation_id = "putCustomer",
    params(CustomerPath),
    request_body = PutCustomer,
    responses(
        (status = 200, description = "The customer as stored.", body = CustomerView),
        (status = 400, description = "A bad id, domain, tier or body.", body = ApiProblem, content_type = PROBLEM_JSON),
        (status = 409, description = "The domain belongs to another customer, or the customer has an active run and the domain would change.", body = ApiProblem, content_type = PROBLEM_JSON),
        (status = 413, description = "The body is too large.", body = ApiProblem, content_type = PROBLEM_JSON),
        (status = 415, description = "The body is not JSON.", body = ApiProblem, content_type = PROBLEM_JSON),
    ),
)]
async fn put_customer(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(CustomerPath { id }): ApiPath<CustomerPath>,
    ApiJson(body): ApiJson<PutCustomer>,
) -> Result<Json<CustomerView>, ApiError> {
    let id = extract::customer_id(&id)?.to_owned();
    let domain = Domain::parse(&body.domain).map_err(|e| ApiError::bad_request(e.to_string()))?;
    if let Some(tier) = &body.tier
        && !crate::engine::plugins::valid_id(tier)
    {
        return Err(ApiError::bad_request(
            "tier must be 1-63 characters from a-z, 0-9 and `-` (it names pipelines/tiers/<tier>.toml)",
        ));
    }
    let actor = caller.actor(None)?;
    blocking(move || {
        let store = state.store.as_ref();
        let before = store.customer(&id)?;
        // Runs find the customer's folder through its domain: never move it under a run.
        if let Some(b) = &before
            && b.domain != domain.as_str()
            && let Some(run) = runs::active_run(store, &id)?
        {
            return Err(ApiError::conflict(format!(
                "customer {id} has an active run {} ({}, {}); change its domain when the run has ended",
                run.id, run.pipeline, run.state
            ))
            .with_active_run(&run.id, run.state));
        }
        let record = store.upsert_customer(&id, domain.as_str(), body.tier.as_deref())?;
        let changed = before
            .as_ref()
            .is_none_or(|b| b.domain != record.domain || b.tier != record.tier);
        if changed {
            state.audit(
                Some(&actor),
                if before.is_some() {
                    "customer.updated"
                } else {
                    "customer.registered"
                },
                Some(&id),
                None,
                serde_json::json!({ "domain": record.domain, "tier": record.tier }),
            );
        }
        Ok(Json(record.into()))
    })
    .await
}

/// `?q=&limit=&before=` of the customers list.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ListParams {
    /// Only customers whose id or domain contains this text (in any case).
    #[param(
        max_length = 253,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$",
        example = "shop"
    )]
    q: Option<String>,
    /// At most this many, by domain (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// Start after this domain: the `nextBefore` of the previous page.
    #[param(
        max_length = 253,
        pattern = "^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\\.)+[A-Za-z]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$",
        example = "shop.example.com"
    )]
    before: Option<String>,
}

/// A customer as the list shows it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = CustomerSummary)]
struct SummaryView {
    /// installer-api's id.
    id: String,
    /// DNS domain, the customer's folder name.
    domain: String,
    /// Tier overlay, if any.
    #[schema(required = true)]
    tier: Option<String>,
    layout: Layout,
    /// The live release: in the blue-green layout the release folder `current` names (e.g.
    /// `v1.1.0`), in the current layout the version in `backend/package.json`; `null` when
    /// neither tells.
    #[schema(required = true)]
    release: Option<String>,
    /// The newest line of the backup history, whatever its result.
    #[schema(required = true)]
    last_backup: Option<LastBackupView>,
    /// The customer's queued or running run (the running one first).
    #[schema(required = true)]
    active_run: Option<ActiveRunView>,
}

/// The newest line of a customer's backup history.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = LastBackup)]
struct LastBackupView {
    /// The backup id, once it completed.
    #[schema(required = true)]
    backup_id: Option<String>,
    /// When its run was created (RFC 3339 UTC).
    #[schema(format = DateTime)]
    date: String,
    /// `succeeded`, `failed`, `cancelled`, `interrupted` or `deleted`.
    result: String,
    /// Bytes, when it completed.
    #[schema(required = true)]
    size: Option<u64>,
    /// The run that made (or tried to make) it.
    run_id: String,
}

/// A customer's active run, as the list shows it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ActiveRun)]
struct ActiveRunView {
    /// The run id.
    #[schema(format = Uuid)]
    run_id: String,
    /// `backup`, `restore`, `upgrade`, `verify`…
    pipeline: String,
    /// `queued` or `running`.
    state: RunState,
    /// Latest progress, 0-100 (as `GET /api/runs/{runId}` shows it).
    #[schema(minimum = 0, maximum = 100, required = true)]
    percent: Option<f32>,
    /// The step its latest progress event named.
    #[schema(required = true)]
    step: Option<String>,
}

impl From<Listed> for SummaryView {
    fn from(l: Listed) -> Self {
        Self {
            id: l.customer.id,
            domain: l.customer.domain,
            tier: l.customer.tier,
            layout: l.installed.layout,
            release: l.installed.release,
            last_backup: l.last_backup.map(|b| LastBackupView {
                backup_id: b.backup_id,
                date: b.created_at,
                result: b.result,
                size: b.size,
                run_id: b.run_id,
            }),
            active_run: l.active_run.map(|r| ActiveRunView {
                run_id: r.run_id,
                pipeline: r.pipeline,
                state: r.state,
                percent: r.percent,
                step: r.step,
            }),
        }
    }
}

/// Customers by domain, one page.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = CustomerList)]
struct SummaryList {
    /// The customers, by domain (at most `limit`).
    customers: Vec<SummaryView>,
    /// When more follow: pass it as `?before=` for the next page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_before: Option<String>,
}

/// Lists customers by domain, each with its layout, live release, newest backup history line
/// and active run.
#[utoipa::path(
    get,
    path = "/customers",
    tag = "customers",
    operation_id = "listCustomers",
    params(ListParams),
    responses(
        (status = 200, description = "One page of customers.", body = SummaryList),
        (status = 400, description = "A bad query.", body = ApiProblem, content_type = PROBLEM_JSON),
    ),
)]
async fn list(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListParams>,
) -> Result<Json<SummaryList>, ApiError> {
    let limit = extract::limit(q.limit)?;
    let text = q.q.filter(|t| !t.is_empty());
    if let Some(t) = &text
        && (t.chars().count() > 253 || t.chars().any(char::is_control))
    {
        return Err(ApiError::bad_request(
            "q must be at most 253 characters without control characters",
        ));
    }
    let before = q
        .before
        .map(|b| {
            Domain::parse(&b).map_err(|e| {
                ApiError::bad_request(format!(
                    "before must be a domain, the nextBefore of the previous page: {e}"
                ))
            })
        })
        .transpose()?;
    blocking(move || {
        let page = crate::ops::customers::list(
            state.store.as_ref(),
            &state.settings.customers_root,
            &ListQuery {
                text,
                before: before.map(|d| d.as_str().to_owned()),
                limit,
            },
        )?;
        Ok(Json(SummaryList {
            next_before: page.next_before,
            customers: page.items.into_iter().map(SummaryView::from).collect(),
        }))
    })
    .await
}
