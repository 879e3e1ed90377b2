//! The upgrade rule of the release catalog, written once for both sides of the WIT boundary: the
//! `release-check` plugin refuses an upgrade by it before anything changes, and the host
//! (`GET /api/customers/{id}/upgrades`) shows by it which releases a customer may upgrade to,
//! and why not the others. A target the host calls allowed is one the check lets through (as far
//! as the catalog decides: the engines' versions are checked when the run starts).
//!
//! The rule: the target is in the catalog, is not the release the customer runs, and lists that
//! release in its `compat.upgradeFrom`. A refusal names the chain of releases that leads there,
//! if the catalog has one ([`upgrade_path`]).
//!
//! No dependencies: callers read `releases.json` themselves and hand over each release's version
//! and `upgradeFrom` as an [`Entry`].

use std::collections::{HashMap, VecDeque};
use std::fmt;

/// One release of the catalog, as the rule sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<'a> {
    /// The version (the release folder's name), e.g. `v1.1.0`.
    pub version: &'a str,
    /// Versions that may upgrade to it directly (`compat.upgradeFrom`).
    pub upgrade_from: &'a [String],
}

/// Why a release may not be installed over the one a customer runs. Its text says what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The catalog has no such release.
    UnknownTarget {
        /// The version asked for.
        target: String,
        /// The catalog's versions, in its order.
        known: Vec<String>,
    },
    /// The customer already runs it.
    AlreadyThere {
        /// The version asked for.
        target: String,
    },
    /// The target does not upgrade from the current release.
    NotFrom {
        /// The version asked for.
        target: String,
        /// The release the customer runs.
        current: String,
        /// The target's `upgradeFrom`.
        allowed: Vec<String>,
        /// The shortest chain of catalog upgrades from `current` to `target`, both ends
        /// included, if there is one.
        path: Option<Vec<String>>,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::UnknownTarget { target, known } => write!(
                f,
                "unknown release `{target}`; the catalog has: {}; add it to releases.json (and \
                 run `qodify-host validate`) or pick one of those",
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            ),
            Refusal::AlreadyThere { target } => {
                write!(f, "the customer already runs {target}; nothing to upgrade")
            }
            Refusal::NotFrom {
                target,
                current,
                allowed,
                path,
            } => {
                let allowed = if allowed.is_empty() {
                    "no version".to_owned()
                } else {
                    allowed.join(", ")
                };
                write!(
                    f,
                    "{target} cannot be installed over {current}: it upgrades from {allowed}; "
                )?;
                match path {
                    // A chain is never shorter than three: a direct upgrade is allowed.
                    Some(path) if path.len() > 2 => write!(
                        f,
                        "upgrade through {} first ({})",
                        path[1..path.len() - 1].join(", then "),
                        path.join(" → ")
                    ),
                    _ => write!(
                        f,
                        "no chain of releases in the catalog leads from {current} to {target}; \
                         add {current} to a release's upgradeFrom if that upgrade is supported"
                    ),
                }
            }
        }
    }
}

impl std::error::Error for Refusal {}

