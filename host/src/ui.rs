//! What the CLI shows people: run events (progress bars on a terminal, plain lines otherwise,
//! JSON lines with `--json`), plans, tables of plugins and backups, and recoveries.

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use qodify_host::events::{Event, EventSink, LogLevel, RunStatus};
use qodify_host::pipeline::units::{human_bytes, human_duration};

/// How the CLI shows a run.
pub enum Mode {
    /// Progress bars (stderr is a terminal).
    Bars,
    /// One line per event on stderr.
    Plain,
    /// One JSON object per event on stdout.
    Json,
}

/// Renders events for a person or a program.
pub struct Ui {
    mode: Mode,
    verbose: bool,
    multi: MultiProgress,
    bars: Mutex<HashMap<String, ProgressBar>>,
}

impl Ui {
    /// A renderer in `mode`; `verbose` shows debug logs too.
    pub fn new(mode: Mode, verbose: bool) -> Self {
        let multi = MultiProgress::with_draw_target(match mode {
            Mode::Bars => ProgressDrawTarget::stderr(),
            _ => ProgressDrawTarget::hidden(),
        });
        Self {
            mode,
            verbose,
            multi,
            bars: Mutex::new(HashMap::new()),
        }
    }

    fn line(&self, s: String) {
        match self.mode {
            Mode::Bars => {
                let _ = self.multi.println(s);
            }
            _ => {
                let _ = writeln!(std::io::stderr(), "{s}");
            }
        }
    }
}

impl EventSink for Ui {
    fn emit(&self, event: Event) {
        if let Mode::Json = self.mode {
            if let Ok(s) = serde_json::to_string(&event) {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{s}");
                let _ = out.flush();
            }
            return;
        }
        let mut bars = self.bars.lock().unwrap_or_else(|e| e.into_inner());
        match event {
            Event::RunStarted {
                run_id,
                pipeline,
                customer,
                steps,
            } => {
                self.line(format!(
                    "▶ {pipeline} for {customer} (run {run_id}, {} steps)",
                    steps.len()
                ));
            }
            Event::StepStarted { step, plugin } => {
                if let Mode::Bars = self.mode {
                    let bar = self.multi.add(ProgressBar::new(1000));
                    bar.set_style(
                        ProgressStyle::with_template(
                            "  {spinner} {prefix:<22} [{bar:30}] {percent:>3}% {wide_msg}",
                        )
                        .expect("valid template")
                        .progress_chars("=> "),
                    );
                    bar.set_prefix(step.clone());
                    bar.enable_steady_tick(std::time::Duration::from_millis(120));
                    bars.insert(step, bar);
                } else {
                    self.line(format!("  … {step} ({plugin}) started"));
                }
            }
            Event::StepProgress {
                step,
                percent,
                message,
            } => {
                if let Some(bar) = bars.get(&step) {
                    bar.set_position((percent * 10.0) as u64);
                    bar.set_message(message);
                } else if let Mode::Plain = self.mode {
                    self.line(format!("    {step}: {percent:.0}% {message}"));
                }
            }
            Event::StepLog {
                step,
                level,
                message,
            } => {
                if level >= LogLevel::Info || self.verbose {
                    let tag = match level {
                        LogLevel::Warn => "warn",
                        LogLevel::Error => "error",
                        LogLevel::Info => "info",
                        _ => "debug",
                    };
                    self.line(format!("    {step} {tag}: {message}"));
                }
            }
            Event::StepSkipped { step, reason } => {
                self.line(format!("  - {step} skipped: {reason}"))
            }
            Event::StepSucceeded {
                step,
                duration_ms,
                artifacts,
                ..
            } => {
                if let Some(bar) = bars.remove(&step) {
                    bar.finish_and_clear();
                }
                let arts: Vec<String> = artifacts
                    .iter()
                    .map(|a| format!("{} ({})", a.path, human_bytes(a.size)))
                    .collect();
                let tail = if arts.is_empty() {
                    String::new()
                } else {
                    format!(" → {}", arts.join(", "))
                };
                self.line(format!(
                    "  ✓ {step} in {:.1}s{tail}",
                    duration_ms as f64 / 1000.0
                ));
            }
            Event::StepFailed {
                step,
                duration_ms,
                error,
            } => {
                if let Some(bar) = bars.remove(&step) {
                    bar.finish_and_clear();
                }
                self.line(format!(
                    "  ✗ {step} failed after {:.1}s: {error}",
                    duration_ms as f64 / 1000.0
                ));
            }
            Event::ApprovalRequested {
                step,
                summary,
                expires_at,
                ..
            } => self.line(format!(
                "  ? {step} waits for approval until {expires_at}: {summary}\n    decide with `qodify-host approve <run-id>` (or --reject)"
            )),
            Event::ApprovalDecided { step, approved, by } => self.line(format!(
                "  {} {step}: {} by {}",
                if approved { "✓" } else { "✗" },
                if approved { "approved" } else { "rejected" },
                by.as_deref().unwrap_or("someone")
            )),
            Event::BackupCompleted { backup, pinned } => self.line(match pinned {
                Some(reason) => format!("  ✓ backup {backup} complete, pinned ({reason})"),
                None => format!("  ✓ backup {backup} complete"),
            }),
            Event::RunFinished {
                status,
                duration_ms,
                error,
                backup,
                ..
            } => {
                let secs = duration_ms as f64 / 1000.0;
                let made = backup
                    .map(|id| format!(": backup {id}"))
                    .unwrap_or_default();
                match status {
                    RunStatus::Succeeded => self.line(format!("✓ succeeded in {secs:.1}s{made}")),
                    RunStatus::Failed => {
                        self.line(format!(
                            "✗ failed after {secs:.1}s: {}",
                            error.unwrap_or_default()
                        ));
                    }
                    RunStatus::Cancelled => self.line(format!("✗ cancelled after {secs:.1}s")),
                }
            }
        }
    }
}

