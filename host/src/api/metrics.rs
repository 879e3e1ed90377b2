//! `GET /metrics`: the Prometheus text exposition, computed on each scrape from the store (runs
//! by state, the queue, run durations, each customer's newest backup, every node's heartbeat and
//! active runs) with bounded queries, and from this process (runs executing here, confinement,
//! version). `docs/api.md` lists the series and the alert rules they are made for.
//!
//! Every sample carries `node`, the node that answered the scrape: with several hosts sharing one
//! store, each reports the same store-wide figures, and the label tells the copies apart (a query
//! takes one of them: `max without (instance, node) (…)`). Facts about each node from the store
//! name it in `peer`.

use std::fmt::Write as _;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse as _, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiError, blocking};
use crate::ops::AppState;
use crate::store::{BackupSummary, DurationHistogram, RunState};

/// The route (behind the token, like `/api`).
pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(metrics))
}

/// Upper bounds of the run duration histogram, in seconds: runs take seconds (a small backup,
/// a verify) to hours (a large restore, an upgrade building its apps).
const DURATION_BUCKETS: [u64; 13] = [
    1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 28800,
];

/// The run states, in the order `qodify_runs` lists them.
const STATES: [RunState; 6] = [
    RunState::Queued,
    RunState::Running,
    RunState::Succeeded,
    RunState::Failed,
    RunState::Cancelled,
    RunState::Interrupted,
];

/// What one scrape shows.
struct Snapshot {
    /// The node answering (`node` on every sample).
    node: String,
    /// Every node in the store, by name.
    nodes: Vec<NodeFacts>,
    /// Active runs of customers of no node: (running, queued).
    unassigned: (u64, u64),
    counts: Vec<(RunState, u64)>,
    executing: usize,
    durations: Vec<DurationHistogram>,
    backups: Vec<BackupSummary>,
    /// Each customer's newest restorable drill, unix milliseconds, by customer id.
    good_drills: std::collections::BTreeMap<String, i64>,
    /// `qodify_commands_confined`'s label, value and help text.
    confined: (&'static str, bool, String),
    /// Unix seconds of the scrape.
    now: f64,
}

/// One node as the store has it.
struct NodeFacts {
    name: String,
    /// Its last heartbeat, unix milliseconds.
    heartbeat_ms: i64,
    /// Its active runs (running, queued): the runs it runs and its customers' queued runs.
    running: u64,
    queued: u64,
}

/// `nodes` with their counts from `active` (what `Store::active_runs_by_node` gives), and the
/// counts of the runs of customers of no node. Runs of a node that never beat are left out.
fn node_facts(
    nodes: Vec<crate::store::NodeRecord>,
    active: &[(Option<String>, crate::store::RunRecord)],
) -> (Vec<NodeFacts>, (u64, u64)) {
    let count = |node: Option<&str>| {
        active.iter().filter(|(n, _)| n.as_deref() == node).fold(
            (0, 0),
            |(running, queued), (_, r)| match r.state {
                RunState::Running => (running + 1, queued),
                RunState::Queued => (running, queued + 1),
                _ => (running, queued),
            },
        )
    };
    let facts = nodes
        .into_iter()
        .map(|n| {
            let (running, queued) = count(Some(&n.name));
            NodeFacts {
                name: n.name,
                heartbeat_ms: n.heartbeat_ms,
                running,
                queued,
            }
        })
        .collect();
    (facts, count(None))
}

/// Prometheus text exposition: runs by state and executing here, the queue, run durations,
/// each customer's newest backup (time, age, size) and present backups, confinement, version.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "service",
    operation_id = "metrics",
    responses((
        status = 200,
        description = "Prometheus text format, every sample labelled `node` (the node that answers; store-wide figures are the same on every node): `qodify_runs{state=…}`, `qodify_runs_executing`, `qodify_queue_depth`, `qodify_runs_running`, `qodify_run_duration_seconds{pipeline,result}` (histogram), per registered customer `qodify_last_successful_backup_timestamp_seconds{customer,domain}` (0 when it has none), `qodify_last_successful_backup_age_seconds` (+Inf when it has none), `qodify_backup_size_bytes`, `qodify_backups_present` and `qodify_backups_present_bytes`, `qodify_drill_last_good_age_seconds` (since the newest restore drill that found a backup restorable; +Inf when none), per node in the store `qodify_node_heartbeat_age_seconds{peer}` and `qodify_node_active_runs{peer,state}`, `qodify_unassigned_active_runs{state}`, `qodify_build_info`, `qodify_commands_confined` (1 when granted programs run in a Landlock domain, 0 when they run with the host's rights or are refused).",
        body = String,
        content_type = "text/plain",
    )),
)]
async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let store = state.store.clone();
    let bounds_ms: Vec<u64> = DURATION_BUCKETS.iter().map(|s| s * 1000).collect();
    let (counts, durations, backups, good_drills, (nodes, unassigned)) = blocking(move || {
        Ok((
            store
                .run_counts()
                .map_err(|e| ApiError::internal("counting runs", e))?,
            store
                .run_durations(&bounds_ms)
                .map_err(|e| ApiError::internal("reading run durations", e))?,
            store
                .backup_summaries()
                .map_err(|e| ApiError::internal("reading the newest backups", e))?,
            store
                .last_good_drills()
                .map_err(|e| ApiError::internal("reading the restore drills", e))?
                .into_iter()
                .collect(),
            node_facts(
                store
                    .nodes()
                    .map_err(|e| ApiError::internal("reading the nodes", e))?,
                &store
                    .active_runs_by_node()
                    .map_err(|e| ApiError::internal("reading the nodes' active runs", e))?,
            ),
        ))
    })
    .await?;
    let confinement = crate::engine::confine::Confinement::new(state.settings.commands.confinement);
    let snapshot = Snapshot {
        node: state.settings.node.clone(),
        nodes,
        unassigned,
        counts,
        executing: state.running.lock().map(|m| m.len()).unwrap_or(0),
        durations,
        backups,
        good_drills,
        confined: (
            match confinement.mode {
                crate::engine::confine::Mode::Landlock => "landlock",
                crate::engine::confine::Mode::Off => "off",
            },
            confinement.enforced(),
            confinement.describe(),
        ),
        now: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64()),
    };
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render(&snapshot),
    )
        .into_response())
}

