//! Host capabilities a step can use, each a small module: progress and log reporting,
//! cancellation, file metadata inside mounts, granted host commands, granted HTTP origins and
//! human approvals. All of them work on one
//! [`StepHost`], built per step from its grants; a capability the step was not granted answers
//! `not-permitted`/`not-granted`, it never falls back to something wider.

pub mod approvals;
pub mod cancellation;
pub mod commands;
pub mod files;
pub mod http;
pub mod progress;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::engine::sandbox::MountTable;
use crate::events::{Event, EventSink};
use crate::pipeline::{CommandGrant, HttpGrant};

/// A cancellation flag shared by a run, its steps and their child processes.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// Requests cancellation.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    /// True once cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// What a step asked of its grants: every host program and HTTP origin it called, with how many
/// calls were allowed and how many refused. `qodify-host step` prints it and each step's record
/// keeps it, so a plugin author sees what the plugin really needs.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Usage {
    /// By program name as the step asked for it.
    pub programs: BTreeMap<String, Calls>,
    /// By origin (`http://host:port`), or by the URL as given when it has none.
    pub origins: BTreeMap<String, Calls>,
}

/// Calls of one program or origin.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Calls {
    /// Calls the grants allowed (whatever happened next).
    pub allowed: u32,
    /// Calls refused as not granted.
    pub denied: u32,
}

impl Usage {
    /// True when the step called no program and no origin.
    pub fn is_empty(&self) -> bool {
        self.programs.is_empty() && self.origins.is_empty()
    }
}

/// A step's [`Usage`], shared between its host and whoever records the step.
pub type UsageLedger = Arc<Mutex<Usage>>;

/// Names are cut so that a hostile plugin cannot grow the record without bound.
const MAX_USAGE_KEYS: usize = 64;

fn note(map: &mut BTreeMap<String, Calls>, key: &str, allowed: bool) {
    if !map.contains_key(key) && map.len() >= MAX_USAGE_KEYS {
        return;
    }
    let calls = map.entry(clip(key, 120)).or_default();
    if allowed {
        calls.allowed = calls.allowed.saturating_add(1);
    } else {
        calls.denied = calls.denied.saturating_add(1);
    }
}

/// Per-step state behind every host capability.
pub struct StepHost {
    /// The step's id, for events and messages.
    pub(in crate::engine) step_id: String,
    /// The granted folders.
    pub(in crate::engine) mounts: MountTable,
    /// Granted host programs.
    pub(in crate::engine) commands: Vec<CommandGrant>,
    /// Granted HTTP origins.
    pub(in crate::engine) http: Vec<HttpGrant>,
    /// Where approval requests go; `None` when the run cannot wait for people.
    pub(in crate::engine) approvals: Option<approvals::ApprovalDesk>,
    /// Where progress and logs go.
    pub(in crate::engine) events: Arc<dyn EventSink>,
    /// The run's cancellation flag.
    pub(in crate::engine) cancel: CancelToken,
    /// When the step's wall-clock budget ends.
    pub(in crate::engine) deadline: Instant,
    /// Log lines kept per step.
    pub(in crate::engine) max_log_lines: u64,
    /// Log lines seen so far.
    pub(in crate::engine) log_lines: u64,
    /// When progress was last forwarded, and its percent (rate limit).
    pub(in crate::engine) last_progress: Option<(Instant, f32)>,
    /// Strings never to show in logs, events or errors (e.g. env values given to commands).
    pub(in crate::engine) secrets: Vec<String>,
    /// How granted programs are confined on this host.
    pub(in crate::engine) confinement: crate::engine::confine::Confinement,
    /// The run's work folder (open, and its path): programs get a private `HOME` and `TMPDIR`
    /// under it.
    pub(in crate::engine) work: Option<(cap_std::fs::Dir, std::path::PathBuf)>,
    /// Host folders a program may change besides the mounts, by program (host settings).
    pub(in crate::engine) host_paths: std::collections::BTreeMap<String, Vec<std::path::PathBuf>>,
    /// Where host secrets named by command grants are read (`secrets_dir`); `None`: no
    /// secrets on this host, a grant naming one fails.
    pub(in crate::engine) secrets_dir: Option<std::path::PathBuf>,
    /// What the step called.
    pub(in crate::engine) usage: UsageLedger,
    /// Where `files.hard-link` notes links into the run's new backup; `None`: the run makes no
    /// backup.
    pub(in crate::engine) links: Option<Arc<crate::backups::Links>>,
}

impl StepHost {
    /// The host of step `step_id`: its mounts, where its events go, the run's cancellation
    /// flag and the end of its wall-clock budget. It is granted nothing else (no programs, no
    /// origins, no approvals, confinement off) until the `with_*` calls below grant it.
    pub fn new(
        step_id: impl Into<String>,
        mounts: MountTable,
        events: Arc<dyn EventSink>,
        cancel: CancelToken,
        deadline: Instant,
    ) -> Self {
        StepHost {
            step_id: step_id.into(),
            mounts,
            commands: Vec::new(),
            http: Vec::new(),
            approvals: None,
            events,
            cancel,
            deadline,
            max_log_lines: 10_000,
            log_lines: 0,
            last_progress: None,
            secrets: Vec::new(),
            confinement: crate::engine::confine::Confinement::new(
                crate::engine::confine::Mode::Off,
            ),
            work: None,
            host_paths: Default::default(),
            secrets_dir: None,
            usage: Default::default(),
            links: None,
        }
    }

