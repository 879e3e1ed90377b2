//! The merge of one service's `.env` (pure: text in, text and a diff of key names out).
//!
//! Rules (plan §8 step 3): every existing key keeps its value; keys of the release's
//! `.env.example` that the old file lacks are added with the example's value; the release
//! catalog's deliberate changes are applied (`set` changes a value, `remove` drops a key: both
//! need approval, unless `set` gives the value the key already has); keys the example does not
//! know are kept and reported as `extra`. The old file's lines, order and comments stay; a
//! removed key leaves a comment in its place; new keys go at the end under
//! `# added by upgrade to <version>`.

use serde::Serialize;
use upgrade_kit::catalog::EnvChanges;

use crate::envfile::{Assign, Entry, EnvFile, is_key, quote_value};

/// What a merge changes, as key names only (values never leave this module).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Diff {
    /// Keys added (from the example, or set by the catalog where the old file had none).
    pub added: Vec<String>,
    /// Existing keys whose value the catalog changes (approval needed).
    pub changed: Vec<String>,
    /// Existing keys the catalog removes (approval needed).
    pub removed: Vec<String>,
    /// Existing keys the example does not know; kept as they are.
    pub extra: Vec<String>,
}

impl Diff {
    /// True when the merge changes or drops something that exists: a person must approve it.
    pub fn needs_approval(&self) -> bool {
        !self.changed.is_empty() || !self.removed.is_empty()
    }
}

/// The merged file and what changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merged {
    /// The new `.env` text.
    pub text: String,
    /// Key names of what changed.
    pub diff: Diff,
}

/// Checks a service's deliberate changes: plain key names, no key both set and removed, values
/// that can be written to a `.env`. Errors name keys only; `what` names the catalog entry.
pub fn check_changes(changes: &EnvChanges, what: &str) -> Result<(), String> {
    for key in changes.set.keys().chain(&changes.remove) {
        if !is_key(key) {
            return Err(format!(
                "{what}: `{key}` is not a variable name ([A-Za-z0-9_.-]); fix the release catalog"
            ));
        }
    }
    if let Some(key) = changes.remove.iter().find(|k| changes.set.contains_key(*k)) {
        return Err(format!(
            "{what}: `{key}` is both set and removed; keep one of them in the release catalog"
        ));
    }
    if let Some((key, _)) = changes.set.iter().find(|(_, v)| quote_value(v).is_none()) {
        return Err(format!(
            "{what}: the value set for `{key}` holds every quote character and a line break, so \
             no .env quoting keeps it intact; simplify it in the release catalog"
        ));
    }
    Ok(())
}

/// Merges the live `.env` text `old` with the release's `.env.example` text `example` and the
/// catalog's `changes`, for the release `version` (named in comments). `changes` must have passed
/// [`check_changes`].
pub fn merge(old: &str, example: &str, changes: &EnvChanges, version: &str) -> Merged {
    let mut file = EnvFile::parse(old);
    let example = EnvFile::parse(example);
    let old_keys: Vec<String> = file.keys().into_iter().map(str::to_owned).collect();
    let has_old = |key: &str| old_keys.iter().any(|k| k == key);
    let example_keys = example.keys();
    let mut diff = Diff::default();

    // Removals: the first assignment becomes a comment, later ones go.
    for key in &changes.remove {
        if !has_old(key) {
            continue;
        }
        diff.removed.push(key.clone());
        let mut first = true;
        file.entries.retain_mut(|entry| match entry {
            Entry::Assign(a) if a.key == *key => {
                if first {
                    *entry = Entry::Other(format!("# {key} removed by upgrade to {version}"));
                    first = false;
                    true
                } else {
                    false
                }
            }
            _ => true,
        });
    }

    // Changes of existing keys: the assignment that counts (the last) is rewritten in place.
    for (key, value) in &changes.set {
        if !has_old(key) || file.get(key).as_deref() == Some(value.as_str()) {
            continue;
        }
        diff.changed.push(key.clone());
        let last = file
            .entries
            .iter_mut()
            .rev()
            .find_map(|e| match e {
                Entry::Assign(a) if a.key == *key => Some(a),
                _ => None,
            })
            .expect("an existing key has an assignment");
        let export = last.exported();
        *last = assignment(key, value, export);
    }

    // New keys: the example's (its lines as written, or the catalog's value), then keys only
    // the catalog sets.
    let mut added: Vec<Assign> = Vec::new();
    for key in &example_keys {
        if has_old(key) || changes.remove.iter().any(|k| k == key) {
            continue;
        }
        added.push(match changes.set.get(*key) {
            Some(value) => assignment(key, value, false),
            None => example.last(key).expect("a listed key").clone(),
        });
    }
    for (key, value) in &changes.set {
        if !has_old(key) && !example_keys.contains(&key.as_str()) {
            added.push(assignment(key, value, false));
        }
    }
    if !added.is_empty() {
        let ends_blank = match file.entries.last() {
            None => true,
            Some(Entry::Other(l)) => l.trim().is_empty(),
            Some(Entry::Assign(_)) => false,
        };
        if !ends_blank {
            file.entries.push(Entry::Other(String::new()));
        }
        file.entries
            .push(Entry::Other(format!("# added by upgrade to {version}")));
        for a in added {
            diff.added.push(a.key.clone());
            file.entries.push(Entry::Assign(a));
        }
        file.final_newline = true;
    }

    diff.extra = old_keys
        .iter()
        .filter(|k| !example_keys.contains(&k.as_str()) && !changes.remove.contains(k))
        .cloned()
        .collect();
    Merged {
        text: file.render(),
        diff,
    }
}

