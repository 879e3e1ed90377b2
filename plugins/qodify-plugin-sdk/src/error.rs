//! The step error a plugin returns: a kind the host maps onto run errors, and a human message.
//!
//! ```
//! use qodify_plugin_sdk::{Error, ErrorKind, ResultExt};
//!
//! fn read_version(path: &str) -> Result<String, Error> {
//!     std::fs::read_to_string(path).context(format!("reading {path}"))
//! }
//!
//! let err = read_version("/no/such/file").unwrap_err();
//! assert_eq!(err.kind(), ErrorKind::NotFound);
//! assert!(err.message().starts_with("reading /no/such/file: "));
//! ```

use std::fmt;

use crate::__private::bindings::qodify::pipeline::types as wit;

/// Broad classes of step failure (the WIT `error-kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The step's config is wrong; fix the pipeline.
    InvalidConfig,
    /// A file or folder the step needs is missing.
    NotFound,
    /// The step tried something its grants do not allow.
    PermissionDenied,
    /// An I/O error while reading or writing.
    Io,
    /// A host command failed (non-zero exit, timeout).
    CommandFailed,
    /// The run was cancelled; the step stopped early.
    Cancelled,
    /// Anything else; a bug in the plugin.
    Internal,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::InvalidConfig => "invalid-config",
            ErrorKind::NotFound => "not-found",
            ErrorKind::PermissionDenied => "permission-denied",
            ErrorKind::Io => "io",
            ErrorKind::CommandFailed => "command-failed",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Internal => "internal",
        })
    }
}

/// A typed step failure: what kind it is and a message that says what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

impl Error {
    /// An error of `kind`; the message should be lowercase without a trailing period.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
        }
    }

    /// The step's config is wrong.
    pub fn invalid_config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidConfig, message)
    }

    /// A needed file or folder is missing.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    /// An I/O failure.
    pub fn io(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Io, message)
    }

    /// Something the step's grants do not allow.
    pub fn permission_denied(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::PermissionDenied, message)
    }

    /// A host command failed.
    pub fn command_failed(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::CommandFailed, message)
    }

    /// A bug in the plugin.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    /// The run was cancelled.
    pub fn cancelled() -> Self {
        Self::new(ErrorKind::Cancelled, "the run was cancelled")
    }

    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The human message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Prefixes the message with what was being done: `context: message`.
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }

    pub(crate) fn into_wit(self) -> wit::StepError {
        let kind = match self.kind {
            ErrorKind::InvalidConfig => wit::ErrorKind::InvalidConfig,
            ErrorKind::NotFound => wit::ErrorKind::NotFound,
            ErrorKind::PermissionDenied => wit::ErrorKind::PermissionDenied,
            ErrorKind::Io => wit::ErrorKind::Io,
            ErrorKind::CommandFailed => wit::ErrorKind::CommandFailed,
            ErrorKind::Cancelled => wit::ErrorKind::Cancelled,
            ErrorKind::Internal => wit::ErrorKind::Internal,
        };
        wit::StepError {
            kind,
            message: self.message,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(error: std::io::Error) -> Self {
        use std::io::ErrorKind as Io;
        let kind = match error.kind() {
            Io::NotFound => ErrorKind::NotFound,
            Io::PermissionDenied | Io::ReadOnlyFilesystem => ErrorKind::PermissionDenied,
            // `Interrupted` never escapes std's retry loops; `Other` may carry our own error.
            Io::Other => match error.get_ref().and_then(|e| e.downcast_ref::<Error>()) {
                Some(inner) => return inner.clone(),
                None => ErrorKind::Io,
            },
            _ => ErrorKind::Io,
        };
        Error::new(kind, error.to_string())
    }
}

impl From<Error> for std::io::Error {
    /// Lets an SDK error travel through `std::io` plumbing (a `Write` impl) and come back intact.
    fn from(error: Error) -> Self {
        std::io::Error::other(error)
    }
}

impl From<serde_json::Error> for Error {
    fn from(error: serde_json::Error) -> Self {
        match error.classify() {
            serde_json::error::Category::Io => Error::io(error.to_string()),
            _ => Error::internal(error.to_string()),
        }
    }
}

/// `.context(..)` for any result whose error converts into [`Error`].
pub trait ResultExt<T> {
    /// On error, prefixes the message with `context` (what was being done).
    fn context(self, context: impl fmt::Display) -> Result<T, Error>;

    /// Like [`ResultExt::context`], building the text only on error.
    fn with_context<C: fmt::Display>(self, context: impl FnOnce() -> C) -> Result<T, Error>;
}

impl<T, E: Into<Error>> ResultExt<T> for Result<T, E> {
    fn context(self, context: impl fmt::Display) -> Result<T, Error> {
        self.map_err(|e| e.into().context(context))
    }

    fn with_context<C: fmt::Display>(self, context: impl FnOnce() -> C) -> Result<T, Error> {
        self.map_err(|e| e.into().context(context()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_map_to_kinds() {
        use std::io::{Error as IoError, ErrorKind as Io};
        assert_eq!(
            Error::from(IoError::from(Io::NotFound)).kind(),
            ErrorKind::NotFound
        );
        assert_eq!(
            Error::from(IoError::from(Io::PermissionDenied)).kind(),
            ErrorKind::PermissionDenied
        );
        assert_eq!(
            Error::from(IoError::from(Io::UnexpectedEof)).kind(),
            ErrorKind::Io
        );
    }

    #[test]
    fn sdk_error_survives_a_trip_through_io() {
        let io: std::io::Error = Error::cancelled().into();
        assert_eq!(Error::from(io), Error::cancelled());
    }

    #[test]
    fn context_prefixes() {
        let r: Result<(), Error> = Err(Error::io("disk full"));
        let e = r.context("writing /out/a.tar.gz").unwrap_err();
        assert_eq!(e.message(), "writing /out/a.tar.gz: disk full");
        assert_eq!(e.kind(), ErrorKind::Io);
    }
}
