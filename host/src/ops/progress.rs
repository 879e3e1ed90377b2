//! What a run's live progress says, computed from its events: the run's percent weighted by the
//! bytes each step moves (when a preflight step said so), the time left, and the warnings its
//! steps gave. Pure: the hub feeds it events and the clock, and publishes what it answers.
//!
//! - Weights: a step's output `step-bytes.<id>` = N (the `preflight` plugin gives one per step
//!   that moves data: the database dump, each archive) makes step `<id>` weigh N; every step
//!   without one weighs 1% of the known bytes (at least 1 byte), so checks and the manifest move
//!   the bar a little and the dump and archives move it as their bytes go. Before any weight is
//!   known every step weighs the same. Within a step, its own percent (byte-based where the step
//!   counts bytes: `archive`, `db-dump`) moves the run's.
//! - The percent never goes back and stays below 100 until the run ends.
//! - Time left: from the preflight's `eta-seconds` (earlier backups' write rate) minus the time
//!   since; once the run is 5% along and has run 3 s, from its own pace when that says more.
//! - Warnings: every `warn`-level line of a step (free space low, retention will delete X, …),
//!   and one of the host's own when the ETA is over the configured threshold.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde::Serialize;

/// Output a step gives to weigh another step by the bytes it will move.
pub const STEP_BYTES_PREFIX: &str = "step-bytes.";
/// Warnings kept per run; later ones are counted, not kept.
const MAX_WARNINGS: usize = 50;

/// The preflight's figures, as `GET /api/runs/{id}` shows them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Preflight {
    /// The step that gave them.
    pub step: String,
    /// Estimated size of what the run writes (bytes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimate_bytes: Option<u64>,
    /// What must be free for the run: the estimate plus what else it needs, times a margin.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub needed_bytes: Option<u64>,
    /// Free space where it writes (bytes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub free_bytes: Option<u64>,
    /// Estimated duration of the whole run (seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eta_seconds: Option<u64>,
    /// Bytes each step will move.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub step_bytes: BTreeMap<String, u64>,
}

