//! The service's state: customers, runs (the queue), run events, the backups index and the audit
//! log, behind one interface. [`sqlite::SqliteStore`] is the embedded default (one file in the
//! data folder); [`postgres::PgStore`] keeps the same in a PostgreSQL database that several hosts
//! can share, which is why runs are claimed with leases and fenced by an epoch. Both behave alike:
//! one suite of tests (`suite.rs`) runs against each.

pub mod postgres;
pub mod sqlite;
#[cfg(test)]
mod suite;

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::auth::Role;

/// Default and maximum page size of [`Store::runs`].
pub(crate) const RUNS_DEFAULT_LIMIT: usize = 100;
pub(crate) const RUNS_MAX_LIMIT: usize = 1000;

/// The error of a run that was queued when it was cancelled.
pub(crate) const CANCELLED_BEFORE_START: &str = "cancelled before it started";
/// The error of a run whose host stopped while it ran.
pub(crate) const INTERRUPTED: &str = "interrupted: the host stopped while it ran";
/// The error of a run whose node stopped renewing its lease (see [`Store::expire_leases`]).
pub(crate) const LEASE_EXPIRED: &str = "interrupted: its node stopped renewing the run's lease (stopped, paused or cut off from the \
     database); the node cleans up what the run left on its disk when it runs again";

/// A time as stores write it: RFC 3339 UTC with milliseconds (fixed width, so such strings sort
/// as times).
pub(crate) fn format_time(t: time::OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        ))
        .unwrap_or_else(|_| "1970-01-01T00:00:00.000Z".into())
}

/// Now, as [`format_time`] writes it, and in unix milliseconds.
pub(crate) fn now() -> (String, i64) {
    let now = time::OffsetDateTime::now_utc();
    let ms = i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX);
    (format_time(now), ms)
}

/// A duration in milliseconds, saturating.
pub(crate) fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Unsigned → a database integer (saturating: no size or duration comes near `i64::MAX`).
pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A state as stores write it.
pub(crate) fn state_str(state: RunState) -> &'static str {
    match state {
        RunState::Queued => "queued",
        RunState::Running => "running",
        RunState::Succeeded => "succeeded",
        RunState::Failed => "failed",
        RunState::Cancelled => "cancelled",
        RunState::Interrupted => "interrupted",
    }
}

/// A state as stores write it, read back.
pub(crate) fn parse_state(s: &str) -> Option<RunState> {
    Some(match s {
        "queued" => RunState::Queued,
        "running" => RunState::Running,
        "succeeded" => RunState::Succeeded,
        "failed" => RunState::Failed,
        "cancelled" => RunState::Cancelled,
        "interrupted" => RunState::Interrupted,
        _ => return None,
    })
}

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The customer already has an active (queued or running) run and the caller did not ask to
    /// queue behind it.
    #[error("customer {customer} already has an active run {run_id} ({pipeline}, {state})")]
    Busy {
        /// Customer id.
        customer: String,
        /// The active run.
        run_id: String,
        /// Its pipeline.
        pipeline: String,
        /// Its state.
        state: RunState,
    },
    /// No such customer.
    #[error("unknown customer {0}; register it with PUT /api/customers/{0}")]
    UnknownCustomer(String),
    /// A domain already belongs to another customer id.
    #[error("domain {domain} already belongs to customer {owner}")]
    DomainTaken {
        /// The domain.
        domain: String,
        /// The customer that has it.
        owner: String,
    },
    /// A token of that name exists already.
    #[error("a token named {0} exists already; revoke it first or choose another name")]
    TokenExists(String),
    /// The database itself failed.
    #[error("state store: {0}")]
    Db(String),
}

/// Result of store calls.
pub type StoreResult<T> = Result<T, StoreError>;

