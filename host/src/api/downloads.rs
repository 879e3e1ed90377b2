//! Backup downloads: `GET /api/customers/{id}/backups/{backupId}/download` (bearer token) streams
//! one file of a backup (`?file=`, with single-range `Range` / `If-Range` support) or the whole
//! backup as an uncompressed tar; `POST …/download-url` issues a signed, expiring link to the same
//! thing, served without a token by `GET /download/{id}/{backupId}`.
//!
//! Signing keys come from `QODIFY_SIGNING_KEYS` (`kid1:secret1,kid2:secret2`; the first signs,
//! all verify), read when the router is built. Without it one key `k0` is derived from the API
//! token (HMAC-SHA256 of the token over `qodify-download-v1`); with neither, signed links are
//! refused with 503. Files are opened through cap-std inside the customer's folder, and only files
//! the backup's `backup.json` lists (or `backup.json` itself) of a complete backup are served.
//!
//! Several hosts sharing one store (issue 13): a backup is on the disk of its customer's node
//! only. Any other host answers both download routes with `307` to that node's `advertise_url`
//! and the same path and query (a signed link's signature covers customer, backup, file and
//! expiry, not the host, so it verifies on every host that has the same signing keys), or with
//! 409 naming the node when it cannot be sent there (it advertises no URL).

use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::Path as FsPath;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{OriginalUri, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use hmac::{Hmac, Mac as _};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Caller;
use super::error::{ApiError, ApiProblem, PROBLEM_JSON};
use super::extract::{self, ApiPath, ApiQuery, BackupPath, JsonOrDefault};
use super::openapi::Binary;
use super::{backups, blocking, customers};
use crate::backups::{BACKUPS, MANIFEST};
use crate::ops::AppState;
use crate::settings::Settings;
use crate::store::NodeRecord;

type HmacSha256 = Hmac<Sha256>;

/// Environment variable holding the signing keys (`kid1:secret1,kid2:secret2`).
pub const SIGNING_KEYS_ENV: &str = "QODIFY_SIGNING_KEYS";
/// Label of the key derived from the API token.
const DERIVED_LABEL: &[u8] = b"qodify-download-v1";
/// Kid of the key derived from the API token.
pub const DERIVED_KID: &str = "k0";
/// Link lifetime when none is asked for, and the longest allowed (seconds).
const DEFAULT_TTL: u32 = 900;
const MAX_TTL: u32 = 86_400;
/// The one answer to every bad signed link.
const INVALID_LINK: &str = "invalid or expired link";

/// `(kid, secret)` pairs.
type KeyList = Vec<(String, Vec<u8>)>;

/// The keys signed links are made and checked with; the first signs. Never printed.
#[derive(Clone)]
pub struct SigningKeys(Option<Arc<KeyList>>);

impl SigningKeys {
    /// `QODIFY_SIGNING_KEYS` when set (a malformed value disables signed links rather than
    /// falling back), else `k0` derived from the API token, else none.
    pub fn from_env(settings: &Settings) -> Self {
        match std::env::var(SIGNING_KEYS_ENV) {
            Ok(v) if !v.trim().is_empty() => match parse_keys(&v) {
                Ok(keys) => Self(Some(Arc::new(keys))),
                Err(e) => {
                    tracing::error!("{SIGNING_KEYS_ENV}: {e}; signed download links are disabled");
                    Self(None)
                }
            },
            _ => Self(
                settings
                    .api_token
                    .as_deref()
                    .filter(|t| !t.is_empty())
                    .map(|t| Arc::new(vec![(DERIVED_KID.to_owned(), derived_key(t).to_vec())])),
            ),
        }
    }

    fn signing(&self) -> Option<(&str, &[u8])> {
        self.0
            .as_ref()
            .and_then(|k| k.first())
            .map(|(kid, key)| (kid.as_str(), key.as_slice()))
    }

    fn get(&self, kid: &str) -> Option<&[u8]> {
        self.0
            .as_ref()?
            .iter()
            .find(|(k, _)| k == kid)
            .map(|(_, key)| key.as_slice())
    }

    fn configured(&self) -> bool {
        self.0.is_some()
    }
}

/// Parses `kid1:secret1,kid2:secret2` (kids `[A-Za-z0-9_-]{1,32}`, unique; secrets non-empty).
pub fn parse_keys(value: &str) -> Result<KeyList, String> {
    let mut keys = KeyList::new();
    for (i, part) in value.split(',').map(str::trim).enumerate() {
        let Some((kid, secret)) = part.split_once(':') else {
            return Err(format!("entry {} is not `kid:secret`", i + 1));
        };
        let kid = kid.trim();
        let kid_ok = !kid.is_empty()
            && kid.len() <= 32
            && kid
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !kid_ok {
            return Err(format!(
                "entry {}: the kid must be 1-32 characters from A-Z, a-z, 0-9, `-` and `_`",
                i + 1
            ));
        }
        if secret.is_empty() {
            return Err(format!("entry {} (kid {kid}) has an empty secret", i + 1));
        }
        if keys.iter().any(|(k, _)| k == kid) {
            return Err(format!("kid {kid} is listed twice"));
        }
        keys.push((kid.to_owned(), secret.as_bytes().to_vec()));
    }
    Ok(keys)
}

/// The key `k0`: HMAC-SHA256 keyed with the API token over `qodify-download-v1`.
pub fn derived_key(api_token: &str) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(api_token.as_bytes()).expect("HMAC takes any key");
    mac.update(DERIVED_LABEL);
    mac.finalize().into_bytes().into()
}

