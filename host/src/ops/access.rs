//! Who may use the host: named tokens (add, list, revoke; the CLI's `tokens` and
//! `/api/tokens`), the bearer token of a request, and the web console's sessions (sign in with a
//! token, look the cookie up, sign out). Every change is audited under the actor who made it.

use std::time::Duration;

use serde_json::json;

use super::{AppState, now};
use crate::auth::{self, Principal, Role};
use crate::store::{SessionRecord, StoreError, TokenRecord};

/// Why an access call failed.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// A bad token name.
    #[error("{0}")]
    BadName(String),
    /// The name is taken.
    #[error(
        "a token named {0} exists already; revoke it first (tokens revoke {0}) or choose another name"
    )]
    Exists(String),
    /// No such token.
    #[error("there is no token named {0}; `qodify-host tokens list` shows them")]
    NoSuchToken(String),
    /// The token given to sign in is not one the host knows.
    #[error(
        "that token is not valid: it was mistyped, revoked, or never added (ask an admin for one: qodify-host tokens add NAME --role viewer|operator|admin)"
    )]
    BadToken,
    /// The store failed.
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for AccessError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::TokenExists(name) => AccessError::Exists(name),
            other => AccessError::Store(other),
        }
    }
}

/// A token just added: its record and, this once, its secret.
#[derive(Debug)]
pub struct NewToken {
    /// What is stored.
    pub record: TokenRecord,
    /// The secret (`qdf_…`), shown once and never again.
    pub secret: String,
}

fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Adds a named token with `role`; audited as `token.added` by `actor`.
pub fn add_token(
    state: &AppState,
    name: &str,
    role: Role,
    actor: &str,
) -> Result<NewToken, AccessError> {
    auth::check_token_name(name).map_err(AccessError::BadName)?;
    let secret = auth::new_secret(auth::TOKEN_PREFIX);
    let record = TokenRecord {
        name: name.to_owned(),
        role,
        created_at: now(),
        created_by: Some(actor.to_owned()),
        last_used_at: None,
    };
    state
        .store
        .add_token(&record, &auth::hash_secret(&secret))?;
    state.audit(
        Some(actor),
        "token.added",
        None,
        None,
        json!({ "name": name, "role": role }),
    );
    Ok(NewToken { record, secret })
}

/// Every named token (never a secret).
pub fn tokens(state: &AppState) -> Result<Vec<TokenRecord>, AccessError> {
    Ok(state.store.tokens()?)
}

/// Revokes a token and ends its sessions at once; audited as `token.revoked`.
pub fn revoke_token(state: &AppState, name: &str, actor: &str) -> Result<(), AccessError> {
    if !state.store.revoke_token(name)? {
        return Err(AccessError::NoSuchToken(name.to_owned()));
    }
    state.audit(
        Some(actor),
        "token.revoked",
        None,
        None,
        json!({ "name": name }),
    );
    Ok(())
}

/// Who a bearer token is: the service token (`QODIFY_API_TOKEN`), a named token, or nobody.
pub fn authenticate(state: &AppState, token: &str) -> Result<Option<Principal>, AccessError> {
    if let Some(service) = state
        .settings
        .api_token
        .as_deref()
        .filter(|t| !t.is_empty())
        && auth::secrets_match(token, service)
    {
        return Ok(Some(Principal::service()));
    }
    if !token.starts_with(auth::TOKEN_PREFIX) {
        return Ok(None);
    }
    let found = state
        .store
        .use_token(&auth::hash_secret(token), &now(), unix_now())?;
    Ok(found.map(|t| Principal {
        name: t.name,
        role: t.role,
    }))
}

/// Whether anyone can sign in at all: a service token is set or a named token exists.
pub fn enabled(state: &AppState) -> Result<bool, AccessError> {
    Ok(state
        .settings
        .api_token
        .as_deref()
        .is_some_and(|t| !t.is_empty())
        || !state.store.tokens()?.is_empty())
}

/// A session just opened: the cookie's value (never stored) and what the store keeps.
#[derive(Debug)]
pub struct NewSession {
    /// The cookie's value.
    pub cookie: String,
    /// The stored session (with the CSRF token).
    pub record: SessionRecord,
}

/// Signs in with a token (named or the service token): a new session for `ttl`; audited as
/// `session.started`.
pub fn sign_in(state: &AppState, token: &str, ttl: Duration) -> Result<NewSession, AccessError> {
    let principal = authenticate(state, token)?.ok_or(AccessError::BadToken)?;
    let cookie = auth::new_secret("");
    let unix = unix_now();
    let record = SessionRecord {
        hash: auth::hash_secret(&cookie),
        principal: principal.name.clone(),
        role: principal.role,
        csrf: auth::new_secret(""),
        created_at: now(),
        expires_unix: unix.saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX)),
    };
    state.store.add_session(&record, unix)?;
    state.audit(
        Some(&principal.name),
        "session.started",
        None,
        None,
        json!({ "role": principal.role }),
    );
    Ok(NewSession { cookie, record })
}

/// The live session a cookie belongs to, if any.
pub fn session(state: &AppState, cookie: &str) -> Result<Option<SessionRecord>, AccessError> {
    Ok(state
        .store
        .session(&auth::hash_secret(cookie), unix_now())?)
}

/// Ends the session a cookie belongs to; audited as `session.ended`.
pub fn sign_out(state: &AppState, session: &SessionRecord) -> Result<(), AccessError> {
    if state.store.end_session(&session.hash)? {
        state.audit(
            Some(&session.principal),
            "session.ended",
            None,
            None,
            json!({}),
        );
    }
    Ok(())
}

/// RFC 3339 of unix seconds.
pub fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}
