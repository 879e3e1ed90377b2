//! The behaviour every [`Store`] has, written once: each backend's tests run all of it against
//! a fresh store of theirs with [`store_suite!`] (`sqlite.rs` and `postgres.rs`), so the two
//! cannot drift apart. What only one backend has (its files, its migrations, its locking between
//! handles) is tested beside it.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;

use super::*;
use crate::auth::Role;

/// What the suite needs beyond [`Store`]: writes no host makes, in each backend's SQL.
pub(crate) trait SuiteStore: Store {
    /// Sets when a run started (RFC 3339), to give it a duration.
    fn set_started_at(&self, run_id: &str, at: &str);
    /// Removes a run; its history lines stay.
    fn delete_run(&self, run_id: &str);
    /// The hashes of the stored sessions, expired or not.
    fn stored_sessions(&self) -> Vec<String>;
}

/// One `#[test]` per test of the suite, each on the store `$fixture()` opens (a fresh one; `None`
/// skips the test), dropped after it.
macro_rules! store_suite {
    ($fixture:path) => {
        $crate::store::suite::store_suite!(@each $fixture;
            customers_upsert_and_domain_taken,
            enqueue_busy_names_the_active_run_and_queue_if_busy_queues,
            claims_take_customers_in_turn_one_run_each,
            a_newcomer_is_served_before_a_long_queue,
            a_runs_insight_is_kept_while_it_runs_and_fenced,
            stale_epochs_are_fenced,
            recover_interrupted_by_owner_and_by_expired_lease,
            expired_leases_end_runs_once_and_fence_their_node,
            approvals_are_asked_while_running_and_answered_once,
            cancel_queued_running_and_finished_runs,
            events_are_numbered_per_run_and_filtered,
            backups_history_newest_first_and_updated_by_run_id,
            audit_log_newest_first,
            run_durations_are_histograms_by_pipeline_and_result_of_the_runs_that_ran,
            backup_summaries_give_each_customer_s_newest_present_backup_and_their_total,
            customer_overviews_are_pages_by_domain_filtered_by_id_or_domain,
            a_customer_overview_has_the_newest_history_line_and_the_active_run_with_its_step,
            run_pages_filter_by_customer_and_state_and_follow_a_cursor,
            audit_pages_filter_by_customer_action_and_actor_and_follow_a_cursor,
            tokens_are_found_by_hash_marked_used_once_a_minute_and_unique_by_name,
            sessions_expire_and_end_with_their_token,
            start_run_runs_at_once_and_is_refused_like_enqueue,
            run_counts_count_every_run_by_state,
            claims_take_only_the_claiming_node_s_customers,
            customers_of_no_node_are_adopted_once_and_claimed_only_when_asked,
            moving_a_customer_is_refused_while_it_has_an_active_run,
            heartbeats_register_and_refresh_nodes,
            active_runs_are_listed_by_node,
            drills_stamp_each_backup_with_its_newest_verdict_and_metrics_see_the_last_good,
            schedule_slots_are_taken_once_and_remember_since_when,
            customer_schedules_are_set_replaced_and_removed,
        );
    };
    (@each $fixture:path; $($test:ident,)*) => {
        $(
            #[test]
            fn $test() {
                if let Some(fixture) = $fixture() {
                    $crate::store::suite::$test(&*fixture);
                }
            }
        )*
    };
}
pub(crate) use store_suite;

/// A claim by a node that also takes the runs of customers of no node (the suite's customers
/// have none), owned by `owner`.
pub(crate) fn anyone(owner: &str) -> Claimant<'_> {
    Claimant {
        node: "n",
        owner,
        unassigned: true,
    }
}

/// A lease no test outlives.
pub(crate) const HOUR: Duration = Duration::from_secs(3600);

/// A backup run of `customer`, with a param and who asked.
pub(crate) fn new_run(id: &str, customer: &str) -> NewRun {
    NewRun {
        id: id.into(),
        customer_id: customer.into(),
        pipeline: "backup".into(),
        params: BTreeMap::from([("kind".into(), "fast".into())]),
        triggered_by: Some("alice".into()),
    }
}

/// Registers each id with the domain `<id>.example.com`.
pub(crate) fn customers(store: &dyn SuiteStore, ids: &[&str]) {
    for id in ids {
        store
            .upsert_customer(id, &format!("{id}.example.com"), None)
            .unwrap();
    }
}

fn running_per_customer(store: &dyn SuiteStore) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for run in store.runs(&RunFilter::default()).unwrap() {
        if run.state == RunState::Running {
            *counts.entry(run.customer_id).or_default() += 1;
        }
    }
    counts
}

/// How a run ended, nothing more said.
pub(crate) fn finished(state: RunState) -> RunFinish {
    RunFinish {
        state,
        error: None,
        backup_id: None,
    }
}

/// Runs `id` of `pipeline` for `customer` as if it had started `secs_ago` seconds ago, and
/// ends it as `state`.
pub(crate) fn ran(
    store: &dyn SuiteStore,
    id: &str,
    customer: &str,
    pipeline: &str,
    secs_ago: f64,
    state: RunState,
) {
    let mut run = new_run(id, customer);
    run.pipeline = pipeline.into();
    store.enqueue_run(&run, false).unwrap();
    let claimed = store.claim_next(&anyone("h"), HOUR).unwrap().unwrap();
    assert_eq!(claimed.id, id);
    let started = time::OffsetDateTime::now_utc() - Duration::from_secs_f64(secs_ago);
    store.set_started_at(id, &format_time(started));
    assert!(
        store
            .finish_run(id, claimed.epoch, &finished(state))
            .unwrap()
    );
}

fn history_line(
    store: &dyn SuiteStore,
    customer: &str,
    run: &str,
    result: &str,
    created: &str,
) -> BackupRecord {
    let line = BackupRecord {
        customer_id: customer.into(),
        run_id: run.into(),
        backup_id: (result == "succeeded").then(|| "20260101-000000".to_owned()),
        kind: "fast".into(),
        size: Some(42),
        duration_ms: Some(1000),
        result: result.into(),
        triggered_by: Some("ayse".into()),
        created_at: created.into(),
        note: None,
    };
    store.record_backup(&line).unwrap();
    line
}

fn overview_page(
    store: &dyn SuiteStore,
    text: Option<&str>,
    after: Option<&str>,
    limit: usize,
) -> Vec<String> {
    store
        .customer_overviews(&CustomerQuery {
            text: text.map(str::to_owned),
            after_domain: after.map(str::to_owned),
            limit,
        })
        .unwrap()
        .into_iter()
        .map(|o| o.customer.id)
        .collect()
}

fn token(name: &str, role: Role) -> TokenRecord {
    TokenRecord {
        name: name.into(),
        role,
        created_at: "2026-12-06T10:00:00Z".into(),
        created_by: Some("cli:root".into()),
        last_used_at: None,
    }
}

fn session(hash: &str, principal: &str, expires_unix: i64) -> SessionRecord {
    SessionRecord {
        hash: hash.into(),
        principal: principal.into(),
        role: Role::Operator,
        csrf: "c".into(),
        created_at: "2026-12-06T10:00:00Z".into(),
        expires_unix,
    }
}

pub(crate) fn customers_upsert_and_domain_taken(store: &dyn SuiteStore) {
    let c = store
        .upsert_customer("c1", "one.example.com", Some("gold"))
        .unwrap();
    assert_eq!(c.id, "c1");
    assert_eq!(c.domain, "one.example.com");
    assert_eq!(c.tier.as_deref(), Some("gold"));
    assert_eq!(c.created_at, c.updated_at);
    assert_eq!(store.customer("c1").unwrap(), Some(c.clone()));
    assert_eq!(store.customer("nobody").unwrap(), None);

    // Repeating the same registration changes nothing.
    assert_eq!(
        store
            .upsert_customer("c1", "one.example.com", Some("gold"))
            .unwrap(),
        c
    );
    std::thread::sleep(Duration::from_millis(2));
    let moved = store
        .upsert_customer("c1", "uno.example.com", None)
        .unwrap();
    assert_eq!(moved.domain, "uno.example.com");
    assert_eq!(moved.tier, None);
    assert_eq!(moved.created_at, c.created_at);
    assert!(moved.updated_at > c.updated_at);

    // The old domain is free again; the new one is taken, whatever its case.
    store
        .upsert_customer("c2", "one.example.com", None)
        .unwrap();
    for domain in ["uno.example.com", "UNO.Example.com"] {
        match store.upsert_customer("c2", domain, None) {
            Err(StoreError::DomainTaken { domain: d, owner }) => {
                assert_eq!(d, domain);
                assert_eq!(owner, "c1");
            }
            other => panic!("expected DomainTaken, got {other:?}"),
        }
    }
    assert_eq!(
        store.customer("c2").unwrap().unwrap().domain,
        "one.example.com"
    );
}

