//! The web console at `/`: the Vite build of `console/` embedded in the binary (`rust-embed`,
//! when the host was built after `cargo xtask build` made `console/dist/`; `cfg(qodify_console)`),
//! served as static files. The console routes by the URL's hash, so every other path that is not
//! a file gives `index.html`; `/api/…` paths that match no route stay problem+json 404s. A host
//! built without the console answers `/` with a page that says how to build it.

use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Response};

use super::error::ApiError;

/// The router's fallback: console files for `GET`/`HEAD`, 404 problems for the rest.
pub(super) async fn serve(method: Method, uri: Uri) -> Response {
    let path = uri.path();
    let api_like = ["/api", "/download", "/metrics", "/socket.io"]
        .iter()
        .any(|p| path == *p || path.starts_with(&format!("{p}/")));
    if api_like || !matches!(method, Method::GET | Method::HEAD) {
        return ApiError::not_found("no such route").into_response();
    }
    page(path.trim_start_matches('/'))
}

#[cfg(qodify_console)]
#[derive(rust_embed::RustEmbed)]
// Relative to host/ (the manifest), where build.rs found it.
#[folder = "../console/dist"]
struct Dist;

#[cfg(qodify_console)]
fn page(path: &str) -> Response {
    let (name, file) = match Dist::get(path).filter(|_| !path.is_empty()) {
        Some(file) => (path, file),
        // A path with an extension names a file that is not there; anything else is the page.
        None if path
            .rsplit('/')
            .next()
            .is_some_and(|last| last.contains('.')) =>
        {
            return ApiError::not_found(format!("no such file: /{path}")).into_response();
        }
        None => match Dist::get("index.html") {
            Some(file) => ("index.html", file),
            None => return not_built(),
        },
    };
    let mut response = file.data.into_owned().into_response();
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(file.metadata.mimetype()) {
        h.insert(header::CONTENT_TYPE, v);
    }
    // Vite puts a content hash in every name under assets/; the page itself must be re-checked.
    let cache = if name.starts_with("assets/") {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    response
}

#[cfg(not(qodify_console))]
fn page(path: &str) -> Response {
    if path.is_empty() || path == "index.html" {
        not_built()
    } else {
        ApiError::not_found("no such route").into_response()
    }
}

/// What `/` says when the binary holds no console.
#[cfg_attr(qodify_console, allow(dead_code))]
fn not_built() -> Response {
    let mut response = (
        StatusCode::OK,
        Html(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <title>qodify-host: console not built</title></head><body>\
             <h1>The web console is not built into this host</h1>\
             <p>This qodify-host was compiled without <code>console/dist</code>. Build the console \
             and the host together with <code>cargo xtask build</code> (it runs <code>npm ci</code> \
             and the Vite build in <code>console/</code>, then compiles the host), and start \
             <code>qodify-host serve</code> again.</p>\
             <p>The API is unaffected: see <a href=\"/openapi.json\">/openapi.json</a>.</p>\
             </body></html>\n",
        ),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