/// `KEY=value` (with `export ` when the line it replaces had it), quoted as needed.
fn assignment(key: &str, value: &str, export: bool) -> Assign {
    let quoted = quote_value(value).expect("values were checked by check_changes");
    let export = if export { "export " } else { "" };
    Assign {
        key: key.to_owned(),
        lines: format!("{export}{key}={quoted}")
            .split('\n')
            .map(str::to_owned)
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn changes(set: &[(&str, &str)], remove: &[&str]) -> EnvChanges {
        EnvChanges {
            set: set
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            remove: remove.iter().map(|k| k.to_string()).collect(),
        }
    }

    fn keys(list: &[&str]) -> Vec<String> {
        list.iter().map(|k| k.to_string()).collect()
    }

    struct Case {
        name: &'static str,
        old: &'static str,
        example: &'static str,
        set: &'static [(&'static str, &'static str)],
        remove: &'static [&'static str],
        text: &'static str,
        added: &'static [&'static str],
        changed: &'static [&'static str],
        removed: &'static [&'static str],
        extra: &'static [&'static str],
        approval: bool,
    }

    const CASES: &[Case] = &[
        Case {
            name: "nothing to do",
            old: "PORT=1\nAPP=a\n",
            example: "PORT=3000\nAPP=\n",
            set: &[],
            remove: &[],
            text: "PORT=1\nAPP=a\n",
            added: &[],
            changed: &[],
            removed: &[],
            extra: &[],
            approval: false,
        },
        Case {
            name: "new example key is appended with the example's value and a comment",
            old: "# live\nPORT=47200\nDATABASE_URL=postgres://x@h/db\n",
            example: "PORT=3000\nDATABASE_URL=\n# reviews\nFEATURE_REVIEWS=false\n",
            set: &[],
            remove: &[],
            text: "# live\nPORT=47200\nDATABASE_URL=postgres://x@h/db\n\n# added by upgrade to v1.1.0\nFEATURE_REVIEWS=false\n",
            added: &["FEATURE_REVIEWS"],
            changed: &[],
            removed: &[],
            extra: &[],
            approval: false,
        },
        Case {
            name: "existing values win over the example's",
            old: "PORT=47200\nMODE=live",
            example: "PORT=3000\nMODE=example\nNEW='a b'\n",
            set: &[],
            remove: &[],
            text: "PORT=47200\nMODE=live\n\n# added by upgrade to v1.1.0\nNEW='a b'\n",
            added: &["NEW"],
            changed: &[],
            removed: &[],
            extra: &[],
            approval: false,
        },
        Case {
            name: "keys the example does not know are kept as extra",
            old: "PORT=1\nLEGACY=yes # keep me\n",
            example: "PORT=3000\n",
            set: &[],
            remove: &[],
            text: "PORT=1\nLEGACY=yes # keep me\n",
            added: &[],
            changed: &[],
            removed: &[],
            extra: &["LEGACY"],
            approval: false,
        },
        Case {
            name: "set changes an existing value in place (approval), keeping export",
            old: "A=1\nexport POOL=5 # old\nB=2\n",
            example: "A=\nPOOL=\nB=\n",
            set: &[("POOL", "10")],
            remove: &[],
            text: "A=1\nexport POOL=10\nB=2\n",
            added: &[],
            changed: &["POOL"],
            removed: &[],
            extra: &[],
            approval: true,
        },
        Case {
            name: "set to the value already there changes nothing",
            old: "POOL='10'\n",
            example: "POOL=\n",
            set: &[("POOL", "10")],
            remove: &[],
            text: "POOL='10'\n",
            added: &[],
            changed: &[],
            removed: &[],
            extra: &[],
            approval: false,
        },
        Case {
            name: "set rewrites the assignment that counts, the last one",
            old: "POOL=1\nPOOL=2\n",
            example: "POOL=\n",
            set: &[("POOL", "3")],
            remove: &[],
            text: "POOL=1\nPOOL=3\n",
            added: &[],
            changed: &["POOL"],
            removed: &[],
            extra: &[],
            approval: true,
        },
        Case {
            name: "set of a missing key adds it without approval, over the example's value",
            old: "PORT=1\n",
            example: "PORT=\nFLAG=false\n",
            set: &[("FLAG", "true"), ("ONLY_CATALOG", "x y")],
            remove: &[],
            text: "PORT=1\n\n# added by upgrade to v1.1.0\nFLAG=true\nONLY_CATALOG='x y'\n",
            added: &["FLAG", "ONLY_CATALOG"],
            changed: &[],
            removed: &[],
            extra: &[],
            approval: false,
        },
        Case {
            name: "remove drops every assignment, leaving a comment (approval)",
            old: "OLD=1\nPORT=1\nOLD=2\n",
            example: "PORT=\nOLD=\n",
            set: &[],
            remove: &["OLD"],
            text: "# OLD removed by upgrade to v1.1.0\nPORT=1\n",
            added: &[],
            changed: &[],
            removed: &["OLD"],
            extra: &[],
            approval: true,
        },
        Case {
            name: "remove of a missing key is nothing, and the example cannot bring it back",
            old: "PORT=1\n",
            example: "PORT=\nGONE=1\n",
            set: &[],
            remove: &["GONE"],
            text: "PORT=1\n",
            added: &[],
            changed: &[],
            removed: &[],
            extra: &[],
            approval: false,
        },
        Case {
            name: "removed extra keys are not reported as extra",
            old: "PORT=1\nLEGACY=1\n",
            example: "PORT=\n",
            set: &[],
            remove: &["LEGACY"],
            text: "PORT=1\n# LEGACY removed by upgrade to v1.1.0\n",
            added: &[],
            changed: &[],
            removed: &["LEGACY"],
            extra: &[],
            approval: true,
        },
        Case {
            name: "multi-line values and comments survive; multi-line example values are copied",
            old: "# head\nKEY=\"a\nb\"\n\n",
            example: "KEY=\nCERT=\"-----BEGIN-----\nabc\n-----END-----\"\n",
            set: &[],
            remove: &[],
            text: "# head\nKEY=\"a\nb\"\n\n# added by upgrade to v1.1.0\nCERT=\"-----BEGIN-----\nabc\n-----END-----\"\n",
            added: &["CERT"],
            changed: &[],
            removed: &[],
            extra: &[],
            approval: false,
        },
        Case {
            name: "CRLF files stay CRLF",
            old: "PORT=1\r\n",
            example: "PORT=\r\nNEW=2\r\n",
            set: &[],
            remove: &[],
            text: "PORT=1\r\n\r\n# added by upgrade to v1.1.0\r\nNEW=2\r\n",
            added: &["NEW"],
            changed: &[],
            removed: &[],
            extra: &[],
            approval: false,
        },
        Case {
            name: "an empty old file gets the whole example",
            old: "",
            example: "# comment\nA=1\nexport B=2\n",
            set: &[],
            remove: &[],
            text: "# added by upgrade to v1.1.0\nA=1\nexport B=2\n",
            added: &["A", "B"],
            changed: &[],
            removed: &[],
            extra: &[],
            approval: false,
        },
        Case {
            name: "a missing example adds nothing and makes every key extra",
            old: "PORT=1\n",
            example: "",
            set: &[],
            remove: &[],
            text: "PORT=1\n",
            added: &[],
            changed: &[],
            removed: &[],
            extra: &["PORT"],
            approval: false,
        },
    ];

    #[test]
    fn merge_table() {
        for c in CASES {
            let changes = changes(c.set, c.remove);
            check_changes(&changes, "test").unwrap();
            let merged = merge(c.old, c.example, &changes, "v1.1.0");
            assert_eq!(merged.text, c.text, "{}", c.name);
            assert_eq!(
                merged.diff,
                Diff {
                    added: keys(c.added),
                    changed: keys(c.changed),
                    removed: keys(c.removed),
                    extra: keys(c.extra),
                },
                "{}",
                c.name
            );
            assert_eq!(merged.diff.needs_approval(), c.approval, "{}", c.name);
            // Every old key that was not removed keeps its value (unless set), and every
            // example key ends up present.
            let out = EnvFile::parse(&merged.text);
            let old = EnvFile::parse(c.old);
            for key in old.keys() {
                if c.remove.contains(&key) {
                    assert_eq!(out.get(key), None, "{}: {key}", c.name);
                } else if let Some((_, v)) = c.set.iter().find(|(k, _)| *k == key) {
                    assert_eq!(out.get(key).as_deref(), Some(*v), "{}: {key}", c.name);
                } else {
                    assert_eq!(out.get(key), old.get(key), "{}: {key}", c.name);
                }
            }
            for key in EnvFile::parse(c.example).keys() {
                assert_eq!(
                    out.get(key).is_some(),
                    !c.remove.contains(&key),
                    "{}: {key}",
                    c.name
                );
            }
        }
    }

    #[test]
    fn bad_catalog_changes_are_refused_naming_keys_only() {
        for (changes, needle) in [
            (
                changes(&[("BAD KEY", "x")], &[]),
                "`BAD KEY` is not a variable name",
            ),
            (changes(&[], &["a=b"]), "`a=b` is not a variable name"),
            (
                changes(&[("K", "1")], &["K"]),
                "`K` is both set and removed",
            ),
            (changes(&[("K", "s3cret'\"`\n")], &[]), "value set for `K`"),
        ] {
            let err = check_changes(&changes, "release v2 env.backend").unwrap_err();
            assert!(err.contains(needle), "{err}");
            assert!(err.starts_with("release v2 env.backend: "), "{err}");
            assert!(!err.contains("s3cret"), "{err}");
        }
    }
}
