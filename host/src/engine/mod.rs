//! The run engine: executes one resolved plan for one customer. It knows nothing of the CLI, the
//! HTTP service or the store; the use cases (`ops`) drive it.
//!
//! - [`executor`]: runs a plan's stages in order under the customer's [`lock`], writes the
//!   backup folder atomically, and reports [`crate::events`].
//! - [`runtime`]: wasmtime, the compiled-component cache, one store per step.
//! - [`caps`]: the host side of each WIT interface a step may be granted (`StepHost`).
//! - [`sandbox`]: the mount table that maps a step's paths into the customer's folder.
//! - [`confine`]: Landlock, namespaces and rlimits for the native programs a step runs.
//! - [`bindings`]: the WIT bindings; [`plugins`]: the plugin catalog; [`manifest`]: what a
//!   plugin says it expects to be granted.

pub mod bindings;
pub mod caps;
pub mod confine;
pub mod executor;
pub mod lock;
pub mod manifest;
pub mod plugins;
pub mod runtime;
pub mod sandbox;
