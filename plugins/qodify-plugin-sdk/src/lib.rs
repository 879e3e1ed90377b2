//! Guest SDK for qodify-host step plugins.
//!
//! A step plugin is a WebAssembly component (`wasm32-wasip2`) that the host runs once per pipeline
//! step. With this crate a plugin is a config type, one [`Step::run`] function and one
//! [`export_step!`] line; the generated WIT bindings stay hidden.
//!
//! ```
//! use qodify_plugin_sdk::prelude::*;
//!
//! #[derive(Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct Config {
//!     output: String, // guest path in a writable mount, e.g. `/out/hello.txt`
//! }
//!
//! struct Hello;
//!
//! impl Step for Hello {
//!     type Config = Config;
//!
//!     fn run(ctx: &Context, config: Config) -> Result<Output, Error> {
//!         ctx.info(format!("greeting {}", ctx.customer_domain()));
//!         let file = std::fs::File::create(&config.output).context("creating the greeting")?;
//!         let mut out = HashingWriter::new(file);
//!         writeln!(out, "hello {}", ctx.customer_domain())?;
//!         let (_, size, sha256) = out.finish();
//!         Ok(Output::new().artifact("hello", &config.output, size, sha256).value("bytes", size))
//!     }
//! }
//!
//! export_step!(Hello);
//! # fn main() {}
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2`; the `.wasm` file is the plugin.
//! For native unit tests, build a [`Context`] with [`Context::builder`]: its logs and progress go
//! to stderr. [`fs`] and [`command`] need the host (natively they panic), so keep them out of the
//! functions you test, or cover them with end-to-end tests.

#![deny(missing_docs)]

pub mod approval;
pub mod command;
mod context;
mod error;
pub mod fs;
mod hashing;
pub mod http;
mod output;
pub mod path;

pub use context::{Context, ContextBuilder, LogLevel, Mount, ParamValue, StepOutputs};
pub use error::{Error, ErrorKind, ResultExt};
pub use hashing::HashingWriter;
pub use output::{Artifact, Output};

/// What a plugin needs, in one `use`.
pub mod prelude {
    pub use crate::command::{Command, CommandOutput, Stdio};
    pub use crate::{
        Artifact, Context, Error, ErrorKind, HashingWriter, NoConfig, Output, ResultExt, Step,
        export_step, fs,
    };
    pub use serde::Deserialize;
    pub use std::io::{Read as _, Write as _};
}

/// A step plugin: its config type and what it does.
///
/// The host calls [`Step::run`] once per step; [`export_step!`] wires it to the component export.
pub trait Step {
    /// The step's `config` table from the pipeline, deserialised from JSON. Use
    /// `#[serde(deny_unknown_fields)]` so typos in pipelines fail loudly, or [`NoConfig`].
    type Config: serde::de::DeserializeOwned;

    /// Runs the step: do the work through the granted mounts, then return artifacts and values.
    fn run(ctx: &Context, config: Self::Config) -> Result<Output, Error>;
}

/// Config of a step that takes none: accepts only an empty table.
#[derive(Debug, Default, Clone, Copy, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoConfig {}

/// Exports a [`Step`] implementation as the plugin's `run` function.
///
/// Use it once per plugin crate, at the top level:
///
/// ```
/// # use qodify_plugin_sdk::prelude::*;
/// struct Noop;
/// impl Step for Noop {
///     type Config = NoConfig;
///     fn run(_ctx: &Context, _config: NoConfig) -> Result<Output, Error> {
///         Ok(Output::new())
///     }
/// }
/// export_step!(Noop);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! export_step {
    ($step:ty) => {
        const _: () = {
            struct __QodifyStepExport;

            impl $crate::__private::Guest for __QodifyStepExport {
                fn run(
                    ctx: $crate::__private::StepContext,
                ) -> ::core::result::Result<
                    $crate::__private::StepResult,
                    $crate::__private::StepError,
                > {
                    $crate::__private::run::<$step>(ctx)
                }
            }

            $crate::__private::bindings::__qodify_export_step_world!(
                __QodifyStepExport with_types_in $crate::__private::bindings
            );
        };
    };
}

#[doc(hidden)]
pub mod __private {
    //! Glue for [`export_step!`](crate::export_step); not part of the API.

    #[allow(missing_docs, unsafe_op_in_unsafe_fn)]
    pub mod bindings {
        //! The one set of generated bindings for the `step` world.
        wit_bindgen::generate!({
            path: "../../wit",
            world: "step",
            pub_export_macro: true,
            export_macro_name: "__qodify_export_step_world",
            default_bindings_module: "qodify_plugin_sdk::__private::bindings",
        });
    }

    pub use bindings::Guest;
    pub use bindings::qodify::pipeline::types::{StepContext, StepError, StepResult};

    use crate::{Context, Error, Step};

    /// Runs a step for the export: parse config, build the context, map the result.
    pub fn run<S: Step>(mut raw: StepContext) -> Result<StepResult, StepError> {
        let config = std::mem::take(&mut raw.config);
        let ctx = Context::from_wit(raw);
        let result = parse_config::<S::Config>(&config).and_then(|config| S::run(&ctx, config));
        match result {
            Ok(output) => Ok(output.into_wit()),
            Err(error) => Err(error.into_wit()),
        }
    }

    /// Deserialises a step's JSON config; errors name the offending field's path.
    pub fn parse_config<T: serde::de::DeserializeOwned>(json: &str) -> Result<T, Error> {
        // An absent config table arrives as empty text or `null`: treat both as `{}`.
        let json = match json.trim() {
            "" | "null" => "{}",
            other => other,
        };
        let mut de = serde_json::Deserializer::from_str(json);
        serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.inner().to_string();
            // serde_json adds `at line 1 column 57`, which means nothing in a TOML pipeline.
            let inner = match inner.rsplit_once(" at line ") {
                Some((head, _)) => head.to_string(),
                None => inner,
            };
            if path == "." || path.is_empty() {
                Error::invalid_config(format!("config: {inner}"))
            } else {
                Error::invalid_config(format!("config field `{path}`: {inner}"))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::__private::parse_config;
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Cfg {
        source: String,
        #[serde(default)]
        exclude: Vec<String>,
    }

    #[test]
    fn bad_config_names_the_field_path() {
        let err = parse_config::<Cfg>(r#"{"source":"/s","exclude":["a",3]}"#).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidConfig);
        assert!(err.message().contains("exclude[1]"), "{err}");
        assert!(!err.message().contains("line 1"), "{err}");
    }

    #[test]
    fn unknown_and_missing_fields_are_invalid_config() {
        let err = parse_config::<Cfg>(r#"{"source":"/s","exlude":[]}"#).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidConfig);
        assert!(err.message().contains("exlude"), "{err}");
        let err = parse_config::<Cfg>("{}").unwrap_err();
        assert!(err.message().contains("source"), "{err}");
    }

    #[test]
    fn empty_config_is_an_empty_table() {
        parse_config::<NoConfig>("").unwrap();
        parse_config::<NoConfig>("null").unwrap();
        parse_config::<NoConfig>("{}").unwrap();
        assert!(parse_config::<NoConfig>(r#"{"x":1}"#).is_err());
    }
}
