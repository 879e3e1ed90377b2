//! Use cases: what the CLI (`main.rs`) and the HTTP service (`service`, `api`) both do, written
//! once, so the two surfaces cannot drift. A surface parses its input, calls one function here
//! and renders the result.
//!
//! - [`plan`]: turn a pipeline name, a customer, a tier and params into a resolved plan (one
//!   loader, one overlay policy, the customer's layout and database read from disk, the run's
//!   timestamp).
//! - [`approvals`]: decide what a waiting run asks people.
//! - [`backups`]: delete a backup (pins, runs, history, audit), reconcile the history with the
//!   folders.
//! - [`progress`]: a run's live percent (weighted by bytes), time left and warnings.
//! - [`recover`]: runs that a host stop interrupted, found on disk (the run journal next to the
//!   customer's lock), finished by their pipeline's `on_failure` steps before anything else runs
//!   for that customer, from whichever host or command starts next.

//! - [`run`]: run a pipeline now in this process (the CLI), recorded when the customer is
//!   registered.
//! - [`serve`]: the service's start-up (lock, recovery, workers) and its drain at stop.
//! - [`state`]: [`AppState`], what all of them run against (store, hub, plugins, runtime).
//! - [`worker`]: runs recorded in the store, queued by the API or started by the CLI.
//! - [`hub`]: turns run events into the plan's live events (`backup-progress`,
//!   `backup-completed`, `backup-failed`, and `restore-…`, `upgrade-…` alike).

pub mod approvals;
pub mod backups;
pub mod hub;
pub mod plan;
pub mod progress;
pub mod recover;
pub mod run;
pub mod serve;
pub mod state;
pub mod worker;

pub use hub::{EventHub, LiveEvent};
pub use state::{AppState, now};