/// A registered customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerRecord {
    /// installer-api's id.
    pub id: String,
    /// Validated DNS domain (its folder name).
    pub domain: String,
    /// Tier (names a `pipelines/tiers/<tier>.toml` overlay), if any.
    pub tier: Option<String>,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// RFC 3339 UTC.
    pub updated_at: String,
    /// The node whose workers run its runs (the host that has its folder); `None` until a node
    /// claims it.
    pub node: Option<String>,
}

/// Whether `name` is a node name: 1-253 characters from `A-Z a-z 0-9 . _ -`, starting with a
/// letter or digit (a hostname is one).
pub fn valid_node(name: &str) -> bool {
    (1..=253).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Which queued runs a claim may take, and for whom.
#[derive(Debug, Clone, Copy)]
pub struct Claimant<'a> {
    /// The claiming node: it takes the runs of its customers.
    pub node: &'a str,
    /// The lease owner of what it claims (the host id).
    pub owner: &'a str,
    /// Also the runs of customers no node has claimed yet (a single node: SQLite).
    pub unassigned: bool,
}

/// What a node says about itself each heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeBeat {
    /// Its name (`node`).
    pub name: String,
    /// The host's version.
    pub version: String,
    /// When this process started (RFC 3339 UTC).
    pub started_at: String,
    /// Where other hosts reach its API (`advertise_url`), when set.
    pub advertise_url: Option<String>,
}

/// A node as the store has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRecord {
    /// Its name.
    pub name: String,
    /// The host's version at its last heartbeat.
    pub version: String,
    /// When its process started (RFC 3339 UTC).
    pub started_at: String,
    /// Its last heartbeat (RFC 3339 UTC).
    pub heartbeat_at: String,
    /// Its last heartbeat, unix milliseconds.
    pub heartbeat_ms: i64,
    /// Where other hosts reach its API, when set.
    pub advertise_url: Option<String>,
}

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    /// Waiting for its customer's turn or a free slot.
    Queued,
    /// Claimed by a host and running.
    Running,
    /// Finished, every step succeeded.
    Succeeded,
    /// Finished with an error.
    Failed,
    /// Cancelled before or while running.
    Cancelled,
    /// Was running when its host died; its partial output was cleaned up.
    Interrupted,
}

impl RunState {
    /// Queued or running.
    pub fn is_active(self) -> bool {
        matches!(self, RunState::Queued | RunState::Running)
    }
}

impl std::fmt::Display for RunState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(state_str(*self))
    }
}

/// A run to queue.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewRun {
    /// Run id (UUID v7, chosen by the caller).
    pub id: String,
    /// Customer id.
    pub customer_id: String,
    /// Pipeline name (`backup`, `restore`, …).
    pub pipeline: String,
    /// Params as given (string values, as on the command line).
    pub params: std::collections::BTreeMap<String, String>,
    /// The acting user installer-api named, for history and audit.
    pub triggered_by: Option<String>,
}

/// A run as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Run id.
    pub id: String,
    /// Customer id.
    pub customer_id: String,
    /// Pipeline.
    pub pipeline: String,
    /// Params.
    pub params: std::collections::BTreeMap<String, String>,
    /// Who triggered it.
    pub triggered_by: Option<String>,
    /// State.
    pub state: RunState,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// When it started running.
    pub started_at: Option<String>,
    /// When it finished.
    pub finished_at: Option<String>,
    /// The first error.
    pub error: Option<String>,
    /// The backup it completed.
    pub backup_id: Option<String>,
    /// Cancel was asked while it ran (persisted, so a restarted host still honours it).
    pub cancel_requested: bool,
    /// Lease holder (host id) while running.
    pub lease_owner: Option<String>,
    /// Fencing token: bumped on every claim; writes with an older epoch are refused.
    pub epoch: i64,
    /// Latest progress, 0..=100, for `GET /api/runs/:id`.
    pub progress: Option<f32>,
    /// Latest progress message.
    pub message: Option<String>,
    /// What the run learnt while it ran (preflight figures, warnings), as the hub keeps it.
    pub insight: Option<serde_json::Value>,
    /// The node that claimed it (kept after it ended); `None` for queued runs and runs a CLI
    /// started.
    pub node: Option<String>,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunFinish {
    /// Succeeded, failed or cancelled.
    pub state: RunState,
    /// The first error.
    pub error: Option<String>,
    /// The backup it completed.
    pub backup_id: Option<String>,
}

