//! qodify-host: runs customer backup, restore and upgrade pipelines as sandboxed WebAssembly step
//! plugins. See `ARCHITECTURE.md` for the bird's-eye view.
//!
//! Three layers, each using only the ones below it:
//! - surfaces: the CLI (`main.rs`, `ui.rs`) and the HTTP API ([`api`]) parse, call one use case
//!   and render;
//! - use cases ([`ops`]): plan, run, recover, delete, reconcile, serve start-up, over
//!   [`ops::AppState`];
//! - the [`engine`] (executor, runtime, sandbox, capabilities, confinement, lock), the
//!   [`pipeline`] loader, the [`store`], and what they share: [`auth`] (roles, principals,
//!   secrets), [`customer`], [`backups`] (backup
//!   folder rules), [`releases`], [`events`], [`files`], [`settings`], [`logs`] (the host's own
//!   log, and the spans that give its lines their run and step).

// Surfaces.
pub mod api;

// Use cases.
pub mod ops;

// Engine, loader, store, and what they share.
pub mod auth;
pub mod backups;
pub mod customer;
pub mod engine;
pub mod events;
pub mod files;
pub mod logs;
pub mod pipeline;
pub mod releases;
pub mod schedule;
pub mod settings;
pub mod store;
