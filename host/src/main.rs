//! The `qodify-host` command line: validate and plan pipelines, run them for a customer, list
//! plugins, print the pipeline JSON Schema.

mod ui;

use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, Result, bail};
use clap::{Args, Parser, Subcommand};
use qodify_host::customer::Customer;
use qodify_host::engine::caps::CancelToken;
use qodify_host::engine::executor;
use qodify_host::engine::plugins::Catalog;
use qodify_host::engine::runtime::Runtime;
use qodify_host::events::RunStatus;
use qodify_host::logs::{self, LogFormat};
use qodify_host::ops;
use qodify_host::pipeline::units::human_bytes;
use qodify_host::pipeline::{self, Pipeline};
use qodify_host::releases;
use qodify_host::settings::{Overrides, Settings};
use tracing::Level;

/// Runs Qodify customer backup, restore and upgrade pipelines as sandboxed WebAssembly plugins.
///
/// A pipeline is a TOML file of typed params and ordered steps; each step runs one plugin (a
/// wasm32-wasip2 component) that sees only the folders its step grants, inside one customer's
/// folder (<customers-root>/<domain>/), read-only unless granted more.
#[derive(Parser)]
#[command(
    name = "qodify-host",
    version,
    propagate_version = true,
    max_term_width = 100
)]
#[command(after_help = "Examples:
  qodify-host validate                          check every pipeline, tier overlay and releases.json
  qodify-host plan backup --customer shop.example.com --tier paid
  qodify-host run backup --customer shop.example.com --param type=custom --param include.logs=true
  qodify-host plugins list

Settings: qodify-host.toml (--config or QODIFY_CONFIG), then QODIFY_CUSTOMERS_ROOT, QODIFY_DATA_DIR,
QODIFY_LISTEN, QODIFY_API_TOKEN, then flags. From a checkout, shipped pipelines and plugins (after
`cargo xtask build`) are found without any setting.

Log: QODIFY_LOG_FORMAT (or --log-format) text|json; QODIFY_LOG a filter such as
`qodify_host=debug` [default: warnings; with json also the host's info lines, every run's events
among them].")]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct GlobalArgs {
    /// Settings file (default: ./qodify-host.toml or /etc/qodify/qodify-host.toml when present).
    #[arg(long, global = true, env = "QODIFY_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Folder holding one <domain>/ folder per customer [default: /var/qodify/customers].
    #[arg(long, global = true, value_name = "DIR")]
    customers_root: Option<PathBuf>,
    /// State folder: compile cache, run work folders [default: /var/lib/qodify-host].
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Folder of <plugin-id>.wasm files; repeat for several (replaces the defaults).
    #[arg(long = "plugins-dir", global = true, value_name = "DIR")]
    plugin_dirs: Vec<PathBuf>,
    /// Folder of <name>.toml pipelines and tiers/<tier>.toml overlays.
    #[arg(long, global = true, value_name = "DIR")]
    pipelines_dir: Option<PathBuf>,
    /// The release catalog: releases.json and the release packages it names.
    #[arg(long, global = true, value_name = "DIR", env = "QODIFY_RELEASES_DIR")]
    releases_dir: Option<PathBuf>,
    /// Show debug logs of steps and the host.
    #[arg(short, long, global = true)]
    verbose: bool,
    /// The log on stderr: `text` for people, or `json`: one object per line (timestamp, level,
    /// message, fields), where a run's lines carry `run`, `customer`, `domain`, `pipeline` and,
    /// inside a step, `step`; `serve` then writes only JSON to stderr.
    #[arg(
        long,
        global = true,
        env = "QODIFY_LOG_FORMAT",
        value_name = "FORMAT",
        default_value = "text",
        value_parser = parse_log_format
    )]
    log_format: LogFormat,
}

