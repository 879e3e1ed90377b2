//! What a step is told when it starts (customer, run, params, mounts, earlier outputs) and its
//! channel back to the host (progress, logs, cancellation).
//!
//! ```
//! use qodify_plugin_sdk::{Context, Error, ParamValue};
//!
//! fn work(ctx: &Context) -> Result<u32, Error> {
//!     let with_logs = ctx.param_bool("include.logs").unwrap_or(false);
//!     ctx.info(format!("backing up {} (logs: {with_logs})", ctx.customer_domain()));
//!     let mut artifacts = 0;
//!     for (i, step) in ctx.previous().iter().enumerate() {
//!         ctx.check_cancelled()?;
//!         ctx.progress(i as f32 * 10.0, format!("checking {}", step.step));
//!         artifacts += step.artifacts.len() as u32;
//!     }
//!     Ok(artifacts)
//! }
//!
//! // Natively (unit tests) logs and progress print to stderr.
//! let ctx = Context::builder().param("include.logs", ParamValue::Bool(true)).build();
//! assert_eq!(work(&ctx), Ok(0));
//! ```

use crate::__private::bindings::qodify::pipeline::types as wit;
use crate::{Artifact, Error};

/// The value of a pipeline param after defaults and caller values were applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamValue {
    /// A `bool` param.
    Bool(bool),
    /// An `int` param.
    Int(i64),
    /// A `string` or `enum` param.
    Text(String),
}

impl std::fmt::Display for ParamValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParamValue::Bool(b) => write!(f, "{b}"),
            ParamValue::Int(i) => write!(f, "{i}"),
            ParamValue::Text(s) => f.write_str(s),
        }
    }
}

/// A folder the pipeline granted to this step, as the guest sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Absolute guest path, e.g. `/src`.
    pub guest_path: String,
    /// True when the step may create, write, rename and delete inside it.
    pub writable: bool,
}

impl Mount {
    /// True when the guest path `path` (absolute, already normalised) lies inside this mount.
    pub fn contains(&self, path: &str) -> bool {
        let root = self.guest_path.trim_end_matches('/');
        root.is_empty()
            || path == root
            || path
                .strip_prefix(root)
                .is_some_and(|rest| rest.starts_with('/'))
    }
}

/// What an earlier step of the same run returned (after the host checked it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepOutputs {
    /// The earlier step's id.
    pub step: String,
    /// Its artifacts; `path` is the guest path the earlier step saw.
    pub artifacts: Vec<Artifact>,
    /// Its key/value outputs, in the order it returned them.
    pub values: Vec<(String, String)>,
}

impl StepOutputs {
    /// The value of output `key`, if the step returned it.
    pub fn value(&self, key: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Everything about the current step, plus progress, logging and cancellation.
#[derive(Debug, Clone)]
pub struct Context {
    customer_id: String,
    customer_domain: String,
    run_id: String,
    run_timestamp: String,
    step_id: String,
    params: Vec<(String, ParamValue)>,
    mounts: Vec<Mount>,
    previous: Vec<StepOutputs>,
    /// Natively: what the step logged and reported, and whether it was cancelled.
    #[cfg(not(target_arch = "wasm32"))]
    native: std::sync::Arc<host::Record>,
}

/// How much a log line matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogLevel {
    /// Detail for debugging the plugin itself.
    Trace,
    /// Detail for debugging a run.
    Debug,
    /// What the step did.
    Info,
    /// Something odd that did not stop the step.
    Warn,
    /// Something failed (the step may still go on).
    Error,
}

impl Context {
    pub(crate) fn from_wit(ctx: wit::StepContext) -> Self {
        Context {
            customer_id: ctx.customer.id,
            customer_domain: ctx.customer.domain,
            run_id: ctx.run_id,
            run_timestamp: ctx.run_timestamp,
            step_id: ctx.step_id,
            params: ctx
                .params
                .into_iter()
                .map(|p| {
                    let value = match p.value {
                        wit::ParamValue::Boolean(b) => ParamValue::Bool(b),
                        wit::ParamValue::Integer(i) => ParamValue::Int(i),
                        wit::ParamValue::Text(s) => ParamValue::Text(s),
                    };
                    (p.name, value)
                })
                .collect(),
            mounts: ctx
                .mounts
                .into_iter()
                .map(|m| Mount {
                    guest_path: m.guest_path,
                    writable: m.writable,
                })
                .collect(),
            previous: ctx
                .previous
                .into_iter()
                .map(|s| StepOutputs {
                    step: s.step,
                    artifacts: s.artifacts.into_iter().map(Artifact::from_wit).collect(),
                    values: s.outputs.into_iter().map(|o| (o.key, o.value)).collect(),
                })
                .collect(),
            #[cfg(not(target_arch = "wasm32"))]
            native: Default::default(),
        }
    }