/// What a run learnt about itself (stored with the run).
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Insight {
    /// The preflight's figures, once its step succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preflight: Option<Preflight>,
    /// Warnings, oldest first.
    pub warnings: Vec<String>,
    /// Warnings given past [`MAX_WARNINGS`].
    #[serde(skip_serializing_if = "is_zero")]
    pub warnings_dropped: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A run's progress.
#[derive(Debug)]
pub struct Progress {
    started: Instant,
    steps: Vec<String>,
    done: BTreeSet<String>,
    running: BTreeMap<String, f32>,
    /// The preflight's ETA and when it was given.
    eta: Option<(Instant, Duration)>,
    long_eta: Option<Duration>,
    last_percent: f32,
    insight: Insight,
}

impl Progress {
    /// A run that started at `started`; an ETA over `long_eta` is a warning.
    pub fn new(started: Instant, long_eta: Option<Duration>) -> Self {
        Progress {
            started,
            steps: Vec::new(),
            done: BTreeSet::new(),
            running: BTreeMap::new(),
            eta: None,
            long_eta,
            last_percent: 0.0,
            insight: Insight::default(),
        }
    }

    /// The steps that will run.
    pub fn planned(&mut self, steps: Vec<String>) {
        self.steps = steps;
    }

    /// A step began.
    pub fn step_started(&mut self, step: &str) {
        self.running.insert(step.to_owned(), 0.0);
    }

    /// A step's own percent.
    pub fn step_progress(&mut self, step: &str, percent: f32) {
        if !self.done.contains(step) {
            self.running
                .insert(step.to_owned(), percent.clamp(0.0, 100.0));
        }
    }

    /// A step ended (succeeded or failed).
    pub fn step_ended(&mut self, step: &str, succeeded: bool) {
        self.running.remove(step);
        if succeeded {
            self.done.insert(step.to_owned());
        }
    }

    /// A step's outputs: `step-bytes.<id>`, and a preflight's `estimate-bytes`, `free-bytes`,
    /// `needed-bytes`, `eta-seconds`. True when the run's insight changed.
    pub fn outputs(&mut self, step: &str, outputs: &[(String, String)], now: Instant) -> bool {
        let num = |key: &str| {
            outputs
                .iter()
                .find(|(k, _)| k == key)
                .and_then(|(_, v)| v.trim().parse::<u64>().ok())
        };
        let step_bytes: BTreeMap<String, u64> = outputs
            .iter()
            .filter_map(|(k, v)| {
                let id = k.strip_prefix(STEP_BYTES_PREFIX)?;
                Some((id.to_owned(), v.trim().parse::<u64>().ok()?))
            })
            .collect();
        let (estimate, needed, free, eta) = (
            num("estimate-bytes"),
            num("needed-bytes"),
            num("free-bytes"),
            num("eta-seconds"),
        );
        if estimate.is_none() && free.is_none() && eta.is_none() && step_bytes.is_empty() {
            return false;
        }
        if let Some(eta) = eta {
            let eta = Duration::from_secs(eta);
            self.eta = Some((now, eta));
            if let Some(limit) = self.long_eta.filter(|l| eta > *l) {
                self.warn(format!(
                    "this run is expected to take about {}, over the {} at which the host warns \
                     (runs.long_eta_warning)",
                    crate::pipeline::units::human_duration(eta),
                    crate::pipeline::units::human_duration(limit)
                ));
            }
        }
        self.insight.preflight = Some(Preflight {
            step: step.to_owned(),
            estimate_bytes: estimate,
            needed_bytes: needed,
            free_bytes: free,
            eta_seconds: eta,
            step_bytes,
        });
        true
    }

    /// A warning; false when it was only counted (past the cap).
    pub fn warn(&mut self, warning: String) -> bool {
        if self.insight.warnings.len() >= MAX_WARNINGS {
            self.insight.warnings_dropped += 1;
            return false;
        }
        self.insight.warnings.push(warning);
        true
    }

    /// What the run learnt so far.
    pub fn insight(&self) -> &Insight {
        &self.insight
    }

    fn weight(&self, step: &str) -> f64 {
        let known = self
            .insight
            .preflight
            .as_ref()
            .map(|p| &p.step_bytes)
            .filter(|b| !b.is_empty());
        match known {
            None => 1.0,
            Some(bytes) => match bytes.get(step) {
                Some(n) => (*n).max(1) as f64,
                None => (bytes.values().sum::<u64>() as f64 / 100.0).max(1.0),
            },
        }
    }

    /// The run's percent, 0..=99 (never lower than the last answer).
    pub fn percent(&mut self) -> f32 {
        let total: f64 = self.steps.iter().map(|s| self.weight(s)).sum();
        let raw = if total <= 0.0 {
            0.0
        } else {
            let done: f64 = self
                .steps
                .iter()
                .filter(|s| self.done.contains(*s))
                .map(|s| self.weight(s))
                .sum();
            let running: f64 = self
                .running
                .iter()
                .map(|(s, p)| self.weight(s) * f64::from(*p) / 100.0)
                .sum();
            ((done + running) / total * 100.0).min(99.0) as f32
        };
        self.last_percent = self.last_percent.max(raw);
        self.last_percent
    }

    /// Seconds left, when anything says: the preflight's ETA less the time since it was given,
    /// or the run's own pace once it is far enough along to say (the larger of the two: a run
    /// slower than its history is not about to end).
    pub fn eta_seconds(&mut self, now: Instant) -> Option<u64> {
        let from_preflight = self
            .eta
            .map(|(at, eta)| eta.saturating_sub(now.saturating_duration_since(at)));
        let p = f64::from(self.percent());
        let elapsed = now.saturating_duration_since(self.started);
        let from_pace = (p >= 5.0 && elapsed >= Duration::from_secs(3))
            .then(|| Duration::from_secs_f64(elapsed.as_secs_f64() * (100.0 - p) / p));
        match (from_preflight, from_pace) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
        .map(|d| d.as_secs_f64().round() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outputs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn backup(t0: Instant) -> Progress {
        let mut p = Progress::new(t0, Some(Duration::from_secs(3600)));
        p.planned(
            ["preflight", "db-dump", "archive-backend", "manifest"]
                .map(String::from)
                .to_vec(),
        );
        p
    }

    #[test]
    fn without_weights_every_step_counts_the_same() {
        let t0 = Instant::now();
        let mut p = backup(t0);
        p.step_started("preflight");
        p.step_progress("preflight", 50.0);
        assert_eq!(p.percent(), 12.5);
        p.step_ended("preflight", true);
        assert_eq!(p.percent(), 25.0);
    }

    #[test]
    fn the_bytes_a_step_moves_weigh_its_share_of_the_run() {
        let t0 = Instant::now();
        let mut p = backup(t0);
        p.step_started("preflight");
        p.step_ended("preflight", true);
        assert_eq!(p.percent(), 25.0);
        assert!(p.outputs(
            "preflight",
            &outputs(&[
                ("estimate-bytes", "1000"),
                ("step-bytes.db-dump", "100"),
                ("step-bytes.archive-backend", "900"),
            ]),
            t0,
        ));
        // preflight and manifest weigh 1% of 1000 each: 10 of 1020 done; the percent stays at 25.
        assert_eq!(p.percent(), 25.0);
        p.step_started("db-dump");
        p.step_ended("db-dump", true);
        p.step_started("archive-backend");
        p.step_progress("archive-backend", 50.0);
        // (10 + 100 + 450) / 1020
        let half = p.percent();
        assert!((half - 54.9).abs() < 0.1, "{half}");
        p.step_progress("archive-backend", 100.0);
        p.step_ended("archive-backend", true);
        let before_manifest = p.percent();
        assert!((before_manifest - 99.0).abs() < 0.1, "{before_manifest}");
        p.step_ended("manifest", true);
        assert_eq!(p.percent(), 99.0, "100 only when the run ends");
    }

    #[test]
    fn the_percent_never_goes_back() {
        let t0 = Instant::now();
        let mut p = backup(t0);
        p.step_started("archive-backend");
        p.step_progress("archive-backend", 80.0);
        let high = p.percent();
        p.step_progress("archive-backend", 10.0);
        p.step_ended("archive-backend", false);
        assert_eq!(p.percent(), high);
    }

    #[test]
    fn the_eta_counts_down_from_the_preflight_and_follows_a_slower_pace() {
        let t0 = Instant::now();
        let mut p = backup(t0);
        assert_eq!(p.eta_seconds(t0), None, "nothing says yet");
        p.outputs(
            "preflight",
            &outputs(&[
                ("eta-seconds", "100"),
                ("step-bytes.archive-backend", "1000"),
            ]),
            t0,
        );
        assert_eq!(p.eta_seconds(t0 + Duration::from_secs(40)), Some(60));
        // 50 s in and under 10% along: the pace says about 465 s more, more than the 50 s the
        // history still gives.
        p.step_started("archive-backend");
        p.step_progress("archive-backend", 10.0);
        let eta = p.eta_seconds(t0 + Duration::from_secs(50)).unwrap();
        assert!((460..=470).contains(&eta), "{eta}");
    }

    #[test]
    fn a_long_eta_is_a_warning_and_warnings_are_capped() {
        let t0 = Instant::now();
        let mut p = backup(t0);
        p.outputs("preflight", &outputs(&[("eta-seconds", "7200")]), t0);
        assert_eq!(p.insight().warnings.len(), 1);
        assert!(
            p.insight().warnings[0].contains("about 2h"),
            "{:?}",
            p.insight()
        );
        for i in 0..100 {
            p.warn(format!("w{i}"));
        }
        assert_eq!(p.insight().warnings.len(), MAX_WARNINGS);
        assert_eq!(p.insight().warnings_dropped, 51);
        let short = &mut backup(t0);
        short.outputs("preflight", &outputs(&[("eta-seconds", "60")]), t0);
        assert!(short.insight().warnings.is_empty());
    }

    #[test]
    fn steps_without_figures_change_nothing() {
        let t0 = Instant::now();
        let mut p = backup(t0);
        assert!(!p.outputs("db-dump", &outputs(&[("database", "shop")]), t0));
        assert_eq!(p.insight(), &Insight::default());
    }
}
