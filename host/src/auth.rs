//! Who is asking: roles, the principal a request acts as, and the secrets people sign in with
//! (named tokens, session cookies, CSRF tokens). Only SHA-256 hashes of tokens and session ids
//! are ever stored: they are 256-bit random values, so a plain hash is as good as a slow one and
//! lets a request be looked up by it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// What a principal may do, each role including the ones below it.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything (customers, backups, runs, events, audit).
    Viewer,
    /// Also runs backups, restores, verifies, upgrades, decides approvals, downloads and deletes
    /// backups, registers customers.
    Operator,
    /// Also manages tokens.
    Admin,
}

impl Role {
    /// `viewer`, `operator` or `admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is not one.
#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not a role: use viewer, operator or admin")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "operator" => Ok(Role::Operator),
            "admin" => Ok(Role::Admin),
            other => Err(UnknownRole(other.to_owned())),
        }
    }
}

/// The name the service token (`QODIFY_API_TOKEN`, installer-api's) acts under; no named token
/// may take it.
pub const SERVICE: &str = "service";

/// Who a request acts as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// A named token's name, or [`SERVICE`].
    pub name: String,
    /// What it may do.
    pub role: Role,
}

impl Principal {
    /// The service token: an admin named [`SERVICE`].
    pub fn service() -> Self {
        Principal {
            name: SERVICE.to_owned(),
            role: Role::Admin,
        }
    }

    /// Whether this is the service token, which may name the person it acts for
    /// (`triggeredBy`); a named token always acts as itself.
    pub fn is_service(&self) -> bool {
        self.name == SERVICE
    }
}

/// The prefix of every named token, so one found in a log or a paste is recognisable (and secret
/// scanners can match it).
pub const TOKEN_PREFIX: &str = "qdf_";

/// A new random secret: `prefix` and 64 hex digits (256 bits from the OS).
pub fn new_secret(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    // The OS random source failing is not something to go on without.
    getrandom::fill(&mut bytes).expect("the OS random number generator failed");
    format!("{prefix}{}", hex::encode(bytes))
}

/// What is stored of a secret: its SHA-256, hex.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Compares in constant time; hashing first makes the time independent of the lengths too.
pub fn secrets_match(given: &str, expected: &str) -> bool {
    let a = Sha256::digest(given.as_bytes());
    let b = Sha256::digest(expected.as_bytes());
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// Checks a token's name: 1-64 characters from `A-Z a-z 0-9 . _ @ -`, starting with a letter or
/// digit, and not [`SERVICE`]. It is what the audit log and the history record.
pub fn check_token_name(name: &str) -> Result<(), String> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '-'));
    let starts_well = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    if name.is_empty() || name.len() > 64 || !ok_chars || !starts_well {
        return Err(format!(
            "`{}` is not a token name: use 1-64 characters from A-Z, a-z, 0-9, `.`, `_`, `@` and \
             `-`, starting with a letter or digit (e.g. ops-anna)",
            name.escape_debug()
        ));
    }
    if name == SERVICE {
        return Err(format!(
            "`{SERVICE}` is the service token's name (QODIFY_API_TOKEN); choose another"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_order_and_parse() {
        assert!(Role::Viewer < Role::Operator && Role::Operator < Role::Admin);
        for r in [Role::Viewer, Role::Operator, Role::Admin] {
            assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
        }
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn secrets_are_random_prefixed_and_hashed() {
        let a = new_secret(TOKEN_PREFIX);
        let b = new_secret(TOKEN_PREFIX);
        assert_ne!(a, b);
        assert!(a.starts_with("qdf_") && a.len() == 4 + 64);
        assert_eq!(hash_secret(&a).len(), 64);
        assert_ne!(hash_secret(&a), hash_secret(&b));
    }

    #[test]
    fn secrets_match_only_when_equal() {
        assert!(secrets_match("t0ken", "t0ken"));
        assert!(!secrets_match("t0ke", "t0ken"));
        assert!(!secrets_match("t0kem", "t0ken"));
        assert!(!secrets_match("", "t0ken"));
    }

    #[test]
    fn token_names_are_checked() {
        for good in ["ops-anna", "support.veli", "a", "deniz@qodify.com", "x_1"] {
            check_token_name(good).unwrap();
        }
        for bad in ["", "-x", "a b", "service", "ayşe", &"a".repeat(65), "a/b"] {
            assert!(check_token_name(bad).is_err(), "{bad}");
        }
    }
}
