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
    /// The node whose workers run its runs. Left out: the node it has (none at first: the host
    /// that has its folder under its customers root claims it). A different node moves it, which
    /// is refused (409) while it has an active run.
    #[serde(default)]
    #[schema(
        max_length = 253,
        pattern = "^[A-Za-z0-9][A-Za-z0-9._-]*$",
        example = "web-2"
    )]
    node: Option<String>,
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
    /// The node whose workers run its runs; `null` until a node claims it.
    #[schema(required = true)]
    node: Option<String>,
}

impl From<CustomerRecord> for CustomerView {
    fn from(c: CustomerRecord) -> Self {
        Self {
            id: c.id,
            domain: c.domain,
            tier: c.tier,
            created_at: c.created_at,
            updated_at: c.updated_at,
            node: c.node,
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
/// one), or moves it to another node. Without a node, a customer of no node is claimed by this
/// host when its folder is here; otherwise by the node that has it, when that node is told.
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
        (status = 409, description = "The domain belongs to another customer, or the customer has an active run and the domain or node would change.", body = ApiProblem, content_type = PROBLEM_JSON),
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
    if let Some(node) = &body.node
        && !crate::store::valid_node(node)
    {
        return Err(ApiError::bad_request(
            "node must be a node name: 1-253 characters from A-Z, a-z, 0-9, `.`, `_` and `-`, \
             starting with a letter or digit",
        ));
    }
    let actor = caller.actor(None)?;
    blocking(move || {
        let store = state.store.as_ref();
        let before = store.customer(&id)?;
        // Runs find the customer's folder through its domain, on its node's disk: never move it
        // under a run.
        let moving = body
            .node
            .as_deref()
            .is_some_and(|n| before.as_ref().is_none_or(|b| b.node.as_deref() != Some(n)));
        if let Some(b) = &before
            && (b.domain != domain.as_str() || moving)
            && let Some(run) = runs::active_run(store, &id)?
        {
            let what = if moving { "node" } else { "domain" };
            return Err(ApiError::conflict(format!(
                "customer {id} has an active run {} ({}, {}); change its {what} when the run has ended",
                run.id, run.pipeline, run.state
            ))
            .with_active_run(&run.id, run.state));
        }
        let mut record = store.upsert_customer(&id, domain.as_str(), body.tier.as_deref())?;
        match &body.node {
            // The store checks again, atomically, that no run became active meanwhile.
            Some(node) if moving => record = store.move_customer(&id, node)?,
            Some(_) => {}
            None => {
                if record.node.is_none()
                    && std::fs::symlink_metadata(
                        state.settings.customers_root.join(&record.domain),
                    )
                    .is_ok_and(|m| m.is_dir())
                    && store.adopt_customer(&id, &state.settings.node)?
                {
                    record = require(store, &id)?;
                }
            }
        }
        if moving && before.is_some() {
            state.audit(
                Some(&actor),
                "customer.moved",
                Some(&id),
                None,
                serde_json::json!({
                    "from": before.as_ref().and_then(|b| b.node.clone()),
                    "to": record.node,
                }),
            );
        }
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
                serde_json::json!({
                    "domain": record.domain,
                    "tier": record.tier,
                    "node": record.node,
                }),
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
    /// The node whose workers run its runs; `null` until a node claims it.
    #[schema(required = true)]
    node: Option<String>,
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
            node: l.customer.node,
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