    /// Lets `files.hard-link` note links into the run's new backup in `links`.
    pub fn with_links(mut self, links: Arc<crate::backups::Links>) -> Self {
        self.links = Some(links);
        self
    }

    /// Records what the step calls in `ledger`.
    pub fn with_usage(mut self, ledger: UsageLedger) -> Self {
        self.usage = ledger;
        self
    }

    /// Notes a call of host program `program`.
    pub(in crate::engine) fn note_program(&self, program: &str, allowed: bool) {
        let mut u = self.usage.lock().unwrap_or_else(|e| e.into_inner());
        note(&mut u.programs, program, allowed);
    }

    /// Notes a request to `url`, counted by its origin.
    pub(in crate::engine) fn note_origin(&self, url: &str, allowed: bool) {
        let origin = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
            .map(|rest| {
                let scheme = &url[..url.len() - rest.len()];
                let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
                format!("{scheme}{authority}")
            })
            .unwrap_or_else(|| url.to_owned());
        let mut u = self.usage.lock().unwrap_or_else(|e| e.into_inner());
        note(&mut u.origins, &origin, allowed);
    }

    /// Grants host programs, run under `confinement` with the `host_paths` it may change
    /// besides the mounts.
    pub fn with_commands(
        mut self,
        commands: Vec<CommandGrant>,
        confinement: crate::engine::confine::Confinement,
        host_paths: std::collections::BTreeMap<String, Vec<std::path::PathBuf>>,
    ) -> Self {
        self.commands = commands;
        self.confinement = confinement;
        self.host_paths = host_paths;
        self
    }

    /// Reads the host secrets that command grants name from `dir`.
    pub fn with_secrets_dir(mut self, dir: std::path::PathBuf) -> Self {
        self.secrets_dir = Some(dir);
        self
    }

    /// Grants HTTP origins.
    pub fn with_http(mut self, http: Vec<HttpGrant>) -> Self {
        self.http = http;
        self
    }

    /// Lets the step ask people for approval through `desk`.
    pub fn with_approvals(mut self, desk: approvals::ApprovalDesk) -> Self {
        self.approvals = Some(desk);
        self
    }

    /// Gives the step's programs a private `HOME` and `TMPDIR` in the run's work folder.
    pub fn with_work(mut self, work: cap_std::fs::Dir, path: std::path::PathBuf) -> Self {
        self.work = Some((work, path));
        self
    }

    /// Keeps at most `n` log lines of the step.
    pub fn with_max_log_lines(mut self, n: u64) -> Self {
        self.max_log_lines = n;
        self
    }

    /// True when the run was cancelled or the step ran out of time.
    pub fn should_stop(&self) -> bool {
        self.cancel.is_cancelled() || Instant::now() >= self.deadline
    }

    /// Replaces every known secret in `s` with `***`.
    pub fn redact(&self, s: &str) -> String {
        redact(s, &self.secrets)
    }

    /// Emits an event for this step.
    pub fn emit(&self, ev: Event) {
        self.events.emit(ev);
    }
}

/// Replaces every secret (non-empty, at least 3 characters) in `s` with `***`.
pub fn redact(s: &str, secrets: &[String]) -> String {
    let mut out = s.to_owned();
    for secret in secrets.iter().filter(|s| s.len() >= 3) {
        if out.contains(secret.as_str()) {
            out = out.replace(secret.as_str(), "***");
        }
    }
    out
}

/// `s` cut to at most `max` bytes (on a character boundary), the cut marked with its size.
pub fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes cut)", &s[..end], s.len() - end)
}

impl crate::engine::bindings::types::Host for StepHost {}

/// A step host over a real customer folder (`<t>/customers/shop.example.com`, mounted read-write
/// at `/data`) with a work folder, an approval desk in `<t>/data`, the given command grants and a
/// memory sink; programs run confined when the kernel can.
#[cfg(test)]
pub(crate) fn test_host(
    t: &tempfile::TempDir,
    commands: Vec<CommandGrant>,
) -> (StepHost, Arc<crate::events::MemorySink>) {
    use crate::engine::confine::{Confinement, Mode};
    use crate::engine::sandbox::Roots;
    use crate::pipeline::{MountRoot, PlannedMount};
    let (customers, work) = (t.path().join("customers"), t.path().join("work"));
    std::fs::create_dir_all(customers.join("shop.example.com")).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    let roots = Roots::open(&customers, "shop.example.com", &work).unwrap();
    let planned = [PlannedMount {
        guest: "/data".into(),
        from: MountRoot::Customer,
        path: std::path::PathBuf::new(),
        writable: true,
        create: false,
        optional: false,
        reason: None,
    }];
    let mounts = MountTable::resolve(&planned, &roots).unwrap().unwrap();
    let confinement = match Confinement::new(Mode::Landlock) {
        c if c.enforced() => c,
        _ => Confinement::new(Mode::Off),
    };
    let sink = Arc::new(crate::events::MemorySink::default());
    let host = StepHost::new(
        "probe",
        mounts,
        sink.clone(),
        CancelToken::default(),
        Instant::now() + std::time::Duration::from_secs(120),
    )
    .with_commands(commands, confinement, Default::default())
    .with_approvals(approvals::ApprovalDesk {
        book: std::sync::Arc::new(approvals::FileBook {
            data_dir: t.path().join("data"),
        }),
        run_id: "run-1".into(),
    })
    .with_work(roots.work.try_clone().unwrap(), roots.work_path.clone())
    .with_max_log_lines(1_000_000);
    (host, sink)
}
