//! Use cases: what the CLI (`main.rs`) and the HTTP service (`service`, `api`) both do, written
//! once, so the two surfaces cannot drift. A surface parses its input, calls one function here
//! and renders the result.
//!
//! - [`plan`]: turn a pipeline name, a customer, a tier and params into a resolved plan (one
//!   loader, one overlay policy, the customer's layout and database read from disk, the run's
//!   timestamp).
//! - [`access`]: named tokens (add, list, revoke), who a bearer token is, and the console's
//!   sessions (sign in, look up, sign out).
//! - [`approvals`]: decide what a waiting run asks people.
//! - [`capabilities`]: what a run may do step by step, and what changed since the customer's
//!   last run of the pipeline (audited as `run.capabilities`, shown by `plan --diff`).
//! - [`backups`]: delete a backup (pins, runs, history, audit), reconcile the history with the
//!   folders.
//! - [`customers`]: what the web console reads about customers: the list (layout, release, last
//!   backup, active run) and a customer's upgrade targets; [`Page`], the pages every list gives.
//! - [`plugins`]: what each plugin asks for, and adding a built plugin after checking its world.
//! - [`progress`]: a run's live percent (weighted by bytes), time left and warnings.
//! - [`recover`]: runs that a host stop interrupted, found on disk (the run journal next to the
//!   customer's lock), finished by their pipeline's `on_failure` steps before anything else runs
//!   for that customer, from whichever host or command starts next.

//! - [`run`]: run a pipeline now in this process (the CLI), recorded when the customer is
//!   registered.
//! - [`serve`]: the service's start-up (lock, recovery, workers) and its drain at stop.
//! - [`step`]: one plugin, once, against a fixture folder (`qodify-host step`).
//! - [`state`]: [`AppState`], what all of them run against (store, hub, plugins, runtime).
//! - [`worker`]: runs recorded in the store, queued by the API or started by the CLI.
//! - [`hub`]: turns run events into the plan's live events (`backup-progress`,
//!   `backup-completed`, `backup-failed`, and `restore-…`, `upgrade-…` alike).

pub mod access;
pub mod approvals;
pub mod backups;
pub mod capabilities;
pub mod customers;
pub mod hub;
pub mod plan;
pub mod plugins;
pub mod progress;
pub mod recover;
pub mod run;
pub mod schedule;
pub mod serve;
pub mod state;
pub mod step;
pub mod worker;

pub use hub::{EventHub, LiveEvent};
pub use state::{AppState, now};

/// One page of a list, and where the next one starts: `next_before` is the key of the page's
/// last item when more follow (a caller passes it back as `before`), else `None`.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T, K = String> {
    /// The items, at most the page's limit.
    pub items: Vec<T>,
    /// The cursor of the next page, when there is one.
    pub next_before: Option<K>,
}

impl<T, K> Page<T, K> {
    /// The page of `limit` items from `rows`, which a store read with a limit of `limit + 1`:
    /// one more row than the page tells whether another page follows.
    pub fn cut(mut rows: Vec<T>, limit: usize, key: impl Fn(&T) -> K) -> Self {
        let next_before = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(key)
        } else {
            None
        };
        Page {
            items: rows,
            next_before,
        }
    }

    /// The same page with every item mapped.
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U, K> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            next_before: self.next_before,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Page;

    #[test]
    fn a_page_names_its_last_item_only_when_more_follow() {
        let page = Page::cut(vec![1, 2, 3], 2, |n| n * 10);
        assert_eq!((page.items, page.next_before), (vec![1, 2], Some(20)));
        let page = Page::cut(vec![1, 2], 2, |n| n * 10);
        assert_eq!((page.items, page.next_before), (vec![1, 2], None));
        let page = Page::cut(Vec::<i32>::new(), 2, |n| n * 10);
        assert_eq!((page.items, page.next_before), (vec![], None));
        assert_eq!(
            Page::cut(vec![1, 2, 3], 2, |n| *n).map(|n| n + 1).items,
            [2, 3]
        );
    }
}