pub(crate) fn enqueue_busy_names_the_active_run_and_queue_if_busy_queues(store: &dyn SuiteStore) {
    assert!(matches!(
        store.enqueue_run(&new_run("r0", "ghost"), true),
        Err(StoreError::UnknownCustomer(c)) if c == "ghost"
    ));
    customers(store, &["c1", "c2"]);

    let r1 = store.enqueue_run(&new_run("r1", "c1"), false).unwrap();
    assert_eq!(r1.state, RunState::Queued);
    assert_eq!(r1.params.get("kind").map(String::as_str), Some("fast"));
    assert_eq!(r1.triggered_by.as_deref(), Some("alice"));
    assert_eq!(r1.epoch, 0);
    assert!(!r1.cancel_requested);
    assert_eq!(store.run("r1").unwrap(), Some(r1.clone()));

    match store.enqueue_run(&new_run("r2", "c1"), false) {
        Err(StoreError::Busy {
            customer,
            run_id,
            pipeline,
            state,
        }) => {
            assert_eq!(customer, "c1");
            assert_eq!(run_id, "r1");
            assert_eq!(pipeline, "backup");
            assert_eq!(state, RunState::Queued);
        }
        other => panic!("expected Busy, got {other:?}"),
    }
    assert_eq!(store.run("r2").unwrap(), None);
    // Another customer is not affected.
    store.enqueue_run(&new_run("r3", "c2"), false).unwrap();

    let r2 = store.enqueue_run(&new_run("r2", "c1"), true).unwrap();
    assert_eq!(r2.state, RunState::Queued);

    // Once r1 runs, Busy names it (the running one) rather than the queued r2.
    let claimed = store.claim_next(&anyone("h"), HOUR).unwrap().unwrap();
    assert_eq!(claimed.id, "r1");
    match store.enqueue_run(&new_run("r4", "c1"), false) {
        Err(StoreError::Busy { run_id, state, .. }) => {
            assert_eq!(run_id, "r1");
            assert_eq!(state, RunState::Running);
        }
        other => panic!("expected Busy, got {other:?}"),
    }

    // Newest first, per customer or all.
    let ids = |f: RunFilter| -> Vec<String> {
        store.runs(&f).unwrap().into_iter().map(|r| r.id).collect()
    };
    assert_eq!(ids(RunFilter::default()), ["r2", "r3", "r1"]);
    assert_eq!(
        ids(RunFilter {
            customer_id: Some("c1".into()),
            limit: None
        }),
        ["r2", "r1"]
    );
    assert_eq!(
        ids(RunFilter {
            customer_id: None,
            limit: Some(1)
        }),
        ["r2"]
    );
}

pub(crate) fn claims_take_customers_in_turn_one_run_each(store: &dyn SuiteStore) {
    customers(store, &["a", "b"]);
    for id in ["a1", "a2", "a3"] {
        store.enqueue_run(&new_run(id, "a"), true).unwrap();
    }
    for id in ["b1", "b2"] {
        store.enqueue_run(&new_run(id, "b"), true).unwrap();
    }

    // Two slots: one run per customer at a time.
    let first = store.claim_next(&anyone("h"), HOUR).unwrap().unwrap();
    assert_eq!(first.id, "a1");
    assert_eq!(first.state, RunState::Running);
    assert_eq!(first.epoch, 1);
    assert_eq!(first.lease_owner.as_deref(), Some("h"));
    assert!(first.started_at.is_some());
    let second = store.claim_next(&anyone("h"), HOUR).unwrap().unwrap();
    assert_eq!(second.id, "b1");
    assert_eq!(store.claim_next(&anyone("h"), HOUR).unwrap(), None);
    assert!(running_per_customer(store).values().all(|&n| n == 1));

    // One slot from here on: a's long queue does not starve b.
    let mut order = Vec::new();
    assert!(
        store
            .finish_run("a1", 1, &finished(RunState::Succeeded))
            .unwrap()
    );
    assert!(
        store
            .finish_run("b1", 1, &finished(RunState::Succeeded))
            .unwrap()
    );
    while let Some(run) = store.claim_next(&anyone("h"), HOUR).unwrap() {
        assert!(running_per_customer(store).values().all(|&n| n == 1));
        order.push(run.id.clone());
        assert!(
            store
                .finish_run(&run.id, run.epoch, &finished(RunState::Failed))
                .unwrap()
        );
    }
    assert_eq!(order, ["a2", "b2", "a3"]);
}

pub(crate) fn a_newcomer_is_served_before_a_long_queue(store: &dyn SuiteStore) {
    customers(store, &["a", "b"]);
    for id in ["a1", "a2", "a3"] {
        store.enqueue_run(&new_run(id, "a"), true).unwrap();
    }
    store.enqueue_run(&new_run("b1", "b"), true).unwrap();
    let mut order = Vec::new();
    while let Some(run) = store.claim_next(&anyone("h"), HOUR).unwrap() {
        order.push(run.id.clone());
        assert!(
            store
                .finish_run(&run.id, run.epoch, &finished(RunState::Succeeded))
                .unwrap()
        );
    }
    assert_eq!(order, ["a1", "b1", "a2", "a3"]);
}

pub(crate) fn a_runs_insight_is_kept_while_it_runs_and_fenced(store: &dyn SuiteStore) {
    customers(store, &["c1"]);
    store.enqueue_run(&new_run("r1", "c1"), false).unwrap();
    assert_eq!(store.run("r1").unwrap().unwrap().insight, None);
    let run = store.claim_next(&anyone("h1"), HOUR).unwrap().unwrap();
    let insight = json!({ "preflight": { "etaSeconds": 42 }, "warnings": ["low"] });
    assert!(!store.set_insight("r1", run.epoch - 1, &insight).unwrap());
    assert!(store.set_insight("r1", run.epoch, &insight).unwrap());
    assert_eq!(
        store.run("r1").unwrap().unwrap().insight,
        Some(insight.clone())
    );
    store
        .finish_run("r1", run.epoch, &finished(RunState::Succeeded))
        .unwrap();
    // An ended run keeps what it learnt and takes nothing more.
    assert!(!store.set_insight("r1", run.epoch, &json!({})).unwrap());
    assert_eq!(store.run("r1").unwrap().unwrap().insight, Some(insight));
}

pub(crate) fn stale_epochs_are_fenced(store: &dyn SuiteStore) {
    customers(store, &["c1"]);
    store.enqueue_run(&new_run("r1", "c1"), false).unwrap();
    let run = store.claim_next(&anyone("h1"), HOUR).unwrap().unwrap();
    assert_eq!(run.epoch, 1);

    let stale = RunFinish {
        state: RunState::Failed,
        error: Some("late".into()),
        backup_id: None,
    };
    assert!(!store.finish_run("r1", 0, &stale).unwrap());
    assert!(!store.set_progress("r1", 0, 50.0, "late").unwrap());
    assert!(!store.renew_lease("r1", "h1", 0, HOUR).unwrap());
    assert!(!store.renew_lease("r1", "h2", 1, HOUR).unwrap());
    assert_eq!(store.run("r1").unwrap().unwrap(), run);

    assert!(store.renew_lease("r1", "h1", 1, HOUR).unwrap());
    assert!(store.set_progress("r1", 1, 140.0, "copying").unwrap());
    let now = store.run("r1").unwrap().unwrap();
    assert_eq!(now.progress, Some(100.0));
    assert_eq!(now.message.as_deref(), Some("copying"));
    assert!(
        store
            .set_progress("r1", 1, f32::NAN, "still copying")
            .unwrap()
    );
    assert_eq!(store.run("r1").unwrap().unwrap().progress, Some(100.0));

    assert!(matches!(
        store.finish_run("r1", 1, &finished(RunState::Running)),
        Err(StoreError::Db(_))
    ));
    // The backup is named as soon as it is complete, fenced like the rest; a run that
    // then fails (an upgrade rolled back) keeps it.
    assert!(!store.set_backup_id("r1", 0, "20231231-000000").unwrap());
    assert!(store.set_backup_id("r1", 1, "20240101-000000").unwrap());
    assert_eq!(
        store.run("r1").unwrap().unwrap().backup_id.as_deref(),
        Some("20240101-000000")
    );
    let done = RunFinish {
        state: RunState::Failed,
        error: Some("health check failed; rolled back".into()),
        backup_id: None,
    };
    assert!(store.finish_run("r1", 1, &done).unwrap());
    let after = store.run("r1").unwrap().unwrap();
    assert_eq!(after.state, RunState::Failed);
    assert_eq!(after.backup_id.as_deref(), Some("20240101-000000"));
    assert_eq!(after.lease_owner, None);
    assert!(after.finished_at.is_some());
    // Finished: nothing more changes it.
    assert!(!store.finish_run("r1", 1, &stale).unwrap());
    assert!(!store.set_progress("r1", 1, 1.0, "x").unwrap());
    assert!(!store.renew_lease("r1", "h1", 1, HOUR).unwrap());
    assert_eq!(store.run("r1").unwrap().unwrap(), after);
}

