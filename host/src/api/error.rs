//! The API's one error type: every failure becomes an `application/problem+json` body (RFC 9457)
//! with a status code, and internal causes are logged, never sent.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::store::{RunRecord, RunState, StoreError};

/// Media type of error bodies.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An error answered as `application/problem+json`: `{type, title, status, detail}` plus, for some
/// problems, extra fields (e.g. `activeRunId` on a busy customer).
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    // Boxed: every handler returns `Result<_, ApiError>`, so the error stays small.
    body: Box<ApiProblem>,
}

/// The body of every error answer (RFC 9457 problem details); `ApiProblem` in the OpenAPI
/// document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiProblem {
    /// Always `about:blank`: the status code says what kind of problem it is.
    #[serde(rename = "type")]
    #[schema(example = "about:blank")]
    pub kind: String,
    /// The status code's reason phrase.
    #[schema(example = "Not Found")]
    pub title: String,
    /// The HTTP status code.
    #[schema(example = 404)]
    pub status: u16,
    /// What went wrong and what to do next, for people.
    #[schema(example = "unknown customer 42; register it with PUT /api/customers/42")]
    pub detail: String,
    /// 409 for a busy customer: its active run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub active_run_id: Option<String>,
    /// 409 for a busy customer: the active run's state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub active_run_state: Option<RunState>,
    /// 409 for a pinned backup: why it is pinned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub pinned: Option<String>,
    /// 409 for cancelling a finished run: the state it finished in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub state: Option<RunState>,
    /// 503 for a download of a backup another node holds: that node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub node: Option<String>,
}

impl ApiError {
    fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            status,
            body: Box::new(ApiProblem {
                kind: "about:blank".to_owned(),
                title: status.canonical_reason().unwrap_or("Error").to_owned(),
                status: status.as_u16(),
                detail: detail.into(),
                active_run_id: None,
                active_run_state: None,
                pinned: None,
                state: None,
                node: None,
            }),
        }
    }

    /// 400: malformed JSON, wrong types, ids or values of the wrong shape.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail)
    }

    /// 401: no or wrong bearer token.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, detail)
    }

    /// 403: the principal's role may not do this, or a cookie mutation lacks its CSRF token.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, detail)
    }

    /// 404: no such customer, run or backup (or route).
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, detail)
    }

    /// 405: the route exists, the method does not.
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "this method is not allowed on this path",
        )
    }

    /// 409: the request conflicts with the current state (busy customer, finished run, pin…).
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, detail)
    }

    /// 413: the body is larger than the API accepts.
    pub fn payload_too_large(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, detail)
    }

    /// 415: a body that is not JSON.
    pub fn unsupported_media_type(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, detail)
    }

    /// 422: well-formed, but asks for something that cannot be done (e.g. restore nothing).
    pub fn unprocessable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, detail)
    }

    /// 503: the API cannot serve requests at all (no token configured).
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, detail)
    }

    /// 500: logs `cause` (with `context`) under a fresh reference and answers only the reference,
    /// so paths, SQL and secrets in the cause never reach the client.
    pub fn internal(context: &str, cause: impl std::fmt::Display) -> Self {
        let reference = uuid::Uuid::now_v7().simple().to_string();
        tracing::error!(reference = %reference, "{context}: {cause}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("internal error (reference {reference}); the host log has the cause"),
        )
    }

    /// 409 for a customer that already has an active run, naming it in the detail and in
    /// `activeRunId` / `activeRunState`.
    pub fn busy(customer: &str, run_id: &str, pipeline: &str, state: RunState) -> Self {
        Self::conflict(format!(
            "customer {customer} already has an active run {run_id} ({pipeline}, {state}); wait for it to \
             finish, cancel it with POST /api/runs/{run_id}/cancel, or send \"queue\": true to queue behind it"
        ))
        .with_active_run(run_id, state)
    }

    /// [`ApiError::busy`] for an active run record.
    pub fn busy_with(run: &RunRecord) -> Self {
        Self::busy(&run.customer_id, &run.id, &run.pipeline, run.state)
    }

    /// Names the active run in the problem body (`activeRunId`, `activeRunState`).
    pub fn with_active_run(mut self, run_id: &str, state: RunState) -> Self {
        self.body.active_run_id = Some(run_id.to_owned());
        self.body.active_run_state = Some(state);
        self
    }

    /// Says why a backup is pinned (`pinned`).
    pub fn with_pinned(mut self, reason: impl Into<String>) -> Self {
        self.body.pinned = Some(reason.into());
        self
    }

    /// Names the state a run is in (`state`).
    pub fn with_state(mut self, state: RunState) -> Self {
        self.body.state = Some(state);
        self
    }

    /// Names the node a problem is about (`node`).
    pub fn with_node(mut self, node: impl Into<String>) -> Self {
        self.body.node = Some(node.into());
        self
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The detail text.
    pub fn detail(&self) -> &str {
        &self.body.detail
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Busy {
                customer,
                run_id,
                pipeline,
                state,
            } => Self::busy(&customer, &run_id, &pipeline, state),
            StoreError::UnknownCustomer(id) => Self::not_found(format!(
                "unknown customer {id}; register it with PUT /api/customers/{id}"
            )),
            e @ (StoreError::DomainTaken { .. } | StoreError::TokenExists(_)) => {
                Self::conflict(e.to_string())
            }
            e @ StoreError::Db(_) => Self::internal("state store", e),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_string(&self.body).unwrap_or_default();
        let mut response = (self.status, body).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"qodify-host\""),
            );
        }
        response
    }
}