fn canonical(customer: &str, backup: &str, file: Option<&str>, exp: u64, kid: &str) -> String {
    format!(
        "GET\n{customer}\n{backup}\n{}\n{exp}\n{kid}",
        file.unwrap_or("*")
    )
}

/// The signature of a link: lowercase hex HMAC-SHA256 over
/// `GET\n{customer}\n{backup}\n{file or *}\n{exp}\n{kid}`.
pub fn sign(
    key: &[u8],
    customer: &str,
    backup: &str,
    file: Option<&str>,
    exp: u64,
    kid: &str,
) -> String {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key");
    mac.update(canonical(customer, backup, file, exp, kid).as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The link path and query for a signed download.
pub fn signed_path(
    key: &[u8],
    customer: &str,
    backup: &str,
    file: Option<&str>,
    exp: u64,
    kid: &str,
) -> String {
    let sig = sign(key, customer, backup, file, exp, kid);
    let file = file
        .map(|f| format!("file={}&", percent_encode(f)))
        .unwrap_or_default();
    format!("/download/{customer}/{backup}?{file}exp={exp}&kid={kid}&sig={sig}")
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn unix_now() -> u64 {
    u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp()).unwrap_or(0)
}

/// Routes under `/api` (behind the bearer token).
pub(super) fn api_router(keys: SigningKeys) -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(download))
        .routes(routes!(download_url))
        .layer(Extension(keys))
}

/// The open route of signed links.
pub(super) fn public_router(keys: SigningKeys) -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(signed_download))
        .layer(Extension(keys))
}

/// `?file=` of a download.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct FileQuery {
    /// One file of the backup (`backup.json` or a file it lists, e.g. `db.dump`); left out, the
    /// whole backup as a tar.
    #[param(
        min_length = 1,
        max_length = 255,
        pattern = "^[A-Za-z0-9_-]+(\\.[A-Za-z0-9_-]+)*$",
        example = "db.dump"
    )]
    file: Option<String>,
}

/// Downloads one file of a complete backup (single-range `Range` and `If-Range` supported;
/// the `ETag` is the file's sha256), or the whole backup as an uncompressed tar.
#[utoipa::path(
    get,
    path = "/customers/{id}/backups/{backupId}/download",
    tag = "downloads",
    operation_id = "downloadBackup",
    params(
        BackupPath,
        FileQuery,
        ("Range" = Option<String>, Header, nullable = false, description = "One byte range, e.g. `bytes=1048576-` (with `?file=` only)."),
        ("If-Range" = Option<String>, Header, nullable = false, description = "The `ETag` the range belongs to; another one gets the whole file."),
    ),
    responses(
        (status = 200, description = "The file (`application/octet-stream`) or, without `?file=`, the whole backup as a tar.",
         content(
            (Binary = "application/octet-stream"),
            (Binary = "application/x-tar"),
         ),
         headers(
            ("ETag" = String, description = "The file's sha256, quoted (files only)."),
            ("Content-Disposition" = String, description = "`attachment` with the file name."),
         )),
        (status = 206, description = "The requested range of the file.", body = Binary, content_type = "application/octet-stream",
         headers(
            ("Content-Range" = String, description = "`bytes first-last/length`."),
            ("ETag" = String, description = "The file's sha256, quoted."),
         )),
        (status = 307, description = "The customer belongs to another node: ask it, at the same path and query (send the token again: clients drop `Authorization` when a redirect leaves the host).",
         headers(
            ("Location" = String, description = "The owning node's `advertise_url` followed by this request's path and query."),
         )),
        (status = 400, description = "A bad id or file name.", body = ApiProblem, content_type = PROBLEM_JSON),
        (status = 404, description = "No such customer, complete backup or file.", body = ApiProblem, content_type = PROBLEM_JSON),
        (status = 416, description = "The range starts past the end of the file.", body = ApiProblem, content_type = PROBLEM_JSON),
        (status = 503, description = "The API is disabled (the host has no API token configured).", body = ApiProblem, content_type = PROBLEM_JSON),
        (status = 409, description = "The customer belongs to another node that cannot be sent to: it advertises no URL (`advertise_url`), never sent a heartbeat, or advertises this host's own URL; `node` names it.", body = ApiProblem, content_type = PROBLEM_JSON),
    ),
)]
async fn download(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(BackupPath { id, backup_id }): ApiPath<BackupPath>,
    ApiQuery(q): ApiQuery<FileQuery>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = extract::customer_id(&id)?.to_owned();
    let backup_id = extract::backup_id(&backup_id)?.to_owned();
    if let Some(f) = &q.file {
        check_file_name(f)?;
    }
    if let Holder::Node { url, .. } = holder_of(&state, &id).await? {
        return redirect(&url, &uri);
    }
    serve(
        state,
        id,
        backup_id,
        q.file,
        &headers,
        caller.0.name,
        "api-token".to_owned(),
    )
    .await
}