/// Filter for listing runs.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    /// Only this customer's runs.
    pub customer_id: Option<String>,
    /// At most this many, newest first (default 100, capped at 1000).
    pub limit: Option<usize>,
}

/// One stored run event (what SSE and Socket.IO replay to late clients).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    /// Run id.
    pub run_id: String,
    /// 1, 2, 3… per run.
    pub seq: u64,
    /// Event name, e.g. `backup-progress`.
    pub name: String,
    /// Payload.
    pub data: serde_json::Value,
    /// RFC 3339 UTC.
    pub at: String,
}

/// One line of a customer's backup history (kept for failed runs too).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupRecord {
    /// Customer id.
    pub customer_id: String,
    /// The run that made (or tried to make) it.
    pub run_id: String,
    /// The backup id when it completed.
    pub backup_id: Option<String>,
    /// `fast` or `custom`.
    pub kind: String,
    /// Total bytes of its artifacts.
    pub size: Option<u64>,
    /// Wall time in milliseconds.
    pub duration_ms: Option<u64>,
    /// `succeeded`, `failed`, `cancelled`, `interrupted`, `deleted`.
    pub result: String,
    /// Who triggered it.
    pub triggered_by: Option<String>,
    /// RFC 3339 UTC of the run's creation.
    pub created_at: String,
    /// Why the line has its result, when the result alone does not say (e.g. `retention`).
    #[serde(default)]
    pub note: Option<String>,
}

/// A restore drill's verdict on one backup (the `drill` pipeline): whether the backup restored
/// into a scratch database and folder and matched its dump and manifest. A backup may be
/// drilled many times; its history line shows the newest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrillRecord {
    /// Customer id.
    pub customer_id: String,
    /// The backup drilled.
    pub backup_id: String,
    /// The drill's run.
    pub run_id: String,
    /// Whether it restored and matched.
    pub restorable: bool,
    /// Why not, in the drill's words (pg_restore's own error, a count that differs).
    pub reason: Option<String>,
    /// When the drill ended (RFC 3339 UTC).
    pub drilled_at: String,
}

/// One audit entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// RFC 3339 UTC.
    pub at: String,
    /// Who (the acting user installer-api named, or `cli`/`system`).
    pub actor: Option<String>,
    /// What, e.g. `backup.requested`, `run.finished`, `backup.deleted`, `customer.registered`.
    pub action: String,
    /// Customer id.
    pub customer_id: Option<String>,
    /// Run id.
    pub run_id: Option<String>,
    /// Details (result, size, duration, error…).
    pub detail: serde_json::Value,
}

/// A registered customer's backups as the history has them (for `/metrics`). A backup counts as
/// present when it completed (it has an id) and the history does not say `deleted`: a backup
/// that completed in a run that failed later (retention, `on_success`) is there all the same.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupSummary {
    /// installer-api's id.
    pub customer_id: String,
    /// Its domain.
    pub domain: String,
    /// The newest present backup, if any.
    pub last: Option<LastBackup>,
    /// How many backups are present.
    pub present: u64,
    /// Their total size in bytes (lines without a size count 0).
    pub present_bytes: u64,
}

/// A customer's newest present backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastBackup {
    /// Its id.
    pub backup_id: String,
    /// Its size in bytes, when known.
    pub size: Option<u64>,
    /// When it was made, unix milliseconds: when its run ended, or for a backup the history
    /// took from the disk (reconcile), the time its manifest gives. `None` when neither parses.
    pub made_ms: Option<i64>,
}