/// Prints what a plan will do for the customer in `folder`: params, each step's plugin, mounts,
/// programs and limits, and the skipped steps.
pub fn print_plan(
    plan: &qodify_host::pipeline::Plan,
    folder: &std::path::Path,
    confinement: &str,
    ceilings: &qodify_host::settings::Ceilings,
) {
    println!(
        "pipeline {} for {} ({})",
        plan.pipeline,
        folder.file_name().unwrap_or_default().to_string_lossy(),
        folder.display()
    );
    println!("commands: {confinement}");
    println!("params:");
    for (k, v) in &plan.params {
        println!("  {k} = {}", serde_json::to_string(v).unwrap_or_default());
    }
    let sections = [
        ("steps", &plan.stages),
        (
            "on success (after the backup is complete)",
            &plan.on_success,
        ),
        ("on failure", &plan.on_failure),
        ("finally", &plan.finally),
    ];
    for (title, stages) in sections {
        if stages.is_empty() {
            continue;
        }
        println!("{title}:");
        for stage in stages.iter() {
            let ind = if let Some(g) = &stage.group {
                println!("  group {g} (these steps run at the same time):");
                "    "
            } else {
                "  "
            };
            for s in &stage.steps {
                let pin = s
                    .sha256
                    .as_deref()
                    .map(|p| format!(" sha256={}", &p[..12.min(p.len())]))
                    .unwrap_or_default();
                println!("{ind}- {} [{}{}]", s.id, s.plugin, pin);
                for m in &s.mounts {
                    let root = qodify_host::engine::sandbox::root_name(m.from);
                    println!(
                        "{ind}    mount {} <- {root}:{}/ ({}{}{}){}",
                        m.guest,
                        m.path.display(),
                        if m.writable {
                            "read-write"
                        } else {
                            "read-only"
                        },
                        if m.create { ", created if missing" } else { "" },
                        if m.optional { ", optional" } else { "" },
                        m.reason
                            .as_deref()
                            .map(|r| format!(" — {r}"))
                            .unwrap_or_default()
                    );
                }
                for c in &s.commands {
                    // Shown only when granted: most programs get no network at all.
                    let endpoints = |key: &str, grants: &[qodify_host::pipeline::NetGrant]| {
                        if grants.is_empty() {
                            return String::new();
                        }
                        let list: Vec<String> = grants.iter().map(ToString::to_string).collect();
                        format!(" {key} [{}]", list.join(", "))
                    };
                    println!(
                        "{ind}    command {} args [{}] env [{}]{}{}{}",
                        c.program,
                        c.args.join(" "),
                        c.env.join(", "),
                        endpoints("net", &c.net),
                        endpoints("bind", &c.bind),
                        c.reason
                            .as_deref()
                            .map(|r| format!(" — {r}"))
                            .unwrap_or_default()
                    );
                }
                let c = ceilings;
                println!(
                    "{ind}    limits memory {} timeout {}",
                    human_bytes(s.limits.memory_bytes.unwrap_or(c.default_memory_bytes)),
                    human_duration(s.limits.timeout.unwrap_or(c.default_timeout))
                );
            }
        }
    }
    for s in &plan.skipped {
        println!("skipped: {} ({})", s.id, s.reason);
    }
}

