//! `PUT /api/customers/{id}` registers or updates a customer (installer-api calls it when it
//! creates one); `GET /api/customers/{id}` reads it back.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::extract::{self, ApiJson, ApiPath};
use super::{audit, blocking, runs};
use crate::customer::Domain;
use crate::service::AppState;
use crate::store::{CustomerRecord, Store};

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/customers/{id}", get(get_customer).put(put_customer))
}

/// Body of `PUT /api/customers/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PutCustomer {
    /// The customer's DNS domain (its folder name under the customers root).
    domain: String,
    /// Tier, naming a `pipelines/tiers/<tier>.toml` overlay.
    #[serde(default)]
    tier: Option<String>,
}

/// A customer as the API shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct CustomerView {
    id: String,
    domain: String,
    tier: Option<String>,
    created_at: String,
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

async fn get_customer(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<CustomerView>, ApiError> {
    let id = extract::customer_id(&id)?.to_owned();
    blocking(move || Ok(Json(require(state.store.as_ref(), &id)?.into()))).await
}

async fn put_customer(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<PutCustomer>,
) -> Result<Json<CustomerView>, ApiError> {
    let id = extract::customer_id(&id)?.to_owned();
    let domain = Domain::parse(&body.domain).map_err(|e| ApiError::bad_request(e.to_string()))?;
    if let Some(tier) = &body.tier
        && !crate::plugins::valid_id(tier)
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
            .with("activeRunId", run.id));
        }
        let record = store.upsert_customer(&id, domain.as_str(), body.tier.as_deref())?;
        let changed = before
            .as_ref()
            .is_none_or(|b| b.domain != record.domain || b.tier != record.tier);
        if changed {
            audit::record(
                store,
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
