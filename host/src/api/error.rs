//! The API's one error type: every failure becomes an `application/problem+json` body (RFC 9457)
//! with a status code, and internal causes are logged, never sent.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::store::{RunRecord, StoreError};

/// Media type of error bodies.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An error answered as `application/problem+json`: `{type, title, status, detail}` plus, for some
/// problems, extra fields (e.g. `activeRunId` on a busy customer).
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    detail: String,
    extra: Map<String, Value>,
}

impl ApiError {
    fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            status,
            detail: detail.into(),
            extra: Map::new(),
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
    pub fn busy(customer: &str, run_id: &str, pipeline: &str, state: &str) -> Self {
        Self::conflict(format!(
            "customer {customer} already has an active run {run_id} ({pipeline}, {state}); wait for it to \
             finish, cancel it with POST /api/runs/{run_id}/cancel, or send \"queue\": true to queue behind it"
        ))
        .with("activeRunId", run_id)
        .with("activeRunState", state)
    }

    /// [`ApiError::busy`] for an active run record.
    pub fn busy_with(run: &RunRecord) -> Self {
        Self::busy(
            &run.customer_id,
            &run.id,
            &run.pipeline,
            &run.state.to_string(),
        )
    }

    /// Adds a field to the problem body.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(key.to_owned(), value.into());
        self
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The detail text.
    pub fn detail(&self) -> &str {
        &self.detail
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
            } => Self::busy(&customer, &run_id, &pipeline, &state.to_string()),
            StoreError::UnknownCustomer(id) => Self::not_found(format!(
                "unknown customer {id}; register it with PUT /api/customers/{id}"
            )),
            e @ StoreError::DomainTaken { .. } => Self::conflict(e.to_string()),
            e @ StoreError::Db(_) => Self::internal("state store", e),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = Map::new();
        body.insert("type".into(), json!("about:blank"));
        body.insert(
            "title".into(),
            json!(self.status.canonical_reason().unwrap_or("Error")),
        );
        body.insert("status".into(), json!(self.status.as_u16()));
        body.insert("detail".into(), json!(self.detail));
        for (k, v) in self.extra {
            body.entry(k).or_insert(v);
        }
        let mut response = (self.status, Value::Object(body).to_string()).into_response();
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