/// Tells what finishing an interrupted run did (stderr, or a JSON line).
pub fn report_recovered(r: &qodify_host::ops::recover::Recovered, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::json!({
                "event": "recovered",
                "runId": r.journal.run_id,
                "pipeline": r.journal.spec.pipeline,
                "complete": r.complete,
                "result": r.outcome,
            })
        );
    } else {
        eprintln!("{}", r.describe());
    }
}

/// Prints, per step, what it is granted beyond its plugin's manifest.
pub fn print_excess(steps: &[qodify_host::ops::capabilities::Excess]) {
    let mut header = false;
    for e in steps {
        let lines: Vec<String> = match (&e.beyond, &e.problem) {
            (_, Some(p)) => vec![format!("manifest unreadable: {p}")],
            (None, None) => {
                vec!["declares nothing (no manifest): grants cannot be compared".into()]
            }
            (Some(b), None) => b.clone(),
        };
        for line in lines {
            if !header {
                println!("\ngranted beyond what the plugins declare:");
                header = true;
            }
            println!("  {} ({}): {line}", e.step, e.plugin);
        }
    }
}

/// Prints what `qodify-host step` did: status, outputs, artifacts, then grants and their use.
/// Log lines were printed as they came.
pub fn print_step(r: &qodify_host::ops::step::StepReport) {
    println!(
        "{} {} in {} ms (plugin sha256 {})",
        r.plugin, r.status, r.duration_ms, r.sha256
    );
    if let Some(e) = &r.error {
        println!("error: {e}");
    }
    for (k, v) in &r.outputs {
        println!("output   {k} = {v}");
    }
    for a in &r.artifacts {
        println!(
            "artifact {} {} ({}, sha256 {})",
            a.name,
            a.path,
            human_bytes(a.size),
            a.sha256
        );
    }
    for m in &r.granted.mounts {
        println!(
            "granted  mount {} = {} ({})",
            m.guest,
            m.path,
            if m.writable { "rw" } else { "ro" }
        );
    }
    for p in &r.granted.programs {
        println!("granted  program {} {}", p.program, p.args.join(" "));
    }
    for o in &r.granted.origins {
        println!("granted  origin {o}");
    }
    let calls =
        |kind: &str, map: &std::collections::BTreeMap<String, qodify_host::engine::caps::Calls>| {
            for (name, c) in map {
                println!(
                    "called   {kind} {name}: {} allowed, {} denied",
                    c.allowed, c.denied
                );
            }
        };
    calls("program", &r.used.programs);
    calls("origin", &r.used.origins);
}

/// Prints the plugin catalog as a table, then what each plugin declares.
pub fn print_plugins(rows: &[qodify_host::ops::plugins::PluginInfo]) {
    println!(
        "{:<20} {:<64} {:>9}  {:<36} path",
        "id", "sha256", "size", "asks for"
    );
    for r in rows {
        println!(
            "{:<20} {:<64} {:>9}  {:<36} {}",
            r.id,
            r.sha256,
            human_bytes(r.size),
            r.host_interfaces.join(", "),
            r.path.display()
        );
    }
    println!();
    for r in rows {
        println!("{}: {}", r.id, declared_line(r));
    }
}

/// What a plugin's manifest declares, on one line.
fn declared_line(r: &qodify_host::ops::plugins::PluginInfo) -> String {
    if let Some(p) = &r.problem {
        return format!("unreadable manifest: {p}");
    }
    let Some(m) = &r.declares else {
        return "declares nothing (no manifest)".to_owned();
    };
    let mounts: Vec<String> = m
        .mounts
        .iter()
        .map(|d| {
            format!(
                "{} {}",
                d.role,
                serde_json::to_value(d.access)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            )
        })
        .collect();
    let list = |v: &[String]| {
        if v.is_empty() {
            "none".to_owned()
        } else {
            v.join(", ")
        }
    };
    format!(
        "declares mounts [{}], programs [{}], origins [{}]",
        list(&mounts),
        list(&m.programs),
        list(&m.origins)
    )
}