/// Body of `POST …/download-url` (may be empty: the whole backup, 15 minutes).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(as = DownloadUrlRequest)]
struct UrlRequest {
    /// One file of the backup; left out, the whole backup as a tar.
    #[schema(
        min_length = 1,
        max_length = 255,
        pattern = "^[A-Za-z0-9_-]+(\\.[A-Za-z0-9_-]+)*$",
        example = "uploads.tar.gz"
    )]
    file: Option<String>,
    /// How long the link works (default 900).
    #[serde(default, deserialize_with = "whole_seconds")]
    #[schema(minimum = 1, maximum = 86400, example = 900)]
    ttl_seconds: Option<u32>,
    /// Who asked (a user name or id), for the audit log.
    triggered_by: Option<extract::Actor>,
}

/// `ttlSeconds` as a whole number: `900.0` is as good as `900` (JSON and its schemas do not tell
/// them apart).
fn whole_seconds<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    let whole = n.as_u64().or_else(|| {
        n.as_f64()
            .filter(|f| f.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(f))
            .map(|f| f as u64)
    });
    whole
        .and_then(|v| u32::try_from(v).ok())
        .map(Some)
        .ok_or_else(|| {
            serde::de::Error::custom(format!(
                "ttlSeconds must be a whole number of seconds, not {n}"
            ))
        })
}

/// A signed, expiring download link.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = DownloadUrl)]
struct UrlResponse {
    /// Path and query of the link, relative to the host (`/download/…`); no token needed.
    url: String,
    /// RFC 3339 UTC.
    #[schema(format = DateTime)]
    expires_at: String,
}

/// Issues a signed, expiring link to a download, for a browser (no token needed to use it).
#[utoipa::path(
    post,
    path = "/customers/{id}/backups/{backupId}/download-url",
    tag = "downloads",
    operation_id = "createDownloadUrl",
    params(BackupPath),
    request_body(content = Option<UrlRequest>, description = "May be left out: the whole backup, for 15 minutes."),
    responses(
        (status = 200, description = "The link.", body = UrlResponse),
        (status = 400, description = "A bad id, file name, `ttlSeconds` or body.", body = ApiProblem, content_type = PROBLEM_JSON),
        (status = 404, description = "No such customer, complete backup or file.", body = ApiProblem, content_type = PROBLEM_JSON),
        (status = 413, description = "The body is too large.", body = ApiProblem, content_type = PROBLEM_JSON),
        (status = 415, description = "The body is not JSON.", body = ApiProblem, content_type = PROBLEM_JSON),
        (status = 503, description = "No API token, or signed links are disabled (a malformed `QODIFY_SIGNING_KEYS`).", body = ApiProblem, content_type = PROBLEM_JSON),
        (status = 409, description = "The customer belongs to another node that cannot be sent to: it advertises no URL (`advertise_url`), never sent a heartbeat, or advertises this host's own URL; `node` names it.", body = ApiProblem, content_type = PROBLEM_JSON),
    ),
)]
async fn download_url(
    State(state): State<AppState>,
    caller: Caller,
    Extension(keys): Extension<SigningKeys>,
    ApiPath(BackupPath { id, backup_id }): ApiPath<BackupPath>,
    JsonOrDefault(body): JsonOrDefault<UrlRequest>,
) -> Result<Json<UrlResponse>, ApiError> {
    let id = extract::customer_id(&id)?.to_owned();
    let backup_id = extract::backup_id(&backup_id)?.to_owned();
    let actor = Some(caller.actor(body.triggered_by)?);
    let ttl = body.ttl_seconds.unwrap_or(DEFAULT_TTL);
    if !(1..=MAX_TTL).contains(&ttl) {
        return Err(ApiError::bad_request(format!(
            "ttlSeconds must be between 1 and {MAX_TTL}"
        )));
    }
    let file = body.file;
    if let Some(f) = &file {
        check_file_name(f)?;
    }
    if !keys.configured() {
        return Err(ApiError::unavailable(format!(
            "signed download links are disabled: set {SIGNING_KEYS_ENV} (kid:secret,…) or an API \
             token and restart qodify-host serve"
        )));
    }
    // The link is only issued for something that can be downloaded now: checked on the disk
    // here, or, for a backup another node holds, in the shared history (that node checks the
    // file when the link is used, after this host redirects the link there).
    match holder_of(&state, &id).await? {
        Holder::Here => {
            let (state, id, backup_id, file) =
                (state.clone(), id.clone(), backup_id.clone(), file.clone());
            blocking(move || prepare(&state, &id, &backup_id, file.as_deref()).map(drop)).await?;
        }
        Holder::Node { node, .. } => {
            let (state, id, backup_id) = (state.clone(), id.clone(), backup_id.clone());
            blocking(move || {
                if in_history(state.store.as_ref(), &id, &backup_id)? {
                    Ok(())
                } else {
                    Err(ApiError::not_found(format!(
                        "customer {id} has no backup {backup_id} (by the history; its backups \
                         are on node {node})"
                    )))
                }
            })
            .await?;
        }
    }
    let (kid, key) = keys
        .signing()
        .ok_or_else(|| ApiError::unavailable("signed download links are disabled"))?;
    let exp = unix_now() + u64::from(ttl);
    let url = signed_path(key, &id, &backup_id, file.as_deref(), exp, kid);
    let expires_at = i64::try_from(exp)
        .ok()
        .and_then(|e| time::OffsetDateTime::from_unix_timestamp(e).ok())
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default();
    state.audit(
        actor.as_deref(),
        "backup.download-url",
        Some(&id),
        None,
        serde_json::json!({ "backupId": backup_id, "file": file, "expiresAt": expires_at, "kid": kid }),
    );
    Ok(Json(UrlResponse { url, expires_at }))
}

