//! What a step returns on success: the files it produced and key/value outputs.
//!
//! ```
//! use qodify_plugin_sdk::Output;
//!
//! let out = Output::new()
//!     .artifact("backend", "/out/backend.tar.gz", 1234, "ab12…")
//!     .value("files", 42);
//! assert_eq!(out.artifacts()[0].name, "backend");
//! assert_eq!(out.values(), &[("files".to_string(), "42".to_string())]);
//! ```

use std::fmt;

use crate::__private::bindings::qodify::pipeline::types as wit;

/// A file a step produced. The host re-checks `size` and `sha256` before it records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    /// A short label, e.g. `backend` or `db`.
    pub name: String,
    /// Guest path of the file; it must lie inside one of the step's mounts.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Lowercase hex SHA-256 of the content.
    pub sha256: String,
}

/// A step's successful result, built with chained calls.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    artifacts: Vec<Artifact>,
    values: Vec<(String, String)>,
}

impl Output {
    /// An output with no artifacts and no values.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an artifact (see [`HashingWriter`](crate::HashingWriter) for size and sha256).
    pub fn artifact(
        mut self,
        name: impl Into<String>,
        path: impl Into<String>,
        size: u64,
        sha256: impl Into<String>,
    ) -> Self {
        self.push_artifact(Artifact {
            name: name.into(),
            path: path.into(),
            size,
            sha256: sha256.into(),
        });
        self
    }

    /// Adds a key/value output for later steps and the run record.
    pub fn value(mut self, key: impl Into<String>, value: impl fmt::Display) -> Self {
        self.push_value(key, value);
        self
    }

    /// Adds an artifact in place.
    pub fn push_artifact(&mut self, artifact: Artifact) {
        self.artifacts.push(artifact);
    }

    /// Adds a key/value output in place.
    pub fn push_value(&mut self, key: impl Into<String>, value: impl fmt::Display) {
        self.values.push((key.into(), value.to_string()));
    }

    /// The artifacts so far.
    pub fn artifacts(&self) -> &[Artifact] {
        &self.artifacts
    }

    /// The key/value outputs so far, in insertion order.
    pub fn values(&self) -> &[(String, String)] {
        &self.values
    }

    pub(crate) fn into_wit(self) -> wit::StepResult {
        wit::StepResult {
            artifacts: self.artifacts.into_iter().map(Artifact::into_wit).collect(),
            outputs: self
                .values
                .into_iter()
                .map(|(key, value)| wit::Output { key, value })
                .collect(),
        }
    }
}

impl Artifact {
    pub(crate) fn into_wit(self) -> wit::Artifact {
        wit::Artifact {
            name: self.name,
            path: self.path,
            size: self.size,
            sha256: self.sha256,
        }
    }

    pub(crate) fn from_wit(a: wit::Artifact) -> Self {
        Artifact {
            name: a.name,
            path: a.path,
            size: a.size,
            sha256: a.sha256,
        }
    }
}