/// Tells what `plugins add` did.
pub fn print_added(a: &qodify_host::ops::plugins::Added) {
    let p = &a.plugin;
    match (&a.replaced, a.changed) {
        (_, false) => println!("{} is already in place ({})", p.id, p.path.display()),
        (Some(old), true) => println!(
            "replaced {} (was sha256 {old}) at {}",
            p.id,
            p.path.display()
        ),
        (None, true) => println!("added {} at {}", p.id, p.path.display()),
    }
    println!("sha256 {}  ({})", p.sha256, human_bytes(p.size));
    println!("imports: {}", p.host_interfaces.join(", "));
    println!("{}", declared_line(p));
    println!("pin it in a pipeline step with: sha256 = \"{}\"", p.sha256);
}

/// Prints a customer's complete backups as a table.
/// The `tokens list` table.
pub fn print_tokens(list: &[qodify_host::store::TokenRecord]) {
    println!(
        "{:<24} {:<9} {:<22} {:<22} created by",
        "name", "role", "created", "last used"
    );
    for t in list {
        println!(
            "{:<24} {:<9} {:<22} {:<22} {}",
            t.name,
            t.role,
            t.created_at,
            t.last_used_at.as_deref().unwrap_or("never"),
            t.created_by.as_deref().unwrap_or("-")
        );
    }
}

pub fn print_schedules(list: &[qodify_host::ops::schedule::Listed]) {
    println!(
        "{:<28} {:<10} {:<26} {:<12} {:<22} last",
        "customer", "pipeline", "at", "from", "next run"
    );
    for l in list {
        let last = match (&l.error, &l.last) {
            (Some(e), _) => format!("error: {e}"),
            (None, Some(slot)) => format!(
                "{}{}",
                slot.outcome.as_deref().unwrap_or("-"),
                slot.reason
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            ),
            (None, None) => "-".into(),
        };
        let next = match (&l.next_run_at, l.due) {
            (_, true) => "due now".to_owned(),
            (Some(n), false) => n.clone(),
            (None, false) => "-".to_owned(),
        };
        println!(
            "{:<28} {:<10} {:<26} {:<12} {:<22} {last}",
            l.domain, l.pipeline, l.at, l.origin, next
        );
    }
}

/// The backups table; `drills` gives each backup's newest restore drill (`ok <date>`, or
/// `FAILED <date>: <reason>` on a line of its own).
pub fn print_backups(
    list: &[qodify_host::backups::Backup],
    drills: &std::collections::BTreeMap<String, qodify_host::store::DrillRecord>,
) {
    println!(
        "{:<16} {:<7} {:>10} {:>8}  {:<17} artifacts",
        "id", "type", "size", "seconds", "drill"
    );
    for b in list {
        let field = |k: &str| b.manifest.rest.get(k).cloned().unwrap_or_default();
        let kind = field("type");
        let secs = field("stats")
            .get("durationSeconds")
            .cloned()
            .unwrap_or_default();
        let files: Vec<&str> = b
            .manifest
            .artifacts
            .iter()
            .map(|a| a.file.as_str())
            .collect();
        let drill = drills.get(&b.id);
        let day =
            |d: &qodify_host::store::DrillRecord| d.drilled_at.get(..10).unwrap_or("").to_owned();
        println!(
            "{:<16} {:<7} {:>10} {:>8}  {:<17} {}{}",
            b.id,
            kind.as_str().unwrap_or("-"),
            human_bytes(b.size),
            secs.as_f64()
                .map(|s| format!("{s:.1}"))
                .unwrap_or_else(|| "-".into()),
            match drill {
                Some(d) if d.restorable => format!("ok {}", day(d)),
                Some(d) => format!("FAILED {}", day(d)),
                None => "-".into(),
            },
            files.join(", "),
            b.pinned
                .as_deref()
                .map(|r| format!("  [pinned: {r}]"))
                .unwrap_or_default()
        );
        if let Some(d) = drill.filter(|d| !d.restorable) {
            println!(
                "{:<16} not restorable: {}",
                "",
                d.reason.as_deref().unwrap_or("no reason recorded")
            );
        }
    }
}