/// The query of a signed link, as `POST …/download-url` issued it.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct SignedQuery {
    /// The file the link is for; left out, the whole backup.
    file: Option<String>,
    /// Expiry, seconds since the Unix epoch.
    #[param(required = true)]
    exp: Option<String>,
    /// The signing key's id.
    #[param(required = true)]
    kid: Option<String>,
    /// Lowercase hex HMAC-SHA256 of the link.
    #[param(required = true)]
    sig: Option<String>,
}

/// A signed link's download: the same answers as the download under `/api`, without a token.
/// Every bad, altered or expired link gets the same 403.
#[utoipa::path(
    get,
    path = "/download/{id}/{backupId}",
    tag = "downloads",
    operation_id = "signedDownload",
    // Open: no token.
    security(()),
    params(
        BackupPath,
        SignedQuery,
        ("Range" = Option<String>, Header, nullable = false, description = "One byte range, e.g. `bytes=1048576-` (links to one file only)."),
        ("If-Range" = Option<String>, Header, nullable = false, description = "The `ETag` the range belongs to; another one gets the whole file."),
    ),
    responses(
        (status = 200, description = "The file (`application/octet-stream`) or the whole backup as a tar.",
         content(
            (Binary = "application/octet-stream"),
            (Binary = "application/x-tar"),
         ),
         headers(
            ("ETag" = String, description = "The file's sha256, quoted (files only)."),
            ("Content-Disposition" = String, description = "`attachment` with the file name."),
         )),
        (status = 206, description = "The requested range of the file.", body = Binary, content_type = "application/octet-stream",
         headers(
            ("Content-Range" = String, description = "`bytes first-last/length`."),
            ("ETag" = String, description = "The file's sha256, quoted."),
         )),
        (status = 307, description = "A valid link to a backup another node holds: the same link on that node.",
         headers(
            ("Location" = String, description = "The owning node's `advertise_url` followed by this request's path and query."),
         )),
        (status = 403, description = "Invalid or expired link.", body = ApiProblem, content_type = PROBLEM_JSON),
        (status = 404, description = "The backup or file is gone.", body = ApiProblem, content_type = PROBLEM_JSON),
        (status = 416, description = "The range starts past the end of the file.", body = ApiProblem, content_type = PROBLEM_JSON),
        (status = 503, description = "Signed links are disabled on this host (no signing key).", body = ApiProblem, content_type = PROBLEM_JSON),
        (status = 409, description = "The customer belongs to another node that cannot be sent to: it advertises no URL (`advertise_url`), never sent a heartbeat, or advertises this host's own URL; `node` names it.", body = ApiProblem, content_type = PROBLEM_JSON),
    ),
)]
async fn signed_download(
    State(state): State<AppState>,
    Extension(keys): Extension<SigningKeys>,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<SignedQuery>, QueryRejection>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if !keys.configured() {
        return Err(ApiError::unavailable(
            "signed download links are disabled on this host",
        ));
    }
    let (Ok(Path((id, backup_id))), Ok(Query(q))) = (path, query) else {
        return Ok(forbidden());
    };
    if extract::customer_id(&id).is_err() || extract::backup_id(&backup_id).is_err() {
        return Ok(forbidden());
    }
    let (Some(exp), Some(kid), Some(sig)) = (q.exp, q.kid, q.sig) else {
        return Ok(forbidden());
    };
    let Some(key) = keys.get(&kid) else {
        return Ok(forbidden());
    };
    // Canonical decimal only, so one link has exactly one spelling.
    let Some(exp_n) = exp.parse::<u64>().ok().filter(|n| n.to_string() == exp) else {
        return Ok(forbidden());
    };
    let Ok(sig) = hex::decode(&sig) else {
        return Ok(forbidden());
    };
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key");
    mac.update(canonical(&id, &backup_id, q.file.as_deref(), exp_n, &kid).as_bytes());
    if mac.verify_slice(&sig).is_err() || exp_n <= unix_now() {
        return Ok(forbidden());
    }
    // Checked after the signature: a bad link gets the same 403 on every host.
    if let Holder::Node { url, .. } = holder_of(&state, &id).await? {
        return redirect(&url, &uri);
    }
    serve(
        state,
        id,
        backup_id,
        q.file,
        &headers,
        format!("signed-link:{kid}"),
        format!("signed-link:{kid}"),
    )
    .await
}

