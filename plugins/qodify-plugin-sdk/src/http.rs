//! HTTP requests to the origins the step's `http` grants allow (health checks): `GET` and `HEAD`
//! over plain `http://`, no redirects, bodies capped at 1 MiB.
//!
//! ```no_run
//! use qodify_plugin_sdk::http;
//! # fn check() -> Result<(), qodify_plugin_sdk::Error> {
//! let resp = http::get("http://127.0.0.1:3000/health", std::time::Duration::from_secs(5))?;
//! if resp.status != 200 {
//!     return Err(qodify_plugin_sdk::Error::command_failed(format!("health: {}", resp.status)));
//! }
//! # Ok(()) }
//! ```

use std::time::Duration;

use crate::__private::bindings::qodify::pipeline::http as wit;
use crate::{Error, ErrorKind};

/// A response (any status).
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Headers, names lowercase.
    pub headers: Vec<(String, String)>,
    /// The body (at most 1 MiB).
    pub body: Vec<u8>,
}

impl Response {
    /// The first header named `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Why a request got no response. `Transport` and `TimedOut` are what an unhealthy service
/// looks like; the others are mistakes in the step or its grants.
pub fn send(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    timeout: Duration,
) -> Result<Response, Error> {
    let req = wit::Request {
        method: method.to_owned(),
        url: url.to_owned(),
        headers: headers
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect(),
        timeout_ms: Some(timeout.as_millis().min(u128::from(u64::MAX)) as u64),
    };
    wit::send(&req)
        .map(|r| Response {
            status: r.status,
            headers: r.headers,
            body: r.body,
        })
        .map_err(|e| match e {
            wit::HttpError::NotGranted(m) => {
                Error::new(ErrorKind::PermissionDenied, format!("{method} {url}: {m}"))
            }
            wit::HttpError::BadUrl(m) => Error::invalid_config(format!("{method} {url}: {m}")),
            wit::HttpError::Transport(m) => Error::io(format!("{method} {url}: {m}")),
            wit::HttpError::TimedOut => Error::io(format!(
                "{method} {url}: no response within {} ms",
                timeout.as_millis()
            )),
            wit::HttpError::Cancelled => Error::cancelled(),
        })
}

/// `GET url`.
pub fn get(url: &str, timeout: Duration) -> Result<Response, Error> {
    send("GET", url, &[], timeout)
}