#[derive(Subcommand)]
enum Command {
    /// Check pipelines, tier overlays and the release catalog; errors are reported as
    /// file:line:col.
    ///
    /// With no FILES, checks every pipeline in the pipelines folder, every overlay in its
    /// tiers/ folder (each overlay against the pipelines it patches) and releases.json in the
    /// releases folder (its schema, versions, ranges, and each package's sha256).
    Validate {
        /// Pipeline, overlay (a file under a `tiers` folder) or releases.json files.
        files: Vec<PathBuf>,
    },
    /// Show what a run would do: the pipeline after the tier overlay and params, with each
    /// step's grants, limits and reasons, and what each step is granted beyond what its
    /// plugin declares (its manifest). Runs nothing.
    ///
    /// --diff shows what would change against the customer's last recorded run of the pipeline
    /// (`--diff last`) or against an older pipeline file (`--diff old.toml`, planned for the same
    /// customer, tier and params): plugin builds (by sha256), mounts, programs, origins and
    /// limits, as added (+) and removed (-) lines per step. A recorded run writes the same
    /// changes into the audit log (`run.capabilities`) before its first step.
    Plan(PlanArgs),
    /// Run a pipeline for one customer in the foreground.
    ///
    /// Exit code 0 only when every step succeeded; 1 when the run failed, 2 when it could not
    /// start (bad pipeline, params, customer), 130 when cancelled with Ctrl-C.
    ///
    /// A registered customer that belongs to another node (hosts sharing one store) is refused
    /// with exit 2: run it on that node, or move the customer to this one first
    /// (PUT /api/customers/ID {"node": "THIS-NODE"}).
    Run(RunArgs),
    /// Run the HTTP API and the run queue (installer-api's entry point).
    ///
    /// Listens on QODIFY_LISTEN (default 127.0.0.1:8610) and serves the web console at /.
    /// Every /api request needs a token, `Authorization: Bearer <token>` (QODIFY_API_TOKEN, or
    /// one from `qodify-host tokens add`), or the console's session cookie. State (customers, runs, events, history, audit)
    /// lives in <data-dir>/state.sqlite. One serve per data dir: a second one exits at once
    /// (<data-dir>/serve.lock), before it touches anything. Runs that were running when the host
    /// died are marked interrupted at start and their partial output removed. Ctrl-C / SIGTERM: stop accepting,
    /// let running runs finish for the grace period, then cancel them.
    Serve(ServeArgs),
    /// Finish a run that a host stop interrupted (an upgrade, a restore, a layout migration):
    /// run its pipeline's on_failure steps now.
    ///
    /// Such runs leave a journal beside the customer's lock
    /// (<customers-root>/.qodify-locks/<domain>.run.json); `serve` at start and the next `run` for
    /// that customer finish them by themselves, so this is for ops who want it done now, or again
    /// after a rollback failed. Exit 0 when there was nothing to do or the customer is back; 1
    /// when a rollback step failed (see docs/upgrades.md, "When a rollback fails").
    Recover(RecoverArgs),
    /// Run one plugin once against a folder, with the same sandbox as a pipeline step: the
    /// plugin author's test.
    ///
    /// The fixture folder stands in for a customer's folder; the step sees only the mounts,
    /// programs and origins given here (with no --grant, the fixture read-only at /customer).
    /// Prints the step's outputs, artifacts (checked by the host), log lines and what it was
    /// granted and called; --json prints one object instead. Exit 0 when the step succeeded, 1
    /// when it failed, 2 when it could not start (unknown plugin, bad grant or config).
    #[command(after_help = "Examples:
  qodify-host step disk-usage --fixture tests/fixture --step-config step.toml
  qodify-host step db-dump --fixture shop --grant rw:backups=/backups --program pg_dump --json
  qodify-host step health-check --fixture shop --origin 'http://127.0.0.1:*' --param mode=live")]
    Step(StepArgs),
    /// Plugins the host can run.
    #[command(subcommand)]
    Plugins(PluginsCommand),
    /// Backups of one customer: list, verify, delete.
    #[command(subcommand)]
    Backups(BackupsCommand),
    /// What runs on its own, when: the tiers' `[schedule]` (pipelines/tiers/<tier>.toml) and
    /// customers' own schedules, which `serve` runs.
    ///
    /// `list` shows each customer's schedules with the next run time (the customer's own jittered
    /// start) and how the last slot went (queued, skipped with the reason, missed); `set` gives a
    /// customer its own schedule of a pipeline, over its tier's; `unset` removes it. Scheduled runs
    /// go through the same queue and customer lock as any other, recorded as triggered by
    /// `schedule`. See docs/operations.md#schedules.
    #[command(
        subcommand,
        after_help = "Examples:
  qodify-host schedules list
  qodify-host schedules set --customer shop.example.com backup 'daily 02:30 +03:00' --window 1h
  qodify-host schedules set --customer shop.example.com drill 'weekly sun 04:00' --param backup=latest
  qodify-host schedules set --customer shop.example.com backup off
  qodify-host schedules unset --customer shop.example.com backup"
    )]
    Schedules(SchedulesCommand),
    /// Named tokens for people and programs: what they sign in to the web console (or call the
    /// API) with, and what they may do.
    ///
    /// Roles: viewer reads everything; operator also runs backups, restores, verifies and
    /// upgrades, decides approvals, downloads and deletes backups; admin also manages tokens.
    /// Only a hash of each token is kept: `add` prints the token once. The audit log and the
    /// history record a token's name as who did something. installer-api's QODIFY_API_TOKEN keeps
    /// working (an admin named `service`).
    #[command(subcommand)]
    Tokens(TokensCommand),
    /// Approve (or reject) what a waiting run asks, e.g. an upgrade's `.env` merge that would
    /// change or drop existing keys.
    ///
    /// The run shows what it waits for in its progress (`run` prints it; `serve` sends it as a
    /// live event and in GET /api/runs/RUN_ID). Works for runs of `run` and of `serve` alike, as
    /// long as this command uses the same data folder.
    Approve {
        /// The waiting run's id.
        run_id: String,
        /// Reject instead: the step fails and the run rolls back.
        #[arg(long)]
        reject: bool,
        /// Who decides (recorded in the run's events).
        #[arg(long, value_name = "NAME")]
        by: Option<String>,
    },
    /// Print the JSON Schema of pipeline files (or of tier overlays), for editor completion.
    ///
    /// VS Code (Even Better TOML) / taplo: save it, e.g. as pipeline.schema.json, and put
    /// `#:schema ./pipeline.schema.json` on the first line of a pipeline file.
    Schema {
        /// The schema of tier overlay files instead.
        #[arg(long)]
        overlay: bool,
    },
}

#[derive(Args)]
struct PlanArgs {
    #[command(flatten)]
    run: RunArgs,
    /// Show the changes against `last` (the customer's last recorded run of this pipeline) or
    /// an older pipeline .toml file; exit 0 either way.
    #[arg(long, value_name = "last|FILE")]
    diff: Option<String>,
}

#[derive(Args)]
struct StepArgs {
    /// Plugin id (a <id>.wasm in the plugin folders; --plugins-dir adds yours).
    plugin: String,
    /// The folder the step runs against, as if it were a customer's folder.
    #[arg(long, value_name = "DIR")]
    fixture: PathBuf,
    /// The step's config (what a pipeline writes under [steps.config]): a .toml table or a
    /// .json object [default: {}]. (`--config` names the host's settings file.)
    #[arg(long = "step-config", value_name = "FILE")]
    step_config: Option<PathBuf>,
    /// A run param the step can read, e.g. --param mode=live (true/false and digits are typed
    /// as bool and int; repeatable).
    #[arg(long = "param", short = 'p', value_name = "KEY=VALUE", value_parser = parse_kv)]
    params: Vec<(String, String)>,
    /// A mount: [ro:|rw:]PATH=GUEST, PATH inside the fixture (`.` for all of it), e.g.
    /// --grant rw:backups=/backups (repeatable; read-only without a prefix).
    #[arg(long = "grant", value_name = "GRANT", value_parser = parse_grant)]
    grants: Vec<qodify_host::pipeline::PlannedMount>,
    /// A host program the step may run: NAME (any argument) or NAME:GLOB,GLOB (repeatable).
    #[arg(long = "program", value_name = "GRANT", value_parser = parse_program)]
    programs: Vec<qodify_host::pipeline::CommandGrant>,
    /// An HTTP origin the step may reach: http://HOST:PORT, PORT may be `*` (repeatable).
    #[arg(long = "origin", value_name = "ORIGIN", value_parser = parse_origin)]
    origins: Vec<qodify_host::pipeline::HttpGrant>,
    /// The customer's domain the step is told [default: fixture.example].
    #[arg(long, value_name = "DOMAIN", default_value = "fixture.example")]
    customer: String,
    /// The step's wall-clock limit, e.g. 30s or 5m [default: the host's].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    timeout: Option<std::time::Duration>,
    /// Pin the plugin file's sha256.
    #[arg(long, value_name = "HEX")]
    sha256: Option<String>,
    /// Print one JSON object (outputs, artifacts, logs, progress, granted, used) on stdout.
    #[arg(long)]
    json: bool,
}