fn problem(status: StatusCode, detail: &str) -> Response {
    let body = serde_json::json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "detail": detail,
    });
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON))],
        body.to_string(),
    )
        .into_response()
}

fn forbidden() -> Response {
    problem(StatusCode::FORBIDDEN, INVALID_LINK)
}

/// Where a customer's backups are.
#[derive(Debug, PartialEq, Eq)]
enum Holder {
    /// On this host's disk: a customer of this node, of no node, or no customer at all (then
    /// [`prepare`] answers 404).
    Here,
    /// On another node's, whose API is at `url` (its `advertise_url`, no trailing `/`).
    Node { node: String, url: String },
}

async fn holder_of(state: &AppState, id: &str) -> Result<Holder, ApiError> {
    let (state, id) = (state.clone(), id.to_owned());
    blocking(move || holder(&state, &id)).await
}

/// Who holds `id`'s backups; 409 (naming the node in `node`) when another node holds them and
/// cannot be sent to: it advertises no URL, never sent a heartbeat, or advertises this host's
/// own URL (which would send the client round in circles).
fn holder(state: &AppState, id: &str) -> Result<Holder, ApiError> {
    let Some(customer) = state.store.customer(id)? else {
        return Ok(Holder::Here);
    };
    let Some(node) = customer.node.filter(|n| *n != state.settings.node) else {
        return Ok(Holder::Here);
    };
    let record = state.store.nodes()?.into_iter().find(|n| n.name == node);
    let detail = match record {
        Some(NodeRecord {
            advertise_url: Some(url),
            ..
        }) if state.settings.advertise_url.as_deref() != Some(url.as_str()) => {
            return Ok(Holder::Node { node, url });
        }
        Some(NodeRecord {
            advertise_url: Some(url),
            ..
        }) => format!(
            "customer {id}'s backups are on node {node}, which advertises this host's own URL \
             {url}: give every node its own node name and advertise_url"
        ),
        Some(_) => format!(
            "customer {id}'s backups are on node {node}, which advertises no URL: set \
             advertise_url (QODIFY_ADVERTISE_URL) on {node} and restart it so that other hosts \
             can send downloads there, or download through {node} itself"
        ),
        None => format!(
            "customer {id}'s backups are on node {node}, which has never sent a heartbeat to the \
             store: start qodify-host serve on {node} with advertise_url \
             (QODIFY_ADVERTISE_URL) set, or move the customer with PUT /api/customers/{id} \
             {{\"node\": …}}"
        ),
    };
    // A conflict with how the customer is placed, not the host failing: 409, like a move
    // refused while a run is active.
    Err(ApiError::conflict(detail).with_node(node))
}

/// Whether `id`'s history has `backup_id` as a backup that completed and was not deleted.
fn in_history(
    store: &dyn crate::store::Store,
    id: &str,
    backup_id: &str,
) -> Result<bool, ApiError> {
    const PAGE: usize = 1000;
    let mut before: Option<String> = None;
    loop {
        let lines = store.backups(id, PAGE, before.as_deref())?;
        if lines
            .iter()
            .any(|b| b.backup_id.as_deref() == Some(backup_id) && b.result != "deleted")
        {
            return Ok(true);
        }
        match lines.last() {
            Some(last) if lines.len() == PAGE => before = Some(last.run_id.clone()),
            _ => return Ok(false),
        }
    }
}

/// `307` to `base` (another node's `advertise_url`) with this request's path and query, so a
/// signed link keeps its signature and a file download its `?file=`.
fn redirect(base: &str, uri: &axum::http::Uri) -> Result<Response, ApiError> {
    let path = uri.path_and_query().map_or(uri.path(), |pq| pq.as_str());
    let location = HeaderValue::from_str(&format!("{base}{path}"))
        .map_err(|e| ApiError::internal("a redirect's Location", e))?;
    Ok((
        StatusCode::TEMPORARY_REDIRECT,
        [
            (header::LOCATION, location),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
    )
        .into_response())
}

/// A file name as `?file=` may give it: a plain name, no `/`, `..` or control characters.
fn check_file_name(f: &str) -> Result<(), ApiError> {
    let ok = !f.is_empty()
        && f.len() <= 255
        && f != "*"
        && !f.contains('/')
        && !f.contains('\\')
        && !f.contains("..")
        && !f.chars().any(char::is_control);
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "file must be the plain name of a file of the backup (no `/`, no `..`)",
        ))
    }
}

/// What a download serves, opened and checked.
enum Prepared {
    /// One file: open, its length, its ETag value (sha256, unquoted).
    File {
        name: String,
        file: std::fs::File,
        len: u64,
        sha256: String,
    },
    /// `backup.json`, read (small).
    Bytes {
        name: String,
        data: Vec<u8>,
        sha256: String,
    },
    /// The whole backup: every file, open, with its length.
    Tar {
        backup_id: String,
        files: Vec<(String, std::fs::File, u64)>,
    },
}