/// How long the runs of one pipeline that ended one way took (for `/metrics`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurationHistogram {
    /// Pipeline name.
    pub pipeline: String,
    /// `Succeeded`, `Failed` or `Cancelled` (cancelled while running).
    pub result: RunState,
    /// How many runs.
    pub count: u64,
    /// Their total time in milliseconds.
    pub sum_ms: u64,
    /// For each bound asked for, in its order: how many took at most that long.
    pub at_most: Vec<u64>,
}

/// Which customers [`Store::customer_overviews`] lists: one page, by domain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CustomerQuery {
    /// Only customers whose id or domain contains this text (compared in lowercase; ids and
    /// domains are ASCII).
    pub text: Option<String>,
    /// Only customers whose domain sorts after this one (a page cursor: the previous page's last
    /// domain).
    pub after_domain: Option<String>,
    /// At most this many.
    pub limit: usize,
}

/// A customer with what a list of customers shows beside it.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomerOverview {
    /// The customer.
    pub customer: CustomerRecord,
    /// The newest line of its backup history (any result), in the history's order.
    pub last_backup: Option<BackupRecord>,
    /// Its active run: the running one, else the oldest queued.
    pub active_run: Option<ActiveRun>,
}

/// A customer's active run, as far as a list shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveRun {
    /// Run id.
    pub run_id: String,
    /// Pipeline.
    pub pipeline: String,
    /// Queued or running.
    pub state: RunState,
    /// Latest progress, 0..=100 (what `GET /api/runs/{id}` shows).
    pub percent: Option<f32>,
    /// The step its latest progress event named.
    pub step: Option<String>,
}

/// Which runs [`Store::runs_page`] lists, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunQuery {
    /// Only this customer's runs.
    pub customer_id: Option<String>,
    /// Only runs in one of these states (empty: any state).
    pub states: Vec<RunState>,
    /// Only runs older than this run (a page cursor); an unknown run gives an empty page.
    pub before: Option<String>,
    /// At most this many.
    pub limit: usize,
}

/// Which entries [`Store::audit_page`] lists, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only entries about this customer.
    pub customer_id: Option<String>,
    /// Only entries of this action, e.g. `backup.deleted`.
    pub action: Option<String>,
    /// Only entries by this actor.
    pub actor: Option<String>,
    /// Only entries older than the one with this id (a page cursor).
    pub before: Option<i64>,
    /// At most this many.
    pub limit: usize,
}

/// An audit entry with its id (its place in the log, the page cursor).
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRow {
    /// Ascending with every entry appended.
    pub id: i64,
    /// The entry.
    pub entry: AuditEntry,
}

/// A named token (never its secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    /// Its name: the actor of what it does.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// Who added it.
    pub created_by: Option<String>,
    /// RFC 3339 UTC, to the minute: when it was last used (signing in or calling the API).
    pub last_used_at: Option<String>,
}

/// A console session (the cookie's value is never stored, only its hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// SHA-256 of the cookie's value, hex.
    pub hash: String,
    /// The token it was opened with (its name), or `service`.
    pub principal: String,
    /// That token's role.
    pub role: Role,
    /// The CSRF token mutations must send (`X-CSRF-Token`).
    pub csrf: String,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// Unix seconds after which it is gone.
    pub expires_unix: i64,
}

/// What a store's listener calls with each wake-up's payload (`queued:<run>`, `cancel:<run>`,
/// `ended:<run>`, `customer:<id>`; empty when it (re)connected and may have missed some).
pub type Notice = std::sync::Arc<dyn Fn(&str) + Send + Sync>;

/// What a store's event listener calls with each event any host stored (the event's run,
/// customer, seq and name, and its data unless it was too large to send along: then `None`, and
/// the listener reads it with [`Store::events`]), or with `None` when it (re)connected and may
/// have missed some.
pub type EventNotice = std::sync::Arc<dyn Fn(Option<StoredEvent>) + Send + Sync>;