pub(crate) fn recover_interrupted_by_owner_and_by_expired_lease(store: &dyn SuiteStore) {
    customers(store, &["c1", "c2", "c3", "c4"]);
    for (run, customer) in [("r1", "c1"), ("r2", "c2"), ("r3", "c3"), ("r4", "c4")] {
        store.enqueue_run(&new_run(run, customer), false).unwrap();
    }
    let r1 = store.claim_next(&anyone("me"), HOUR).unwrap().unwrap();
    let r2 = store
        .claim_next(&anyone("dead"), Duration::ZERO)
        .unwrap()
        .unwrap();
    let r3 = store.claim_next(&anyone("alive"), HOUR).unwrap().unwrap();
    assert_eq!(
        (r1.id.as_str(), r2.id.as_str(), r3.id.as_str()),
        ("r1", "r2", "r3")
    );
    std::thread::sleep(Duration::from_millis(5));

    let recovered = store.recover_interrupted("me").unwrap();
    let ids: Vec<_> = recovered.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["r1", "r2"]);
    for run in &recovered {
        assert_eq!(run.state, RunState::Interrupted);
        assert_eq!(run.error.as_deref(), Some(INTERRUPTED));
        assert_eq!(run.lease_owner, None);
        assert!(run.finished_at.is_some());
    }
    // The dead host's late writes are refused.
    assert!(
        !store
            .finish_run("r2", r2.epoch, &finished(RunState::Succeeded))
            .unwrap()
    );
    assert_eq!(store.run("r3").unwrap().unwrap().state, RunState::Running);
    assert_eq!(store.run("r4").unwrap().unwrap().state, RunState::Queued);
    assert!(store.recover_interrupted("me").unwrap().is_empty());
}

pub(crate) fn expired_leases_end_runs_once_and_fence_their_node(store: &dyn SuiteStore) {
    customers(store, &["c1", "c2"]);
    store.enqueue_run(&new_run("r1", "c1"), false).unwrap();
    store.enqueue_run(&new_run("r2", "c2"), false).unwrap();
    let paused = store
        .claim_next(&anyone("paused"), Duration::ZERO)
        .unwrap()
        .unwrap();
    let alive = store.claim_next(&anyone("alive"), HOUR).unwrap().unwrap();
    assert_eq!((paused.id.as_str(), alive.id.as_str()), ("r1", "r2"));
    // Until someone expires it, the run is still its node's.
    assert_eq!(
        store
            .append_event_fenced("r1", paused.epoch, "backup-progress", &json!({ "i": 1 }))
            .unwrap(),
        Some(1)
    );
    std::thread::sleep(Duration::from_millis(5));

    let expired = store.expire_leases().unwrap();
    let ids: Vec<_> = expired.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["r1"]);
    assert_eq!(expired[0].state, RunState::Interrupted);
    assert_eq!(expired[0].error.as_deref(), Some(LEASE_EXPIRED));
    assert_eq!(expired[0].lease_owner, None);
    assert!(expired[0].finished_at.is_some());
    // Once: a second sweep (another host's) finds nothing.
    assert!(store.expire_leases().unwrap().is_empty());
    assert_eq!(store.run("r2").unwrap().unwrap().state, RunState::Running);

    // The paused node wakes up: every late write is refused, and nothing changes.
    let before = store.run("r1").unwrap().unwrap();
    assert_eq!(
        store
            .append_event_fenced("r1", paused.epoch, "backup-progress", &json!({ "i": 2 }))
            .unwrap(),
        None
    );
    assert!(
        !store
            .renew_lease("r1", "paused", paused.epoch, HOUR)
            .unwrap()
    );
    assert!(
        !store
            .set_progress("r1", paused.epoch, 50.0, "late")
            .unwrap()
    );
    assert!(
        !store
            .ask_approval("r1", paused.epoch, &json!({ "q": 1 }))
            .unwrap()
    );
    assert!(
        !store
            .finish_run("r1", paused.epoch, &finished(RunState::Succeeded))
            .unwrap()
    );
    assert_eq!(store.run("r1").unwrap().unwrap(), before);
    assert_eq!(store.events("r1", 0).unwrap().len(), 1);
    // Whoever marked it says so (unfenced), numbered after the last one.
    assert_eq!(
        store
            .append_event("r1", "backup-failed", &json!({ "state": "interrupted" }))
            .unwrap(),
        2
    );
    // The customer can run again.
    store.enqueue_run(&new_run("r3", "c1"), false).unwrap();
    assert_eq!(
        store.claim_next(&anyone("h"), HOUR).unwrap().unwrap().id,
        "r3"
    );
}

pub(crate) fn approvals_are_asked_while_running_and_answered_once(store: &dyn SuiteStore) {
    customers(store, &["c1"]);
    store.enqueue_run(&new_run("r1", "c1"), false).unwrap();
    assert_eq!(store.approval("r1").unwrap(), None);
    assert_eq!(
        store
            .decide_approval("r1", &json!({ "approved": true }))
            .unwrap(),
        Decided::NotWaiting
    );
    // A queued run asks nothing.
    assert!(!store.ask_approval("r1", 0, &json!({ "q": 0 })).unwrap());
    let run = store.claim_next(&anyone("h"), HOUR).unwrap().unwrap();
    assert!(
        !store
            .ask_approval("r1", run.epoch + 1, &json!({ "q": 0 }))
            .unwrap()
    );
    assert_eq!(store.approval("r1").unwrap(), None);

    let question = json!({ "summary": "change 1 key", "details": { "changed": ["A"] } });
    assert!(store.ask_approval("r1", run.epoch, &question).unwrap());
    assert_eq!(
        store.approval("r1").unwrap(),
        Some(ApprovalRecord {
            request: question.clone(),
            decision: None
        })
    );
    let yes = json!({ "approved": true, "by": "ayse" });
    assert_eq!(
        store.decide_approval("r1", &yes).unwrap(),
        Decided::Recorded(question.clone())
    );
    assert_eq!(
        store
            .decide_approval("r1", &json!({ "approved": false }))
            .unwrap(),
        Decided::AlreadyDecided
    );
    assert_eq!(store.approval("r1").unwrap().unwrap().decision, Some(yes));
    // The next question replaces the answered one.
    let second = json!({ "summary": "drop 1 key" });
    assert!(store.ask_approval("r1", run.epoch, &second).unwrap());
    assert_eq!(
        store.approval("r1").unwrap(),
        Some(ApprovalRecord {
            request: second,
            decision: None
        })
    );
    store.clear_approval("r1").unwrap();
    assert_eq!(store.approval("r1").unwrap(), None);
    store.clear_approval("r1").unwrap();
}

pub(crate) fn cancel_queued_running_and_finished_runs(store: &dyn SuiteStore) {
    customers(store, &["c1"]);
    assert_eq!(store.request_cancel("nope").unwrap(), None);
    store.enqueue_run(&new_run("r1", "c1"), false).unwrap();
    store.enqueue_run(&new_run("r2", "c1"), true).unwrap();

    let running = store.claim_next(&anyone("h"), HOUR).unwrap().unwrap();
    assert_eq!(running.id, "r1");

    let queued = store.request_cancel("r2").unwrap().unwrap();
    assert_eq!(queued.state, RunState::Cancelled);
    assert_eq!(queued.error.as_deref(), Some(CANCELLED_BEFORE_START));
    assert!(queued.finished_at.is_some());

    let asked = store.request_cancel("r1").unwrap().unwrap();
    assert_eq!(asked.state, RunState::Running);
    assert!(asked.cancel_requested);
    assert_eq!(store.run("r1").unwrap().unwrap(), asked);

    assert!(
        store
            .finish_run("r1", 1, &finished(RunState::Cancelled))
            .unwrap()
    );
    let done = store.run("r1").unwrap().unwrap();
    assert_eq!(store.request_cancel("r1").unwrap(), Some(done.clone()));
    assert_eq!(store.request_cancel("r2").unwrap(), Some(queued));
    // A cancelled queued run is never claimed.
    assert_eq!(store.claim_next(&anyone("h"), HOUR).unwrap(), None);
    assert_eq!(done.state, RunState::Cancelled);
}