/// Checks that `target` may be installed over `current`; returns the target's index in
/// `catalog`.
pub fn check(catalog: &[Entry<'_>], current: &str, target: &str) -> Result<usize, Refusal> {
    let Some(index) = catalog.iter().position(|r| r.version == target) else {
        return Err(Refusal::UnknownTarget {
            target: target.to_owned(),
            known: catalog.iter().map(|r| r.version.to_owned()).collect(),
        });
    };
    if current == target {
        return Err(Refusal::AlreadyThere {
            target: target.to_owned(),
        });
    }
    let release = &catalog[index];
    if release.upgrade_from.iter().any(|v| v == current) {
        return Ok(index);
    }
    Err(Refusal::NotFrom {
        target: target.to_owned(),
        current: current.to_owned(),
        allowed: release.upgrade_from.to_vec(),
        path: upgrade_path(catalog, current, target),
    })
}

/// The shortest chain of catalog upgrades from `from` to `to`, both ends included.
pub fn upgrade_path(catalog: &[Entry<'_>], from: &str, to: &str) -> Option<Vec<String>> {
    let mut previous: HashMap<&str, &str> = HashMap::new();
    let mut queue = VecDeque::from([from]);
    while let Some(at) = queue.pop_front() {
        if at == to {
            let mut path = vec![to.to_owned()];
            let mut step = to;
            while let Some(&p) = previous.get(step) {
                path.push(p.to_owned());
                step = p;
            }
            path.reverse();
            return Some(path);
        }
        for r in catalog {
            let v = r.version;
            if v != from && !previous.contains_key(v) && r.upgrade_from.iter().any(|f| f == at) {
                previous.insert(v, at);
                queue.push_back(v);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// v1.0.0 → v1.1.0 → v1.2.0, and v2.0.0 only from v1.2.0.
    fn releases() -> Vec<(&'static str, Vec<String>)> {
        vec![
            ("v1.0.0", vec![]),
            ("v1.1.0", vec!["v1.0.0".into()]),
            ("v1.2.0", vec!["v1.1.0".into()]),
            ("v2.0.0", vec!["v1.2.0".into()]),
        ]
    }

    fn entries<'a>(releases: &'a [(&'static str, Vec<String>)]) -> Vec<Entry<'a>> {
        releases
            .iter()
            .map(|(v, from)| Entry {
                version: v,
                upgrade_from: from,
            })
            .collect()
    }

    #[test]
    fn a_target_must_be_known_new_and_upgrade_from_the_current_release() {
        let r = releases();
        let c = entries(&r);
        assert_eq!(check(&c, "v1.0.0", "v1.1.0"), Ok(1));
        let why = |current, target| check(&c, current, target).unwrap_err().to_string();
        assert_eq!(
            why("v1.0.0", "v9"),
            "unknown release `v9`; the catalog has: v1.0.0, v1.1.0, v1.2.0, v2.0.0; add it to \
             releases.json (and run `qodify-host validate`) or pick one of those"
        );
        assert_eq!(
            why("v1.1.0", "v1.1.0"),
            "the customer already runs v1.1.0; nothing to upgrade"
        );
        assert_eq!(
            why("v1.0.0", "v2.0.0"),
            "v2.0.0 cannot be installed over v1.0.0: it upgrades from v1.2.0; upgrade through \
             v1.1.0, then v1.2.0 first (v1.0.0 → v1.1.0 → v1.2.0 → v2.0.0)"
        );
        assert_eq!(
            why("v1.2.0", "v1.1.0"),
            "v1.1.0 cannot be installed over v1.2.0: it upgrades from v1.0.0; no chain of \
             releases in the catalog leads from v1.2.0 to v1.1.0; add v1.2.0 to a release's \
             upgradeFrom if that upgrade is supported"
        );
        assert!(why("v0.9", "v1.0.0").contains("it upgrades from no version"));
        assert!(why("v1.0.0", "v1.0.0").contains("already runs"));
        assert_eq!(
            check(&[], "v1", "v2").unwrap_err().to_string(),
            "unknown release `v2`; the catalog has: none; add it to releases.json (and run \
             `qodify-host validate`) or pick one of those"
        );
    }

    #[test]
    fn upgrade_paths_are_shortest() {
        let mut r = releases();
        assert_eq!(
            upgrade_path(&entries(&r), "v1.0.0", "v2.0.0").unwrap(),
            ["v1.0.0", "v1.1.0", "v1.2.0", "v2.0.0"]
        );
        r[3].1.push("v1.0.0".into());
        assert_eq!(
            upgrade_path(&entries(&r), "v1.0.0", "v2.0.0").unwrap(),
            ["v1.0.0", "v2.0.0"]
        );
        assert_eq!(upgrade_path(&entries(&r), "v2.0.0", "v1.0.0"), None);
        // A version the catalog does not have (an external one) can start a chain.
        assert_eq!(
            upgrade_path(&entries(&r), "v0.9", "v1.0.0"),
            None,
            "nothing upgrades from v0.9"
        );
    }
}
