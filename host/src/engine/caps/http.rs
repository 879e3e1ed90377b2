//! `http`: requests to the origins a step's `http` grants allow, for health checks. Only `GET` and
//! `HEAD` over plain `http://`; redirects are not followed (a redirect could leave the granted
//! origins); bodies are capped; every request is bounded by the step's deadline.

use std::io::Read as _;
use std::time::{Duration, Instant};

use super::StepHost;
use crate::engine::bindings::http::{Host, HttpError, Request, Response};
use crate::pipeline::HttpGrant;

/// Body bytes kept per response.
const MAX_BODY: u64 = 1 << 20;
/// Timeout when the step gives none.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Checks `url` against the grants; `Ok` is the parsed URL.
pub fn check_grant(grants: &[HttpGrant], method: &str, url: &str) -> Result<url::Url, HttpError> {
    if !matches!(method, "GET" | "HEAD") {
        return Err(HttpError::NotGranted(format!(
            "method `{method}` is not allowed: health checks use GET or HEAD"
        )));
    }
    let parsed = url::Url::parse(url).map_err(|e| HttpError::BadUrl(format!("`{url}`: {e}")))?;
    if parsed.scheme() != "http" {
        return Err(HttpError::BadUrl(format!(
            "`{url}`: only http:// URLs are supported"
        )));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(HttpError::BadUrl(format!(
            "`{url}`: user info is not allowed"
        )));
    }
    let host = parsed
        .host_str()
        .ok_or_else(|| HttpError::BadUrl(format!("`{url}`: no host")))?
        .to_ascii_lowercase();
    let port = parsed.port_or_known_default().unwrap_or(80);
    let granted = grants
        .iter()
        .any(|g| g.host == host && g.port.is_none_or(|p| p == port));
    if !granted {
        let list: Vec<&str> = grants.iter().map(|g| g.origin.as_str()).collect();
        return Err(HttpError::NotGranted(format!(
            "origin http://{host}:{port} is not granted to this step (granted: {}); add it under [[steps.http]] in the pipeline",
            if list.is_empty() {
                "none".to_owned()
            } else {
                list.join(", ")
            }
        )));
    }
    Ok(parsed)
}

impl Host for StepHost {
    fn send(&mut self, req: Request) -> Result<Response, HttpError> {
        if self.should_stop() {
            return Err(HttpError::Cancelled);
        }
        let url = check_grant(&self.http, &req.method, &req.url);
        self.note_origin(&req.url, url.is_ok());
        let url = url?;
        let left = self.deadline.saturating_duration_since(Instant::now());
        let timeout = req
            .timeout_ms
            .map_or(DEFAULT_TIMEOUT, Duration::from_millis)
            .min(left);
        let agent = ureq::AgentBuilder::new()
            .redirects(0)
            .timeout(timeout)
            .build();
        let mut call = agent.request_url(&req.method, &url);
        for (name, value) in &req.headers {
            call = call.set(name, value);
        }
        let started = Instant::now();
        let resp = match call.call() {
            Ok(r) | Err(ureq::Error::Status(_, r)) => r,
            Err(ureq::Error::Transport(t)) => {
                if self.cancel.is_cancelled() {
                    return Err(HttpError::Cancelled);
                }
                if started.elapsed() >= timeout {
                    return Err(HttpError::TimedOut);
                }
                return Err(HttpError::Transport(self.redact(&t.to_string())));
            }
        };
        let status = resp.status();
        let headers = resp
            .headers_names()
            .into_iter()
            .filter_map(|n| {
                let v = resp.header(&n)?.to_owned();
                Some((n.to_ascii_lowercase(), v))
            })
            .collect();
        let mut body = Vec::new();
        if req.method != "HEAD" {
            resp.into_reader()
                .take(MAX_BODY)
                .read_to_end(&mut body)
                .map_err(|e| {
                    if started.elapsed() >= timeout {
                        HttpError::TimedOut
                    } else {
                        HttpError::Transport(format!("reading the body: {e}"))
                    }
                })?;
        }
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(origin: &str) -> HttpGrant {
        let (host, port) = HttpGrant::parse(origin).unwrap();
        HttpGrant {
            origin: origin.into(),
            host,
            port,
            reason: None,
        }
    }

    #[test]
    fn only_granted_origins_and_safe_methods_pass() {
        let grants = [grant("http://127.0.0.1:*"), grant("http://localhost:3000")];
        assert!(check_grant(&grants, "GET", "http://127.0.0.1:8080/health").is_ok());
        assert!(check_grant(&grants, "HEAD", "http://localhost:3000/").is_ok());
        for (method, url) in [
            ("GET", "http://localhost:3001/"),
            ("GET", "http://10.0.0.1:80/"),
            ("GET", "http://example.com/"),
            ("POST", "http://127.0.0.1:8080/"),
        ] {
            assert!(
                matches!(
                    check_grant(&grants, method, url),
                    Err(HttpError::NotGranted(_))
                ),
                "{method} {url}"
            );
        }
        for url in [
            "https://127.0.0.1:8080/",
            "http://user:pw@127.0.0.1:8080/",
            "not a url",
            "file:///etc/passwd",
        ] {
            assert!(
                matches!(check_grant(&grants, "GET", url), Err(HttpError::BadUrl(_))),
                "{url}"
            );
        }
        assert!(matches!(
            check_grant(&[], "GET", "http://127.0.0.1:80/"),
            Err(HttpError::NotGranted(m)) if m.contains("granted: none")
        ));
    }
}
