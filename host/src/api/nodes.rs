//! `GET /api/nodes`: the hosts sharing the store (issue 13), each with the age of its last
//! heartbeat and the runs it has to run: the ones it runs and its customers' queued ones.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::blocking;
use super::error::ApiError;
use crate::ops::AppState;
use crate::store::{RunRecord, RunState};

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list))
}

/// A node as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Node)]
struct NodeView {
    /// Its name (the setting `node`, by default the hostname).
    name: String,
    /// The host's version at its last heartbeat.
    version: String,
    /// When its process started (RFC 3339 UTC).
    #[schema(format = DateTime)]
    started_at: String,
    /// Its last heartbeat (RFC 3339 UTC); a live node beats every 10 s.
    #[schema(format = DateTime)]
    heartbeat_at: String,
    /// Milliseconds since its last heartbeat, by this host's clock.
    #[schema(minimum = 0)]
    heartbeat_age_ms: u64,
    /// Where other hosts send clients for what only it has (its `advertise_url`), if set.
    #[schema(required = true)]
    advertise_url: Option<String>,
    /// Whether it is the host that answers.
    this_node: bool,
    /// The runs it runs, then its customers' queued runs, oldest first.
    active_runs: Vec<NodeRunView>,
}

/// An active run as the nodes list shows it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = NodeRun)]
struct NodeRunView {
    /// The run id.
    #[schema(format = Uuid)]
    run_id: String,
    /// The customer id.
    customer_id: String,
    /// `backup`, `restore`, `upgrade`…
    pipeline: String,
    /// `queued` or `running`.
    state: RunState,
    /// When it started running.
    #[schema(format = DateTime, required = true)]
    started_at: Option<String>,
    /// Latest progress, 0-100.
    #[schema(minimum = 0, maximum = 100, required = true)]
    progress: Option<f32>,
}

impl From<RunRecord> for NodeRunView {
    fn from(r: RunRecord) -> Self {
        Self {
            run_id: r.id,
            customer_id: r.customer_id,
            pipeline: r.pipeline,
            state: r.state,
            started_at: r.started_at,
            progress: r.progress,
        }
    }
}

/// The nodes.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = NodeList)]
struct NodeList {
    /// The host that answers.
    this_node: String,
    /// Every node that ever beat, by name.
    nodes: Vec<NodeView>,
    /// Queued runs of customers no node has claimed yet (with PostgreSQL they wait until the
    /// node that has the customer's folder claims it, or the customer is given a node).
    unassigned_runs: Vec<NodeRunView>,
}

/// Lists the nodes sharing this host's store, with their heartbeats and active runs.
#[utoipa::path(
    get,
    path = "/nodes",
    tag = "nodes",
    operation_id = "listNodes",
    responses(
        (status = 200, description = "The nodes, by name.", body = NodeList),
    ),
)]
async fn list(State(state): State<AppState>) -> Result<Json<NodeList>, ApiError> {
    blocking(move || {
        let store = state.store.as_ref();
        let nodes = store.nodes()?;
        let mut runs = store.active_runs_by_node()?;
        let (_, now_ms) = crate::store::now();
        let this = state.settings.node.clone();
        let nodes = nodes
            .into_iter()
            .map(|n| {
                let (mine, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut runs)
                    .into_iter()
                    .partition(|(node, _)| node.as_deref() == Some(n.name.as_str()));
                runs = rest;
                NodeView {
                    this_node: n.name == this,
                    heartbeat_age_ms: u64::try_from(now_ms.saturating_sub(n.heartbeat_ms))
                        .unwrap_or(0),
                    name: n.name,
                    version: n.version,
                    started_at: n.started_at,
                    heartbeat_at: n.heartbeat_at,
                    advertise_url: n.advertise_url,
                    active_runs: mine.into_iter().map(|(_, r)| r.into()).collect(),
                }
            })
            .collect();
        let unassigned_runs = runs
            .into_iter()
            .filter(|(node, _)| node.is_none())
            .map(|(_, r)| r.into())
            .collect();
        Ok(Json(NodeList {
            this_node: this,
            nodes,
            unassigned_runs,
        }))
    })
    .await
}
