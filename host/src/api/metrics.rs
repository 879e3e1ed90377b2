//! `GET /metrics`: the Prometheus text exposition, computed on each scrape from the store (runs
//! by state, the queue, run durations, each customer's newest backup) with bounded queries, and
//! from this process (runs executing here, confinement, version). `docs/api.md` lists the series
//! and the alert rules they are made for.

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
    counts: Vec<(RunState, u64)>,
    executing: usize,
    durations: Vec<DurationHistogram>,
    backups: Vec<BackupSummary>,
    /// `qodify_commands_confined`'s label, value and help text.
    confined: (&'static str, bool, String),
    /// Unix seconds of the scrape.
    now: f64,
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
        description = "Prometheus text format: `qodify_runs{state=…}`, `qodify_runs_executing`, `qodify_queue_depth`, `qodify_runs_running`, `qodify_run_duration_seconds{pipeline,result}` (histogram), per registered customer `qodify_last_successful_backup_timestamp_seconds{customer,domain}` (0 when it has none), `qodify_last_successful_backup_age_seconds` (+Inf when it has none), `qodify_backup_size_bytes`, `qodify_backups_present` and `qodify_backups_present_bytes`, `qodify_build_info`, `qodify_commands_confined` (1 when granted programs run in a Landlock domain, 0 when they run with the host's rights or are refused).",
        body = String,
        content_type = "text/plain",
    )),
)]
async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let store = state.store.clone();
    let bounds_ms: Vec<u64> = DURATION_BUCKETS.iter().map(|s| s * 1000).collect();
    let (counts, durations, backups) = blocking(move || {
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
        ))
    })
    .await?;
    let confinement = crate::engine::confine::Confinement::new(state.settings.commands.confinement);
    let snapshot = Snapshot {
        counts,
        executing: state.running.lock().map(|m| m.len()).unwrap_or(0),
        durations,
        backups,
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
    let mut out = String::new();
    let count = |st: RunState| {
        s.counts
            .iter()
            .find(|(c, _)| *c == st)
            .map_or(0, |(_, n)| *n)
    };
    family(
        &mut out,
        "qodify_runs",
        "gauge",
        "Runs in the state store, by state.",
    );
    for st in STATES {
        line(
            &mut out,
            "qodify_runs",
            &[("state", &st.to_string())],
            count(st),
        );
    }
    family(
        &mut out,
        "qodify_runs_executing",
        "gauge",
        "Runs executing on this host now.",
    );
    line(&mut out, "qodify_runs_executing", &[], s.executing);
    family(
        &mut out,
        "qodify_queue_depth",
        "gauge",
        "Runs waiting in the queue (every host sharing the store).",
    );
    line(&mut out, "qodify_queue_depth", &[], count(RunState::Queued));
    family(
        &mut out,
        "qodify_runs_running",
        "gauge",
        "Runs running (every host sharing the store).",
    );
    line(
        &mut out,
        "qodify_runs_running",
        &[],
        count(RunState::Running),
    );

    family(
        &mut out,
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
            line(&mut out, "qodify_run_duration_seconds_bucket", &with_le, n);
        }
        let mut inf = labels.to_vec();
        inf.push(("le", "+Inf"));
        line(
            &mut out,
            "qodify_run_duration_seconds_bucket",
            &inf,
            h.count,
        );
        line(
            &mut out,
            "qodify_run_duration_seconds_sum",
            &labels,
            float(h.sum_ms as f64 / 1000.0),
        );
        line(
            &mut out,
            "qodify_run_duration_seconds_count",
            &labels,
            h.count,
        );
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
    family(
        &mut out,
        "qodify_last_successful_backup_timestamp_seconds",
        "gauge",
        "When the customer's newest complete backup that is still there was made; 0: none.",
    );
    for b in &s.backups {
        let at = made(b).map_or_else(|| "0".to_owned(), float);
        line(
            &mut out,
            "qodify_last_successful_backup_timestamp_seconds",
            &refs(&who(b)),
            at,
        );
    }
    family(
        &mut out,
        "qodify_last_successful_backup_age_seconds",
        "gauge",
        "Seconds since that backup was made; +Inf: none.",
    );
    for b in &s.backups {
        let age = made(b).map_or(f64::INFINITY, |at| (s.now - at).max(0.0));
        line(
            &mut out,
            "qodify_last_successful_backup_age_seconds",
            &refs(&who(b)),
            float(age),
        );
    }
    family(
        &mut out,
        "qodify_backup_size_bytes",
        "gauge",
        "Size of the customer's newest complete backup that is still there.",
    );
    for b in &s.backups {
        if let Some(size) = b.last.as_ref().and_then(|l| l.size) {
            line(&mut out, "qodify_backup_size_bytes", &refs(&who(b)), size);
        }
    }
    family(
        &mut out,
        "qodify_backups_present",
        "gauge",
        "Complete backups of the customer that are still there, by the history.",
    );
    for b in &s.backups {
        line(
            &mut out,
            "qodify_backups_present",
            &refs(&who(b)),
            b.present,
        );
    }
    family(
        &mut out,
        "qodify_backups_present_bytes",
        "gauge",
        "Their total size.",
    );
    for b in &s.backups {
        line(
            &mut out,
            "qodify_backups_present_bytes",
            &refs(&who(b)),
            b.present_bytes,
        );
    }

    let (mode, enforced, describe) = &s.confined;
    family(
        &mut out,
        "qodify_commands_confined",
        "gauge",
        &format!("1 when granted programs run confined. {describe}"),
    );
    line(
        &mut out,
        "qodify_commands_confined",
        &[("mode", mode)],
        u8::from(*enforced),
    );
    family(
        &mut out,
        "qodify_build_info",
        "gauge",
        "The running qodify-host.",
    );
    line(
        &mut out,
        "qodify_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1,
    );
    out
}

fn refs<'a>(labels: &'a [(&'a str, String); 2]) -> [(&'a str, &'a str); 2] {
    [
        (labels[0].0, labels[0].1.as_str()),
        (labels[1].0, labels[1].1.as_str()),
    ]
}

/// The `# HELP` and `# TYPE` lines of a metric.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let help = help.replace('\\', "\\\\").replace('\n', "\\n");
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// One sample.
fn line(out: &mut String, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
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
    }
    let _ = writeln!(out, " {value}");
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
        let l = r#"pipeline="backup",result="succeeded""#;
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
        let shop = r#"{customer="42",domain="shop.example.com"}"#;
        let new = r#"{customer="x\"y",domain="new.example.com"}"#;
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
        assert_eq!(sample(&text, "qodify_queue_depth"), "2");
        assert_eq!(sample(&text, "qodify_runs_running"), "0");
        assert_eq!(sample(&text, r#"qodify_runs{state="succeeded"}"#), "3");
        assert_eq!(sample(&text, "qodify_runs_executing"), "1");
    }

    #[test]
    fn a_clock_behind_the_backup_gives_age_zero_not_negative() {
        let mut s = snapshot();
        s.now = 1_767_225_000.0;
        let text = render(&s);
        assert_eq!(
            sample(
                &text,
                r#"qodify_last_successful_backup_age_seconds{customer="42",domain="shop.example.com"}"#
            ),
            "0"
        );
    }
}