/// An event as a store's listener hears of it.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct StoredEvent {
    /// The run.
    #[serde(rename = "r")]
    pub run_id: String,
    /// Its customer.
    #[serde(rename = "c")]
    pub customer_id: String,
    /// The event's sequence number in its run.
    #[serde(rename = "s")]
    pub seq: u64,
    /// Its name.
    #[serde(rename = "n")]
    pub name: String,
    /// Its data, when it was small enough to send along.
    #[serde(rename = "d", default)]
    pub data: Option<serde_json::Value>,
}

/// Where one customer's schedule of one pipeline stands: since when it applies and the newest
/// slot handled (run, skipped or missed), so every slot is handled once across restarts and hosts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleSlot {
    /// Customer id.
    pub customer_id: String,
    /// The scheduled pipeline.
    pub pipeline: String,
    /// Unix ms from which the schedule applies (when a host first saw it): slots before it are
    /// not due, so a new schedule does not start with a catch-up.
    pub since_ms: i64,
    /// The newest slot handled, Unix ms.
    pub last_slot_ms: Option<i64>,
    /// How it was handled: `queued`, `skipped` or `missed`.
    pub outcome: Option<String>,
    /// The run it queued.
    pub run_id: Option<String>,
    /// Why it was skipped or missed, or that it was a catch-up.
    pub reason: Option<String>,
    /// RFC 3339 UTC of when it was handled.
    pub at: Option<String>,
}

/// A customer's own schedule of one pipeline, over its tier's (JSON as the API takes it).
#[derive(Debug, Clone, PartialEq)]
pub struct CustomerSchedule {
    /// Customer id.
    pub customer_id: String,
    /// The pipeline.
    pub pipeline: String,
    /// The schedule (`ops::schedule::ScheduleBody`).
    pub spec: serde_json::Value,
}

/// What a run asks people, as the store keeps it: the request and, once someone decided, the
/// decision (both JSON; the engine defines them).
#[derive(Debug, Clone, PartialEq)]
pub struct ApprovalRecord {
    /// The question.
    pub request: serde_json::Value,
    /// The answer, once given.
    pub decision: Option<serde_json::Value>,
}

/// The outcome of [`Store::decide_approval`].
#[derive(Debug, Clone, PartialEq)]
pub enum Decided {
    /// Recorded; the question it answers.
    Recorded(serde_json::Value),
    /// The run asks nothing now.
    NotWaiting,
    /// Someone answered first.
    AlreadyDecided,
}

/// The state store.
pub trait Store: Send + Sync {
    /// Registers or updates a customer (id ↔ domain, tier).
    fn upsert_customer(
        &self,
        id: &str,
        domain: &str,
        tier: Option<&str>,
    ) -> StoreResult<CustomerRecord>;
    /// A customer by id.
    fn customer(&self, id: &str) -> StoreResult<Option<CustomerRecord>>;
    /// Moves a customer to `node` (an explicit move): refused with [`StoreError::Busy`] while it
    /// has an active run and `node` is not already its node. Wakes the node.
    fn move_customer(&self, id: &str, node: &str) -> StoreResult<CustomerRecord>;
    /// Gives a customer of no node to `node` (the node that has its folder); `false` when it has
    /// a node already (or there is no such customer).
    fn adopt_customer(&self, id: &str, node: &str) -> StoreResult<bool>;
    /// The customers of no node, by id (bounded: at most 1000).
    fn unassigned_customers(&self) -> StoreResult<Vec<CustomerRecord>>;