fn open_in_backup(
    customer: &cap_std::fs::Dir,
    backup_id: &str,
    file: &str,
) -> Result<(std::fs::File, u64), ApiError> {
    let path = FsPath::new(BACKUPS).join(backup_id).join(file);
    let f = customer.open(&path).map_err(|e| {
        tracing::info!("opening {} for a download: {e}", path.display());
        ApiError::not_found(format!("backup {backup_id} has no file {file}"))
    })?;
    let meta = f
        .metadata()
        .map_err(|e| ApiError::internal("reading a backup file's metadata", e))?;
    if !meta.is_file() {
        return Err(ApiError::not_found(format!(
            "backup {backup_id} has no file {file}"
        )));
    }
    Ok((f.into_std(), meta.len()))
}

/// Checks the customer, that the backup is complete now, and the file; opens what is served.
fn prepare(
    state: &AppState,
    id: &str,
    backup_id: &str,
    file: Option<&str>,
) -> Result<Prepared, ApiError> {
    if let Some(f) = file {
        check_file_name(f)?;
    }
    let customer = customers::require(state.store.as_ref(), id)?;
    let dir = backups::open_customer_dir(state, &customer)?;
    let backup = crate::backups::list(&dir)
        .map_err(|e| ApiError::internal("listing backups", format!("{e:#}")))?
        .into_iter()
        .find(|b| b.id == backup_id)
        .ok_or_else(|| ApiError::not_found(format!("customer {id} has no backup {backup_id}")))?;
    match file {
        Some(MANIFEST) => {
            let (mut f, _) = open_in_backup(&dir, backup_id, MANIFEST)?;
            let mut data = Vec::new();
            f.read_to_end(&mut data)
                .map_err(|e| ApiError::internal("reading backup.json", e))?;
            let sha256 = hex::encode(Sha256::digest(&data));
            Ok(Prepared::Bytes {
                name: MANIFEST.to_owned(),
                data,
                sha256,
            })
        }
        Some(name) => {
            let artifact = backup
                .manifest
                .artifacts
                .iter()
                .find(|a| a.file == name)
                .ok_or_else(|| {
                    ApiError::not_found(format!("backup {backup_id} has no file {name}"))
                })?;
            let (file, len) = open_in_backup(&dir, backup_id, name)?;
            Ok(Prepared::File {
                name: name.to_owned(),
                file,
                len,
                sha256: artifact.sha256.to_ascii_lowercase(),
            })
        }
        None => {
            let mut files = Vec::new();
            let names = std::iter::once(MANIFEST)
                .chain(backup.manifest.artifacts.iter().map(|a| a.file.as_str()));
            for name in names {
                let (f, len) = open_in_backup(&dir, backup_id, name)?;
                files.push((name.to_owned(), f, len));
            }
            Ok(Prepared::Tar {
                backup_id: backup_id.to_owned(),
                files,
            })
        }
    }
}

/// Answers a download and records it in the audit log (`backup.downloaded`: the file or `*` for
/// the whole backup, the bytes the answer carries, the range, and how the caller got in: `via`
/// is `api-token` (a token or a session; the actor is its name) or `signed-link:<kid>` (also the
/// actor).
async fn serve(
    state: AppState,
    id: String,
    backup_id: String,
    file: Option<String>,
    headers: &HeaderMap,
    actor: String,
    via: String,
) -> Result<Response, ApiError> {
    let prepared = {
        let (state, id, backup_id, file) =
            (state.clone(), id.clone(), backup_id.clone(), file.clone());
        blocking(move || prepare(&state, &id, &backup_id, file.as_deref())).await?
    };
    let response = answer(prepared, headers).await?;
    let bytes = response
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .or_else(|| response.extensions().get::<TarBytes>().map(|t| t.0));
    let detail = serde_json::json!({
        "backupId": backup_id,
        "file": file.as_deref().unwrap_or("*"),
        "status": response.status().as_u16(),
        "bytes": bytes,
        "range": response.headers().get(header::CONTENT_RANGE).and_then(|v| v.to_str().ok()),
        "via": via,
    });
    tokio::task::spawn_blocking(move || {
        state.audit(Some(&actor), "backup.downloaded", Some(&id), None, detail)
    });
    Ok(response)
}

async fn answer(prepared: Prepared, headers: &HeaderMap) -> Result<Response, ApiError> {
    match prepared {
        Prepared::File {
            name,
            file,
            len,
            sha256,
        } => {
            let etag = format!("\"{sha256}\"");
            match range_for(headers, &etag, len) {
                RangeAnswer::Unsatisfiable => Ok(unsatisfiable(len)),
                RangeAnswer::Full => {
                    let body = file_body(file, 0, len).await?;
                    Ok(file_response(StatusCode::OK, &name, &etag, len, None, body))
                }
                RangeAnswer::Part(a, b) => {
                    let body = file_body(file, a, b - a + 1).await?;
                    Ok(file_response(
                        StatusCode::PARTIAL_CONTENT,
                        &name,
                        &etag,
                        b - a + 1,
                        Some(format!("bytes {a}-{b}/{len}")),
                        body,
                    ))
                }
            }
        }
        Prepared::Bytes { name, data, sha256 } => {
            let etag = format!("\"{sha256}\"");
            let len = data.len() as u64;
            match range_for(headers, &etag, len) {
                RangeAnswer::Unsatisfiable => Ok(unsatisfiable(len)),
                RangeAnswer::Full => Ok(file_response(
                    StatusCode::OK,
                    &name,
                    &etag,
                    len,
                    None,
                    Body::from(data),
                )),
                RangeAnswer::Part(a, b) => {
                    let part = data[a as usize..=b as usize].to_vec();
                    Ok(file_response(
                        StatusCode::PARTIAL_CONTENT,
                        &name,
                        &etag,
                        b - a + 1,
                        Some(format!("bytes {a}-{b}/{len}")),
                        Body::from(part),
                    ))
                }
            }
        }
        Prepared::Tar { backup_id, files } => {
            let (mut response, total) = tar_response(backup_id, files);
            // Not sent as Content-Length (a file could end early); kept for the audit log.
            response.extensions_mut().insert(TarBytes(total));
            Ok(response)
        }
    }
}