/// The exposition of `s`.
fn render(s: &Snapshot) -> String {
    let mut out = Exposition::new(&s.node);
    let count = |st: RunState| {
        s.counts
            .iter()
            .find(|(c, _)| *c == st)
            .map_or(0, |(_, n)| *n)
    };
    out.family("qodify_runs", "gauge", "Runs in the state store, by state.");
    for st in STATES {
        out.line("qodify_runs", &[("state", &st.to_string())], count(st));
    }
    out.family(
        "qodify_runs_executing",
        "gauge",
        "Runs executing on this host now.",
    );
    out.line("qodify_runs_executing", &[], s.executing);
    out.family(
        "qodify_queue_depth",
        "gauge",
        "Runs waiting in the queue (every host sharing the store).",
    );
    out.line("qodify_queue_depth", &[], count(RunState::Queued));
    out.family(
        "qodify_runs_running",
        "gauge",
        "Runs running (every host sharing the store).",
    );
    out.line("qodify_runs_running", &[], count(RunState::Running));

    out.family(
        "qodify_run_duration_seconds",
        "histogram",
        "How long runs took from start to end, by pipeline and result (runs that started and ended).",
    );
    for h in &s.durations {
        let result = h.result.to_string();
        let labels = [
            ("pipeline", h.pipeline.as_str()),
            ("result", result.as_str()),
        ];
        for (le, n) in DURATION_BUCKETS.iter().zip(&h.at_most) {
            let le = le.to_string();
            let mut with_le = labels.to_vec();
            with_le.push(("le", le.as_str()));
            out.line("qodify_run_duration_seconds_bucket", &with_le, n);
        }
        let mut inf = labels.to_vec();
        inf.push(("le", "+Inf"));
        out.line("qodify_run_duration_seconds_bucket", &inf, h.count);
        out.line(
            "qodify_run_duration_seconds_sum",
            &labels,
            float(h.sum_ms as f64 / 1000.0),
        );
        out.line("qodify_run_duration_seconds_count", &labels, h.count);
    }

    // Every registered customer gets a time and an age, so that one rule (`age > 26h`) also
    // catches a customer that never had a backup: time 0, age +Inf.
    let made = |b: &BackupSummary| {
        b.last
            .as_ref()
            .and_then(|l| l.made_ms)
            .map(|ms| ms as f64 / 1000.0)
    };
    let who = |b: &BackupSummary| {
        [
            ("customer", b.customer_id.clone()),
            ("domain", b.domain.clone()),
        ]
    };
    out.family(
        "qodify_last_successful_backup_timestamp_seconds",
        "gauge",
        "When the customer's newest complete backup that is still there was made; 0: none.",
    );
    for b in &s.backups {
        let at = made(b).map_or_else(|| "0".to_owned(), float);
        out.line(
            "qodify_last_successful_backup_timestamp_seconds",
            &refs(&who(b)),
            at,
        );
    }
    out.family(
        "qodify_last_successful_backup_age_seconds",
        "gauge",
        "Seconds since that backup was made; +Inf: none.",
    );
    for b in &s.backups {
        let age = made(b).map_or(f64::INFINITY, |at| (s.now - at).max(0.0));
        out.line(
            "qodify_last_successful_backup_age_seconds",
            &refs(&who(b)),
            float(age),
        );
    }
    out.family(
        "qodify_backup_size_bytes",
        "gauge",
        "Size of the customer's newest complete backup that is still there.",
    );
    for b in &s.backups {
        if let Some(size) = b.last.as_ref().and_then(|l| l.size) {
            out.line("qodify_backup_size_bytes", &refs(&who(b)), size);
        }
    }
    out.family(
        "qodify_backups_present",
        "gauge",
        "Complete backups of the customer that are still there, by the history.",
    );
    for b in &s.backups {
        out.line("qodify_backups_present", &refs(&who(b)), b.present);
    }
    out.family("qodify_backups_present_bytes", "gauge", "Their total size.");
    for b in &s.backups {
        out.line(
            "qodify_backups_present_bytes",
            &refs(&who(b)),
            b.present_bytes,
        );
    }

    out.family(
        "qodify_drill_last_good_age_seconds",
        "gauge",
        "Seconds since the customer's newest restore drill that found a backup restorable ended; +Inf: none.",
    );
    for b in &s.backups {
        let age = s
            .good_drills
            .get(&b.customer_id)
            .map_or(f64::INFINITY, |ms| (s.now - *ms as f64 / 1000.0).max(0.0));
        out.line(
            "qodify_drill_last_good_age_seconds",
            &refs(&who(b)),
            float(age),
        );
    }

    out.family(
        "qodify_node_heartbeat_age_seconds",
        "gauge",
        "Seconds since each node in the store (peer) last beat, by this node's clock; a live node beats every 10 s.",
    );
    for n in &s.nodes {
        let age = (s.now - n.heartbeat_ms as f64 / 1000.0).max(0.0);
        out.line(
            "qodify_node_heartbeat_age_seconds",
            &[("peer", n.name.as_str())],
            float(age),
        );
    }
    out.family(
        "qodify_node_active_runs",
        "gauge",
        "Each node's active runs: the runs it runs, and its customers' queued runs (at most 1000 counted).",
    );
    for n in &s.nodes {
        for (state, count) in [("running", n.running), ("queued", n.queued)] {
            out.line(
                "qodify_node_active_runs",
                &[("peer", n.name.as_str()), ("state", state)],
                count,
            );
        }
    }
    out.family(
        "qodify_unassigned_active_runs",
        "gauge",
        "Active runs of customers of no node (with PostgreSQL, queued ones wait for a node to claim the customer).",
    );
    for (state, count) in [("running", s.unassigned.0), ("queued", s.unassigned.1)] {
        out.line("qodify_unassigned_active_runs", &[("state", state)], count);
    }

    let (mode, enforced, describe) = &s.confined;
    out.family(
        "qodify_commands_confined",
        "gauge",
        &format!("1 when granted programs run confined. {describe}"),
    );
    out.line(
        "qodify_commands_confined",
        &[("mode", mode)],
        u8::from(*enforced),
    );
    out.family("qodify_build_info", "gauge", "The running qodify-host.");
    out.line(
        "qodify_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1,
    );
    out.text
}