    /// Records a node's heartbeat (registering it on its first).
    fn heartbeat(&self, beat: &NodeBeat) -> StoreResult<()>;
    /// Every node that ever beat, by name.
    fn nodes(&self) -> StoreResult<Vec<NodeRecord>>;
    /// Active runs (running, then queued, oldest first; at most 1000) with the node they are
    /// for: the node running one, else its customer's node (`None`: a customer of no node).
    fn active_runs_by_node(&self) -> StoreResult<Vec<(Option<String>, RunRecord)>>;
    /// Calls `on_notice` whenever another host (or this one) queues, cancels or ends a run of
    /// `node`'s customers, or of customers of no node, or registers a customer of no node, for
    /// as long as the store lives; `false` when the store cannot tell (SQLite: a single node,
    /// whose own requests wake its workers directly).
    fn listen(&self, node: &str, on_notice: Notice) -> bool {
        let _ = (node, on_notice);
        false
    }

    /// Queues a run. When the customer has an active run: `Err(Busy)` unless `queue_if_busy`.
    /// Atomic: of many concurrent calls for one customer, at most one gets in without queueing.
    fn enqueue_run(&self, run: &NewRun, queue_if_busy: bool) -> StoreResult<RunRecord>;
    /// Starts a run at once, owned by `owner` with a lease (a CLI `run`, which executes it
    /// itself): refused like [`Store::enqueue_run`] when the customer has an active run.
    fn start_run(&self, run: &NewRun, owner: &str, lease: Duration) -> StoreResult<RunRecord>;
    /// Every registered customer, by id.
    fn all_customers(&self) -> StoreResult<Vec<CustomerRecord>>;
    /// The customer registered with `domain`, if any.
    fn customer_by_domain(&self, domain: &str) -> StoreResult<Option<CustomerRecord>>;
    /// A run by id.
    fn run(&self, id: &str) -> StoreResult<Option<RunRecord>>;
    /// Runs, newest first.
    fn runs(&self, filter: &RunFilter) -> StoreResult<Vec<RunRecord>>;
    /// Claims the next runnable run of `by.node`'s customers (and of customers of no node when
    /// `by.unassigned`): the oldest queued run of a customer with no running run, taking
    /// customers in turn (fair). Marks it running with a lease for `by.owner` on `by.node`, bumps
    /// its epoch.
    fn claim_next(&self, by: &Claimant<'_>, lease: Duration) -> StoreResult<Option<RunRecord>>;
    /// Extends a lease; `false` when the run is no longer this owner's at this epoch (fenced).
    fn renew_lease(
        &self,
        run_id: &str,
        owner: &str,
        epoch: i64,
        lease: Duration,
    ) -> StoreResult<bool>;
    /// Records progress of a running run (fenced).
    fn set_progress(
        &self,
        run_id: &str,
        epoch: i64,
        percent: f32,
        message: &str,
    ) -> StoreResult<bool>;
    /// Replaces what a running run learnt about itself (fenced).
    fn set_insight(
        &self,
        run_id: &str,
        epoch: i64,
        insight: &serde_json::Value,
    ) -> StoreResult<bool>;
    /// Records the backup a running run completed, as soon as it is complete (fenced): the run
    /// names it even when a later step fails or the host stops before the end.
    fn set_backup_id(&self, run_id: &str, epoch: i64, backup_id: &str) -> StoreResult<bool>;
    /// Ends a run (fenced: `false` and no change when the epoch is stale). A `backup_id` of
    /// `None` keeps the one recorded by [`Store::set_backup_id`].
    fn finish_run(&self, run_id: &str, epoch: i64, finish: &RunFinish) -> StoreResult<bool>;
    /// Cancels: a queued run ends `cancelled` at once; a running one gets `cancel_requested`.
    /// `None` when there is no such run.
    fn request_cancel(&self, run_id: &str) -> StoreResult<Option<RunRecord>>;
    /// Marks runs still `running` whose lease expired, or whose owner is `owner` (this host,
    /// restarting), as `interrupted`, and returns them so their partial output can be cleaned.
    fn recover_interrupted(&self, owner: &str) -> StoreResult<Vec<RunRecord>>;
    /// Marks runs still `running` whose lease expired (by the database's clock, where several
    /// hosts share it) as `interrupted`, whoever owns them, and returns them: a node that
    /// stopped renewing (dead, paused, cut off) loses its runs, and its late writes are refused.
    /// Each run is returned once, to one caller, whichever host asks.
    fn expire_leases(&self) -> StoreResult<Vec<RunRecord>>;
    /// Replaces the error text of an interrupted run (what its recovery did).
    fn annotate_run(&self, run_id: &str, error: &str) -> StoreResult<()>;

    /// Appends an event to a run; returns its sequence number.
    fn append_event(&self, run_id: &str, name: &str, data: &serde_json::Value) -> StoreResult<u64>;
    /// Appends an event to a run while it is running at `epoch` (fenced): `None`, and nothing
    /// stored, when the run ended or was taken over.
    fn append_event_fenced(
        &self,
        run_id: &str,
        epoch: i64,
        name: &str,
        data: &serde_json::Value,
    ) -> StoreResult<Option<u64>>;
    /// Calls `on_event` with every event stored from now on by any host sharing the store, in
    /// each run's order, for as long as the store lives; `false` when the store cannot tell
    /// (SQLite: one host, whose hub broadcasts its own events).
    fn listen_events(&self, on_event: EventNotice) -> bool {
        let _ = on_event;
        false
    }
    /// A run's events after `after_seq`, in order.
    fn events(&self, run_id: &str, after_seq: u64) -> StoreResult<Vec<EventRecord>>;

    /// Records what a running run asks people (replacing an earlier question and its answer);
    /// fenced like its events: `false` when the run no longer runs at `epoch`.
    fn ask_approval(
        &self,
        run_id: &str,
        epoch: i64,
        request: &serde_json::Value,
    ) -> StoreResult<bool>;
    /// What run `run_id` asks, and the answer if any.
    fn approval(&self, run_id: &str) -> StoreResult<Option<ApprovalRecord>>;
    /// Answers what run `run_id` asks, once: the first answer wins.
    fn decide_approval(&self, run_id: &str, decision: &serde_json::Value) -> StoreResult<Decided>;
    /// Forgets what run `run_id` asked (it got its answer, gave up, or ended).
    fn clear_approval(&self, run_id: &str) -> StoreResult<()>;

    /// The schedule state of one customer's pipelines, or of every customer's.
    fn schedule_slots(&self, customer_id: Option<&str>) -> StoreResult<Vec<ScheduleSlot>>;

    /// Notes that `customer_id`'s `pipeline` is scheduled from `since_ms`, unless it is known
    /// already; returns its state.
    fn schedule_seen(
        &self,
        customer_id: &str,
        pipeline: &str,
        since_ms: i64,
    ) -> StoreResult<ScheduleSlot>;

    /// Records how a slot was handled. With `only_if_newer`, only when `slot.last_slot_ms` is
    /// newer than the one recorded (false: another host or tick took the slot first); without,
    /// it replaces the outcome of that same slot.
    fn record_slot(&self, slot: &ScheduleSlot, only_if_newer: bool) -> StoreResult<bool>;

    /// Customers' own schedules: one customer's, or every customer's.
    fn customer_schedules(&self, customer_id: Option<&str>) -> StoreResult<Vec<CustomerSchedule>>;

    /// Sets (`Some`) or removes (`None`) a customer's own schedule of a pipeline.
    fn set_customer_schedule(
        &self,
        customer_id: &str,
        pipeline: &str,
        spec: Option<&serde_json::Value>,
    ) -> StoreResult<()>;

    /// Adds or updates (by run id) a line of backup history.
    fn record_backup(&self, b: &BackupRecord) -> StoreResult<()>;
    /// A customer's backup history, newest first: at most `limit` lines, starting after the line
    /// of run `before` (a page cursor) when given.
    fn backups(
        &self,
        customer_id: &str,
        limit: usize,
        before: Option<&str>,
    ) -> StoreResult<Vec<BackupRecord>>;

    /// Stamps a backup with a drill's verdict (adds, or replaces the line of the same run).
    fn record_drill(&self, d: &DrillRecord) -> StoreResult<()>;
    /// The newest drill of each of the customer's `backup_ids` that was drilled (any order).
    fn drills(&self, customer_id: &str, backup_ids: &[String]) -> StoreResult<Vec<DrillRecord>>;
    /// Per customer that had one, when its newest restorable drill ended, unix milliseconds
    /// (for `/metrics`); by customer id.
    fn last_good_drills(&self) -> StoreResult<Vec<(String, i64)>>;

    /// Appends to the audit log.
    fn audit(&self, entry: &AuditEntry) -> StoreResult<()>;
    /// The audit log, newest first, optionally for one customer.
    fn audit_log(&self, customer_id: Option<&str>, limit: usize) -> StoreResult<Vec<AuditEntry>>;

    /// Every registered customer's present backups, by customer id (for `/metrics`). Bounded per
    /// customer: stores read an index, not the whole history.
    fn backup_summaries(&self) -> StoreResult<Vec<BackupSummary>>;
    /// Histograms of how long runs took from start to end, one per pipeline and result, over
    /// every run that started and ended (succeeded, failed, cancelled while running), with
    /// cumulative counts at `bounds_ms` (for `/metrics`). An aggregate: no run is loaded.
    fn run_durations(&self, bounds_ms: &[u64]) -> StoreResult<Vec<DurationHistogram>>;

    /// How many runs are in each state (for `/metrics`). The default counts the newest 1000
    /// runs; stores should answer exactly.
    fn run_counts(&self) -> StoreResult<Vec<(RunState, u64)>> {
        let runs = self.runs(&RunFilter {
            customer_id: None,
            limit: Some(1000),
        })?;
        let mut counts: Vec<(RunState, u64)> = Vec::new();
        for r in runs {
            match counts.iter_mut().find(|(s, _)| *s == r.state) {
                Some((_, n)) => *n += 1,
                None => counts.push((r.state, 1)),
            }
        }
        Ok(counts)
    }

    // What the web console reads (issue 12): pages of customers, runs and the audit log, each
    // one query, whatever the number of customers.

    /// Customers in domain order, each with its newest history line and its active run.
    fn customer_overviews(&self, query: &CustomerQuery) -> StoreResult<Vec<CustomerOverview>>;
    /// Runs, newest first, filtered by customer and state, from a cursor.
    fn runs_page(&self, query: &RunQuery) -> StoreResult<Vec<RunRecord>>;
    /// Audit entries, newest first, filtered by customer, action and actor, from a cursor.
    fn audit_page(&self, query: &AuditQuery) -> StoreResult<Vec<AuditRow>>;

    /// Adds a named token with the SHA-256 of its secret ([`StoreError::TokenExists`] when the
    /// name is taken).
    fn add_token(&self, token: &TokenRecord, hash: &str) -> StoreResult<()>;
    /// Every named token, by name.
    fn tokens(&self) -> StoreResult<Vec<TokenRecord>>;
    /// The token whose secret hashes to `hash`, marked used at `now` (at most once a minute).
    fn use_token(&self, hash: &str, now: &str, now_unix: i64) -> StoreResult<Option<TokenRecord>>;
    /// Removes a token and ends its sessions; whether it existed.
    fn revoke_token(&self, name: &str) -> StoreResult<bool>;
    /// Opens a session (and forgets the sessions that expired before `session.created_at`).
    fn add_session(&self, session: &SessionRecord, now_unix: i64) -> StoreResult<()>;
    /// The session whose cookie hashes to `hash`, unless it expired before `now_unix`.
    fn session(&self, hash: &str, now_unix: i64) -> StoreResult<Option<SessionRecord>>;
    /// Ends a session; whether it existed.
    fn end_session(&self, hash: &str) -> StoreResult<bool>;
}