async fn file_body(file: std::fs::File, start: u64, len: u64) -> Result<Body, ApiError> {
    use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};
    let mut file = tokio::fs::File::from_std(file);
    if start > 0 {
        file.seek(SeekFrom::Start(start))
            .await
            .map_err(|e| ApiError::internal("seeking in a backup file", e))?;
    }
    Ok(Body::from_stream(
        tokio_util::io::ReaderStream::with_capacity(file.take(len), 64 * 1024),
    ))
}

fn file_response(
    status: StatusCode,
    name: &str,
    etag: &str,
    len: u64,
    content_range: Option<String>,
    body: Body,
) -> Response {
    let mut res = Response::new(body);
    *res.status_mut() = status;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    common_headers(h, name);
    if let Some(cr) = content_range.and_then(|cr| HeaderValue::from_str(&cr).ok()) {
        h.insert(header::CONTENT_RANGE, cr);
    }
    res
}

fn common_headers(h: &mut HeaderMap, name: &str) {
    if let Ok(v) = HeaderValue::from_str(&content_disposition(name)) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
}

/// `attachment; filename="…"`, with `filename*` when the name is not plain ASCII.
fn content_disposition(name: &str) -> String {
    let plain = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
    if plain {
        format!("attachment; filename=\"{name}\"")
    } else {
        let fallback: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        format!(
            "attachment; filename=\"{fallback}\"; filename*=UTF-8''{}",
            percent_encode(name)
        )
    }
}

fn unsatisfiable(len: u64) -> Response {
    let mut res = problem(
        StatusCode::RANGE_NOT_SATISFIABLE,
        &format!("the requested range is outside the file's {len} bytes"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
        res.headers_mut().insert(header::CONTENT_RANGE, v);
    }
    res.headers_mut()
        .insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    res
}

/// What to answer to the request's `Range` / `If-Range` for a file of `len` bytes.
#[derive(Debug, PartialEq, Eq)]
enum RangeAnswer {
    Full,
    /// First and last byte, inclusive.
    Part(u64, u64),
    Unsatisfiable,
}

fn range_for(headers: &HeaderMap, etag: &str, len: u64) -> RangeAnswer {
    let Some(range) = headers.get(header::RANGE) else {
        return RangeAnswer::Full;
    };
    if let Some(if_range) = headers.get(header::IF_RANGE) {
        // Strong comparison; a date (we send no Last-Modified) or another tag: the whole file.
        if if_range.as_bytes() != etag.as_bytes() {
            return RangeAnswer::Full;
        }
    }
    let Ok(range) = range.to_str() else {
        return RangeAnswer::Full;
    };
    parse_range(range, len)
}

/// One `bytes=` range; anything else (several ranges, other units, bad syntax) is ignored, as
/// RFC 9110 allows, and the whole file is sent.
fn parse_range(value: &str, len: u64) -> RangeAnswer {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeAnswer::Full;
    };
    let spec = spec.trim();
    if spec.contains(',') {
        return RangeAnswer::Full;
    }
    let Some((a, b)) = spec.split_once('-') else {
        return RangeAnswer::Full;
    };
    let num = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        // Suffix: the last n bytes.
        let Some(n) = num(b) else {
            return RangeAnswer::Full;
        };
        if n == 0 || len == 0 {
            return RangeAnswer::Unsatisfiable;
        }
        return RangeAnswer::Part(len.saturating_sub(n), len - 1);
    }
    let Some(first) = num(a) else {
        return RangeAnswer::Full;
    };
    let last = if b.is_empty() {
        None
    } else {
        match num(b) {
            Some(last) if last >= first => Some(last),
            _ => return RangeAnswer::Full,
        }
    };
    if first >= len {
        return RangeAnswer::Unsatisfiable;
    }
    RangeAnswer::Part(first, last.map_or(len - 1, |l| l.min(len - 1)))
}

const CHUNK: usize = 64 * 1024;
/// tar's block size: headers and padding come in blocks.
const BLOCK: usize = 512;

/// The tar header of one artifact (`<backup-id>/<name>`, mode 600, its mtime).
fn tar_header(
    backup_id: &str,
    name: &str,
    file: &std::fs::File,
    len: u64,
) -> std::io::Result<Bytes> {
    let mtime = file
        .metadata()
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_path(format!("{backup_id}/{name}"))?;
    header.set_size(len);
    header.set_mode(0o600);
    header.set_mtime(mtime);
    header.set_cksum();
    Ok(Bytes::copy_from_slice(header.as_bytes()))
}