    /// installer-api's id of the customer, e.g. `42`.
    pub fn customer_id(&self) -> &str {
        &self.customer_id
    }

    /// The customer's domain, e.g. `shop.example.com`.
    pub fn customer_domain(&self) -> &str {
        &self.customer_domain
    }

    /// The run's id.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// The run's start time as `YYYYMMDD-HHMMSS` (UTC).
    pub fn run_timestamp(&self) -> &str {
        &self.run_timestamp
    }

    /// This step's id in the pipeline, e.g. `archive-backend`.
    pub fn step_id(&self) -> &str {
        &self.step_id
    }

    /// All params of the run, in pipeline order.
    pub fn params(&self) -> &[(String, ParamValue)] {
        &self.params
    }

    /// The param `name`, whatever its type.
    pub fn param(&self, name: &str) -> Option<&ParamValue> {
        self.params.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// The `bool` param `name`; `None` when absent or of another type.
    pub fn param_bool(&self, name: &str) -> Option<bool> {
        match self.param(name)? {
            ParamValue::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The `int` param `name`; `None` when absent or of another type.
    pub fn param_int(&self, name: &str) -> Option<i64> {
        match self.param(name)? {
            ParamValue::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The `string` or `enum` param `name`; `None` when absent or of another type.
    pub fn param_str(&self, name: &str) -> Option<&str> {
        match self.param(name)? {
            ParamValue::Text(s) => Some(s),
            _ => None,
        }
    }

    /// The folders this step was granted.
    pub fn mounts(&self) -> &[Mount] {
        &self.mounts
    }

    /// The mount holding the absolute, normalised guest path `path` (the innermost one).
    pub fn mount_for(&self, path: &str) -> Option<&Mount> {
        self.mounts
            .iter()
            .filter(|m| m.contains(path))
            .max_by_key(|m| m.guest_path.trim_end_matches('/').len())
    }

    /// Outputs of the steps that finished before this one, in order.
    pub fn previous(&self) -> &[StepOutputs] {
        &self.previous
    }

    /// The outputs of the earlier step `step_id`, if it ran.
    pub fn previous_step(&self, step_id: &str) -> Option<&StepOutputs> {
        self.previous.iter().find(|s| s.step == step_id)
    }

    /// Reports progress: `percent` in 0..=100 and a short message such as
    /// `archiving backend: 120.0 MiB of 800.0 MiB`. Cheap; the host rate-limits.
    pub fn progress(&self, percent: f32, message: impl AsRef<str>) {
        host::report(self, percent.clamp(0.0, 100.0), message.as_ref());
    }

    /// Logs a trace line.
    pub fn trace(&self, message: impl AsRef<str>) {
        self.log(LogLevel::Trace, message.as_ref());
    }

    /// Logs a debug line.
    pub fn debug(&self, message: impl AsRef<str>) {
        self.log(LogLevel::Debug, message.as_ref());
    }

    /// Logs an info line.
    pub fn info(&self, message: impl AsRef<str>) {
        self.log(LogLevel::Info, message.as_ref());
    }

    /// Logs a warning: something odd that did not stop the step.
    pub fn warn(&self, message: impl AsRef<str>) {
        self.log(LogLevel::Warn, message.as_ref());
    }

    /// Logs an error line (the step may still go on).
    pub fn error(&self, message: impl AsRef<str>) {
        self.log(LogLevel::Error, message.as_ref());
    }

    /// Logs a line at `level`.
    pub fn log(&self, level: LogLevel, message: impl AsRef<str>) {
        host::log(self, level, message.as_ref());
    }

    /// True once the run was cancelled or the step's deadline passed.
    pub fn is_cancelled(&self) -> bool {
        host::is_cancelled(self)
    }

    /// `Err(Error::cancelled())` once the run was cancelled: call it between units of work and
    /// return with `?`.
    pub fn check_cancelled(&self) -> Result<(), Error> {
        if self.is_cancelled() {
            Err(Error::cancelled())
        } else {
            Ok(())
        }
    }
}

/// Natively (unit tests), a context keeps what the step logged and reported, and can be cancelled.
#[cfg(not(target_arch = "wasm32"))]
impl Context {
    /// The messages logged at `level` so far, oldest first.
    ///
    /// ```
    /// use qodify_plugin_sdk::{Context, LogLevel};
    ///
    /// let ctx = Context::builder().build();
    /// ctx.warn("disk almost full");
    /// ctx.info("done");
    /// assert_eq!(ctx.logged(LogLevel::Warn), ["disk almost full"]);
    /// ```
    pub fn logged(&self, level: LogLevel) -> Vec<String> {
        self.native.logged(level)
    }

    /// The progress reported so far, oldest first: (percent, message).
    pub fn reported(&self) -> Vec<(f32, String)> {
        self.native.reported()
    }

    /// Cancels the run, as a person would through the host: [`Context::is_cancelled`] is true
    /// from now on, for this context and its clones.
    ///
    /// ```
    /// use qodify_plugin_sdk::{Context, ErrorKind};
    ///
    /// let ctx = Context::builder().build();
    /// ctx.cancel();
    /// assert_eq!(ctx.check_cancelled().unwrap_err().kind(), ErrorKind::Cancelled);
    /// ```
    pub fn cancel(&self) {
        self.native.cancel();
    }
}

/// Builds a [`Context`] for unit tests of a plugin's logic, run natively.
///
/// Natively, [`Context::progress`] and the log helpers print to stderr and are kept
/// ([`Context::logged`], [`Context::reported`]), and [`Context::is_cancelled`] is `false` until
/// [`Context::cancel`]; [`fs`](crate::fs) and [`command`](crate::command) need the host and panic
/// ([`fs::StdFs`](crate::fs::StdFs) stands in for the host's files).
///
/// ```
/// use qodify_plugin_sdk::{Context, ParamValue};
///
/// let ctx = Context::builder()
///     .customer("42", "shop.example.com")
///     .param("include.logs", ParamValue::Bool(true))
///     .mount("/out", true)
///     .build();
/// assert_eq!(ctx.param_bool("include.logs"), Some(true));
/// assert!(ctx.check_cancelled().is_ok());
/// ```
#[derive(Debug, Clone)]
pub struct ContextBuilder {
    ctx: Context,
}

impl Context {
    /// Starts a test context: customer `1`/`example.com`, run `test-run` at `20250101-000000`,
    /// step `test-step`, no params, mounts or earlier steps.
    pub fn builder() -> ContextBuilder {
        ContextBuilder {
            ctx: Context {
                customer_id: "1".into(),
                customer_domain: "example.com".into(),
                run_id: "test-run".into(),
                run_timestamp: "20250101-000000".into(),
                step_id: "test-step".into(),
                params: Vec::new(),
                mounts: Vec::new(),
                previous: Vec::new(),
                #[cfg(not(target_arch = "wasm32"))]
                native: Default::default(),
            },
        }
    }
}

impl ContextBuilder {
    /// Sets the customer's id and domain.
    pub fn customer(mut self, id: impl Into<String>, domain: impl Into<String>) -> Self {
        self.ctx.customer_id = id.into();
        self.ctx.customer_domain = domain.into();
        self
    }

    /// Sets the run's id and `YYYYMMDD-HHMMSS` timestamp.
    pub fn run(mut self, id: impl Into<String>, timestamp: impl Into<String>) -> Self {
        self.ctx.run_id = id.into();
        self.ctx.run_timestamp = timestamp.into();
        self
    }

    /// Sets the step's id.
    pub fn step_id(mut self, id: impl Into<String>) -> Self {
        self.ctx.step_id = id.into();
        self
    }

    /// Adds a param.
    pub fn param(mut self, name: impl Into<String>, value: ParamValue) -> Self {
        self.ctx.params.push((name.into(), value));
        self
    }

    /// Adds a mount.
    pub fn mount(mut self, guest_path: impl Into<String>, writable: bool) -> Self {
        self.ctx.mounts.push(Mount {
            guest_path: guest_path.into(),
            writable,
        });
        self
    }

    /// Adds an earlier step's outputs.
    pub fn previous(mut self, outputs: StepOutputs) -> Self {
        self.ctx.previous.push(outputs);
        self
    }

    /// The context.
    pub fn build(self) -> Context {
        self.ctx
    }
}

/// Host calls; natively (unit tests) each context's [`host::Record`] stands in for them.
mod host {
    use super::{Context, LogLevel};

    #[cfg(target_arch = "wasm32")]
    use crate::__private::bindings::qodify::pipeline::{cancellation, progress};

    #[cfg(target_arch = "wasm32")]
    pub fn report(_ctx: &Context, percent: f32, message: &str) {
        progress::report(percent, message);
    }

    #[cfg(target_arch = "wasm32")]
    pub fn log(_ctx: &Context, level: LogLevel, message: &str) {
        use progress::Level;
        let level = match level {
            LogLevel::Trace => Level::Trace,
            LogLevel::Debug => Level::Debug,
            LogLevel::Info => Level::Info,
            LogLevel::Warn => Level::Warn,
            LogLevel::Error => Level::Error,
        };
        progress::log(level, message);
    }

    #[cfg(target_arch = "wasm32")]
    pub fn is_cancelled(_ctx: &Context) -> bool {
        cancellation::is_cancelled()
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn report(ctx: &Context, percent: f32, message: &str) {
        ctx.native.report(percent, message);
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn log(ctx: &Context, level: LogLevel, message: &str) {
        ctx.native.log(level, message);
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn is_cancelled(ctx: &Context) -> bool {
        ctx.native.is_cancelled()
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub use native::Record;

    #[cfg(not(target_arch = "wasm32"))]
    mod native {
        use std::sync::Mutex;
        use std::sync::atomic::{AtomicBool, Ordering};

        use crate::LogLevel;

        /// What a step did through its context, printed to stderr as it happens.
        #[derive(Debug, Default)]
        pub struct Record {
            logs: Mutex<Vec<(LogLevel, String)>>,
            reports: Mutex<Vec<(f32, String)>>,
            cancelled: AtomicBool,
        }

        impl Record {
            pub fn report(&self, percent: f32, message: &str) {
                eprintln!("[progress {percent:.1}%] {message}");
                self.reports
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((percent, message.to_owned()));
            }

            pub fn log(&self, level: LogLevel, message: &str) {
                eprintln!("[{level:?}] {message}");
                self.logs
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((level, message.to_owned()));
            }

            pub fn logged(&self, level: LogLevel) -> Vec<String> {
                let logs = self.logs.lock().unwrap_or_else(|e| e.into_inner());
                logs.iter()
                    .filter(|(l, _)| *l == level)
                    .map(|(_, m)| m.clone())
                    .collect()
            }

            pub fn reported(&self) -> Vec<(f32, String)> {
                self.reports
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone()
            }

            pub fn cancel(&self) {
                self.cancelled.store(true, Ordering::Relaxed);
            }

            pub fn is_cancelled(&self) -> bool {
                self.cancelled.load(Ordering::Relaxed)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_contains_only_whole_components() {
        let m = Mount {
            guest_path: "/src".into(),
            writable: false,
        };
        assert!(m.contains("/src"));
        assert!(m.contains("/src/a/b"));
        assert!(!m.contains("/srcx"));
        assert!(!m.contains("/"));
        let root = Mount {
            guest_path: "/".into(),
            writable: false,
        };
        assert!(root.contains("/anything"));
    }
}