pub(crate) fn events_are_numbered_per_run_and_filtered(store: &dyn SuiteStore) {
    customers(store, &["c1", "c2"]);
    store.enqueue_run(&new_run("r1", "c1"), false).unwrap();
    store.enqueue_run(&new_run("r2", "c2"), false).unwrap();
    for i in 1..=5u64 {
        assert_eq!(
            store
                .append_event("r1", "backup-progress", &json!({ "i": i }))
                .unwrap(),
            i
        );
    }
    assert_eq!(
        store
            .append_event("r2", "run-started", &json!(null))
            .unwrap(),
        1
    );
    assert!(store.append_event("ghost", "x", &json!({})).is_err());

    let all = store.events("r1", 0).unwrap();
    assert_eq!(
        all.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    assert_eq!(all[2].data, json!({ "i": 3 }));
    assert_eq!(all[2].name, "backup-progress");
    assert_eq!(all[2].run_id, "r1");
    let tail = store.events("r1", 3).unwrap();
    assert_eq!(tail.iter().map(|e| e.seq).collect::<Vec<_>>(), [4, 5]);
    assert_eq!(tail[..], all[3..]);
    assert!(store.events("r1", 5).unwrap().is_empty());
    assert!(store.events("r1", u64::MAX).unwrap().is_empty());
    assert_eq!(store.events("r2", 0).unwrap().len(), 1);
}

pub(crate) fn backups_history_newest_first_and_updated_by_run_id(store: &dyn SuiteStore) {
    let line = |run: &str, created_at: &str, result: &str| BackupRecord {
        customer_id: "c1".into(),
        run_id: run.into(),
        backup_id: None,
        kind: "fast".into(),
        size: None,
        duration_ms: Some(1200),
        result: result.into(),
        triggered_by: Some("alice".into()),
        created_at: created_at.into(),
        note: None,
    };
    // Fractions of varying length and offsets: ordered as times, not as text.
    store
        .record_backup(&line("r1", "2024-01-01T10:00:00Z", "failed"))
        .unwrap();
    store
        .record_backup(&line("r2", "2024-01-01T10:00:00.5Z", "succeeded"))
        .unwrap();
    store
        .record_backup(&line("r3", "2024-01-01T11:59:00+02:00", "cancelled"))
        .unwrap();
    store
        .record_backup(&line("r4", "2024-01-02T00:00:00.123456789Z", "running"))
        .unwrap();
    let mut other = line("r5", "2030-01-01T00:00:00Z", "succeeded");
    other.customer_id = "c2".into();
    store.record_backup(&other).unwrap();

    let mut done = line("r4", "2024-01-02T00:00:00.123456789Z", "succeeded");
    done.backup_id = Some("20240102-000000".into());
    done.size = Some(u64::from(u32::MAX) * 4);
    store.record_backup(&done).unwrap();

    let history = store.backups("c1", 100, None).unwrap();
    let ids: Vec<_> = history.iter().map(|b| b.run_id.as_str()).collect();
    assert_eq!(ids, ["r4", "r2", "r1", "r3"]);
    assert_eq!(history[0], done);
    assert_eq!(store.backups("c2", 100, None).unwrap(), [other]);
    assert!(store.backups("c3", 100, None).unwrap().is_empty());
    // Pages follow each other without gaps or repeats; an unknown cursor gives nothing.
    let page = |before| {
        store
            .backups("c1", 2, before)
            .unwrap()
            .into_iter()
            .map(|b| b.run_id)
            .collect::<Vec<_>>()
    };
    assert_eq!(page(None), ["r4", "r2"]);
    assert_eq!(page(Some("r2")), ["r1", "r3"]);
    assert!(page(Some("r3")).is_empty());
    assert!(page(Some("nope")).is_empty());
}

pub(crate) fn audit_log_newest_first(store: &dyn SuiteStore) {
    for (i, customer) in ["c1", "c2", "c1", "c1"].iter().enumerate() {
        store
            .audit(&AuditEntry {
                at: format!("2024-01-01T00:00:0{i}Z"),
                actor: Some("alice".into()),
                action: "backup.requested".into(),
                customer_id: Some((*customer).into()),
                run_id: Some(format!("r{i}")),
                detail: json!({ "i": i }),
            })
            .unwrap();
    }
    store
        .audit(&AuditEntry {
            at: "2024-01-01T00:00:09Z".into(),
            actor: None,
            action: "host.started".into(),
            customer_id: None,
            run_id: None,
            detail: json!({}),
        })
        .unwrap();
    let runs = |entries: Vec<AuditEntry>| -> Vec<Option<String>> {
        entries.into_iter().map(|e| e.run_id).collect()
    };
    let all = store.audit_log(None, 100).unwrap();
    assert_eq!(all.len(), 5);
    assert_eq!(all[0].action, "host.started");
    assert_eq!(all[1].detail, json!({ "i": 3 }));
    assert_eq!(
        runs(store.audit_log(Some("c1"), 2).unwrap()),
        [Some("r3".to_owned()), Some("r2".to_owned())]
    );
    assert_eq!(
        runs(store.audit_log(Some("c2"), 10).unwrap()),
        [Some("r1".to_owned())]
    );
    assert!(store.audit_log(Some("c1"), 0).unwrap().is_empty());
}

pub(crate) fn run_durations_are_histograms_by_pipeline_and_result_of_the_runs_that_ran(
    store: &dyn SuiteStore,
) {
    customers(store, &["c1"]);
    ran(store, "r1", "c1", "backup", 90.0, RunState::Succeeded);
    ran(store, "r2", "c1", "backup", 30.0, RunState::Succeeded);
    ran(store, "r3", "c1", "backup", 2.0, RunState::Failed);
    ran(store, "r4", "c1", "backup", 7200.0, RunState::Cancelled);
    ran(store, "r5", "c1", "restore", 0.3, RunState::Succeeded);
    // Neither a run cancelled before it started nor an interrupted one ran to an end.
    store.enqueue_run(&new_run("r6", "c1"), false).unwrap();
    store.request_cancel("r6").unwrap();
    store.enqueue_run(&new_run("r7", "c1"), false).unwrap();
    store
        .claim_next(&anyone("dead-host"), HOUR)
        .unwrap()
        .unwrap();
    assert_eq!(store.recover_interrupted("dead-host").unwrap().len(), 1);

    let bounds = [1_000, 5_000, 100_000, 10_000_000];
    let got = store.run_durations(&bounds).unwrap();
    let rows: Vec<(&str, RunState, u64, &[u64])> = got
        .iter()
        .map(|h| (h.pipeline.as_str(), h.result, h.count, h.at_most.as_slice()))
        .collect();
    assert_eq!(
        rows,
        [
            ("backup", RunState::Cancelled, 1, &[0, 0, 0, 1][..]),
            ("backup", RunState::Failed, 1, &[0, 1, 1, 1][..]),
            ("backup", RunState::Succeeded, 2, &[0, 0, 2, 2][..]),
            ("restore", RunState::Succeeded, 1, &[1, 1, 1, 1][..]),
        ]
    );
    // From the start it was given to the end `finish_run` stamped, to the millisecond.
    let ok = &got[2];
    assert!((120_000..121_000).contains(&ok.sum_ms), "{ok:?}");
    assert!(store.run_durations(&[]).unwrap()[0].at_most.is_empty());
}

pub(crate) fn backup_summaries_give_each_customer_s_newest_present_backup_and_their_total(
    store: &dyn SuiteStore,
) {
    customers(store, &["c1", "c2", "c3"]);
    let line = |customer: &str,
                run: &str,
                backup: Option<&str>,
                size: Option<u64>,
                result: &str,
                created: &str| {
        store
            .record_backup(&BackupRecord {
                customer_id: customer.into(),
                run_id: run.into(),
                backup_id: backup.map(str::to_owned),
                kind: "fast".into(),
                size,
                duration_ms: Some(1000),
                result: result.into(),
                triggered_by: None,
                created_at: created.into(),
                note: None,
            })
            .unwrap();
    };
    // c1: an old backup found on disk (no run: made when its manifest says), a newer one
    // retention deleted, one that completed in a run that failed later (a real run: made
    // when it ended), and the newest line, a run that made nothing.
    line(
        "c1",
        "disk-1",
        Some("20260101-000000"),
        Some(100),
        "succeeded",
        "2026-01-01T00:00:00Z",
    );
    line(
        "c1",
        "r-deleted",
        Some("20260102-000000"),
        Some(200),
        "deleted",
        "2026-01-02T00:00:00Z",
    );
    ran(store, "r-late", "c1", "backup", 5.0, RunState::Failed);
    line(
        "c1",
        "r-late",
        Some("20260101-120000"),
        Some(50),
        "failed",
        "2026-01-01T12:00:00Z",
    );
    line("c1", "r-none", None, None, "failed", "2026-01-03T00:00:00Z");
    // c2: only a failure; c3: nothing at all.
    line("c2", "r-c2", None, None, "failed", "2026-01-01T00:00:00Z");

    let finished_at = store.run("r-late").unwrap().unwrap().finished_at.unwrap();
    let ended =
        time::OffsetDateTime::parse(&finished_at, &time::format_description::well_known::Rfc3339)
            .unwrap();
    let ended_ms = i64::try_from(ended.unix_timestamp_nanos() / 1_000_000).unwrap();
    let got = store.backup_summaries().unwrap();
    assert_eq!(
        got,
        [
            BackupSummary {
                customer_id: "c1".into(),
                domain: "c1.example.com".into(),
                last: Some(LastBackup {
                    backup_id: "20260101-120000".into(),
                    size: Some(50),
                    made_ms: Some(ended_ms),
                }),
                present: 2,
                present_bytes: 150,
            },
            BackupSummary {
                customer_id: "c2".into(),
                domain: "c2.example.com".into(),
                last: None,
                present: 0,
                present_bytes: 0,
            },
            BackupSummary {
                customer_id: "c3".into(),
                domain: "c3.example.com".into(),
                last: None,
                present: 0,
                present_bytes: 0,
            },
        ]
    );
    // Without the run, the time its line was made (the manifest's, for one from the disk).
    store.delete_run("r-late");
    let c1 = &store.backup_summaries().unwrap()[0];
    assert_eq!(
        c1.last.as_ref().unwrap().made_ms,
        Some(1_767_268_800_000),
        "{c1:?}"
    );
    line(
        "c1",
        "r-late",
        Some("20260101-120000"),
        Some(50),
        "deleted",
        "2026-01-01T12:00:00Z",
    );
    let c1 = &store.backup_summaries().unwrap()[0];
    assert_eq!(
        c1.last.as_ref().unwrap().made_ms,
        Some(1_767_225_600_000),
        "{c1:?}"
    );
    assert_eq!((c1.present, c1.present_bytes), (1, 100));
}

pub(crate) fn customer_overviews_are_pages_by_domain_filtered_by_id_or_domain(
    store: &dyn SuiteStore,
) {
    for (id, domain) in [
        ("42", "zeta.example.com"),
        ("7", "alpha.example.com"),
        ("shop-Big", "mid.example.org"),
        ("9", "beta.example.com"),
    ] {
        store.upsert_customer(id, domain, None).unwrap();
    }
    assert_eq!(
        overview_page(store, None, None, 100),
        ["7", "9", "shop-Big", "42"]
    );
    // Pages follow each other by the last domain, without gaps or repeats.
    assert_eq!(overview_page(store, None, None, 2), ["7", "9"]);
    assert_eq!(
        overview_page(store, None, Some("beta.example.com"), 2),
        ["shop-Big", "42"]
    );
    assert!(overview_page(store, None, Some("zeta.example.com"), 2).is_empty());
    // A substring of the id or the domain, in any case; the empty filter is no filter.
    assert_eq!(overview_page(store, Some("BIG"), None, 100), ["shop-Big"]);
    assert_eq!(
        overview_page(store, Some(".COM"), None, 100),
        ["7", "9", "42"]
    );
    assert_eq!(overview_page(store, Some("4"), None, 100), ["42"]);
    assert_eq!(
        overview_page(store, Some("example"), Some("alpha.example.com"), 1),
        ["9"]
    );
    assert_eq!(overview_page(store, Some(""), None, 100).len(), 4);
    assert!(overview_page(store, Some("%"), None, 100).is_empty());
}

pub(crate) fn a_customer_overview_has_the_newest_history_line_and_the_active_run_with_its_step(
    store: &dyn SuiteStore,
) {
    customers(store, &["c1", "c2", "c3"]);
    history_line(store, "c1", "r-old", "succeeded", "2026-01-01T00:00:00Z");
    let newest = history_line(store, "c1", "r-new", "failed", "2026-01-02T00:00:00.5Z");
    history_line(store, "c2", "r-c2", "succeeded", "2026-01-03T00:00:00Z");

    // c1: a queued run behind a running one; the running one shows, with its latest step.
    store.enqueue_run(&new_run("run-1", "c1"), false).unwrap();
    let claimed = store.claim_next(&anyone("h"), HOUR).unwrap().unwrap();
    store.enqueue_run(&new_run("run-2", "c1"), true).unwrap();
    assert!(
        store
            .set_progress("run-1", claimed.epoch, 37.5, "archiving")
            .unwrap()
    );
    for (name, data) in [
        (
            "backup-progress",
            json!({ "percent": 10, "step": "preflight" }),
        ),
        (
            "backup-progress",
            json!({ "percent": 30, "step": "archive-backend" }),
        ),
        (
            "backup-progress",
            json!({ "percent": 31, "step": null, "message": "x" }),
        ),
        ("backup-warning", json!({ "step": "not-progress" })),
    ] {
        store.append_event("run-1", name, &data).unwrap();
    }
    // c3: only a queued run, without any event.
    store.enqueue_run(&new_run("run-3", "c3"), false).unwrap();

    let got = store
        .customer_overviews(&CustomerQuery {
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(got.len(), 3);
    assert_eq!(got[0].customer.id, "c1");
    assert_eq!(got[0].last_backup.as_ref(), Some(&newest));
    assert_eq!(
        got[0].active_run,
        Some(ActiveRun {
            run_id: "run-1".into(),
            pipeline: "backup".into(),
            state: RunState::Running,
            percent: Some(37.5),
            step: Some("archive-backend".into()),
        })
    );
    assert_eq!(got[1].last_backup.as_ref().unwrap().run_id, "r-c2");
    assert_eq!(got[1].active_run, None);
    assert_eq!(got[2].last_backup, None);
    assert_eq!(
        got[2].active_run,
        Some(ActiveRun {
            run_id: "run-3".into(),
            pipeline: "backup".into(),
            state: RunState::Queued,
            percent: None,
            step: None,
        })
    );

    // Once the runs end, nothing is active.
    assert!(
        store
            .finish_run("run-1", claimed.epoch, &finished(RunState::Succeeded))
            .unwrap()
    );
    store.request_cancel("run-2").unwrap();
    store.request_cancel("run-3").unwrap();
    let got = store
        .customer_overviews(&CustomerQuery {
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    assert!(got.iter().all(|o| o.active_run.is_none()), "{got:?}");
}

pub(crate) fn run_pages_filter_by_customer_and_state_and_follow_a_cursor(store: &dyn SuiteStore) {
    customers(store, &["c1", "c2"]);
    // r1 succeeded (c1), r2 failed (c2), r3 cancelled while queued (c1), r4 running (c2),
    // r5 queued (c1).
    ran(store, "r1", "c1", "backup", 1.0, RunState::Succeeded);
    ran(store, "r2", "c2", "restore", 1.0, RunState::Failed);
    store.enqueue_run(&new_run("r3", "c1"), false).unwrap();
    store.request_cancel("r3").unwrap();
    store.enqueue_run(&new_run("r4", "c2"), false).unwrap();
    assert_eq!(
        store.claim_next(&anyone("h"), HOUR).unwrap().unwrap().id,
        "r4"
    );
    store.enqueue_run(&new_run("r5", "c1"), false).unwrap();

    let page = |customer: Option<&str>, states: &[RunState], before: Option<&str>, limit| {
        store
            .runs_page(&RunQuery {
                customer_id: customer.map(str::to_owned),
                states: states.to_vec(),
                before: before.map(str::to_owned),
                limit,
            })
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect::<Vec<_>>()
    };
    use RunState::*;
    assert_eq!(page(None, &[], None, 100), ["r5", "r4", "r3", "r2", "r1"]);
    assert_eq!(page(None, &[Queued, Running], None, 100), ["r5", "r4"]);
    assert_eq!(page(None, &[Failed, Cancelled], None, 100), ["r3", "r2"]);
    assert_eq!(page(Some("c1"), &[], None, 100), ["r5", "r3", "r1"]);
    assert_eq!(page(Some("c1"), &[Succeeded], None, 100), ["r1"]);
    assert!(page(Some("c2"), &[Interrupted], None, 100).is_empty());
    // Pages by cursor, also combined with the filters; an unknown cursor gives nothing.
    assert_eq!(page(None, &[], None, 2), ["r5", "r4"]);
    assert_eq!(page(None, &[], Some("r4"), 2), ["r3", "r2"]);
    assert_eq!(page(None, &[], Some("r2"), 2), ["r1"]);
    assert_eq!(page(Some("c1"), &[], Some("r5"), 1), ["r3"]);
    assert_eq!(
        page(None, &[Queued, Running, Failed], Some("r4"), 10),
        ["r2"]
    );
    assert!(page(None, &[], Some("nope"), 10).is_empty());
    assert_eq!(
        store
            .runs_page(&RunQuery {
                limit: 1,
                ..Default::default()
            })
            .unwrap()[0],
        store.run("r5").unwrap().unwrap()
    );
}

pub(crate) fn audit_pages_filter_by_customer_action_and_actor_and_follow_a_cursor(
    store: &dyn SuiteStore,
) {
    for (i, (customer, action, actor)) in [
        (Some("c1"), "backup.requested", Some("ayse")),
        (Some("c2"), "backup.requested", Some("bora")),
        (Some("c1"), "run.finished", None),
        (None, "host.started", Some("system")),
        (Some("c1"), "backup.requested", Some("bora")),
    ]
    .into_iter()
    .enumerate()
    {
        store
            .audit(&AuditEntry {
                at: format!("2026-01-01T00:00:0{i}Z"),
                actor: actor.map(str::to_owned),
                action: action.into(),
                customer_id: customer.map(str::to_owned),
                run_id: None,
                detail: json!({ "i": i }),
            })
            .unwrap();
    }
    let page = |customer: Option<&str>,
                action: Option<&str>,
                actor: Option<&str>,
                before: Option<i64>,
                limit| {
        store
            .audit_page(&AuditQuery {
                customer_id: customer.map(str::to_owned),
                action: action.map(str::to_owned),
                actor: actor.map(str::to_owned),
                before,
                limit,
            })
            .unwrap()
            .into_iter()
            .map(|r| (r.id, r.entry.detail["i"].as_i64().unwrap()))
            .collect::<Vec<_>>()
    };
    let all = page(None, None, None, None, 100);
    assert_eq!(all.iter().map(|e| e.1).collect::<Vec<_>>(), [4, 3, 2, 1, 0]);
    assert!(all.windows(2).all(|w| w[0].0 > w[1].0), "{all:?}");
    let is = |entries: Vec<(i64, i64)>| entries.into_iter().map(|e| e.1).collect::<Vec<_>>();
    assert_eq!(
        is(page(None, Some("backup.requested"), None, None, 100)),
        [4, 1, 0]
    );
    assert_eq!(is(page(None, None, Some("bora"), None, 100)), [4, 1]);
    assert_eq!(
        is(page(
            Some("c1"),
            Some("backup.requested"),
            Some("ayse"),
            None,
            100
        )),
        [0]
    );
    assert!(page(None, Some("backup"), None, None, 100).is_empty());
    // The cursor is an entry's id: the next page starts after it.
    let first = page(None, None, None, None, 2);
    assert_eq!(is(first.clone()), [4, 3]);
    assert_eq!(is(page(None, None, None, Some(first[1].0), 2)), [2, 1]);
    assert_eq!(
        is(page(
            None,
            Some("backup.requested"),
            None,
            Some(all[0].0),
            1
        )),
        [1]
    );
    // Every row is the entry as it was written.
    let full = store
        .audit_page(&AuditQuery {
            limit: 1,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(full[0].entry, store.audit_log(None, 1).unwrap()[0]);
}

pub(crate) fn tokens_are_found_by_hash_marked_used_once_a_minute_and_unique_by_name(
    store: &dyn SuiteStore,
) {
    store
        .add_token(&token("anna", Role::Operator), "h1")
        .unwrap();
    store.add_token(&token("veli", Role::Viewer), "h2").unwrap();
    assert!(matches!(
        store.add_token(&token("anna", Role::Admin), "h3"),
        Err(StoreError::TokenExists(n)) if n == "anna"
    ));
    assert!(store.use_token("nope", "t", 100).unwrap().is_none());
    let used = store
        .use_token("h1", "2026-12-06T10:01:00Z", 1000)
        .unwrap()
        .unwrap();
    assert_eq!((used.name.as_str(), used.role), ("anna", Role::Operator));
    assert_eq!(used.last_used_at.as_deref(), Some("2026-12-06T10:01:00Z"));
    // Within the minute: not written again.
    let again = store
        .use_token("h1", "2026-12-06T10:01:30Z", 1030)
        .unwrap()
        .unwrap();
    assert_eq!(again.last_used_at.as_deref(), Some("2026-12-06T10:01:00Z"));
    let later = store
        .use_token("h1", "2026-12-06T10:02:00Z", 1060)
        .unwrap()
        .unwrap();
    assert_eq!(later.last_used_at.as_deref(), Some("2026-12-06T10:02:00Z"));
    let names: Vec<_> = store
        .tokens()
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, ["anna", "veli"]);
}

pub(crate) fn sessions_expire_and_end_with_their_token(store: &dyn SuiteStore) {
    store
        .add_token(&token("anna", Role::Operator), "h1")
        .unwrap();
    store.add_session(&session("s1", "anna", 200), 100).unwrap();
    store.add_session(&session("s2", "anna", 300), 100).unwrap();
    store
        .add_session(&session("s3", "service", 300), 100)
        .unwrap();
    assert_eq!(store.session("s1", 150).unwrap().unwrap().principal, "anna");
    assert!(store.session("s1", 200).unwrap().is_none(), "expired");
    // Opening a session forgets the expired ones.
    store
        .add_session(&session("s4", "service", 400), 250)
        .unwrap();
    assert!(
        !store.stored_sessions().contains(&"s1".to_owned()),
        "{:?}",
        store.stored_sessions()
    );
    assert!(store.revoke_token("anna").unwrap());
    assert!(!store.revoke_token("anna").unwrap());
    assert!(
        store.session("s2", 150).unwrap().is_none(),
        "ended with its token"
    );
    assert!(store.use_token("h1", "t", 1).unwrap().is_none());
    assert!(store.session("s3", 150).unwrap().is_some());
    assert!(store.end_session("s3").unwrap());
    assert!(!store.end_session("s3").unwrap());
    assert!(store.session("s3", 150).unwrap().is_none());
}

pub(crate) fn start_run_runs_at_once_and_is_refused_like_enqueue(store: &dyn SuiteStore) {
    assert!(matches!(
        store.start_run(&new_run("r0", "ghost"), "cli:h:1", HOUR),
        Err(StoreError::UnknownCustomer(c)) if c == "ghost"
    ));
    customers(store, &["c1"]);
    let started = store
        .start_run(&new_run("r1", "c1"), "cli:h:1", HOUR)
        .unwrap();
    assert_eq!(started.state, RunState::Running);
    assert_eq!(started.epoch, 1);
    assert_eq!(started.lease_owner.as_deref(), Some("cli:h:1"));
    assert_eq!(started.started_at.as_ref(), Some(&started.created_at));
    assert_eq!(store.run("r1").unwrap(), Some(started));

    // While it runs: another start is refused, naming it; a queued run waits and is not claimed.
    match store.start_run(&new_run("r2", "c1"), "cli:h:2", HOUR) {
        Err(StoreError::Busy { run_id, state, .. }) => {
            assert_eq!((run_id.as_str(), state), ("r1", RunState::Running));
        }
        other => panic!("expected Busy, got {other:?}"),
    }
    assert!(matches!(
        store.enqueue_run(&new_run("r3", "c1"), false),
        Err(StoreError::Busy { .. })
    ));
    store.enqueue_run(&new_run("r3", "c1"), true).unwrap();
    assert_eq!(store.claim_next(&anyone("h"), HOUR).unwrap(), None);

    // Once it ended, the queued run is the active one: a start is refused, a claim takes it.
    assert!(
        store
            .finish_run("r1", 1, &finished(RunState::Succeeded))
            .unwrap()
    );
    assert!(matches!(
        store.start_run(&new_run("r4", "c1"), "cli:h:1", HOUR),
        Err(StoreError::Busy { run_id, state: RunState::Queued, .. }) if run_id == "r3"
    ));
    assert_eq!(
        store.claim_next(&anyone("h"), HOUR).unwrap().unwrap().id,
        "r3"
    );
}

pub(crate) fn run_counts_count_every_run_by_state(store: &dyn SuiteStore) {
    customers(store, &["c1", "c2", "c3"]);
    assert!(store.run_counts().unwrap().is_empty());
    ran(store, "r1", "c1", "backup", 1.0, RunState::Succeeded);
    ran(store, "r2", "c1", "backup", 1.0, RunState::Succeeded);
    store.enqueue_run(&new_run("r3", "c2"), false).unwrap();
    assert_eq!(
        store.claim_next(&anyone("h"), HOUR).unwrap().unwrap().id,
        "r3"
    );
    store.enqueue_run(&new_run("r4", "c2"), true).unwrap();
    store.enqueue_run(&new_run("r5", "c3"), false).unwrap();
    store.request_cancel("r5").unwrap();
    let mut counts = store.run_counts().unwrap();
    counts.sort_by_key(|(state, _)| state_str(*state));
    use RunState::*;
    assert_eq!(
        counts,
        [(Cancelled, 1), (Queued, 1), (Running, 1), (Succeeded, 2)]
    );
}

fn claim_as<'a>(node: &'a str, owner: &'a str) -> Claimant<'a> {
    Claimant {
        node,
        owner,
        unassigned: false,
    }
}

pub(crate) fn claims_take_only_the_claiming_node_s_customers(store: &dyn SuiteStore) {
    customers(store, &["a1", "a2", "b1"]);
    store.move_customer("a1", "node-a").unwrap();
    store.move_customer("a2", "node-a").unwrap();
    store.move_customer("b1", "node-b").unwrap();
    for (run, customer) in [("r1", "b1"), ("r2", "a1"), ("r3", "b1"), ("r4", "a2")] {
        store.enqueue_run(&new_run(run, customer), true).unwrap();
    }
    // A node that has no customers claims nothing, even with runs queued.
    assert_eq!(
        store
            .claim_next(&claim_as("node-c", "host-c"), HOUR)
            .unwrap(),
        None
    );
    let b = store
        .claim_next(&claim_as("node-b", "host-b"), HOUR)
        .unwrap()
        .unwrap();
    assert_eq!((b.id.as_str(), b.customer_id.as_str()), ("r1", "b1"));
    assert_eq!(b.lease_owner.as_deref(), Some("host-b"));
    assert_eq!(b.node.as_deref(), Some("node-b"));
    // b1's next run waits for its running one; node-a's runs are not node-b's to take.
    assert_eq!(
        store
            .claim_next(&claim_as("node-b", "host-b"), HOUR)
            .unwrap(),
        None
    );
    let mut a: Vec<String> = std::iter::from_fn(|| {
        store
            .claim_next(&claim_as("node-a", "host-a"), HOUR)
            .unwrap()
    })
    .map(|r| {
        assert_eq!(r.node.as_deref(), Some("node-a"));
        r.id
    })
    .collect();
    a.sort();
    assert_eq!(a, ["r2", "r4"]);
    // The node is kept after the run ended.
    assert!(
        store
            .finish_run("r1", b.epoch, &finished(RunState::Succeeded))
            .unwrap()
    );
    assert_eq!(
        store.run("r1").unwrap().unwrap().node.as_deref(),
        Some("node-b")
    );
    assert_eq!(
        store
            .claim_next(&claim_as("node-b", "host-b"), HOUR)
            .unwrap()
            .unwrap()
            .id,
        "r3"
    );
    // A queued run has no node yet.
    store.enqueue_run(&new_run("r5", "a1"), true).unwrap();
    assert_eq!(store.run("r5").unwrap().unwrap().node, None);
}

pub(crate) fn customers_of_no_node_are_adopted_once_and_claimed_only_when_asked(
    store: &dyn SuiteStore,
) {
    customers(store, &["c1", "c2"]);
    assert_eq!(store.customer("c1").unwrap().unwrap().node, None);
    let unassigned: Vec<String> = store
        .unassigned_customers()
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(unassigned, ["c1", "c2"]);
    store.enqueue_run(&new_run("r1", "c1"), false).unwrap();
    // Runs of a customer of no node wait, unless the claim asks for them (a single node).
    assert_eq!(
        store
            .claim_next(&claim_as("node-a", "host-a"), HOUR)
            .unwrap(),
        None
    );
    // The first node to adopt it has it; a second cannot take it over that way.
    assert!(store.adopt_customer("c1", "node-a").unwrap());
    assert!(!store.adopt_customer("c1", "node-b").unwrap());
    assert!(!store.adopt_customer("nobody", "node-b").unwrap());
    assert_eq!(
        store.customer("c1").unwrap().unwrap().node.as_deref(),
        Some("node-a")
    );
    assert_eq!(
        store
            .claim_next(&claim_as("node-b", "host-b"), HOUR)
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .claim_next(&claim_as("node-a", "host-a"), HOUR)
            .unwrap()
            .unwrap()
            .id,
        "r1"
    );
    // A single node claims the runs of customers of no node, and leaves them of no node.
    store.enqueue_run(&new_run("r2", "c2"), false).unwrap();
    let r2 = store
        .claim_next(
            &Claimant {
                node: "solo",
                owner: "host-solo",
                unassigned: true,
            },
            HOUR,
        )
        .unwrap()
        .unwrap();
    assert_eq!((r2.id.as_str(), r2.node.as_deref()), ("r2", Some("solo")));
    assert_eq!(store.customer("c2").unwrap().unwrap().node, None);
    // A registration repeated keeps the node.
    store.upsert_customer("c1", "c1.example.com", None).unwrap();
    assert_eq!(
        store.customer("c1").unwrap().unwrap().node.as_deref(),
        Some("node-a")
    );
}

pub(crate) fn moving_a_customer_is_refused_while_it_has_an_active_run(store: &dyn SuiteStore) {
    customers(store, &["c1"]);
    assert!(matches!(
        store.move_customer("nobody", "node-a"),
        Err(StoreError::UnknownCustomer(_))
    ));
    let moved = store.move_customer("c1", "node-a").unwrap();
    assert_eq!(moved.node.as_deref(), Some("node-a"));
    store.enqueue_run(&new_run("r1", "c1"), false).unwrap();
    // Queued: refused, naming the run.
    match store.move_customer("c1", "node-b") {
        Err(StoreError::Busy { run_id, state, .. }) => {
            assert_eq!((run_id.as_str(), state), ("r1", RunState::Queued));
        }
        other => panic!("{other:?}"),
    }
    // To the node it has: nothing to move, so not refused.
    assert_eq!(
        store.move_customer("c1", "node-a").unwrap().node.as_deref(),
        Some("node-a")
    );
    let run = store
        .claim_next(&claim_as("node-a", "host-a"), HOUR)
        .unwrap()
        .unwrap();
    // Running: refused.
    assert!(matches!(
        store.move_customer("c1", "node-b"),
        Err(StoreError::Busy {
            state: RunState::Running,
            ..
        })
    ));
    assert_eq!(
        store.customer("c1").unwrap().unwrap().node.as_deref(),
        Some("node-a")
    );
    assert!(
        store
            .finish_run(&run.id, run.epoch, &finished(RunState::Succeeded))
            .unwrap()
    );
    // Ended: it moves, and its next runs are the new node's.
    assert_eq!(
        store.move_customer("c1", "node-b").unwrap().node.as_deref(),
        Some("node-b")
    );
    store.enqueue_run(&new_run("r2", "c1"), false).unwrap();
    assert_eq!(
        store
            .claim_next(&claim_as("node-a", "host-a"), HOUR)
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .claim_next(&claim_as("node-b", "host-b"), HOUR)
            .unwrap()
            .unwrap()
            .id,
        "r2"
    );
}

pub(crate) fn heartbeats_register_and_refresh_nodes(store: &dyn SuiteStore) {
    assert!(store.nodes().unwrap().is_empty());
    let beat = |name: &str, started: &str| NodeBeat {
        name: name.into(),
        version: "0.1.0".into(),
        started_at: started.into(),
        advertise_url: None,
    };
    let (_, before_ms) = now();
    store
        .heartbeat(&beat("node-b", "2026-01-01T00:00:00.000Z"))
        .unwrap();
    store
        .heartbeat(&beat("node-a", "2026-01-01T00:00:00.000Z"))
        .unwrap();
    let nodes = store.nodes().unwrap();
    let names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["node-a", "node-b"]);
    let first = nodes[0].clone();
    assert!(first.heartbeat_ms >= before_ms, "{first:?}");
    assert_eq!(first.version, "0.1.0");
    std::thread::sleep(Duration::from_millis(5));
    // A restarted node: its start and its heartbeat move on, it stays one node.
    let mut again = beat("node-a", "2026-01-02T00:00:00.000Z");
    again.version = "0.2.0".into();
    again.advertise_url = Some("http://10.0.0.1:8610".into());
    store.heartbeat(&again).unwrap();
    let nodes = store.nodes().unwrap();
    assert_eq!(nodes.len(), 2);
    let a = &nodes[0];
    assert!(a.heartbeat_ms > first.heartbeat_ms, "{a:?} {first:?}");
    assert!(a.heartbeat_at > first.heartbeat_at, "{a:?} {first:?}");
    assert_eq!(
        (
            a.version.as_str(),
            a.started_at.as_str(),
            a.advertise_url.as_deref()
        ),
        (
            "0.2.0",
            "2026-01-02T00:00:00.000Z",
            Some("http://10.0.0.1:8610")
        )
    );
}

pub(crate) fn active_runs_are_listed_by_node(store: &dyn SuiteStore) {
    customers(store, &["a1", "b1", "x1"]);
    store.move_customer("a1", "node-a").unwrap();
    store.move_customer("b1", "node-b").unwrap();
    store.enqueue_run(&new_run("r1", "a1"), false).unwrap();
    store.enqueue_run(&new_run("r2", "b1"), false).unwrap();
    store.enqueue_run(&new_run("r3", "b1"), true).unwrap();
    store.enqueue_run(&new_run("r4", "x1"), false).unwrap();
    store.enqueue_run(&new_run("r5", "x1"), true).unwrap();
    store.request_cancel("r5").unwrap();
    store
        .claim_next(&claim_as("node-b", "host-b"), HOUR)
        .unwrap()
        .unwrap();
    let listed: Vec<(Option<String>, String, RunState)> = store
        .active_runs_by_node()
        .unwrap()
        .into_iter()
        .map(|(node, r)| (node, r.id, r.state))
        .collect();
    let b = || Some("node-b".to_owned());
    assert_eq!(
        listed,
        [
            (b(), "r2".to_owned(), RunState::Running),
            (Some("node-a".into()), "r1".into(), RunState::Queued),
            (b(), "r3".into(), RunState::Queued),
            (None, "r4".into(), RunState::Queued),
        ]
    );
}

fn drill(customer: &str, backup: &str, run: &str, ok: bool, at: &str) -> DrillRecord {
    DrillRecord {
        customer_id: customer.into(),
        backup_id: backup.into(),
        run_id: run.into(),
        restorable: ok,
        reason: (!ok)
            .then(|| "pg_restore: error: could not read from input file: end of file".into()),
        drilled_at: at.into(),
    }
}

pub(crate) fn drills_stamp_each_backup_with_its_newest_verdict_and_metrics_see_the_last_good(
    store: &dyn SuiteStore,
) {
    customers(store, &["c1", "c2", "c3"]);
    let (b1, b2) = ("20261201-030000".to_owned(), "20261202-030000".to_owned());
    assert!(
        store
            .drills("c1", std::slice::from_ref(&b1))
            .unwrap()
            .is_empty()
    );
    assert!(store.last_good_drills().unwrap().is_empty());
    store
        .record_drill(&drill("c1", &b1, "r1", true, "2026-12-01T04:00:00.000Z"))
        .unwrap();
    // A later drill of the same backup that failed is what the history shows...
    let bad = drill("c1", &b1, "r2", false, "2026-12-02T04:00:00.000Z");
    store.record_drill(&bad).unwrap();
    // ...and an earlier verdict recorded late does not hide it.
    store
        .record_drill(&drill("c1", &b1, "r0", true, "2026-11-30T04:00:00.000Z"))
        .unwrap();
    store
        .record_drill(&drill("c1", &b2, "r3", true, "2026-12-02T05:00:00.500Z"))
        .unwrap();
    store
        .record_drill(&drill("c2", &b1, "r4", false, "2026-12-02T06:00:00.000Z"))
        .unwrap();
    let mut got = store
        .drills("c1", &[b1.clone(), b2.clone(), "20261203-030000".into()])
        .unwrap();
    got.sort_by(|a, b| a.backup_id.cmp(&b.backup_id));
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0], bad);
    assert_eq!(got[1].run_id, "r3");
    assert!(got[1].restorable && got[1].reason.is_none());
    // Another customer's drills of the same backup id are its own.
    assert_eq!(
        store.drills("c2", std::slice::from_ref(&b1)).unwrap()[0].run_id,
        "r4"
    );
    assert!(
        store
            .drills("c3", std::slice::from_ref(&b1))
            .unwrap()
            .is_empty()
    );
    // The newest good drill per customer; a customer with only bad ones has none.
    let good = store.last_good_drills().unwrap();
    assert_eq!(good, [("c1".to_owned(), 1_796_187_600_500)]);
    // Recording the same run again replaces its line.
    store
        .record_drill(&drill("c2", &b1, "r4", true, "2026-12-02T06:00:00.000Z"))
        .unwrap();
    assert!(store.drills("c2", &[b1]).unwrap()[0].restorable);
    assert_eq!(store.last_good_drills().unwrap().len(), 2);
}

pub(crate) fn schedule_slots_are_taken_once_and_remember_since_when(store: &dyn SuiteStore) {
    customers(store, &["c1", "c2"]);
    let seen = store.schedule_seen("c1", "backup", 1_000).unwrap();
    assert_eq!(
        (seen.since_ms, seen.last_slot_ms, seen.outcome),
        (1_000, None, None)
    );
    // Seen again later: since when it applies does not move.
    assert_eq!(
        store.schedule_seen("c1", "backup", 9_000).unwrap().since_ms,
        1_000
    );
    let slot = |at: i64, outcome: &str| ScheduleSlot {
        customer_id: "c1".into(),
        pipeline: "backup".into(),
        since_ms: 1_000,
        last_slot_ms: Some(at),
        outcome: Some(outcome.into()),
        run_id: Some(format!("run-{at}")),
        reason: None,
        at: Some("2026-12-07T03:00:00Z".into()),
    };
    // A slot is taken once: a second host (or tick) taking the same slot is refused.
    assert!(store.record_slot(&slot(5_000, "queued"), true).unwrap());
    assert!(!store.record_slot(&slot(5_000, "queued"), true).unwrap());
    assert!(!store.record_slot(&slot(4_000, "queued"), true).unwrap());
    // The same slot's outcome can be corrected (the queue refused the run after all).
    let mut skipped = slot(5_000, "skipped");
    skipped.reason = Some("busy".into());
    assert!(store.record_slot(&skipped, false).unwrap());
    assert!(!store.record_slot(&slot(6_000, "skipped"), false).unwrap());
    assert!(store.record_slot(&slot(6_000, "queued"), true).unwrap());
    store.schedule_seen("c2", "drill", 2_000).unwrap();
    let all = store.schedule_slots(None).unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].last_slot_ms, Some(6_000));
    assert_eq!(all[0].run_id.as_deref(), Some("run-6000"));
    assert_eq!(all[1].pipeline, "drill");
    assert_eq!(store.schedule_slots(Some("c2")).unwrap().len(), 1);
}

pub(crate) fn customer_schedules_are_set_replaced_and_removed(store: &dyn SuiteStore) {
    customers(store, &["c1", "c2"]);
    assert!(matches!(
        store.set_customer_schedule("nobody", "backup", Some(&json!({ "at": "off" }))),
        Err(StoreError::UnknownCustomer(_))
    ));
    store
        .set_customer_schedule("c1", "backup", Some(&json!({ "at": "daily 02:00" })))
        .unwrap();
    store
        .set_customer_schedule("c1", "backup", Some(&json!({ "at": "daily 04:00" })))
        .unwrap();
    store
        .set_customer_schedule("c2", "drill", Some(&json!({ "at": "off" })))
        .unwrap();
    let all = store.customer_schedules(None).unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].spec, json!({ "at": "daily 04:00" }));
    assert_eq!(
        store.customer_schedules(Some("c2")).unwrap()[0].pipeline,
        "drill"
    );
    store.set_customer_schedule("c1", "backup", None).unwrap();
    assert!(store.customer_schedules(Some("c1")).unwrap().is_empty());
}