/// One artifact's data, `len` bytes read asynchronously in 64 KiB chunks, then the padding to
/// a whole block; an error if the file shrank while it was being sent.
fn tar_entry_data(
    name: String,
    file: std::fs::File,
    len: u64,
) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send {
    use tokio::io::AsyncReadExt as _;
    struct State {
        name: String,
        file: tokio::fs::File,
        left: u64,
        padded: bool,
        len: u64,
    }
    let state = State {
        name,
        file: tokio::fs::File::from_std(file),
        left: len,
        padded: false,
        len,
    };
    futures_util::stream::unfold(Some(state), |state| async move {
        let mut st = state?;
        if st.left == 0 {
            if st.padded {
                return None;
            }
            st.padded = true;
            let pad = (BLOCK - (st.len % BLOCK as u64) as usize) % BLOCK;
            return Some((Ok(Bytes::from(vec![0u8; pad])), Some(st)));
        }
        let mut buf = vec![0u8; CHUNK.min(st.left as usize)];
        match st.file.read(&mut buf).await {
            Ok(0) => Some((
                Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("{} shrank while it was being sent", st.name),
                )),
                None,
            )),
            Ok(n) => {
                buf.truncate(n);
                st.left -= n as u64;
                Some((Ok(Bytes::from(buf)), Some(st)))
            }
            Err(e) => Some((Err(e), None)),
        }
    })
}

/// Streams the whole backup as an uncompressed tar built on the fly (no `Content-Length`). Every
/// read is a short async file read: a slow client holds no thread, only its open files.
/// The size of a streamed whole-backup tar, as planned.
#[derive(Clone, Copy)]
struct TarBytes(u64);

fn tar_response(backup_id: String, files: Vec<(String, std::fs::File, u64)>) -> (Response, u64) {
    use futures_util::StreamExt as _;
    let mut total = 2 * BLOCK as u64;
    let name = format!("{backup_id}.tar");
    let mut parts: Vec<futures_util::stream::BoxStream<'static, std::io::Result<Bytes>>> =
        Vec::new();
    for (file_name, mut file, len) in files {
        let header = file
            .seek(SeekFrom::Start(0))
            .and_then(|_| tar_header(&backup_id, &file_name, &file, len));
        match header {
            Ok(h) => {
                total += h.len() as u64 + len.div_ceil(BLOCK as u64) * BLOCK as u64;
                parts.push(futures_util::stream::once(async move { Ok(h) }).boxed());
                parts.push(tar_entry_data(file_name, file, len).boxed());
            }
            Err(e) => {
                tracing::info!("streaming backup {backup_id} as a tar stopped: {e}");
                parts.push(futures_util::stream::once(async move { Err(e) }).boxed());
                break;
            }
        }
    }
    // The end of the archive: two zero blocks.
    parts.push(futures_util::stream::once(async { Ok(Bytes::from(vec![0u8; 2 * BLOCK])) }).boxed());
    // Stop at the first error: the client sees a cut response, never a tar that looks whole.
    let stream = futures_util::stream::iter(parts)
        .flatten()
        .scan(false, |failed, item| {
            let out = if *failed { None } else { Some(item) };
            if let Some(Err(_)) = &out {
                *failed = true;
            }
            futures_util::future::ready(out)
        });
    let mut res = Response::new(Body::from_stream(stream));
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-tar"),
    );
    common_headers(h, &name);
    (res, total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        use RangeAnswer::*;
        assert_eq!(parse_range("bytes=10-19", 100), Part(10, 19));
        assert_eq!(parse_range("bytes=10-", 100), Part(10, 99));
        assert_eq!(parse_range("bytes=-5", 100), Part(95, 99));
        assert_eq!(parse_range("bytes=-500", 100), Part(0, 99));
        assert_eq!(parse_range("bytes=90-500", 100), Part(90, 99));
        assert_eq!(parse_range("bytes=100-", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=0-", 0), Unsatisfiable);
        assert_eq!(parse_range("bytes=5-1", 100), Full);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), Full);
        assert_eq!(parse_range("items=0-1", 100), Full);
        assert_eq!(parse_range("bytes=x-1", 100), Full);
    }

    #[test]
    fn keys_parse() {
        let keys = parse_keys("a:one, b-2:two:with:colons").unwrap();
        assert_eq!(keys[0], ("a".to_owned(), b"one".to_vec()));
        assert_eq!(keys[1], ("b-2".to_owned(), b"two:with:colons".to_vec()));
        assert!(parse_keys("a:").is_err());
        assert!(parse_keys("nosecret").is_err());
        assert!(parse_keys("a:1,a:2").is_err());
        assert!(parse_keys("bad kid:1").is_err());
    }

    #[test]
    fn links_encode_the_file() {
        let p = signed_path(b"k", "42", "20260101-000000", Some("a b&c"), 5, "k0");
        assert!(p.starts_with("/download/42/20260101-000000?file=a%20b%26c&exp=5&kid=k0&sig="));
        assert_eq!(
            content_disposition("db.dump"),
            "attachment; filename=\"db.dump\""
        );
    }
}