fn refs<'a>(labels: &'a [(&'a str, String); 2]) -> [(&'a str, &'a str); 2] {
    [
        (labels[0].0, labels[0].1.as_str()),
        (labels[1].0, labels[1].1.as_str()),
    ]
}

/// The exposition being written: every sample gets `node` first.
struct Exposition<'a> {
    text: String,
    node: &'a str,
}

impl<'a> Exposition<'a> {
    fn new(node: &'a str) -> Self {
        Self {
            text: String::new(),
            node,
        }
    }

    /// The `# HELP` and `# TYPE` lines of a metric.
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.text, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    /// One sample, labelled `node` and then `labels`.
    fn line(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        let out = &mut self.text;
        out.push_str(name);
        out.push('{');
        let node = [("node", self.node)];
        for (i, (k, v)) in node.iter().chain(labels).enumerate() {
            if i > 0 {
                out.push(',');
            }
            let v = v
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            let _ = write!(out, "{k}=\"{v}\"");
        }
        out.push('}');
        let _ = writeln!(out, " {value}");
    }
}

/// A float as Prometheus writes it (`+Inf`, not `inf`).
fn float(v: f64) -> String {
    if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else if v.is_nan() {
        "NaN".into()
    } else {
        v.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::LastBackup;

    fn snapshot() -> Snapshot {
        Snapshot {
            node: "web-1".into(),
            nodes: vec![
                NodeFacts {
                    name: "web-1".into(),
                    heartbeat_ms: 1_767_225_695_500,
                    running: 1,
                    queued: 2,
                },
                NodeFacts {
                    name: "web-2".into(),
                    heartbeat_ms: 1_767_225_400_000,
                    running: 0,
                    queued: 0,
                },
            ],
            unassigned: (0, 3),
            counts: vec![(RunState::Succeeded, 3), (RunState::Queued, 2)],
            executing: 1,
            durations: vec![DurationHistogram {
                pipeline: "backup".into(),
                result: RunState::Succeeded,
                count: 3,
                sum_ms: 4_500,
                at_most: vec![1, 1, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3],
            }],
            backups: vec![
                BackupSummary {
                    customer_id: "42".into(),
                    domain: "shop.example.com".into(),
                    last: Some(LastBackup {
                        backup_id: "20260101-000000".into(),
                        size: Some(1234),
                        made_ms: Some(1_767_225_600_250),
                    }),
                    present: 2,
                    present_bytes: 2000,
                },
                BackupSummary {
                    customer_id: "x\"y".into(),
                    domain: "new.example.com".into(),
                    last: None,
                    present: 0,
                    present_bytes: 0,
                },
            ],
            good_drills: [("42".to_owned(), 1_767_225_640_000)].into(),
            confined: ("landlock", true, "Landlock ABI 6".into()),
            now: 1_767_225_700.0,
        }
    }

    /// The value of the one sample named exactly `series` (name and labels).
    fn sample<'a>(text: &'a str, series: &str) -> &'a str {
        let found: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .collect();
        assert_eq!(found.len(), 1, "{series} in\n{text}");
        found[0]
    }

    #[test]
    fn the_histogram_is_cumulative_with_inf_sum_and_count_in_seconds() {
        let text = render(&snapshot());
        let l = r#"node="web-1",pipeline="backup",result="succeeded""#;
        assert_eq!(
            sample(
                &text,
                &format!("qodify_run_duration_seconds_bucket{{{l},le=\"1\"}}")
            ),
            "1"
        );
        assert_eq!(
            sample(
                &text,
                &format!("qodify_run_duration_seconds_bucket{{{l},le=\"15\"}}")
            ),
            "3"
        );
        assert_eq!(
            sample(
                &text,
                &format!("qodify_run_duration_seconds_bucket{{{l},le=\"+Inf\"}}")
            ),
            "3"
        );
        assert_eq!(
            sample(&text, &format!("qodify_run_duration_seconds_sum{{{l}}}")),
            "4.5"
        );
        assert_eq!(
            sample(&text, &format!("qodify_run_duration_seconds_count{{{l}}}")),
            "3"
        );
        assert_eq!(
            text.matches("qodify_run_duration_seconds_bucket{").count(),
            DURATION_BUCKETS.len() + 1
        );
        assert!(
            text.contains("# TYPE qodify_run_duration_seconds histogram\n"),
            "{text}"
        );
    }

    #[test]
    fn a_customer_without_a_backup_has_time_zero_and_infinite_age_and_labels_are_escaped() {
        let text = render(&snapshot());
        let shop = r#"{node="web-1",customer="42",domain="shop.example.com"}"#;
        let new = r#"{node="web-1",customer="x\"y",domain="new.example.com"}"#;
        let ts = "qodify_last_successful_backup_timestamp_seconds";
        let age = "qodify_last_successful_backup_age_seconds";
        assert_eq!(sample(&text, &format!("{ts}{shop}")), "1767225600.25");
        assert_eq!(sample(&text, &format!("{age}{shop}")), "99.75");
        assert_eq!(sample(&text, &format!("{ts}{new}")), "0");
        assert_eq!(sample(&text, &format!("{age}{new}")), "+Inf");
        assert_eq!(
            sample(&text, &format!("qodify_backup_size_bytes{shop}")),
            "1234"
        );
        assert!(
            !text.contains(&format!("qodify_backup_size_bytes{new}")),
            "{text}"
        );
        assert_eq!(sample(&text, &format!("qodify_backups_present{shop}")), "2");
        assert_eq!(
            sample(&text, &format!("qodify_backups_present_bytes{shop}")),
            "2000"
        );
        assert_eq!(sample(&text, r#"qodify_queue_depth{node="web-1"}"#), "2");
        assert_eq!(sample(&text, r#"qodify_runs_running{node="web-1"}"#), "0");
        assert_eq!(
            sample(&text, r#"qodify_runs{node="web-1",state="succeeded"}"#),
            "3"
        );
        assert_eq!(sample(&text, r#"qodify_runs_executing{node="web-1"}"#), "1");
    }

    #[test]
    fn each_customer_has_the_age_of_its_last_good_drill_or_infinity() {
        let text = render(&snapshot());
        let shop = r#"{node="web-1",customer="42",domain="shop.example.com"}"#;
        let new = r#"{node="web-1",customer="x\"y",domain="new.example.com"}"#;
        let age = "qodify_drill_last_good_age_seconds";
        assert_eq!(sample(&text, &format!("{age}{shop}")), "60");
        assert_eq!(sample(&text, &format!("{age}{new}")), "+Inf");
        assert!(text.contains(&format!("# TYPE {age} gauge\n")), "{text}");
    }

    #[test]
    fn a_clock_behind_the_backup_gives_age_zero_not_negative() {
        let mut s = snapshot();
        s.now = 1_767_225_000.0;
        let text = render(&s);
        assert_eq!(
            sample(
                &text,
                r#"qodify_last_successful_backup_age_seconds{node="web-1",customer="42",domain="shop.example.com"}"#
            ),
            "0"
        );
    }

    #[test]
    fn every_sample_names_the_answering_node_and_each_peer_has_its_heartbeat_and_runs() {
        let text = render(&snapshot());
        let samples: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .collect();
        assert!(!samples.is_empty());
        for l in &samples {
            assert!(
                l.split_once('{')
                    .is_some_and(|(_, rest)| rest.starts_with(r#"node="web-1""#)),
                "{l}"
            );
        }
        let age = "qodify_node_heartbeat_age_seconds";
        assert_eq!(
            sample(&text, &format!(r#"{age}{{node="web-1",peer="web-1"}}"#)),
            "4.5"
        );
        assert_eq!(
            sample(&text, &format!(r#"{age}{{node="web-1",peer="web-2"}}"#)),
            "300"
        );
        let runs = "qodify_node_active_runs";
        for (peer, state, n) in [
            ("web-1", "running", "1"),
            ("web-1", "queued", "2"),
            ("web-2", "running", "0"),
            ("web-2", "queued", "0"),
        ] {
            assert_eq!(
                sample(
                    &text,
                    &format!(r#"{runs}{{node="web-1",peer="{peer}",state="{state}"}}"#)
                ),
                n
            );
        }
        assert_eq!(
            sample(
                &text,
                r#"qodify_unassigned_active_runs{node="web-1",state="queued"}"#
            ),
            "3"
        );
        assert_eq!(
            sample(
                &text,
                &format!(
                    r#"qodify_build_info{{node="web-1",version="{}"}}"#,
                    env!("CARGO_PKG_VERSION")
                )
            ),
            "1"
        );
    }

    #[test]
    fn runs_count_for_the_node_that_has_them_or_as_unassigned() {
        let node = |name: &str| crate::store::NodeRecord {
            name: name.into(),
            version: "0".into(),
            started_at: String::new(),
            heartbeat_at: String::new(),
            heartbeat_ms: 5,
            advertise_url: None,
        };
        let run = |state| crate::store::RunRecord {
            id: "r".into(),
            customer_id: "c".into(),
            pipeline: "backup".into(),
            params: Default::default(),
            triggered_by: None,
            state,
            created_at: String::new(),
            started_at: None,
            finished_at: None,
            error: None,
            backup_id: None,
            cancel_requested: false,
            lease_owner: None,
            epoch: 0,
            progress: None,
            message: None,
            insight: None,
            node: None,
        };
        let active = vec![
            (Some("a".to_owned()), run(RunState::Running)),
            (Some("a".to_owned()), run(RunState::Queued)),
            (Some("a".to_owned()), run(RunState::Queued)),
            (Some("gone".to_owned()), run(RunState::Queued)),
            (None, run(RunState::Queued)),
        ];
        let (facts, unassigned) = node_facts(vec![node("a"), node("b")], &active);
        let counts: Vec<(&str, u64, u64)> = facts
            .iter()
            .map(|f| (f.name.as_str(), f.running, f.queued))
            .collect();
        assert_eq!(counts, [("a", 1, 2), ("b", 0, 0)]);
        assert_eq!(unassigned, (0, 1));
    }
}
