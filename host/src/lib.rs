//! qodify-host: runs customer backup, restore and upgrade pipelines as sandboxed WebAssembly step
//! plugins. See `ARCHITECTURE.md` for the bird's-eye view.

pub mod api;
pub mod backups;
pub mod bindings;
pub mod caps;
pub mod confine;
pub mod customer;
pub mod events;
pub mod executor;
pub mod lock;
pub mod ops;
pub mod pipeline;
pub mod plugins;
pub mod releases;
pub mod runtime;
pub mod sandbox;
pub mod service;
pub mod settings;
pub mod store;
