//! `PUT /api/customers/{id}` registers or updates a customer (installer-api calls it when it
//! creates one); `GET /api/customers/{id}` reads it back.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ApiProblem, PROBLEM_JSON};
use super::extract::{self, ApiJson, ApiPath, CustomerPath};
use super::{blocking, runs};
use crate::customer::Domain;
use crate::ops::AppState;
use crate::store::{CustomerRecord, Store};

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_customer, put_customer))
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
                None,
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
