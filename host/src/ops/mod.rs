//! Use cases: what the CLI (`main.rs`) and the HTTP service (`service`, `api`) both do, written
//! once, so the two surfaces cannot drift. A surface parses its input, calls one function here
//! and renders the result.
//!
//! - [`plan`]: turn a pipeline name, a customer, a tier and params into a resolved plan (one
//!   loader, one overlay policy, the customer's layout and database read from disk, the run's
//!   timestamp).
//! - [`backups`]: delete a backup (pins, runs, history, audit), reconcile the history with the
//!   folders.
//! - [`recover`]: runs that a host stop interrupted, found on disk (the run journal next to the
//!   customer's lock), finished by their pipeline's `on_failure` steps before anything else runs
//!   for that customer, from whichever host or command starts next.

pub mod backups;
pub mod plan;
pub mod recover;