fn parse_grant(s: &str) -> Result<qodify_host::pipeline::PlannedMount, String> {
    ops::step::parse_mount(s).map_err(|e| e.to_string())
}

fn parse_program(s: &str) -> Result<qodify_host::pipeline::CommandGrant, String> {
    ops::step::parse_program(s).map_err(|e| e.to_string())
}

fn parse_origin(s: &str) -> Result<qodify_host::pipeline::HttpGrant, String> {
    ops::step::parse_origin(s).map_err(|e| e.to_string())
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    ops::step::parse_timeout(s)
}

#[derive(Args)]
struct RecoverArgs {
    /// The customer's domain.
    #[arg(long, value_name = "DOMAIN")]
    customer: String,
    /// Remove the journal without rolling anything back, once the customer was fixed by hand.
    #[arg(long)]
    discard: bool,
    /// Print events and the result as JSON lines.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct ServeArgs {
    /// `host:port` to listen on (overrides QODIFY_LISTEN and the settings file).
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Runs executing at the same time (for different customers; one per customer always).
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Seconds running runs get to finish on shutdown before they are cancelled.
    #[arg(long, default_value_t = 30)]
    grace: u64,
}

#[derive(Subcommand)]
enum BackupsCommand {
    /// List complete backups, newest first (partial or damaged folders are never listed).
    List {
        /// The customer's domain.
        #[arg(long, value_name = "DOMAIN")]
        customer: String,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// List the customer's off-site snapshots instead (runs the `offsite-list` pipeline,
        /// not recorded; restore one with `run restore --param source=offsite`).
        #[arg(long)]
        offsite: bool,
        /// With --offsite: the tier whose overlay names the repository (default: the
        /// registered customer's tier).
        #[arg(long, requires = "offsite")]
        tier: Option<String>,
        /// With --offsite: a param of the `offsite-list` pipeline, e.g.
        /// offsite.repository=rest:http://10.0.0.5:8000 (repeatable).
        #[arg(long = "param", value_name = "NAME=VALUE", value_parser = parse_kv, requires = "offsite")]
        params: Vec<(String, String)>,
    },
    /// Recompute every artifact's sha256 and size against backup.json; exit 1 on any mismatch.
    Verify {
        /// The customer's domain.
        #[arg(long, value_name = "DOMAIN")]
        customer: String,
        /// Backup id (YYYYMMDD-HHMMSS); all backups when absent.
        id: Option<String>,
    },
    /// Make the backup history (what `serve`'s API lists) match the backup folders: lines of
    /// backups whose folder is gone become `deleted`, complete backups the history lacks are
    /// added. `serve` does this at start for every registered customer.
    Reconcile {
        /// The customer's domain.
        #[arg(long, value_name = "DOMAIN")]
        customer: String,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Delete a backup (refused while it is pinned, e.g. by an upgrade that can still roll back,
    /// or while the customer has a run); recorded in the history and the audit log.
    Delete {
        /// The customer's domain.
        #[arg(long, value_name = "DOMAIN")]
        customer: String,
        /// Backup id (YYYYMMDD-HHMMSS).
        id: String,
    },
}

#[derive(Subcommand)]
enum SchedulesCommand {
    /// Every registered customer's schedules (or one customer's), with the next run time.
    List {
        /// Only this customer (its domain).
        #[arg(long, value_name = "DOMAIN")]
        customer: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Give a registered customer its own schedule of a pipeline (replacing its tier's).
    Set {
        /// The customer's domain.
        #[arg(long, value_name = "DOMAIN")]
        customer: String,
        /// The pipeline, e.g. backup or drill.
        pipeline: String,
        /// "daily HH:MM", "weekly mon..sun HH:MM", "every DURATION" (at least 1m), each optionally
        /// followed by a UTC offset like +03:00 (UTC otherwise); or "off".
        at: String,
        /// How long after its time a slot still starts on time [default: 2h].
        #[arg(long, value_name = "DURATION")]
        window: Option<String>,
        /// Upper bound of the customer's fixed start offset [default: window/4, at most 30m].
        #[arg(long, value_name = "DURATION")]
        jitter: Option<String>,
        /// Record a slot the host missed (was down) as missed instead of running it once later.
        #[arg(long)]
        no_catch_up: bool,
        /// A param of the scheduled runs, e.g. --param type=fast (repeatable).
        #[arg(long = "param", short = 'p', value_name = "KEY=VALUE", value_parser = parse_kv)]
        params: Vec<(String, String)>,
    },
    /// Remove a customer's own schedule of a pipeline: its tier's applies again.
    Unset {
        /// The customer's domain.
        #[arg(long, value_name = "DOMAIN")]
        customer: String,
        /// The pipeline.
        pipeline: String,
    },
}

#[derive(Subcommand)]
enum TokensCommand {
    /// Add a token and print it (on stdout, once: only its hash is kept).
    ///
    /// Example: qodify-host tokens add ops-anna --role operator
    Add {
        /// Its name: 1-64 characters from A-Z a-z 0-9 . _ @ -; recorded as who did what.
        name: String,
        /// viewer, operator or admin.
        #[arg(long, value_parser = parse_role)]
        role: qodify_host::auth::Role,
    },
    /// List tokens: name, role, when added and last used (never the tokens themselves).
    List {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token: it stops working at once, and the console sessions opened with it end.
    Revoke {
        /// The token's name.
        name: String,
    },
}

fn parse_role(s: &str) -> Result<qodify_host::auth::Role, String> {
    s.parse()
        .map_err(|e: qodify_host::auth::UnknownRole| e.to_string())
}

#[derive(Subcommand)]
enum PluginsCommand {
    /// List plugins: id, sha256 (for pinning), size, the host interfaces each imports and what
    /// its manifest declares it needs granted (programs, origins, mounts).
    List {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Add a built plugin (.wasm component) to the plugin folder: the first of plugin_dirs.
    ///
    /// Refuses a file that is not a step plugin this host can run (it must compile, import only
    /// qodify:pipeline@0.1.x and WASI 0.2 — no wasi:http — and export the step world's `run`).
    /// Prints its sha256, to pin it in pipelines (`sha256 = "…"` on the step), and what it
    /// declares. The file is written beside the target and renamed into place.
    #[command(after_help = "Example:
  qodify-host plugins add ./disk-usage.wasm
  qodify-host plugins add build/plugin.wasm --id disk-usage --replace")]
    Add {
        /// The component file.
        file: PathBuf,
        /// Its plugin id [default: the file stem].
        #[arg(long)]
        id: Option<String>,
        /// Embed this capability manifest (qodify-plugin.toml) first, for a plugin built
        /// without `cargo xtask build` or sdk/ts/build.mjs (which embed it themselves).
        #[arg(long, value_name = "FILE")]
        manifest: Option<PathBuf>,
        /// Replace a different plugin with the same id.
        #[arg(long)]
        replace: bool,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Clone)]
struct RunArgs {
    /// Pipeline name (from the pipelines folder) or path to a .toml file.
    pipeline: String,
    /// The customer's domain; its folder is <customers-root>/<domain>/.
    #[arg(long, value_name = "DOMAIN")]
    customer: String,
    /// installer-api's id for the customer [default: the id the data dir's store has for the
    /// domain, else the domain]. A registered customer's run is recorded in the store `serve`
    /// keeps (history, events, audit, as `cli:<user>`).
    #[arg(long, value_name = "ID")]
    customer_id: Option<String>,
    /// Apply the tier overlay pipelines/tiers/<TIER>.toml [`run`: default the customer's
    /// registered tier].
    #[arg(long)]
    tier: Option<String>,
    /// Set a param, e.g. --param type=custom --param include.logs=true (repeatable).
    #[arg(long = "param", short = 'p', value_name = "KEY=VALUE", value_parser = parse_kv)]
    params: Vec<(String, String)>,
    /// Print events and the result as JSON lines on stdout instead of progress bars.
    #[arg(long)]
    json: bool,
}

fn parse_log_format(s: &str) -> Result<LogFormat, String> {
    s.parse().map_err(|e: logs::UnknownFormat| e.to_string())
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` is not KEY=VALUE (e.g. type=custom)"))?;
    if k.is_empty() {
        return Err(format!("`{s}` has an empty key"));
    }
    Ok((k.to_owned(), v.to_owned()))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logs::init(cli.global.log_format, cli.global.verbose);
    match real_main(cli) {
        Ok(code) => code,
        Err(e) => {
            say(Level::ERROR, "error: ", &format!("{e:#}"));
            ExitCode::from(2)
        }
    }
}

/// Tells the operator something on stderr: the line as it always was in the text log format, a
/// log line at `level` in the JSON one (without `prefix`), so that `serve`'s stderr stays JSON.
fn say(level: Level, prefix: &str, message: &str) {
    if logs::format() == LogFormat::Text {
        eprintln!("{prefix}{message}");
        return;
    }
    match level {
        Level::ERROR => tracing::error!("{message}"),
        Level::WARN => tracing::warn!("{message}"),
        _ => tracing::info!("{message}"),
    }
}

fn real_main(cli: Cli) -> Result<ExitCode> {
    let over = Overrides {
        config: cli.global.config.clone(),
        customers_root: cli.global.customers_root.clone(),
        data_dir: cli.global.data_dir.clone(),
        plugin_dirs: cli.global.plugin_dirs.clone(),
        pipelines_dir: cli.global.pipelines_dir.clone(),
        releases_dir: cli.global.releases_dir.clone(),
    };
    let settings = Settings::load(&over)?;
    match cli.command {
        Command::Validate { files } => validate(&settings, &files),
        Command::Plan(args) => plan_cmd(&settings, &args),
        Command::Run(args) => run_cmd(&settings, &args, cli.global.verbose),
        Command::Recover(args) => recover_cmd(&settings, &args, cli.global.verbose),
        Command::Step(args) => step_cmd(&settings, args, cli.global.verbose),
        Command::Plugins(PluginsCommand::List { json }) => plugins_list(&settings, json),
        Command::Plugins(PluginsCommand::Add {
            file,
            id,
            manifest,
            replace,
            json,
        }) => {
            let runtime = Runtime::new(&settings.data_dir)?;
            let added = ops::plugins::add(
                &settings,
                &runtime,
                &file,
                id.as_deref(),
                manifest.as_deref(),
                replace,
            )?;
            if json {
                println!("{}", serde_json::to_string_pretty(&added)?);
            } else {
                ui::print_added(&added);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Backups(cmd) => backups_cmd(&settings, cmd),
        Command::Tokens(cmd) => tokens_cmd(&settings, cmd),
        Command::Schedules(cmd) => schedules_cmd(&settings, cmd),
        Command::Serve(args) => serve_cmd(settings, args),
        Command::Approve { run_id, reject, by } => {
            let by = by.or_else(|| std::env::var("USER").ok());
            let request = approve_cmd(&settings, &run_id, !reject, by.as_deref())?;
            println!(
                "{} `{}` (step {} of run {})",
                if reject { "rejected" } else { "approved" },
                request.summary,
                request.step,
                request.run_id
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Schema { overlay } => {
            let schema = if overlay {
                pipeline::overlay_schema()
            } else {
                pipeline::pipeline_schema()
            };
            println!("{}", serde_json::to_string_pretty(&schema)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Decides what a run waits for: through the state store (the one `serve` and every host
/// sharing it use) when the run is recorded there, else through the data folder's files (a CLI
/// `run` of an unregistered customer).
fn approve_cmd(
    settings: &Settings,
    run_id: &str,
    approve: bool,
    by: Option<&str>,
) -> anyhow::Result<qodify_host::engine::caps::approvals::PendingApproval> {
    let state = cli_state(settings)?;
    match ops::approvals::decide(&state, run_id, approve, by) {
        Err(ops::approvals::ApproveError::NoSuchRun(_)) => Ok(
            qodify_host::engine::caps::approvals::decide(&settings.data_dir, run_id, approve, by)?,
        ),
        other => Ok(other?),
    }
}

fn catalog(settings: &Settings) -> Catalog {
    Catalog::scan(&settings.plugin_dirs)
}

fn is_overlay(path: &Path) -> bool {
    path.parent()
        .and_then(|p| p.file_name())
        .is_some_and(|n| n == "tiers")
}

fn validate(settings: &Settings, files: &[PathBuf]) -> Result<ExitCode> {
    let cat = catalog(settings);
    let check_plugins = cat.iter().next().is_some();
    if !check_plugins {
        eprintln!("warning: {}; plugin ids are not checked", cat.hint());
    }
    let known = |id: &str| !check_plugins || cat.contains(id);
    let hint = cat.hint();
    let (pipelines, overlays): (Vec<PathBuf>, Vec<PathBuf>) = if files.is_empty() {
        (
            ops::plan::list_toml(&settings.pipelines_dir),
            ops::plan::list_toml(&settings.pipelines_dir.join("tiers")),
        )
    } else {
        files
            .iter()
            .filter(|p| !releases::is_catalog(p))
            .cloned()
            .partition(|p| !is_overlay(p))
    };
    let catalogs: Vec<PathBuf> = if files.is_empty() {
        let path = settings.releases_dir.join(releases::FILE_NAME);
        if path.is_file() {
            vec![path]
        } else {
            eprintln!(
                "warning: no release catalog {}; upgrades cannot run until there is one",
                path.display()
            );
            Vec::new()
        }
    } else {
        files
            .iter()
            .filter(|p| releases::is_catalog(p))
            .cloned()
            .collect()
    };
    let mut errors = 0usize;
    let mut loaded: BTreeMap<String, Pipeline> = BTreeMap::new();
    // Each plugin's manifest, read once: grants beyond it are warnings.
    let manifests: std::cell::RefCell<BTreeMap<String, Option<_>>> = Default::default();
    let declared = |plugin: &str| {
        manifests
            .borrow_mut()
            .entry(plugin.to_owned())
            .or_insert_with(|| ops::capabilities::declared(&cat, plugin).ok().flatten())
            .clone()
    };
    let warn = |p: &Pipeline, only: &Path| {
        for w in pipeline::check_declared(p, &declared) {
            if w.file == only {
                eprintln!("{w}");
            }
        }
    };
    for path in &pipelines {
        match pipeline::load_pipeline(path).and_then(|p| {
            pipeline::validate(&p, &known, &hint)
                .and_then(|()| pipeline::check_ceilings(&p, &settings.grants))
                .map(|()| p)
        }) {
            Ok(p) => {
                println!("ok    {}", path.display());
                warn(&p, path);
                loaded.insert(p.name().to_owned(), p);
            }
            Err(d) => {
                errors += 1;
                eprintln!("{d}");
            }
        }
    }
    let folder_pipelines = std::cell::OnceCell::new();
    for path in &overlays {
        let overlay = match pipeline::load_overlay(path) {
            Ok(o) => o,
            Err(d) => {
                errors += 1;
                eprintln!("{d}");
                continue;
            }
        };
        let mut ok = true;
        for name in overlay.pipelines().map(str::to_owned).collect::<Vec<_>>() {
            let base = match loaded.get(&name) {
                Some(p) => p.clone(),
                None => match ops::plan::pipeline_path(settings, &name)
                    .map_err(|e| e.to_string())
                    .and_then(|p| pipeline::load_pipeline(&p).map_err(|d| d.to_string()))
                {
                    Ok(p) => p,
                    Err(e) => {
                        ok = false;
                        eprintln!(
                            "{}: error: overlay patches pipeline `{name}`: {e}",
                            path.display()
                        );
                        continue;
                    }
                },
            };
            match overlay.apply(&base).and_then(|p| {
                pipeline::validate(&p, &known, &hint)
                    .and_then(|()| pipeline::check_ceilings(&p, &settings.grants))
                    .map(|()| p)
            }) {
                Ok(p) => warn(&p, path),
                Err(d) => {
                    ok = false;
                    eprintln!("{d}");
                }
            }
        }
        // The tier's shared [params]: each must be some pipeline's.
        if !overlay.spec().params.0.is_empty() {
            let folder = folder_pipelines.get_or_init(|| {
                ops::plan::list_toml(&settings.pipelines_dir)
                    .iter()
                    .filter_map(|p| pipeline::load_pipeline(p).ok())
                    .collect::<Vec<_>>()
            });
            let all: Vec<&Pipeline> = folder.iter().chain(loaded.values()).collect();
            if let Err(d) = overlay.check_shared_params(&all) {
                ok = false;
                eprintln!("{d}");
            }
        }
        // The tier's [schedule]: cadences, options, pipelines and their params.
        let load = |name: &str| {
            loaded.get(name).cloned().or_else(|| {
                ops::plan::pipeline_path(settings, name)
                    .ok()
                    .and_then(|p| pipeline::load_pipeline(&p).ok())
            })
        };
        if let Err(d) = overlay.schedules(
            &load,
            "schedule pipelines that exist in the pipelines folder",
        ) {
            ok = false;
            eprintln!("{d}");
        }
        if ok {
            println!("ok    {}", path.display());
        } else {
            errors += 1;
        }
    }
    for path in &catalogs {
        match releases::check_file(path) {
            Ok(()) => println!("ok    {}", path.display()),
            Err(d) => {
                errors += 1;
                eprintln!("{d}");
            }
        }
    }
    if pipelines.is_empty() && overlays.is_empty() && catalogs.is_empty() {
        bail!(
            "nothing to validate in {}",
            settings.pipelines_dir.display()
        );
    }
    if errors > 0 {
        eprintln!("{errors} file(s) with errors");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

struct Loaded {
    customer: Customer,
    plan: pipeline::Plan,
}

impl RunArgs {
    fn customer(&self) -> Result<Customer> {
        Ok(Customer::new(&self.customer, self.customer_id.as_deref())?)
    }

    fn spec(&self) -> ops::plan::RunSpec {
        ops::plan::RunSpec {
            pipeline: self.pipeline.clone(),
            tier: self.tier.clone(),
            params: self.params.iter().cloned().collect(),
        }
    }
}

fn load_for_run(settings: &Settings, cat: &Catalog, args: &RunArgs) -> Result<Loaded> {
    let customer = args.customer()?;
    let planned = ops::plan::plan_run(
        settings,
        cat,
        &customer,
        &args.spec(),
        &executor::new_run_id(),
        None,
    )?;
    Ok(Loaded {
        customer,
        plan: planned.plan,
    })
}

fn plan_cmd(settings: &Settings, plan_args: &PlanArgs) -> Result<ExitCode> {
    let args = &plan_args.run;
    let cat = catalog(settings);
    let loaded = load_for_run(settings, &cat, args)?;
    if let Some(old) = &plan_args.diff {
        let new = ops::capabilities::snapshot(&loaded.plan, &cat);
        let (against, before) = if old == "last" {
            ops::capabilities::last_run_of(
                &cli_state(settings)?,
                &loaded.customer,
                args.customer_id.is_some(),
                &loaded.plan.pipeline,
            )?
        } else {
            let old_args = RunArgs {
                pipeline: old.clone(),
                ..args.clone()
            };
            let old_plan = load_for_run(settings, &cat, &old_args)
                .with_context(|| format!("planning the older pipeline {old}"))?;
            (
                old.clone(),
                ops::capabilities::snapshot(&old_plan.plan, &cat),
            )
        };
        let changes = ops::capabilities::diff(&before, &new);
        if args.json {
            println!(
                "{}",
                serde_json::to_string_pretty(
                    &serde_json::json!({ "against": against, "changes": changes })
                )?
            );
        } else if changes.is_empty() {
            println!("no change in capabilities against {against}");
        } else {
            println!("capabilities against {against}:");
            for c in &changes {
                println!("  {c}");
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&loaded.plan)?);
        return Ok(ExitCode::SUCCESS);
    }
    let confinement = qodify_host::engine::confine::Confinement::new(settings.commands.confinement);
    ui::print_plan(
        &loaded.plan,
        &settings
            .customers_root
            .join(loaded.customer.domain.as_str()),
        &confinement.describe(),
        &settings.ceilings,
    );
    ui::print_excess(&ops::capabilities::excess(&loaded.plan, &cat));
    Ok(ExitCode::SUCCESS)
}

fn ui_mode(json: bool) -> ui::Mode {
    if json {
        ui::Mode::Json
    } else if std::io::stderr().is_terminal() {
        ui::Mode::Bars
    } else {
        ui::Mode::Plain
    }
}

fn exit_code(status: RunStatus) -> ExitCode {
    match status {
        RunStatus::Succeeded => ExitCode::SUCCESS,
        RunStatus::Failed => ExitCode::from(1),
        RunStatus::Cancelled => ExitCode::from(130),
    }
}

/// Who a CLI command acts as in the history and audit log: `cli:<user>`.
fn cli_actor() -> String {
    let user = std::env::var("SUDO_USER")
        .ok()
        .filter(|u| !u.is_empty())
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| format!("uid{}", rustix::process::getuid().as_raw()));
    format!("cli:{user}")
}

/// The data dir's shared state, for a CLI command: the same store `serve` keeps.
fn cli_state(settings: &Settings) -> Result<qodify_host::ops::AppState> {
    let host = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    qodify_host::ops::AppState::open(
        settings.clone(),
        format!("cli:{host}:{}", std::process::id()),
    )
}

fn run_cmd(settings: &Settings, args: &RunArgs, verbose: bool) -> Result<ExitCode> {
    let customer = args.customer()?;
    let spec = args.spec();
    // Checked before anything is recorded: a bad pipeline, tier, param or customer folder is
    // refused at once (exit 2).
    let (pipeline, _) = ops::plan::load_pipeline(
        settings,
        &catalog(settings),
        &spec.pipeline,
        spec.tier.as_deref(),
    )?;
    pipeline::check_params(&pipeline, &spec.params)?;
    let state = cli_state(settings)?;
    // A customer of another node is refused before its folder is looked for here: the error
    // names the node to run it on.
    ops::run::registered_here(&state, &customer, args.customer_id.is_some())?;
    qodify_host::engine::sandbox::open_customer(
        &settings.customers_root,
        customer.domain.as_str(),
    )?;
    let ui = Arc::new(ui::Ui::new(ui_mode(args.json), verbose));
    let cancel = CancelToken::default();
    {
        let cancel = cancel.clone();
        let mut pressed = false;
        ctrlc::set_handler(move || {
            if pressed {
                std::process::exit(130);
            }
            pressed = true;
            eprintln!("cancelling… (Ctrl-C again to quit at once)");
            cancel.cancel();
        })
        .context("installing the Ctrl-C handler")?;
    }
    let recorded = ops::run::run_now(
        &state,
        ops::run::RunNow {
            customer: &customer,
            explicit_id: args.customer_id.is_some(),
            spec: &spec,
            actor: cli_actor(),
            events: ui.clone(),
            cancel,
        },
    )?;
    if let Some(r) = &recorded.recovered {
        ui::report_recovered(r, args.json);
    }
    let outcome = recorded.outcome;
    if args.json {
        println!(
            "{}",
            serde_json::json!({ "event": "run-result", "result": outcome })
        );
    }
    Ok(exit_code(outcome.status))
}

fn recover_cmd(settings: &Settings, args: &RecoverArgs, verbose: bool) -> Result<ExitCode> {
    let customer = Customer::new(&args.customer, None)?;
    let domain = customer.domain.as_str();
    if args.discard {
        let _lock = qodify_host::engine::lock::acquire(
            &settings.customers_root,
            domain,
            "recovery",
            "recover --discard",
        )?;
        match ops::recover::read_journal(settings, domain) {
            Ok(Some(j)) => eprintln!(
                "discarding the journal of run {} ({}); nothing is rolled back",
                j.run_id, j.spec.pipeline
            ),
            Ok(None) => eprintln!("{domain} has no interrupted run"),
            Err(e) => eprintln!("discarding a damaged journal: {e:#}"),
        }
        ops::recover::remove_journal(settings, domain)?;
        return Ok(ExitCode::SUCCESS);
    }
    let cat = catalog(settings);
    let runtime = Runtime::new(&settings.data_dir)?;
    let ui = Arc::new(ui::Ui::new(ui_mode(args.json), verbose));
    let engine = ops::recover::Engine {
        runtime: &runtime,
        settings,
        catalog: &cat,
    };
    match ops::recover::recover(engine, &customer, ui)? {
        None => {
            eprintln!("{domain} has no interrupted run: nothing to do");
            Ok(ExitCode::SUCCESS)
        }
        Some(r) => {
            ui::report_recovered(&r, args.json);
            Ok(if r.complete {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}

fn step_cmd(settings: &Settings, args: StepArgs, verbose: bool) -> Result<ExitCode> {
    let customer = Customer::new(&args.customer, Some("fixture"))?;
    let config = match &args.step_config {
        Some(path) => ops::step::read_config(path)?,
        None => serde_json::json!({}),
    };
    let runtime = Runtime::new(&settings.data_dir)?;
    let cat = catalog(settings);
    // Log lines go to stderr as they come (not with --json: they are in the object).
    let live: Option<ops::step::LiveEvents> = (!args.json).then(|| {
        Box::new(move |e: &qodify_host::events::Event| {
            if let qodify_host::events::Event::StepLog { level, message, .. } = e
                && (verbose || *level >= qodify_host::events::LogLevel::Info)
            {
                eprintln!("{:>5} {message}", format!("{level:?}").to_lowercase());
            }
        }) as ops::step::LiveEvents
    });
    let report = ops::step::run_step(
        &runtime,
        settings,
        &cat,
        ops::step::StepRun {
            plugin: args.plugin,
            sha256: args.sha256,
            fixture: args.fixture,
            customer,
            config,
            params: args
                .params
                .iter()
                .map(|(k, v)| (k.clone(), ops::step::param_value(v)))
                .collect(),
            mounts: args.grants,
            commands: args.programs,
            http: args.origins,
            limits: qodify_host::pipeline::Limits {
                memory_bytes: None,
                timeout: args.timeout,
            },
        },
        live,
    )?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        ui::print_step(&report);
    }
    Ok(if report.status == "succeeded" {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn plugins_list(settings: &Settings, json: bool) -> Result<ExitCode> {
    let cat = catalog(settings);
    let rows = ops::plugins::list(&cat)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else if rows.is_empty() {
        eprintln!("{}", cat.hint());
    } else {
        ui::print_plugins(&rows);
    }
    Ok(ExitCode::SUCCESS)
}

fn open_customer(settings: &Settings, domain: &str) -> Result<(Customer, cap_std::fs::Dir)> {
    let customer = Customer::new(domain, None)?;
    let dir = qodify_host::engine::sandbox::open_customer(
        &settings.customers_root,
        customer.domain.as_str(),
    )?;
    Ok((customer, dir))
}

fn schedules_cmd(settings: &Settings, cmd: SchedulesCommand) -> Result<ExitCode> {
    use qodify_host::ops::schedule;
    let state = cli_state(settings)?;
    let customer_id = |domain: &str| -> Result<String> {
        let found = state.store.customer_by_domain(domain)?;
        found.map(|c| c.id).with_context(|| {
            format!(
                "{domain} is not a registered customer; installer-api registers customers \
                 (PUT /api/customers/ID), and only they are scheduled"
            )
        })
    };
    match cmd {
        SchedulesCommand::List { customer, json } => {
            let id = customer.as_deref().map(customer_id).transpose()?;
            let listed = schedule::list(&state, id.as_deref(), schedule::now_ms())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&listed)?);
            } else if listed.is_empty() {
                eprintln!(
                    "nothing is scheduled: add a [schedule] table to a tier overlay \
                     (pipelines/tiers/<tier>.toml), or `qodify-host schedules set`"
                );
            } else {
                ui::print_schedules(&listed);
            }
        }
        SchedulesCommand::Set {
            customer,
            pipeline,
            at,
            window,
            jitter,
            no_catch_up,
            params,
        } => {
            let id = customer_id(&customer)?;
            let body = schedule::ScheduleBody {
                at,
                window,
                jitter,
                catch_up: no_catch_up.then_some(false),
                params: params.into_iter().collect(),
            };
            schedule::set(&state, Some(&cli_actor()), &id, &pipeline, Some(&body))?;
            for l in schedule::list(&state, Some(&id), schedule::now_ms())?
                .iter()
                .filter(|l| l.pipeline == pipeline)
            {
                eprintln!(
                    "{customer}: {pipeline} {}{}",
                    l.at,
                    l.next_run_at
                        .as_deref()
                        .map(|n| format!(", next run {n}"))
                        .unwrap_or_default()
                );
            }
        }
        SchedulesCommand::Unset { customer, pipeline } => {
            let id = customer_id(&customer)?;
            schedule::set(&state, Some(&cli_actor()), &id, &pipeline, None)?;
            eprintln!("{customer}: its own {pipeline} schedule is removed; its tier's applies");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn tokens_cmd(settings: &Settings, cmd: TokensCommand) -> Result<ExitCode> {
    use qodify_host::ops::access;
    let state = cli_state(settings)?;
    match cmd {
        TokensCommand::Add { name, role } => {
            let new = access::add_token(&state, &name, role, &cli_actor())?;
            eprintln!(
                "added token {name} ({role}); it is shown only now, so store it safely. Sign in \
                 to the console with it, or send it as `Authorization: Bearer <token>`."
            );
            println!("{}", new.secret);
        }
        TokensCommand::List { json } => {
            let tokens = access::tokens(&state)?;
            if json {
                let list: Vec<_> = tokens
                    .iter()
                    .map(|t| {
                        serde_json::json!({
                            "name": t.name, "role": t.role, "createdAt": t.created_at,
                            "createdBy": t.created_by, "lastUsedAt": t.last_used_at,
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else if tokens.is_empty() {
                eprintln!(
                    "no tokens yet; add one with qodify-host tokens add NAME --role viewer|operator|admin"
                );
            } else {
                ui::print_tokens(&tokens);
            }
        }
        TokensCommand::Revoke { name } => {
            access::revoke_token(&state, &name, &cli_actor())?;
            eprintln!("revoked token {name}; its console sessions have ended");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The newest restore drill of each of `ids`, when the data dir's store has the customer; empty
/// otherwise (a listing never creates a store, nor fails for want of one).
fn drill_stamps(
    settings: &Settings,
    domain: &str,
    ids: &[String],
) -> BTreeMap<String, qodify_host::store::DrillRecord> {
    use qodify_host::settings::StoreSetting;
    if matches!(settings.store, StoreSetting::Sqlite)
        && !settings.data_dir.join("state.sqlite").is_file()
    {
        return BTreeMap::new();
    }
    let Ok(state) = cli_state(settings) else {
        return BTreeMap::new();
    };
    let Ok(Some(c)) = state.store.customer_by_domain(domain) else {
        return BTreeMap::new();
    };
    state
        .store
        .drills(&c.id, ids)
        .unwrap_or_default()
        .into_iter()
        .map(|d| (d.backup_id.clone(), d))
        .collect()
}

fn backups_cmd(settings: &Settings, cmd: BackupsCommand) -> Result<ExitCode> {
    use qodify_host::backups;
    match cmd {
        BackupsCommand::List {
            customer,
            json,
            offsite: true,
            tier,
            params,
        } => {
            let c = Customer::new(&customer, None)?;
            let state = cli_state(settings)?;
            // The listing run's events are not shown: its result is the table, its failure the
            // error.
            let events = Arc::new(qodify_host::events::NullSink);
            let list = ops::offsite::list(&state, &c, tier, params.into_iter().collect(), events)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else if list.is_empty() {
                eprintln!("no off-site snapshots for {customer}");
            } else {
                ui::print_offsite(&list);
            }
            Ok(ExitCode::SUCCESS)
        }
        BackupsCommand::List { customer, json, .. } => {
            let (_, dir) = open_customer(settings, &customer)?;
            let list = backups::list(&dir)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
                return Ok(ExitCode::SUCCESS);
            }
            if list.is_empty() {
                eprintln!("no backups for {customer}");
                return Ok(ExitCode::SUCCESS);
            }
            let ids: Vec<String> = list.iter().map(|b| b.id.clone()).collect();
            ui::print_backups(&list, &drill_stamps(settings, &customer, &ids));
            Ok(ExitCode::SUCCESS)
        }
        BackupsCommand::Verify { customer, id } => {
            let (_, dir) = open_customer(settings, &customer)?;
            let ids: Vec<String> = match id {
                Some(id) => vec![id],
                None => backups::list(&dir)?.into_iter().map(|b| b.id).collect(),
            };
            let mut bad = 0;
            for id in &ids {
                let problems = backups::verify(&dir, id)?;
                if problems.is_empty() {
                    println!("ok    {id}");
                } else {
                    bad += 1;
                    for p in problems {
                        println!("BAD   {id}/{}: {}", p.file, p.problem);
                    }
                }
            }
            Ok(if bad == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        BackupsCommand::Delete { customer, id } => {
            let c = Customer::new(&customer, None)?;
            let state = cli_state(settings)?;
            let actor = cli_actor();
            // Not registered: the same checks and lock, with nothing in a history to mark.
            let record = state.registered(&c, false)?.unwrap_or_else(|| {
                qodify_host::store::CustomerRecord {
                    id: c.id.clone(),
                    domain: c.domain.to_string(),
                    tier: None,
                    created_at: String::new(),
                    updated_at: String::new(),
                    node: None,
                }
            });
            let size = ops::backups::delete(&state, &record, &id, Some(&actor))?;
            println!("deleted {id} ({})", human_bytes(size));
            Ok(ExitCode::SUCCESS)
        }
        BackupsCommand::Reconcile { customer, json } => {
            let c = Customer::new(&customer, None)?;
            let state = cli_state(settings)?;
            let Some(record) = state.registered(&c, false)? else {
                bail!(
                    "{customer} is not registered in {}: it has no history to reconcile \
                     (installer-api registers customers with PUT /api/customers/{{id}})",
                    settings.data_dir.join("state.sqlite").display()
                );
            };
            let changed = ops::backups::reconcile(&state, &record)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&changed)?);
            } else if changed.marked_deleted.is_empty() && changed.added.is_empty() {
                println!("the history of {customer} matches its backup folders");
            } else {
                for id in &changed.marked_deleted {
                    println!("deleted  {id}  (its folder is gone)");
                }
                for id in &changed.added {
                    println!("added    {id}  (complete on disk, missing from the history)");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn serve_cmd(mut settings: Settings, args: ServeArgs) -> Result<ExitCode> {
    if let Some(listen) = args.listen {
        settings.listen = listen;
    }
    if settings.api_token.is_none() {
        say(
            Level::WARN,
            "warning: ",
            "QODIFY_API_TOKEN is not set: every /api request will be refused (503)",
        );
    }
    let confinement = qodify_host::engine::confine::Confinement::new(settings.commands.confinement);
    let level = if confinement.enforced() {
        Level::INFO
    } else {
        Level::WARN
    };
    say(level, "", &format!("commands: {}", confinement.describe()));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let started = ops::serve::start(settings.clone(), args.workers).await?;
        for r in &started.recovered {
            let _run = logs::run_span(&r.id, &r.customer_id, None, &r.pipeline).entered();
            say(
                Level::WARN,
                "",
                &format!(
                    "run {} ({} for customer {}) was interrupted by the last stop",
                    r.id, r.pipeline, r.customer_id
                ),
            );
        }
        let listener = tokio::net::TcpListener::bind(&settings.listen)
            .await
            .with_context(|| {
                format!(
                    "listening on {} (set QODIFY_LISTEN or --listen)",
                    settings.listen
                )
            })?;
        // Tests and scripts read the real address (port 0 picks a free one) from this line.
        println!("listening on http://{}", listener.local_addr()?);
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        let state = started.state.clone();
        axum::serve(listener, qodify_host::api::router(started.state.clone()))
            .with_graceful_shutdown(async move {
                shutdown_signal().await;
                say(
                    Level::INFO,
                    "",
                    &format!(
                        "stopping: no new requests; running runs get {}s to finish",
                        args.grace
                    ),
                );
                ops::serve::drain(&state, std::time::Duration::from_secs(args.grace), |m| {
                    say(Level::WARN, "", m)
                })
                .await;
            })
            .await?;
        drop(started);
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = ctrl_c => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::{Cli, LogFormat};

    #[test]
    fn log_format_flag_takes_text_or_json_anywhere_and_names_the_choices_when_wrong() {
        let parse = |args: &[&str]| Cli::try_parse_from(args.iter().copied());
        let cli = parse(&["qodify-host", "--log-format", "json", "validate"]).unwrap();
        assert_eq!(cli.global.log_format, LogFormat::Json);
        // Global: after the subcommand too.
        let cli = parse(&["qodify-host", "serve", "--log-format", "text"]).unwrap();
        assert_eq!(cli.global.log_format, LogFormat::Text);
        let err = parse(&["qodify-host", "--log-format", "yaml", "serve"])
            .err()
            .unwrap();
        assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
        let text = err.to_string();
        for part in [
            "--log-format",
            "QODIFY_LOG_FORMAT",
            "`yaml`",
            "`text`",
            "`json`",
        ] {
            assert!(text.contains(part), "{text} lacks {part}");
        }
    }
}
