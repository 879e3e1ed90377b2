//! A [`Store`] in PostgreSQL, which several hosts can share: the records and rules of the SQLite
//! store (`sqlite.rs`), made atomic PostgreSQL's way. Admitting a run when the customer has none
//! active is serialised on the customer's row (`FOR UPDATE`); a unique partial index keeps a
//! customer from ever having two runs running, whoever claimed or started them; claims take a
//! transaction-level advisory lock, so customers keep taking turns across hosts; a run's own
//! counter numbers its events.
//!
//! The [`Store`] trait is synchronous, and is called from blocking threads, plain threads and
//! async tasks alike. So the store has a small tokio runtime of its own: each call runs there as a
//! task, and the caller waits for its answer on a std channel. (`Runtime::block_on` would panic
//! on a thread that is already inside a runtime.)
//!
//! Schema changes are numbered migrations (`pg_migrations/NNNN_*.sql`), applied at open in one
//! transaction under an advisory lock and recorded in `qodify_migrations`, so hosts that start at
//! once apply each exactly once.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{FromSql, ToSql};
use tokio_postgres::{NoTls, Row};

use super::{
    ActiveRun, ApprovalRecord, AuditEntry, AuditQuery, AuditRow, BackupRecord, BackupSummary,
    CANCELLED_BEFORE_START, Claimant, CustomerOverview, CustomerQuery, CustomerRecord,
    CustomerSchedule, Decided, DrillRecord, DurationHistogram, EventNotice, EventRecord,
    INTERRUPTED, LEASE_EXPIRED, LastBackup, NewRun, NodeBeat, NodeRecord, Notice,
    RUNS_DEFAULT_LIMIT, RUNS_MAX_LIMIT, RunFilter, RunFinish, RunQuery, RunRecord, RunState,
    ScheduleSlot, SessionRecord, Store, StoreError, StoreResult, TokenRecord, duration_ms, now,
    parse_state, state_str, to_i64,
};
use crate::auth::Role;

/// The migrations, in order: migration N is `MIGRATIONS[N - 1]`. Append only, never edit one that
/// shipped.
const MIGRATIONS: &[(&str, &str)] = &[
    ("0001_init", include_str!("pg_migrations/0001_init.sql")),
    ("0002_nodes", include_str!("pg_migrations/0002_nodes.sql")),
    (
        "0003_fencing_events_approvals",
        include_str!("pg_migrations/0003_fencing_events_approvals.sql"),
    ),
    (
        "0004_schedules",
        include_str!("pg_migrations/0004_schedules.sql"),
    ),
    ("0005_drills", include_str!("pg_migrations/0005_drills.sql")),
];

/// The channel that wakes the workers of every node: a run of a customer of no node was queued,
/// or such a customer was registered (the node that has its folder claims it).
const UNASSIGNED_CHANNEL: &str = "qodify_unassigned";

/// The channel every stored event is announced on (`NOTIFY` at its commit), so that each host's
/// SSE and Socket.IO clients see the runs of every node.
const EVENTS_CHANNEL: &str = "qodify_events";
/// Largest event notification sent with its data: PostgreSQL refuses payloads of 8000 bytes or
/// more; a larger event is announced without its data, which the listener reads from `events`.
const MAX_NOTIFY_PAYLOAD: i32 = 7000;

/// The channel a node's workers are woken on (what SQL's `qodify_node_channel` gives): a hash,
/// since a node name may be longer than a channel name can be.
pub fn node_channel(node: &str) -> String {
    use sha2::Digest as _;
    let hash = hex::encode(sha2::Sha256::digest(node.as_bytes()));
    format!("qodify_node_{}", &hash[..16])
}

/// Advisory lock keys (one 64-bit key space; the domain locks use the two-key space, which does
/// not overlap it). Any fixed numbers do: these spell `qodify` and a purpose.
const MIGRATION_LOCK: i64 = 0x716f_6469_6679_0001;
const CLAIM_LOCK: i64 = 0x716f_6469_6679_0002;
/// First key of the two-key advisory locks of one node's claims (the second is the name's hash).
const CLAIM_LOCK_CLASS: i32 = 0x716f_6402;
/// First key of the two-key advisory locks on a domain (the second is the domain's hash).
const DOMAIN_LOCK_CLASS: i32 = 0x716f_6401;

/// Connections per store (per host process): the service's workers and API requests share them.
const POOL_SIZE: usize = 16;
/// Connections for the writes that do not wait for the disk (events, progress).
const RELAXED_POOL_SIZE: usize = 4;
/// How long connecting may take, unless the URL says (`connect_timeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a call waits for a free connection before it fails.
const WAIT_TIMEOUT: Duration = Duration::from_secs(30);

/// The columns [`run_from_row`] reads, in its order.
const RUN_COLUMNS: &str = "id, customer_id, pipeline, params, triggered_by, state, created_at, \
     started_at, finished_at, error, backup_id, cancel_requested, lease_owner, epoch, progress, \
     message, insight, node";

/// The PostgreSQL state store.
pub struct PgStore {
    pool: Pool,
    /// Connections with `synchronous_commit` off, for what a running run writes most often
    /// (events, progress, insight): a commit there does not wait for the WAL to reach the disk
    /// (some 4 ms each here), like SQLite's WAL with `synchronous = NORMAL`. Nothing is lost that
    /// matters: a server crash can only lose the last such writes, and the next ordinary commit
    /// (the run's end, a lease renewal) flushes the WAL, and with it every write before it.
    relaxed: Pool,
    /// Where the queries run; `None` only while dropping.
    runtime: Option<tokio::runtime::Runtime>,
    /// Where the database is, without the password, for messages.
    target: String,
    /// How to connect, for the listener's own connection.
    config: tokio_postgres::Config,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        // Dropping a runtime waits for its threads, which panics inside another runtime (a store
        // dropped by an async task); nothing of ours needs that wait.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/database`) and
    /// applies pending migrations. Errors name the server, the database and the user, never the
    /// password.
    pub fn open(url: &str) -> StoreResult<Self> {
        let mut config: tokio_postgres::Config = url.parse().map_err(|e| {
            StoreError::Db(format!(
                "the PostgreSQL URL in `store` (QODIFY_STORE) does not parse ({e}); write it as \
                 postgres://user:password@host:port/database"
            ))
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("qodify-host");
        }
        let target = describe(&config);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("qodify-pg")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Db(format!("starting the PostgreSQL store's runtime: {e}")))?;
        let mut relaxed = config.clone();
        relaxed.options(&match config.get_options() {
            Some(given) => format!("{given} -c synchronous_commit=off"),
            None => "-c synchronous_commit=off".to_owned(),
        });
        let pool = pool_of(config.clone(), POOL_SIZE)?;
        let relaxed = pool_of(relaxed, RELAXED_POOL_SIZE)?;
        let store = Self {
            pool,
            relaxed,
            runtime: Some(runtime),
            target,
            config,
        };
        store.call(|mut c| async move { migrate(&mut c).await })?;
        Ok(store)
    }

    /// Runs `f` with a pooled connection on the store's runtime and waits for its answer. Safe on
    /// any thread: the caller only waits on a channel.
    /// Appends an event and announces it on [`EVENTS_CHANNEL`] (when `epoch` is given, only
    /// while the run runs at that epoch: `None` otherwise).
    fn append(
        &self,
        run_id: &str,
        epoch: Option<i64>,
        name: &str,
        data: &serde_json::Value,
    ) -> StoreResult<Option<u64>> {
        let (run_id, name, data) = (run_id.to_owned(), name.to_owned(), clean_json(data));
        let (now, _) = now();
        self.call_relaxed(move |c| async move {
            // One statement: the run's counter is bumped under its row lock, so appends to one
            // run from anywhere are numbered without gaps or duplicates, and committed (and
            // announced: notifications go out at commit, in commit order) in that order.
            let row = query_opt(
                &c,
                &format!(
                    "WITH counter AS (\
                       UPDATE runs SET last_event_seq = last_event_seq + 1 \
                       WHERE id = $1 AND ($5::bigint IS NULL \
                         OR (epoch = $5::bigint AND state = 'running')) \
                       RETURNING id, customer_id, last_event_seq), \
                     inserted AS (\
                       INSERT INTO events (run_id, seq, name, data, at) \
                       SELECT id, last_event_seq, $2::text, $3::jsonb, $4::text FROM counter \
                       RETURNING seq), \
                     announced AS (\
                       SELECT c.last_event_seq, \
                         jsonb_build_object('r', c.id, 'c', c.customer_id, 's', c.last_event_seq, \
                                            'n', $2::text) AS head \
                       FROM counter c) \
                     SELECT a.last_event_seq, pg_notify('{EVENTS_CHANNEL}', \
                       CASE WHEN octet_length((a.head || jsonb_build_object('d', $3::jsonb))::text) \
                                 < {MAX_NOTIFY_PAYLOAD} \
                            THEN (a.head || jsonb_build_object('d', $3::jsonb))::text \
                            ELSE a.head::text END)::text \
                     FROM announced a"
                ),
                &[&run_id, &name, &data, &now, &epoch],
            )
            .await?;
            match row {
                Some(row) => Ok(Some(u64::try_from(col::<i64>(&row, 0)?).unwrap_or(0))),
                None => Ok(None),
            }
        })
    }

    /// Marks `interrupted` (with `error`) the running runs whose lease expired by the database's
    /// clock, and those of `owner` when given, and wakes their customers' nodes; returns them.
    /// Row by row under the row's lock: of several hosts sweeping at once, one ends each run and
    /// gets it back; a lease renewed meanwhile is no longer expired. A running run without a
    /// lease cannot be renewed by anyone: it counts as expired.
    fn interrupt_running(
        &self,
        owner: Option<&str>,
        error: &'static str,
    ) -> StoreResult<Vec<RunRecord>> {
        let owner = owner.map(str::to_owned);
        let (now, _) = now();
        self.call(move |c| async move {
            let rows = query(
                &c,
                &format!(
                    "WITH ended AS (\
                       UPDATE runs SET state = 'interrupted', finished_at = $2, error = $3, \
                         lease_owner = NULL, lease_expires_at = NULL \
                       WHERE state = 'running' AND (lease_owner = $1::text \
                         OR lease_expires_at IS NULL OR lease_expires_at < qodify_now_ms()) \
                       RETURNING seq, {RUN_COLUMNS}) \
                     SELECT {RUN_COLUMNS}, qodify_wake(customer_id, 'ended:' || id)::text \
                     FROM ended ORDER BY seq"
                ),
                &[&owner, &now, &error],
            )
            .await?;
            runs_from_rows(&rows)
        })
    }

    fn call<T, F, Fut>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(Object) -> Fut + Send + 'static,
        Fut: Future<Output = StoreResult<T>> + Send + 'static,
    {
        self.call_on(&self.pool, f)
    }

    /// [`PgStore::call`] on a connection whose commits do not wait for the disk.
    fn call_relaxed<T, F, Fut>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(Object) -> Fut + Send + 'static,
        Fut: Future<Output = StoreResult<T>> + Send + 'static,
    {
        self.call_on(&self.relaxed, f)
    }

    fn call_on<T, F, Fut>(&self, pool: &Pool, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(Object) -> Fut + Send + 'static,
        Fut: Future<Output = StoreResult<T>> + Send + 'static,
    {
        let Some(runtime) = &self.runtime else {
            return Err(StoreError::Db("the PostgreSQL store is closed".into()));
        };
        let pool = pool.clone();
        let target = self.target.clone();
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        runtime.spawn(async move {
            let result = match pool.get().await {
                Ok(conn) => f(conn).await,
                Err(e) => Err(no_connection(&target, &e)),
            };
            let _ = tx.send(result);
        });
        rx.recv().unwrap_or_else(|_| {
            Err(StoreError::Db(
                "a PostgreSQL store call ended without an answer".into(),
            ))
        })
    }
}

/// A pool of up to `size` connections made from `config`, made when first needed.
fn pool_of(config: tokio_postgres::Config, size: usize) -> StoreResult<Pool> {
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .wait_timeout(Some(WAIT_TIMEOUT))
        .create_timeout(Some(CONNECT_TIMEOUT))
        .recycle_timeout(Some(CONNECT_TIMEOUT))
        .build()
        .map_err(|e| StoreError::Db(format!("PostgreSQL connection pool: {e}")))
}

/// `user@host:port/database` of `config`: what a message may say about where the store is.
fn describe(config: &tokio_postgres::Config) -> String {
    use tokio_postgres::config::Host;
    let ports = config.get_ports();
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            match host {
                Host::Tcp(name) => format!("{name}:{port}"),
                Host::Unix(path) => format!("{}:{port}", path.display()),
            }
        })
        .collect();
    let user = config.get_user().unwrap_or("(no user)");
    let db = config.get_dbname().unwrap_or(user);
    format!(
        "postgres://{user}@{}/{db}",
        if hosts.is_empty() {
            "localhost".to_owned()
        } else {
            hosts.join(",")
        }
    )
}

/// The error of a connection that could not be had: where, why, and what to check.
fn no_connection(target: &str, e: &deadpool_postgres::PoolError) -> StoreError {
    use deadpool_postgres::PoolError;
    let why = match e {
        PoolError::Backend(e) => pg_message(e),
        PoolError::Timeout(_) => "timed out".into(),
        other => other.to_string(),
    };
    StoreError::Db(format!(
        "cannot connect to PostgreSQL at {target}: {why}; check that the server runs and accepts \
         connections there, and the user, password and database in `store` (QODIFY_STORE)"
    ))
}

/// What went wrong, in PostgreSQL's words when it was the server.
fn pg_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => format!("{} ({detail})", db.message()),
            None => db.message().to_owned(),
        },
        None => {
            // The kind, then each cause the text does not already hold.
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(cause) = source {
                let cause_text = cause.to_string();
                if !text.contains(&cause_text) {
                    text = format!("{text}: {cause_text}");
                }
                source = cause.source();
            }
            text
        }
    }
}

/// `tokio_postgres::Result` → [`StoreResult`].
trait Pg<T> {
    fn pg(self) -> StoreResult<T>;
}

impl<T> Pg<T> for Result<T, tokio_postgres::Error> {
    fn pg(self) -> StoreResult<T> {
        self.map_err(|e| StoreError::Db(pg_message(&e)))
    }
}

/// Applies the migrations the database has not seen yet, all in one transaction, under an
/// advisory lock: a host that waited for another's finds them applied.
async fn migrate(c: &mut Object) -> StoreResult<()> {
    let tx = c.transaction().await.pg()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .pg()?;
    // `SET LOCAL`: the server's "already exists, skipping" notice on every start but the
    // first is no news; only this transaction is quieted.
    tx.batch_execute(
        "SET LOCAL client_min_messages = warning; \
         CREATE TABLE IF NOT EXISTS qodify_migrations (\
             version    INTEGER PRIMARY KEY, \
             name       TEXT NOT NULL, \
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
    )
    .await
    .pg()?;
    let current: i32 = tx
        .query_one(
            "SELECT COALESCE(max(version), 0) FROM qodify_migrations",
            &[],
        )
        .await
        .pg()?
        .try_get(0)
        .pg()?;
    let latest = i32::try_from(MIGRATIONS.len()).unwrap_or(i32::MAX);
    if current > latest {
        return Err(StoreError::Db(format!(
            "the database's schema version {current} is newer than this host knows ({latest}); \
             upgrade the host"
        )));
    }
    for (version, (name, sql)) in (1..).zip(MIGRATIONS) {
        if version <= current {
            continue;
        }
        tx.batch_execute(sql)
            .await
            .map_err(|e| StoreError::Db(format!("migration {name}: {}", pg_message(&e))))?;
        tx.execute(
            "INSERT INTO qodify_migrations (version, name) VALUES ($1, $2)",
            &[&version, name],
        )
        .await
        .pg()?;
    }
    tx.commit().await.pg()
}

// Statements, through each connection's cache of prepared statements.

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

async fn query(c: &impl GenericClient, sql: &str, params: Params<'_>) -> StoreResult<Vec<Row>> {
    let stmt = c.prepare_cached(sql).await.pg()?;
    c.query(&stmt, params).await.pg()
}

async fn query_opt(
    c: &impl GenericClient,
    sql: &str,
    params: Params<'_>,
) -> StoreResult<Option<Row>> {
    let stmt = c.prepare_cached(sql).await.pg()?;
    c.query_opt(&stmt, params).await.pg()
}

async fn execute(c: &impl GenericClient, sql: &str, params: Params<'_>) -> StoreResult<u64> {
    let stmt = c.prepare_cached(sql).await.pg()?;
    c.execute(&stmt, params).await.pg()
}

/// Column `i` of `row`.
fn slot_row(row: &Row) -> StoreResult<ScheduleSlot> {
    Ok(ScheduleSlot {
        customer_id: col(row, 0)?,
        pipeline: col(row, 1)?,
        since_ms: col(row, 2)?,
        last_slot_ms: col(row, 3)?,
        outcome: col(row, 4)?,
        run_id: col(row, 5)?,
        reason: col(row, 6)?,
        at: col(row, 7)?,
    })
}

fn col<'a, T: FromSql<'a>>(row: &'a Row, i: usize) -> StoreResult<T> {
    row.try_get(i).pg()
}

/// An unsigned column: sizes, counts, durations.
fn col_u64(row: &Row, i: usize) -> StoreResult<u64> {
    Ok(u64::try_from(col::<i64>(row, i)?).unwrap_or(0))
}

fn col_opt_u64(row: &Row, i: usize) -> StoreResult<Option<u64>> {
    Ok(col::<Option<i64>>(row, i)?.map(|v| u64::try_from(v).unwrap_or(0)))
}

fn col_state(row: &Row, i: usize) -> StoreResult<RunState> {
    let state: String = col(row, i)?;
    parse_state(&state).ok_or_else(|| StoreError::Db(format!("unknown run state {state:?}")))
}

fn col_role(row: &Row, i: usize) -> StoreResult<Role> {
    let text: String = col(row, i)?;
    text.parse()
        .map_err(|e: crate::auth::UnknownRole| StoreError::Db(e.to_string()))
}

fn json_error(e: serde_json::Error) -> StoreError {
    StoreError::Db(format!("JSON in the store: {e}"))
}

// PostgreSQL keeps no NUL character in text (nor `\u0000` in jsonb), where SQLite does: free text
// that may hold one (what steps and people wrote) has it replaced by U+FFFD rather than failing
// the write.

fn clean(text: &str) -> Cow<'_, str> {
    if text.contains('\0') {
        Cow::Owned(text.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(text)
    }
}

fn clean_opt(text: Option<&str>) -> Option<String> {
    text.map(|t| clean(t).into_owned())
}

fn clean_json(value: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::String(s) => Value::String(clean(s).into_owned()),
        Value::Array(items) => Value::Array(items.iter().map(clean_json).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (clean(k).into_owned(), clean_json(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// RFC 3339 → unix milliseconds, rounded as SQLite's date functions do; `None` when it does not
/// parse. Also takes what SQLite takes besides: a space for the `T`, no offset (UTC).
fn unix_ms(text: &str) -> Option<i64> {
    use time::format_description::well_known::Rfc3339;
    let parse = |t: &str| time::OffsetDateTime::parse(t, &Rfc3339).ok();
    let t = parse(text).or_else(|| {
        let mut t = text.trim().replacen(' ', "T", 1);
        let has_offset =
            t.ends_with(['Z', 'z']) || t.get(19..).is_some_and(|rest| rest.contains(['+', '-']));
        if !has_offset {
            t.push('Z');
        }
        parse(&t)
    })?;
    i64::try_from((t.unix_timestamp_nanos() + 500_000).div_euclid(1_000_000)).ok()
}

fn run_from_row(row: &Row) -> StoreResult<RunRecord> {
    let params: serde_json::Value = col(row, 3)?;
    Ok(RunRecord {
        id: col(row, 0)?,
        customer_id: col(row, 1)?,
        pipeline: col(row, 2)?,
        params: serde_json::from_value::<BTreeMap<String, String>>(params).map_err(json_error)?,
        triggered_by: col(row, 4)?,
        state: col_state(row, 5)?,
        created_at: col(row, 6)?,
        started_at: col(row, 7)?,
        finished_at: col(row, 8)?,
        error: col(row, 9)?,
        backup_id: col(row, 10)?,
        cancel_requested: col(row, 11)?,
        lease_owner: col(row, 12)?,
        epoch: col(row, 13)?,
        progress: col::<Option<f64>>(row, 14)?.map(|p| p as f32),
        message: col(row, 15)?,
        insight: col(row, 16)?,
        node: col(row, 17)?,
    })
}

fn runs_from_rows(rows: &[Row]) -> StoreResult<Vec<RunRecord>> {
    rows.iter().map(run_from_row).collect()
}

/// Customer columns `id, domain, tier, created_at, updated_at` at `at..at + 5`, `node` at
/// `node_at`.
fn customer_at(row: &Row, at: usize, node_at: usize) -> StoreResult<CustomerRecord> {
    Ok(CustomerRecord {
        id: col(row, at)?,
        domain: col(row, at + 1)?,
        tier: col(row, at + 2)?,
        created_at: col(row, at + 3)?,
        updated_at: col(row, at + 4)?,
        node: col(row, node_at)?,
    })
}

/// [`CUSTOMER_COLUMNS`] at `at..at + 6`.
fn customer_from_row(row: &Row, at: usize) -> StoreResult<CustomerRecord> {
    customer_at(row, at, at + 5)
}

const CUSTOMER_COLUMNS: &str = "id, domain, tier, created_at, updated_at, node";

/// Backup history columns `at..at + 10`.
fn backup_from_row(row: &Row, at: usize) -> StoreResult<BackupRecord> {
    Ok(BackupRecord {
        customer_id: col(row, at)?,
        run_id: col(row, at + 1)?,
        backup_id: col(row, at + 2)?,
        kind: col(row, at + 3)?,
        size: col_opt_u64(row, at + 4)?,
        duration_ms: col_opt_u64(row, at + 5)?,
        result: col(row, at + 6)?,
        triggered_by: col(row, at + 7)?,
        created_at: col(row, at + 8)?,
        note: col(row, at + 9)?,
    })
}

const BACKUP_COLUMNS: &str = "customer_id, run_id, backup_id, kind, size, duration_ms, result, \
     triggered_by, created_at, note";

/// Audit columns `at..at + 6`.
fn audit_from_row(row: &Row, at: usize) -> StoreResult<AuditEntry> {
    Ok(AuditEntry {
        at: col(row, at)?,
        actor: col(row, at + 1)?,
        action: col(row, at + 2)?,
        customer_id: col(row, at + 3)?,
        run_id: col(row, at + 4)?,
        detail: col(row, at + 5)?,
    })
}

const AUDIT_COLUMNS: &str = "at, actor, action, customer_id, run_id, detail";

fn token_from_row(row: &Row) -> StoreResult<TokenRecord> {
    Ok(TokenRecord {
        name: col(row, 0)?,
        role: col_role(row, 1)?,
        created_at: col(row, 2)?,
        created_by: col(row, 3)?,
        last_used_at: col(row, 4)?,
    })
}

const TOKEN_COLUMNS: &str = "name, role, created_at, created_by, last_used_at";

async fn get_customer(c: &impl GenericClient, id: &str) -> StoreResult<Option<CustomerRecord>> {
    query_opt(
        c,
        &format!("SELECT {CUSTOMER_COLUMNS} FROM customers WHERE id = $1"),
        &[&id],
    )
    .await?
    .map(|row| customer_from_row(&row, 0))
    .transpose()
}

async fn get_run(c: &impl GenericClient, id: &str) -> StoreResult<Option<RunRecord>> {
    query_opt(
        c,
        &format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = $1"),
        &[&id],
    )
    .await?
    .map(|row| run_from_row(&row))
    .transpose()
}

/// Inside a transaction: locks the customer's row, so that whoever admits a run for the customer
/// waits for whoever is doing so now and then sees their run. `UnknownCustomer` when there is no
/// such customer.
async fn lock_customer(c: &impl GenericClient, customer: &str) -> StoreResult<()> {
    match query_opt(
        c,
        "SELECT 1 FROM customers WHERE id = $1 FOR UPDATE",
        &[&customer],
    )
    .await?
    {
        Some(_) => Ok(()),
        None => Err(StoreError::UnknownCustomer(customer.to_owned())),
    }
}

/// Inside a transaction: `NOTIFY`s the node of `customer` (every node, when it has none) with
/// `payload`, delivered at commit.
async fn wake(c: &impl GenericClient, customer: &str, payload: &str) -> StoreResult<()> {
    execute(c, "SELECT qodify_wake($1, $2)", &[&customer, &payload])
        .await
        .map(drop)
}

/// `LISTEN`s on `channels` for as long as the process lives, passing each payload to
/// `on_notice`, and an empty payload whenever it (re)connected, since notifications may have been
/// missed meanwhile; connects again (backing off up to 10 s) when the connection ends.
async fn listen_forever(
    config: &tokio_postgres::Config,
    target: &str,
    channels: &[&str],
    on_notice: &(dyn Fn(&str) + Send + Sync),
) {
    let mut backoff = Duration::from_millis(200);
    loop {
        let started = std::time::Instant::now();
        let why = listen_once(config, channels, on_notice).await;
        if started.elapsed() > Duration::from_secs(60) {
            backoff = Duration::from_millis(200);
        }
        tracing::warn!(
            "listening to PostgreSQL at {target} ({}): {why}; connecting again in {} ms",
            channels.join(", "),
            backoff.as_millis()
        );
        // Whatever ended the connection, notifications may have been missed: look again.
        on_notice("");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

/// One connection that `LISTEN`s on `channels`, passing each payload to `on_notice`, until the
/// connection ends; why it ended.
async fn listen_once(
    config: &tokio_postgres::Config,
    channels: &[&str],
    on_notice: &(dyn Fn(&str) + Send + Sync),
) -> String {
    use tokio_postgres::AsyncMessage;
    let (client, mut connection) = match config.connect(NoTls).await {
        Ok(pair) => pair,
        Err(e) => return pg_message(&e),
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    // The connection delivers notifications only while it is polled.
    let polled = tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    if tx.send(n.payload().to_owned()).is_err() {
                        return "stopped".to_owned();
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return pg_message(&e),
                None => return "the server closed the connection".to_owned(),
            }
        }
    });
    let listen: String = channels.iter().map(|c| format!("LISTEN {c};")).collect();
    if let Err(e) = client.batch_execute(&listen).await {
        polled.abort();
        return pg_message(&e);
    }
    // Listening now: what was queued before is looked for once.
    on_notice("");
    while let Some(payload) = rx.recv().await {
        on_notice(&payload);
    }
    drop(client);
    polled.await.unwrap_or_else(|e| e.to_string())
}

/// With the customer's row locked: `Busy` naming its active run (the running one if any, else
/// the oldest queued), if it has one.
async fn check_free(c: &impl GenericClient, customer: &str) -> StoreResult<()> {
    let active = query_opt(
        c,
        "SELECT id, pipeline, state FROM runs \
         WHERE customer_id = $1 AND state IN ('queued', 'running') \
         ORDER BY state = 'running' DESC, seq LIMIT 1",
        &[&customer],
    )
    .await?;
    match active {
        Some(row) => Err(StoreError::Busy {
            customer: customer.to_owned(),
            run_id: col(&row, 0)?,
            pipeline: col(&row, 1)?,
            state: col_state(&row, 2)?,
        }),
        None => Ok(()),
    }
}

/// A run to insert, its free text cleaned.
struct Insert {
    id: String,
    customer_id: String,
    pipeline: String,
    params: serde_json::Value,
    triggered_by: Option<String>,
}

impl Insert {
    fn of(run: &NewRun) -> StoreResult<Self> {
        let params = serde_json::to_value(&run.params).map_err(json_error)?;
        Ok(Self {
            id: run.id.clone(),
            customer_id: run.customer_id.clone(),
            pipeline: run.pipeline.clone(),
            params: clean_json(&params),
            triggered_by: clean_opt(run.triggered_by.as_deref()),
        })
    }
}

/// Per customer, the index `backups_present` gives the newest present backup (its first entry)
/// and their count and size (a range of it); the run, by its unique id.
const BACKUP_SUMMARIES_SQL: &str = "SELECT c.id, c.domain, b.backup_id, b.size, \
     COALESCE(round(extract(epoch FROM r.finished_at::timestamptz) * 1000)::bigint, \
              b.created_ms), \
     (SELECT count(*) FROM backups p WHERE p.customer_id = c.id \
        AND p.backup_id IS NOT NULL AND p.result <> 'deleted'), \
     (SELECT COALESCE(sum(p.size), 0)::bigint FROM backups p WHERE p.customer_id = c.id \
        AND p.backup_id IS NOT NULL AND p.result <> 'deleted') \
     FROM customers c \
     LEFT JOIN LATERAL (SELECT p.run_id, p.backup_id, p.size, p.created_ms FROM backups p \
         WHERE p.customer_id = c.id AND p.backup_id IS NOT NULL AND p.result <> 'deleted' \
         ORDER BY COALESCE(p.created_ms, -1) DESC, p.created_at DESC, p.run_id DESC LIMIT 1) b \
       ON true \
     LEFT JOIN runs r ON r.id = b.run_id \
     ORDER BY c.id";

/// One pass over the index `runs_durations`; parameters `$1..=$bounds` are the bounds in
/// milliseconds.
fn run_durations_sql(bounds: usize) -> String {
    use std::fmt::Write as _;
    let mut sql =
        String::from("SELECT pipeline, state, count(*), COALESCE(sum(duration_ms), 0)::bigint");
    for i in 1..=bounds {
        let _ = write!(sql, ", count(*) FILTER (WHERE duration_ms <= ${i}::bigint)");
    }
    sql.push_str(
        " FROM runs WHERE duration_ms IS NOT NULL GROUP BY pipeline, state \
         ORDER BY pipeline, state",
    );
    sql
}

/// A page of customers in domain order (the unique index on the lowercase domain gives the order
/// and the cursor's range), each with its newest history line (`backups_customer_order`), its
/// active run (`runs_customer_state`: the running one, else the oldest queued) and that run's
/// latest step (the newest progress event naming one). `$1`: the text filter (lowercase) or
/// NULL, `$2`: the cursor domain (`''` for the first page), `$3`: the limit.
const CUSTOMER_OVERVIEWS_SQL: &str = "SELECT c.id, c.domain, c.tier, c.created_at, c.updated_at, \
     b.customer_id, b.run_id, b.backup_id, b.kind, b.size, b.duration_ms, b.result, \
     b.triggered_by, b.created_at, b.note, \
     r.id, r.pipeline, r.state, r.progress, \
     (SELECT CASE WHEN jsonb_typeof(e.data -> 'step') = 'string' THEN e.data ->> 'step' END \
      FROM events e \
      WHERE e.run_id = r.id AND e.name LIKE '%-progress' \
        AND jsonb_typeof(e.data -> 'step') <> 'null' \
      ORDER BY e.seq DESC LIMIT 1), \
     c.node \
     FROM customers c \
     LEFT JOIN LATERAL (SELECT * FROM backups p WHERE p.customer_id = c.id \
         ORDER BY COALESCE(p.created_ms, -1) DESC, p.created_at DESC, p.run_id DESC LIMIT 1) b \
       ON true \
     LEFT JOIN LATERAL (SELECT * FROM runs x WHERE x.customer_id = c.id \
         AND x.state IN ('queued', 'running') \
         ORDER BY x.state = 'running' DESC, x.seq LIMIT 1) r \
       ON true \
     WHERE lower(c.domain) > lower($2::text) \
       AND ($1::text IS NULL OR strpos(lower(c.id), $1::text) > 0 \
            OR strpos(lower(c.domain), $1::text) > 0) \
     ORDER BY lower(c.domain) LIMIT $3::bigint";

fn customer_overview_from_row(row: &Row) -> StoreResult<CustomerOverview> {
    let customer = customer_at(row, 0, 20)?;
    let last_backup = match col::<Option<String>>(row, 6)? {
        Some(_) => Some(backup_from_row(row, 5)?),
        None => None,
    };
    let active_run = match col::<Option<String>>(row, 15)? {
        Some(run_id) => Some(ActiveRun {
            run_id,
            pipeline: col(row, 16)?,
            state: col_state(row, 17)?,
            percent: col::<Option<f64>>(row, 18)?.map(|p| p as f32),
            step: col(row, 19)?,
        }),
        None => None,
    };
    Ok(CustomerOverview {
        customer,
        last_backup,
        active_run,
    })
}

/// `SELECT … WHERE <filters> ORDER BY <order> LIMIT $n` of one of the console's pages: each
/// filter given adds one condition, so the planner sees only the conditions that apply.
#[derive(Default)]
struct Filtered {
    conditions: Vec<String>,
    values: Vec<Box<dyn ToSql + Sync + Send>>,
}

impl Filtered {
    /// A parameter holding `value`, as the SQL names it (`$3`).
    fn param(&mut self, value: impl ToSql + Sync + Send + 'static) -> String {
        self.values.push(Box::new(value));
        format!("${}", self.values.len())
    }

    /// The statement, with the limit as its last parameter.
    fn sql(&mut self, select: &str, order: &str, limit: usize) -> String {
        let limit = self.param(i64::try_from(limit).unwrap_or(i64::MAX));
        let filter = if self.conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.conditions.join(" AND "))
        };
        format!("{select}{filter} ORDER BY {order} LIMIT {limit}::bigint")
    }
}

/// The SQL of [`Store::runs_page`] and its parameters.
fn runs_page_sql(query: &RunQuery) -> (String, Filtered) {
    let mut f = Filtered::default();
    if let Some(customer) = &query.customer_id {
        let p = f.param(customer.clone());
        f.conditions.push(format!("customer_id = {p}::text"));
    }
    if !query.states.is_empty() {
        let states: Vec<String> = query
            .states
            .iter()
            .map(|s| state_str(*s).to_owned())
            .collect();
        let p = f.param(states);
        f.conditions.push(format!("state = ANY({p}::text[])"));
    }
    // An unknown cursor compares with NULL: an empty page, never the first one again.
    if let Some(before) = &query.before {
        let p = f.param(before.clone());
        f.conditions
            .push(format!("seq < (SELECT seq FROM runs WHERE id = {p}::text)"));
    }
    let sql = f.sql(
        &format!("SELECT {RUN_COLUMNS} FROM runs"),
        "seq DESC",
        query.limit,
    );
    (sql, f)
}

/// The SQL of [`Store::audit_page`] and its parameters.
fn audit_page_sql(query: &AuditQuery) -> (String, Filtered) {
    let mut f = Filtered::default();
    for (column, value) in [
        ("customer_id", &query.customer_id),
        ("action", &query.action),
        ("actor", &query.actor),
    ] {
        if let Some(value) = value {
            let p = f.param(value.clone());
            f.conditions.push(format!("{column} = {p}::text"));
        }
    }
    if let Some(before) = query.before {
        let p = f.param(before);
        f.conditions.push(format!("id < {p}::bigint"));
    }
    let sql = f.sql(
        &format!("SELECT id, {AUDIT_COLUMNS} FROM audit"),
        "id DESC",
        query.limit,
    );
    (sql, f)
}

async fn query_filtered(c: &Object, sql: &str, f: &Filtered) -> StoreResult<Vec<Row>> {
    let params: Vec<&(dyn ToSql + Sync)> = f
        .values
        .iter()
        .map(|v| &**v as &(dyn ToSql + Sync))
        .collect();
    query(c, sql, &params).await
}

impl Store for PgStore {
    fn upsert_customer(
        &self,
        id: &str,
        domain: &str,
        tier: Option<&str>,
    ) -> StoreResult<CustomerRecord> {
        let (id, domain, tier) = (id.to_owned(), domain.to_owned(), tier.map(str::to_owned));
        self.call(move |mut c| async move {
            let tx = c.transaction().await.pg()?;
            // Registrations of one domain take turns, so that of two ids asking for it at once,
            // the second finds it taken.
            execute(
                &tx,
                "SELECT pg_advisory_xact_lock($1, hashtext(lower($2::text)))",
                &[&DOMAIN_LOCK_CLASS, &domain],
            )
            .await?;
            let owner = query_opt(
                &tx,
                "SELECT id FROM customers WHERE lower(domain) = lower($1::text)",
                &[&domain],
            )
            .await?;
            if let Some(owner) = owner {
                let owner: String = col(&owner, 0)?;
                if owner != id {
                    return Err(StoreError::DomainTaken { domain, owner });
                }
            }
            let (now, _) = now();
            // `updated_at` tells when the registration last changed, not when it was last
            // repeated.
            execute(
                &tx,
                "INSERT INTO customers (id, domain, tier, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $4) \
                 ON CONFLICT (id) DO UPDATE SET domain = EXCLUDED.domain, tier = EXCLUDED.tier, \
                   updated_at = EXCLUDED.updated_at \
                 WHERE customers.domain IS DISTINCT FROM EXCLUDED.domain \
                    OR customers.tier IS DISTINCT FROM EXCLUDED.tier",
                &[&id, &domain, &tier, &now],
            )
            .await?;
            let record = get_customer(&tx, &id)
                .await?
                .ok_or_else(|| StoreError::Db(format!("customer {id} vanished")))?;
            if record.node.is_none() {
                // The node that has its folder claims it.
                wake(&tx, &id, &format!("customer:{id}")).await?;
            }
            tx.commit().await.pg()?;
            Ok(record)
        })
    }

    fn customer(&self, id: &str) -> StoreResult<Option<CustomerRecord>> {
        let id = id.to_owned();
        self.call(move |c| async move { get_customer(&c, &id).await })
    }

    fn move_customer(&self, id: &str, node: &str) -> StoreResult<CustomerRecord> {
        let (id, node) = (id.to_owned(), node.to_owned());
        self.call(move |mut c| async move {
            let tx = c.transaction().await.pg()?;
            // The customer's row lock: no run is admitted while it moves.
            lock_customer(&tx, &id).await?;
            let before = get_customer(&tx, &id)
                .await?
                .ok_or_else(|| StoreError::UnknownCustomer(id.clone()))?;
            if before.node.as_deref() == Some(node.as_str()) {
                return Ok(before);
            }
            // Its runs find its folder on its node's disk: never move it under a run.
            check_free(&tx, &id).await?;
            let (now, _) = now();
            execute(
                &tx,
                "UPDATE customers SET node = $2, updated_at = $3 WHERE id = $1",
                &[&id, &node, &now],
            )
            .await?;
            let record = get_customer(&tx, &id)
                .await?
                .ok_or_else(|| StoreError::Db(format!("customer {id} vanished")))?;
            tx.commit().await.pg()?;
            Ok(record)
        })
    }

    fn adopt_customer(&self, id: &str, node: &str) -> StoreResult<bool> {
        let (id, node) = (id.to_owned(), node.to_owned());
        let (now, _) = now();
        self.call(move |c| async move {
            let changed = execute(
                &c,
                "UPDATE customers SET node = $2, updated_at = $3 WHERE id = $1 AND node IS NULL",
                &[&id, &node, &now],
            )
            .await?;
            Ok(changed > 0)
        })
    }

    fn unassigned_customers(&self) -> StoreResult<Vec<CustomerRecord>> {
        self.call(|c| async move {
            query(
                &c,
                &format!(
                    "SELECT {CUSTOMER_COLUMNS} FROM customers WHERE node IS NULL \
                     ORDER BY id LIMIT 1000"
                ),
                &[],
            )
            .await?
            .iter()
            .map(|row| customer_from_row(row, 0))
            .collect()
        })
    }

    fn heartbeat(&self, beat: &NodeBeat) -> StoreResult<()> {
        let beat = beat.clone();
        let (now, now_ms) = now();
        self.call(move |c| async move {
            execute(
                &c,
                "INSERT INTO nodes (name, version, started_at, heartbeat_at, heartbeat_ms, \
                 advertise_url) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (name) DO UPDATE SET version = EXCLUDED.version, \
                   started_at = EXCLUDED.started_at, heartbeat_at = EXCLUDED.heartbeat_at, \
                   heartbeat_ms = EXCLUDED.heartbeat_ms, advertise_url = EXCLUDED.advertise_url",
                &[
                    &beat.name,
                    &beat.version,
                    &beat.started_at,
                    &now,
                    &now_ms,
                    &beat.advertise_url,
                ],
            )
            .await?;
            Ok(())
        })
    }

    fn nodes(&self) -> StoreResult<Vec<NodeRecord>> {
        self.call(|c| async move {
            query(
                &c,
                "SELECT name, version, started_at, heartbeat_at, heartbeat_ms, advertise_url \
                 FROM nodes ORDER BY name",
                &[],
            )
            .await?
            .iter()
            .map(|row| {
                Ok(NodeRecord {
                    name: col(row, 0)?,
                    version: col(row, 1)?,
                    started_at: col(row, 2)?,
                    heartbeat_at: col(row, 3)?,
                    heartbeat_ms: col(row, 4)?,
                    advertise_url: col(row, 5)?,
                })
            })
            .collect()
        })
    }

    fn active_runs_by_node(&self) -> StoreResult<Vec<(Option<String>, RunRecord)>> {
        let columns: Vec<String> = RUN_COLUMNS
            .split(", ")
            .map(|c| format!("r.{}", c.trim()))
            .collect();
        let sql = format!(
            "SELECT {}, COALESCE(r.node, c.node) FROM runs r \
             JOIN customers c ON c.id = r.customer_id \
             WHERE r.state IN ('running', 'queued') \
             ORDER BY r.state = 'running' DESC, r.seq LIMIT 1000",
            columns.join(", ")
        );
        self.call(move |c| async move {
            query(&c, &sql, &[])
                .await?
                .iter()
                .map(|row| Ok((col(row, 18)?, run_from_row(row)?)))
                .collect()
        })
    }

    fn listen(&self, node: &str, on_notice: Notice) -> bool {
        let Some(runtime) = &self.runtime else {
            return false;
        };
        let (config, target, channel) =
            (self.config.clone(), self.target.clone(), node_channel(node));
        runtime.spawn(async move {
            listen_forever(
                &config,
                &target,
                &[channel.as_str(), UNASSIGNED_CHANNEL],
                &*on_notice,
            )
            .await;
        });
        true
    }

    fn enqueue_run(&self, run: &NewRun, queue_if_busy: bool) -> StoreResult<RunRecord> {
        let run = Insert::of(run)?;
        self.call(move |mut c| async move {
            let tx = c.transaction().await.pg()?;
            lock_customer(&tx, &run.customer_id).await?;
            if !queue_if_busy {
                check_free(&tx, &run.customer_id).await?;
            }
            let (now, _) = now();
            let row = query_opt(
                &tx,
                &format!(
                    "INSERT INTO runs (id, customer_id, pipeline, params, triggered_by, state, \
                     created_at) VALUES ($1, $2, $3, $4, $5, 'queued', $6) \
                     RETURNING {RUN_COLUMNS}"
                ),
                &[
                    &run.id,
                    &run.customer_id,
                    &run.pipeline,
                    &run.params,
                    &run.triggered_by,
                    &now,
                ],
            )
            .await?
            .ok_or_else(|| StoreError::Db(format!("run {} vanished", run.id)))?;
            let record = run_from_row(&row)?;
            // Delivered at commit: the customer's node (any node, for a customer of none) looks
            // for work at once.
            wake(&tx, &run.customer_id, &format!("queued:{}", run.id)).await?;
            tx.commit().await.pg()?;
            Ok(record)
        })
    }

    fn start_run(&self, run: &NewRun, owner: &str, lease: Duration) -> StoreResult<RunRecord> {
        let run = Insert::of(run)?;
        let owner = owner.to_owned();
        self.call(move |mut c| async move {
            let tx = c.transaction().await.pg()?;
            lock_customer(&tx, &run.customer_id).await?;
            check_free(&tx, &run.customer_id).await?;
            let (now, _) = now();
            let lease_ms = duration_ms(lease);
            let row = query_opt(
                &tx,
                &format!(
                    "INSERT INTO runs (id, customer_id, pipeline, params, triggered_by, state, \
                     created_at, started_at, lease_owner, lease_expires_at, epoch) \
                     VALUES ($1, $2, $3, $4, $5, 'running', $6, $6, $7, qodify_now_ms() + $8, 1) \
                     RETURNING {RUN_COLUMNS}"
                ),
                &[
                    &run.id,
                    &run.customer_id,
                    &run.pipeline,
                    &run.params,
                    &run.triggered_by,
                    &now,
                    &owner,
                    &lease_ms,
                ],
            )
            .await?
            .ok_or_else(|| StoreError::Db(format!("run {} vanished", run.id)))?;
            let record = run_from_row(&row)?;
            tx.commit().await.pg()?;
            Ok(record)
        })
    }

    fn all_customers(&self) -> StoreResult<Vec<CustomerRecord>> {
        self.call(|c| async move {
            query(
                &c,
                &format!("SELECT {CUSTOMER_COLUMNS} FROM customers ORDER BY id"),
                &[],
            )
            .await?
            .iter()
            .map(|row| customer_from_row(row, 0))
            .collect()
        })
    }

    fn customer_by_domain(&self, domain: &str) -> StoreResult<Option<CustomerRecord>> {
        let domain = domain.to_owned();
        self.call(move |c| async move {
            query_opt(
                &c,
                &format!(
                    "SELECT {CUSTOMER_COLUMNS} FROM customers WHERE lower(domain) = lower($1::text)"
                ),
                &[&domain],
            )
            .await?
            .map(|row| customer_from_row(&row, 0))
            .transpose()
        })
    }

    fn run(&self, id: &str) -> StoreResult<Option<RunRecord>> {
        let id = id.to_owned();
        self.call(move |c| async move { get_run(&c, &id).await })
    }

    fn runs(&self, filter: &RunFilter) -> StoreResult<Vec<RunRecord>> {
        let limit = filter
            .limit
            .unwrap_or(RUNS_DEFAULT_LIMIT)
            .min(RUNS_MAX_LIMIT) as i64;
        let customer = filter.customer_id.clone();
        self.call(move |c| async move {
            // Two statements rather than `$1 IS NULL OR …`, which would keep a generic plan off
            // the index.
            let rows = match &customer {
                Some(customer) => {
                    query(
                        &c,
                        &format!(
                            "SELECT {RUN_COLUMNS} FROM runs WHERE customer_id = $1 \
                             ORDER BY seq DESC LIMIT $2"
                        ),
                        &[customer, &limit],
                    )
                    .await?
                }
                None => {
                    query(
                        &c,
                        &format!("SELECT {RUN_COLUMNS} FROM runs ORDER BY seq DESC LIMIT $1"),
                        &[&limit],
                    )
                    .await?
                }
            };
            runs_from_rows(&rows)
        })
    }

    fn claim_next(&self, by: &Claimant<'_>, lease: Duration) -> StoreResult<Option<RunRecord>> {
        let (node, owner, unassigned) = (by.node.to_owned(), by.owner.to_owned(), by.unassigned);
        self.call(move |mut c| async move {
            let tx = c.transaction().await.pg()?;
            // One node's claims take turns (whichever of its workers makes them), so that its
            // customers keep taking turns and none gets two runs at once. Nodes claim disjoint
            // sets of customers, so they do not wait for each other; claims that may also take
            // customers of no node take turns across nodes as well.
            execute(
                &tx,
                "SELECT pg_advisory_xact_lock($1, hashtext($2::text))",
                &[&CLAIM_LOCK_CLASS, &node],
            )
            .await?;
            if unassigned {
                execute(&tx, "SELECT pg_advisory_xact_lock($1)", &[&CLAIM_LOCK]).await?;
            }
            loop {
                // Candidates: each customer's oldest queued run, for this node's customers with
                // nothing running. Among them, the customer whose last turn is the oldest
                // (never: first) goes, then the oldest run. A run a cancel is ending right now
                // (its row locked) is skipped, not waited for.
                let next = query_opt(
                    &tx,
                    "SELECT r.id, r.customer_id FROM runs r \
                     JOIN customers c ON c.id = r.customer_id \
                     WHERE r.state = 'queued' \
                       AND (c.node = $1::text OR ($2::bool AND c.node IS NULL)) \
                       AND r.seq = (SELECT min(q.seq) FROM runs q \
                                    WHERE q.customer_id = r.customer_id AND q.state = 'queued') \
                       AND NOT EXISTS (SELECT 1 FROM runs x \
                                       WHERE x.customer_id = r.customer_id \
                                         AND x.state = 'running') \
                     ORDER BY c.last_claim, r.seq LIMIT 1 \
                     FOR UPDATE OF r SKIP LOCKED",
                    &[&node, &unassigned],
                )
                .await?;
                let Some(next) = next else {
                    return Ok(None);
                };
                let run_id: String = col(&next, 0)?;
                let customer_id: String = col(&next, 1)?;
                let (now, _) = now();
                let lease_ms = duration_ms(lease);
                // Still queued: a cancel (which takes no claim lock) may have ended it since.
                let claimed = query_opt(
                    &tx,
                    &format!(
                        "UPDATE runs SET state = 'running', started_at = $2, lease_owner = $3, \
                         lease_expires_at = qodify_now_ms() + $4, epoch = epoch + 1, node = $5 \
                         WHERE id = $1 AND state = 'queued' RETURNING {RUN_COLUMNS}"
                    ),
                    &[&run_id, &now, &owner, &lease_ms, &node],
                )
                .await?;
                let Some(claimed) = claimed else {
                    continue;
                };
                execute(
                    &tx,
                    "UPDATE customers SET last_claim = nextval('customer_claims') WHERE id = $1",
                    &[&customer_id],
                )
                .await?;
                let record = run_from_row(&claimed)?;
                tx.commit().await.pg()?;
                return Ok(Some(record));
            }
        })
    }

    fn renew_lease(
        &self,
        run_id: &str,
        owner: &str,
        epoch: i64,
        lease: Duration,
    ) -> StoreResult<bool> {
        let (run_id, owner) = (run_id.to_owned(), owner.to_owned());
        let lease_ms = duration_ms(lease);
        self.call(move |c| async move {
            let changed = execute(
                &c,
                "UPDATE runs SET lease_expires_at = qodify_now_ms() + $4 \
                 WHERE id = $1 AND lease_owner = $2 AND epoch = $3 AND state = 'running'",
                &[&run_id, &owner, &epoch, &lease_ms],
            )
            .await?;
            Ok(changed > 0)
        })
    }

    fn set_progress(
        &self,
        run_id: &str,
        epoch: i64,
        percent: f32,
        message: &str,
    ) -> StoreResult<bool> {
        // NaN keeps the previous value.
        let percent = (!percent.is_nan()).then(|| f64::from(percent.clamp(0.0, 100.0)));
        let (run_id, message) = (run_id.to_owned(), clean(message).into_owned());
        self.call_relaxed(move |c| async move {
            let changed = execute(
                &c,
                "UPDATE runs SET progress = COALESCE($3, progress), message = $4 \
                 WHERE id = $1 AND epoch = $2 AND state = 'running'",
                &[&run_id, &epoch, &percent, &message],
            )
            .await?;
            Ok(changed > 0)
        })
    }

    fn set_insight(
        &self,
        run_id: &str,
        epoch: i64,
        insight: &serde_json::Value,
    ) -> StoreResult<bool> {
        let (run_id, insight) = (run_id.to_owned(), clean_json(insight));
        self.call_relaxed(move |c| async move {
            let changed = execute(
                &c,
                "UPDATE runs SET insight = $3 WHERE id = $1 AND epoch = $2 AND state = 'running'",
                &[&run_id, &epoch, &insight],
            )
            .await?;
            Ok(changed > 0)
        })
    }

    fn set_backup_id(&self, run_id: &str, epoch: i64, backup_id: &str) -> StoreResult<bool> {
        let (run_id, backup_id) = (run_id.to_owned(), backup_id.to_owned());
        self.call(move |c| async move {
            let changed = execute(
                &c,
                "UPDATE runs SET backup_id = $3 WHERE id = $1 AND epoch = $2 AND state = 'running'",
                &[&run_id, &epoch, &backup_id],
            )
            .await?;
            Ok(changed > 0)
        })
    }

    fn finish_run(&self, run_id: &str, epoch: i64, finish: &RunFinish) -> StoreResult<bool> {
        if finish.state.is_active() {
            return Err(StoreError::Db(format!(
                "cannot finish run {run_id} as {}: not a final state",
                finish.state
            )));
        }
        let run_id = run_id.to_owned();
        let state = state_str(finish.state);
        let error = clean_opt(finish.error.as_deref());
        let backup_id = finish.backup_id.clone();
        let (now, _) = now();
        self.call(move |c| async move {
            // The run's end wakes its customer's node: a run queued behind it (or behind a CLI
            // run) may go now.
            let ended = query(
                &c,
                "WITH ended AS (\
                   UPDATE runs SET state = $3, finished_at = $4::text, error = $5, \
                   backup_id = COALESCE($6, backup_id), \
                   duration_ms = CASE WHEN started_at IS NULL THEN NULL ELSE GREATEST(0, \
                       round(extract(epoch FROM ($4::text::timestamptz - started_at::timestamptz)) \
                             * 1000)::bigint) END, \
                   lease_owner = NULL, lease_expires_at = NULL \
                   WHERE id = $1 AND epoch = $2 AND state = 'running' RETURNING customer_id) \
                 SELECT qodify_wake(customer_id, 'ended:' || $1::text)::text FROM ended",
                &[&run_id, &epoch, &state, &now, &error, &backup_id],
            )
            .await?;
            Ok(!ended.is_empty())
        })
    }

    fn request_cancel(&self, run_id: &str) -> StoreResult<Option<RunRecord>> {
        let run_id = run_id.to_owned();
        self.call(move |mut c| async move {
            let tx = c.transaction().await.pg()?;
            let Some(row) = query_opt(
                &tx,
                &format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = $1 FOR UPDATE"),
                &[&run_id],
            )
            .await?
            else {
                return Ok(None);
            };
            let run = run_from_row(&row)?;
            let row = match run.state {
                RunState::Queued => {
                    let (now, _) = now();
                    query_opt(
                        &tx,
                        &format!(
                            "UPDATE runs SET state = 'cancelled', finished_at = $2, error = $3 \
                             WHERE id = $1 RETURNING {RUN_COLUMNS}"
                        ),
                        &[&run_id, &now, &CANCELLED_BEFORE_START],
                    )
                    .await?
                }
                RunState::Running => {
                    query_opt(
                        &tx,
                        &format!(
                            "UPDATE runs SET cancel_requested = true WHERE id = $1 \
                             RETURNING {RUN_COLUMNS}"
                        ),
                        &[&run_id],
                    )
                    .await?
                }
                _ => return Ok(Some(run)),
            };
            let record = row
                .map(|row| run_from_row(&row))
                .transpose()?
                .ok_or_else(|| StoreError::Db(format!("run {run_id} vanished")))?;
            // The node running it stops it at once; a queued run's end frees its customer.
            wake(&tx, &record.customer_id, &format!("cancel:{run_id}")).await?;
            tx.commit().await.pg()?;
            Ok(Some(record))
        })
    }

    fn recover_interrupted(&self, owner: &str) -> StoreResult<Vec<RunRecord>> {
        self.interrupt_running(Some(owner), INTERRUPTED)
    }

    fn expire_leases(&self) -> StoreResult<Vec<RunRecord>> {
        self.interrupt_running(None, LEASE_EXPIRED)
    }

    fn annotate_run(&self, run_id: &str, error: &str) -> StoreResult<()> {
        let (run_id, error) = (run_id.to_owned(), clean(error).into_owned());
        self.call(move |c| async move {
            execute(
                &c,
                "UPDATE runs SET error = $2 WHERE id = $1 AND state = 'interrupted'",
                &[&run_id, &error],
            )
            .await?;
            Ok(())
        })
    }

    fn append_event(&self, run_id: &str, name: &str, data: &serde_json::Value) -> StoreResult<u64> {
        self.append(run_id, None, name, data)?.ok_or_else(|| {
            StoreError::Db(format!("cannot add an event to run {run_id}: no such run"))
        })
    }

    fn append_event_fenced(
        &self,
        run_id: &str,
        epoch: i64,
        name: &str,
        data: &serde_json::Value,
    ) -> StoreResult<Option<u64>> {
        self.append(run_id, Some(epoch), name, data)
    }

    fn listen_events(&self, on_event: EventNotice) -> bool {
        let Some(runtime) = &self.runtime else {
            return false;
        };
        let (config, target) = (self.config.clone(), self.target.clone());
        runtime.spawn(async move {
            let on_notice = |payload: &str| {
                if payload.is_empty() {
                    on_event(None);
                    return;
                }
                match serde_json::from_str::<super::StoredEvent>(payload) {
                    Ok(event) => on_event(Some(event)),
                    Err(e) => tracing::warn!("an event notification that is not one: {e}"),
                }
            };
            listen_forever(&config, &target, &[EVENTS_CHANNEL], &on_notice).await;
        });
        true
    }

    fn ask_approval(
        &self,
        run_id: &str,
        epoch: i64,
        request: &serde_json::Value,
    ) -> StoreResult<bool> {
        let (run_id, request) = (run_id.to_owned(), clean_json(request));
        self.call(move |c| async move {
            let asked = execute(
                &c,
                "INSERT INTO approvals (run_id, request, decision) \
                 SELECT id, $3::jsonb, NULL::jsonb FROM runs \
                 WHERE id = $1 AND epoch = $2::bigint AND state = 'running' \
                 ON CONFLICT (run_id) DO UPDATE SET request = excluded.request, decision = NULL",
                &[&run_id, &epoch, &request],
            )
            .await?;
            Ok(asked > 0)
        })
    }

    fn approval(&self, run_id: &str) -> StoreResult<Option<ApprovalRecord>> {
        let run_id = run_id.to_owned();
        self.call(move |c| async move {
            let row = query_opt(
                &c,
                "SELECT request, decision FROM approvals WHERE run_id = $1",
                &[&run_id],
            )
            .await?;
            row.map(|row| {
                Ok(ApprovalRecord {
                    request: col(&row, 0)?,
                    decision: col(&row, 1)?,
                })
            })
            .transpose()
        })
    }

    fn decide_approval(&self, run_id: &str, decision: &serde_json::Value) -> StoreResult<Decided> {
        let (run_id, decision) = (run_id.to_owned(), clean_json(decision));
        self.call(move |mut c| async move {
            let tx = c.transaction().await.pg()?;
            let row = query_opt(
                &tx,
                "SELECT request, decision IS NOT NULL FROM approvals WHERE run_id = $1 FOR UPDATE",
                &[&run_id],
            )
            .await?;
            let outcome = match row {
                None => Decided::NotWaiting,
                Some(row) if col::<bool>(&row, 1)? => Decided::AlreadyDecided,
                Some(row) => {
                    execute(
                        &tx,
                        "UPDATE approvals SET decision = $2 WHERE run_id = $1",
                        &[&run_id, &decision],
                    )
                    .await?;
                    Decided::Recorded(col(&row, 0)?)
                }
            };
            tx.commit().await.pg()?;
            Ok(outcome)
        })
    }

    fn clear_approval(&self, run_id: &str) -> StoreResult<()> {
        let run_id = run_id.to_owned();
        self.call(move |c| async move {
            execute(&c, "DELETE FROM approvals WHERE run_id = $1", &[&run_id]).await?;
            Ok(())
        })
    }

    fn schedule_slots(&self, customer_id: Option<&str>) -> StoreResult<Vec<ScheduleSlot>> {
        let customer_id = customer_id.map(str::to_owned);
        self.call(move |c| async move {
            query(
                &c,
                "SELECT customer_id, pipeline, since_ms, last_slot_ms, outcome, run_id, reason, at \
                 FROM schedule_slots WHERE $1::text IS NULL OR customer_id = $1 \
                 ORDER BY customer_id, pipeline",
                &[&customer_id],
            )
            .await?
            .iter()
            .map(slot_row)
            .collect()
        })
    }

    fn schedule_seen(
        &self,
        customer_id: &str,
        pipeline: &str,
        since_ms: i64,
    ) -> StoreResult<ScheduleSlot> {
        let (customer_id, pipeline) = (customer_id.to_owned(), pipeline.to_owned());
        self.call(move |c| async move {
            execute(
                &c,
                "INSERT INTO schedule_slots (customer_id, pipeline, since_ms) VALUES ($1, $2, $3) \
                 ON CONFLICT (customer_id, pipeline) DO NOTHING",
                &[&customer_id, &pipeline, &since_ms],
            )
            .await?;
            let rows = query(
                &c,
                "SELECT customer_id, pipeline, since_ms, last_slot_ms, outcome, run_id, reason, at \
                 FROM schedule_slots WHERE customer_id = $1 AND pipeline = $2",
                &[&customer_id, &pipeline],
            )
            .await?;
            match rows.first() {
                Some(row) => slot_row(row),
                None => Err(StoreError::UnknownCustomer(customer_id)),
            }
        })
    }

    fn record_slot(&self, slot: &ScheduleSlot, only_if_newer: bool) -> StoreResult<bool> {
        let slot = slot.clone();
        self.call(move |c| async move {
            let changed = execute(
                &c,
                "UPDATE schedule_slots SET last_slot_ms = $3, outcome = $4, run_id = $5, \
                   reason = $6, at = $7 \
                 WHERE customer_id = $1 AND pipeline = $2 AND (CASE WHEN $8 \
                   THEN last_slot_ms IS NULL OR last_slot_ms < $3 \
                   ELSE last_slot_ms = $3 END)",
                &[
                    &slot.customer_id,
                    &slot.pipeline,
                    &slot.last_slot_ms,
                    &slot.outcome,
                    &slot.run_id,
                    &slot.reason,
                    &slot.at,
                    &only_if_newer,
                ],
            )
            .await?;
            Ok(changed > 0)
        })
    }

    fn customer_schedules(&self, customer_id: Option<&str>) -> StoreResult<Vec<CustomerSchedule>> {
        let customer_id = customer_id.map(str::to_owned);
        self.call(move |c| async move {
            query(
                &c,
                "SELECT customer_id, pipeline, spec FROM customer_schedules \
                 WHERE $1::text IS NULL OR customer_id = $1 ORDER BY customer_id, pipeline",
                &[&customer_id],
            )
            .await?
            .iter()
            .map(|row| {
                Ok(CustomerSchedule {
                    customer_id: col(row, 0)?,
                    pipeline: col(row, 1)?,
                    spec: col(row, 2)?,
                })
            })
            .collect()
        })
    }

    fn set_customer_schedule(
        &self,
        customer_id: &str,
        pipeline: &str,
        spec: Option<&serde_json::Value>,
    ) -> StoreResult<()> {
        let (customer_id, pipeline) = (customer_id.to_owned(), pipeline.to_owned());
        let spec = spec.map(clean_json);
        self.call(move |c| async move {
            match spec {
                Some(spec) => {
                    let set = execute(
                        &c,
                        "INSERT INTO customer_schedules (customer_id, pipeline, spec) \
                         SELECT id, $2, $3::jsonb FROM customers WHERE id = $1 \
                         ON CONFLICT (customer_id, pipeline) DO UPDATE SET spec = excluded.spec",
                        &[&customer_id, &pipeline, &spec],
                    )
                    .await?;
                    if set == 0 {
                        return Err(StoreError::UnknownCustomer(customer_id));
                    }
                }
                None => {
                    execute(
                        &c,
                        "DELETE FROM customer_schedules WHERE customer_id = $1 AND pipeline = $2",
                        &[&customer_id, &pipeline],
                    )
                    .await?;
                }
            }
            Ok(())
        })
    }

    fn events(&self, run_id: &str, after_seq: u64) -> StoreResult<Vec<EventRecord>> {
        let run_id = run_id.to_owned();
        let after = to_i64(after_seq);
        self.call(move |c| async move {
            query(
                &c,
                "SELECT run_id, seq, name, data, at FROM events \
                 WHERE run_id = $1 AND seq > $2 ORDER BY seq",
                &[&run_id, &after],
            )
            .await?
            .iter()
            .map(|row| {
                Ok(EventRecord {
                    run_id: col(row, 0)?,
                    seq: col_u64(row, 1)?,
                    name: col(row, 2)?,
                    data: col(row, 3)?,
                    at: col(row, 4)?,
                })
            })
            .collect()
        })
    }

    fn record_backup(&self, b: &BackupRecord) -> StoreResult<()> {
        let created_ms = unix_ms(&b.created_at);
        let b = BackupRecord {
            triggered_by: clean_opt(b.triggered_by.as_deref()),
            note: clean_opt(b.note.as_deref()),
            ..b.clone()
        };
        self.call(move |c| async move {
            execute(
                &c,
                "INSERT INTO backups (run_id, customer_id, backup_id, kind, size, duration_ms, \
                 result, triggered_by, created_at, created_ms, note) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                 ON CONFLICT (run_id) DO UPDATE SET customer_id = EXCLUDED.customer_id, \
                 backup_id = EXCLUDED.backup_id, kind = EXCLUDED.kind, size = EXCLUDED.size, \
                 duration_ms = EXCLUDED.duration_ms, result = EXCLUDED.result, \
                 triggered_by = EXCLUDED.triggered_by, created_at = EXCLUDED.created_at, \
                 created_ms = EXCLUDED.created_ms, note = EXCLUDED.note",
                &[
                    &b.run_id,
                    &b.customer_id,
                    &b.backup_id,
                    &b.kind,
                    &b.size.map(to_i64),
                    &b.duration_ms.map(to_i64),
                    &b.result,
                    &b.triggered_by,
                    &b.created_at,
                    &created_ms,
                    &b.note,
                ],
            )
            .await?;
            Ok(())
        })
    }

    fn backups(
        &self,
        customer_id: &str,
        limit: usize,
        before: Option<&str>,
    ) -> StoreResult<Vec<BackupRecord>> {
        let customer_id = customer_id.to_owned();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let before = before.map(str::to_owned);
        self.call(move |c| async move {
            // The cursor line's sort key; lines strictly after it in the listing order follow.
            // An unknown cursor gives an empty page rather than the first one again.
            query(
                &c,
                &format!(
                    "SELECT {BACKUP_COLUMNS} FROM backups WHERE customer_id = $1 \
                     AND ($3::text IS NULL OR (COALESCE(created_ms, -1), created_at, run_id) < \
                          (SELECT COALESCE(created_ms, -1), created_at, run_id FROM backups \
                           WHERE customer_id = $1 AND run_id = $3::text)) \
                     ORDER BY COALESCE(created_ms, -1) DESC, created_at DESC, run_id DESC \
                     LIMIT $2"
                ),
                &[&customer_id, &limit, &before],
            )
            .await?
            .iter()
            .map(|row| backup_from_row(row, 0))
            .collect()
        })
    }

    fn record_drill(&self, d: &DrillRecord) -> StoreResult<()> {
        let drilled_ms = unix_ms(&d.drilled_at).unwrap_or(0);
        let d = DrillRecord {
            reason: clean_opt(d.reason.as_deref()),
            ..d.clone()
        };
        self.call(move |c| async move {
            execute(
                &c,
                "INSERT INTO drills (run_id, customer_id, backup_id, restorable, reason, \
                 drilled_at, drilled_ms) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (run_id) DO UPDATE SET customer_id = EXCLUDED.customer_id, \
                 backup_id = EXCLUDED.backup_id, restorable = EXCLUDED.restorable, \
                 reason = EXCLUDED.reason, drilled_at = EXCLUDED.drilled_at, \
                 drilled_ms = EXCLUDED.drilled_ms",
                &[
                    &d.run_id,
                    &d.customer_id,
                    &d.backup_id,
                    &d.restorable,
                    &d.reason,
                    &d.drilled_at,
                    &drilled_ms,
                ],
            )
            .await?;
            Ok(())
        })
    }

    fn drills(&self, customer_id: &str, backup_ids: &[String]) -> StoreResult<Vec<DrillRecord>> {
        let customer_id = customer_id.to_owned();
        let backup_ids = backup_ids.to_vec();
        self.call(move |c| async move {
            query(
                &c,
                "SELECT DISTINCT ON (backup_id) customer_id, backup_id, run_id, restorable, \
                 reason, drilled_at FROM drills WHERE customer_id = $1 AND backup_id = ANY($2) \
                 ORDER BY backup_id, drilled_ms DESC, run_id DESC",
                &[&customer_id, &backup_ids],
            )
            .await?
            .iter()
            .map(|row| {
                Ok(DrillRecord {
                    customer_id: col(row, 0)?,
                    backup_id: col(row, 1)?,
                    run_id: col(row, 2)?,
                    restorable: col(row, 3)?,
                    reason: col(row, 4)?,
                    drilled_at: col(row, 5)?,
                })
            })
            .collect()
        })
    }

    fn last_good_drills(&self) -> StoreResult<Vec<(String, i64)>> {
        self.call(move |c| async move {
            query(
                &c,
                "SELECT customer_id, max(drilled_ms) FROM drills WHERE restorable \
                 GROUP BY customer_id ORDER BY customer_id",
                &[],
            )
            .await?
            .iter()
            .map(|row| Ok((col(row, 0)?, col(row, 1)?)))
            .collect()
        })
    }

    fn audit(&self, entry: &AuditEntry) -> StoreResult<()> {
        let entry = AuditEntry {
            actor: clean_opt(entry.actor.as_deref()),
            detail: clean_json(&entry.detail),
            ..entry.clone()
        };
        self.call(move |c| async move {
            execute(
                &c,
                "INSERT INTO audit (at, actor, action, customer_id, run_id, detail) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[
                    &entry.at,
                    &entry.actor,
                    &entry.action,
                    &entry.customer_id,
                    &entry.run_id,
                    &entry.detail,
                ],
            )
            .await?;
            Ok(())
        })
    }

    fn audit_log(&self, customer_id: Option<&str>, limit: usize) -> StoreResult<Vec<AuditEntry>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let customer = customer_id.map(str::to_owned);
        self.call(move |c| async move {
            // Two statements rather than `$1 IS NULL OR …`, which would keep a generic plan off
            // the index.
            let rows = match &customer {
                Some(customer) => {
                    query(
                        &c,
                        &format!(
                            "SELECT {AUDIT_COLUMNS} FROM audit WHERE customer_id = $1 \
                             ORDER BY id DESC LIMIT $2"
                        ),
                        &[customer, &limit],
                    )
                    .await?
                }
                None => {
                    query(
                        &c,
                        &format!("SELECT {AUDIT_COLUMNS} FROM audit ORDER BY id DESC LIMIT $1"),
                        &[&limit],
                    )
                    .await?
                }
            };
            rows.iter().map(|row| audit_from_row(row, 0)).collect()
        })
    }

    fn backup_summaries(&self) -> StoreResult<Vec<BackupSummary>> {
        self.call(|c| async move {
            query(&c, BACKUP_SUMMARIES_SQL, &[])
                .await?
                .iter()
                .map(|row| {
                    Ok(BackupSummary {
                        customer_id: col(row, 0)?,
                        domain: col(row, 1)?,
                        last: match col::<Option<String>>(row, 2)? {
                            Some(backup_id) => Some(LastBackup {
                                backup_id,
                                size: col_opt_u64(row, 3)?,
                                made_ms: col(row, 4)?,
                            }),
                            None => None,
                        },
                        present: col_u64(row, 5)?,
                        present_bytes: col_u64(row, 6)?,
                    })
                })
                .collect()
        })
    }

    fn run_durations(&self, bounds_ms: &[u64]) -> StoreResult<Vec<DurationHistogram>> {
        let bounds: Vec<i64> = bounds_ms.iter().map(|b| to_i64(*b)).collect();
        self.call(move |c| async move {
            let params: Vec<&(dyn ToSql + Sync)> =
                bounds.iter().map(|b| b as &(dyn ToSql + Sync)).collect();
            query(&c, &run_durations_sql(bounds.len()), &params)
                .await?
                .iter()
                .map(|row| {
                    Ok(DurationHistogram {
                        pipeline: col(row, 0)?,
                        result: col_state(row, 1)?,
                        count: col_u64(row, 2)?,
                        sum_ms: col_u64(row, 3)?,
                        at_most: (0..bounds.len())
                            .map(|i| col_u64(row, 4 + i))
                            .collect::<StoreResult<_>>()?,
                    })
                })
                .collect()
        })
    }

    fn run_counts(&self) -> StoreResult<Vec<(RunState, u64)>> {
        self.call(|c| async move {
            query(&c, "SELECT state, count(*) FROM runs GROUP BY state", &[])
                .await?
                .iter()
                .map(|row| Ok((col_state(row, 0)?, col_u64(row, 1)?)))
                .collect()
        })
    }

    // What the web console reads (issue 12).

    fn customer_overviews(&self, query_: &CustomerQuery) -> StoreResult<Vec<CustomerOverview>> {
        let text = query_
            .text
            .as_deref()
            .filter(|t| !t.is_empty())
            .map(str::to_ascii_lowercase);
        let after = query_.after_domain.clone().unwrap_or_default();
        let limit = i64::try_from(query_.limit).unwrap_or(i64::MAX);
        self.call(move |c| async move {
            query(&c, CUSTOMER_OVERVIEWS_SQL, &[&text, &after, &limit])
                .await?
                .iter()
                .map(customer_overview_from_row)
                .collect()
        })
    }

    fn runs_page(&self, query_: &RunQuery) -> StoreResult<Vec<RunRecord>> {
        let (sql, filtered) = runs_page_sql(query_);
        self.call(
            move |c| async move { runs_from_rows(&query_filtered(&c, &sql, &filtered).await?) },
        )
    }

    fn audit_page(&self, query_: &AuditQuery) -> StoreResult<Vec<AuditRow>> {
        let (sql, filtered) = audit_page_sql(query_);
        self.call(move |c| async move {
            query_filtered(&c, &sql, &filtered)
                .await?
                .iter()
                .map(|row| {
                    Ok(AuditRow {
                        id: col(row, 0)?,
                        entry: audit_from_row(row, 1)?,
                    })
                })
                .collect()
        })
    }

    fn add_token(&self, token: &TokenRecord, hash: &str) -> StoreResult<()> {
        let token = token.clone();
        let hash = hash.to_owned();
        self.call(move |c| async move {
            let stmt = c
                .prepare_cached(
                    "INSERT INTO tokens (name, role, hash, created_at, created_by) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .await
                .pg()?;
            let res = c
                .execute(
                    &stmt,
                    &[
                        &token.name,
                        &token.role.as_str(),
                        &hash,
                        &token.created_at,
                        &token.created_by,
                    ],
                )
                .await;
            match res {
                Ok(_) => Ok(()),
                Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                    Err(StoreError::TokenExists(token.name))
                }
                Err(e) => Err(StoreError::Db(pg_message(&e))),
            }
        })
    }

    fn tokens(&self) -> StoreResult<Vec<TokenRecord>> {
        self.call(|c| async move {
            query(
                &c,
                &format!("SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY name"),
                &[],
            )
            .await?
            .iter()
            .map(token_from_row)
            .collect()
        })
    }

    fn use_token(&self, hash: &str, now: &str, now_unix: i64) -> StoreResult<Option<TokenRecord>> {
        let (hash, now) = (hash.to_owned(), now.to_owned());
        self.call(move |c| async move {
            // At most one write a minute per token: reading the API must not mean writing.
            execute(
                &c,
                "UPDATE tokens SET last_used_at = $2, last_used_unix = $3::bigint WHERE hash = $1 \
                 AND (last_used_unix IS NULL OR last_used_unix <= $3::bigint - 60)",
                &[&hash, &now, &now_unix],
            )
            .await?;
            query_opt(
                &c,
                &format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE hash = $1"),
                &[&hash],
            )
            .await?
            .map(|row| token_from_row(&row))
            .transpose()
        })
    }

    fn revoke_token(&self, name: &str) -> StoreResult<bool> {
        let name = name.to_owned();
        self.call(move |mut c| async move {
            let tx = c.transaction().await.pg()?;
            let removed = execute(&tx, "DELETE FROM tokens WHERE name = $1", &[&name]).await?;
            execute(&tx, "DELETE FROM sessions WHERE principal = $1", &[&name]).await?;
            tx.commit().await.pg()?;
            Ok(removed > 0)
        })
    }

    fn add_session(&self, session: &SessionRecord, now_unix: i64) -> StoreResult<()> {
        let session = session.clone();
        self.call(move |c| async move {
            execute(
                &c,
                "DELETE FROM sessions WHERE expires_unix <= $1",
                &[&now_unix],
            )
            .await?;
            execute(
                &c,
                "INSERT INTO sessions (hash, principal, role, csrf, created_at, expires_unix) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[
                    &session.hash,
                    &session.principal,
                    &session.role.as_str(),
                    &session.csrf,
                    &session.created_at,
                    &session.expires_unix,
                ],
            )
            .await?;
            Ok(())
        })
    }

    fn session(&self, hash: &str, now_unix: i64) -> StoreResult<Option<SessionRecord>> {
        let hash = hash.to_owned();
        self.call(move |c| async move {
            query_opt(
                &c,
                "SELECT hash, principal, role, csrf, created_at, expires_unix FROM sessions \
                 WHERE hash = $1 AND expires_unix > $2",
                &[&hash, &now_unix],
            )
            .await?
            .map(|row| {
                Ok(SessionRecord {
                    hash: col(&row, 0)?,
                    principal: col(&row, 1)?,
                    role: col_role(&row, 2)?,
                    csrf: col(&row, 3)?,
                    created_at: col(&row, 4)?,
                    expires_unix: col(&row, 5)?,
                })
            })
            .transpose()
        })
    }

    fn end_session(&self, hash: &str) -> StoreResult<bool> {
        let hash = hash.to_owned();
        self.call(move |c| async move {
            Ok(execute(&c, "DELETE FROM sessions WHERE hash = $1", &[&hash]).await? > 0)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Barrier, Mutex};

    use serde_json::json;

    use super::*;
    use crate::store::suite::{self, HOUR, SuiteStore, anyone, customers, finished, new_run};

    /// The server the tests use: the local one, as `postgres` with trust auth, unless
    /// `QODIFY_TEST_PG` names another (`postgres://user@host:port`, no database).
    fn server() -> String {
        std::env::var("QODIFY_TEST_PG")
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432".into())
    }

    /// Runs `sql` in the server's `postgres` database. Tests run on plain threads, so a
    /// throwaway runtime may block on it.
    fn admin(sql: &str) -> Result<(), tokio_postgres::Error> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let mut config: tokio_postgres::Config =
                format!("{}/postgres", server()).parse().unwrap();
            config.connect_timeout(Duration::from_secs(5));
            let (client, connection) = config.connect(NoTls).await?;
            let connection = tokio::spawn(connection);
            let result = client.batch_execute(sql).await;
            drop(client);
            let _ = connection.await;
            result
        })
    }

    static DATABASES: AtomicUsize = AtomicUsize::new(0);

    /// A database of one test's own, dropped after it. Each test gets a new, empty one (`CREATE
    /// DATABASE` takes some 50 ms, the migrations a few more): every test then starts as a host
    /// does on its first start, and tests running at once share nothing, which per-test schemas
    /// in one database would not give (the advisory locks are per database).
    struct TestDb {
        name: String,
        url: String,
    }

    impl TestDb {
        /// `None` (the test is skipped, with a message) when the server cannot be reached,
        /// except under `CI`, which fails instead.
        fn create() -> Option<Self> {
            let name = format!(
                "qodify_store_{}_{}",
                std::process::id(),
                DATABASES.fetch_add(1, Ordering::SeqCst)
            );
            if let Err(e) = admin(&format!("CREATE DATABASE {name}")) {
                let why = format!(
                    "PostgreSQL at {} cannot create a test database: {}",
                    server(),
                    pg_message(&e)
                );
                assert!(
                    std::env::var_os("CI").is_none(),
                    "{why}; CI runs the store suite on PostgreSQL too"
                );
                eprintln!("skipping a PostgreSQL store test: {why}");
                return None;
            }
            Some(Self {
                url: format!("{}/{name}", server()),
                name,
            })
        }
    }

    impl Drop for TestDb {
        fn drop(&mut self) {
            let _ = admin(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }

    impl SuiteStore for PgStore {
        fn set_started_at(&self, run_id: &str, at: &str) {
            let (run_id, at) = (run_id.to_owned(), at.to_owned());
            self.call(move |c| async move {
                execute(
                    &c,
                    "UPDATE runs SET started_at = $2 WHERE id = $1",
                    &[&run_id, &at],
                )
                .await
            })
            .unwrap();
        }

        fn delete_run(&self, run_id: &str) {
            let run_id = run_id.to_owned();
            self.call(move |c| async move {
                execute(&c, "DELETE FROM runs WHERE id = $1", &[&run_id]).await
            })
            .unwrap();
        }

        fn stored_sessions(&self) -> Vec<String> {
            self.call(|c| async move {
                query(&c, "SELECT hash FROM sessions", &[])
                    .await?
                    .iter()
                    .map(|row| col(row, 0))
                    .collect()
            })
            .unwrap()
        }
    }

    /// A store on a database of its own.
    struct Fixture {
        // Before the database: the store's connections close first.
        store: PgStore,
        db: TestDb,
    }

    impl std::ops::Deref for Fixture {
        type Target = PgStore;
        fn deref(&self) -> &PgStore {
            &self.store
        }
    }

    fn fixture() -> Option<Fixture> {
        let db = TestDb::create()?;
        let store = PgStore::open(&db.url).unwrap();
        Some(Fixture { store, db })
    }

    suite::store_suite!(fixture);

    /// `n` stores on one database, as `n` hosts would have.
    fn hosts(db: &TestDb, n: usize) -> Vec<Arc<PgStore>> {
        (0..n)
            .map(|_| Arc::new(PgStore::open(&db.url).unwrap()))
            .collect()
    }

    #[test]
    fn migrations_are_applied_once_under_concurrent_opens() {
        let Some(db) = TestDb::create() else { return };
        const N: usize = 8;
        let barrier = Arc::new(Barrier::new(N));
        let opened: Vec<_> = (0..N)
            .map(|i| {
                let (url, barrier) = (db.url.clone(), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    barrier.wait();
                    let store = PgStore::open(&url)?;
                    store.upsert_customer(&format!("c{i}"), &format!("c{i}.example.com"), None)
                })
            })
            .collect();
        for handle in opened {
            handle.join().unwrap().unwrap();
        }
        let store = PgStore::open(&db.url).unwrap();
        let applied: Vec<(i32, String)> = store
            .call(|c| async move {
                query(
                    &c,
                    "SELECT version, name FROM qodify_migrations ORDER BY version",
                    &[],
                )
                .await?
                .iter()
                .map(|row| Ok((col(row, 0)?, col(row, 1)?)))
                .collect()
            })
            .unwrap();
        let expected: Vec<(i32, String)> = (1..)
            .zip(MIGRATIONS)
            .map(|(v, (name, _))| (v, (*name).to_owned()))
            .collect();
        assert_eq!(applied, expected);
        assert_eq!(store.all_customers().unwrap().len(), N);

        // A database from a newer host is refused rather than misread.
        let next = i32::try_from(MIGRATIONS.len()).unwrap() + 1;
        store
            .call(move |c| async move {
                execute(
                    &c,
                    "INSERT INTO qodify_migrations (version, name) VALUES ($1, 'from-a-newer-host')",
                    &[&next],
                )
                .await
            })
            .unwrap();
        match PgStore::open(&db.url) {
            Err(StoreError::Db(e)) => assert!(e.contains("newer than this host knows"), "{e}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn one_of_twenty_concurrent_enqueues_from_separate_hosts_gets_in() {
        let Some(db) = TestDb::create() else { return };
        const N: usize = 20;
        let stores = hosts(&db, N);
        customers(&*stores[0], &["c1"]);
        let barrier = Arc::new(Barrier::new(N));
        let tried: Vec<_> = stores
            .iter()
            .enumerate()
            .map(|(i, store)| {
                let (store, barrier) = (Arc::clone(store), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    barrier.wait();
                    store.enqueue_run(&new_run(&format!("r{i}"), "c1"), false)
                })
            })
            .collect();
        let mut accepted = Vec::new();
        let mut busy = 0;
        for handle in tried {
            match handle.join().unwrap() {
                Ok(run) => accepted.push(run.id),
                Err(StoreError::Busy { run_id, .. }) => {
                    busy += 1;
                    // Busy names the one that got in, never a run that is not there.
                    assert!(stores[0].run(&run_id).unwrap().is_some(), "{run_id}");
                }
                Err(e) => panic!("unexpected error: {e}"),
            }
        }
        assert_eq!(accepted.len(), 1, "accepted: {accepted:?}");
        assert_eq!(busy, N - 1);
        let runs = stores[0].runs(&RunFilter::default()).unwrap();
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].id, accepted[0]);
    }

    #[test]
    fn concurrent_claims_from_several_hosts_take_each_run_once_and_one_per_customer() {
        let Some(db) = TestDb::create() else { return };
        const HOSTS: usize = 6;
        let stores = hosts(&db, HOSTS);
        customers(&*stores[0], &["a", "b", "c"]);
        let mut queued = Vec::new();
        for customer in ["a", "b", "c"] {
            for i in 0..4 {
                let id = format!("{customer}{i}");
                stores[0]
                    .enqueue_run(&new_run(&id, customer), true)
                    .unwrap();
                queued.push(id);
            }
        }
        let total = queued.len();
        let claimed = Arc::new(Mutex::new(Vec::new()));
        let barrier = Arc::new(Barrier::new(HOSTS));
        let workers: Vec<_> = stores
            .iter()
            .enumerate()
            .map(|(i, store)| {
                let (store, claimed, barrier) = (
                    Arc::clone(store),
                    Arc::clone(&claimed),
                    Arc::clone(&barrier),
                );
                std::thread::spawn(move || {
                    barrier.wait();
                    let host = format!("host-{i}");
                    while claimed.lock().unwrap().len() < total {
                        let Some(run) = store.claim_next(&anyone(&host), HOUR).unwrap() else {
                            std::thread::sleep(Duration::from_millis(2));
                            continue;
                        };
                        assert_eq!(run.lease_owner.as_deref(), Some(host.as_str()));
                        // While it runs, its customer has nothing else running.
                        let running = store
                            .runs_page(&RunQuery {
                                customer_id: Some(run.customer_id.clone()),
                                states: vec![RunState::Running],
                                before: None,
                                limit: 10,
                            })
                            .unwrap();
                        assert_eq!(running.len(), 1, "{running:?}");
                        claimed.lock().unwrap().push(run.id.clone());
                        std::thread::sleep(Duration::from_millis(3));
                        assert!(
                            store
                                .finish_run(&run.id, run.epoch, &finished(RunState::Succeeded))
                                .unwrap()
                        );
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.join().unwrap();
        }
        let mut claimed = claimed.lock().unwrap().clone();
        claimed.sort();
        queued.sort();
        assert_eq!(claimed, queued, "each run claimed exactly once");
    }

    #[test]
    fn concurrent_appends_to_one_run_are_numbered_without_gaps_or_duplicates() {
        let Some(f) = fixture() else { return };
        customers(&*f, &["c1"]);
        f.enqueue_run(&new_run("r1", "c1"), false).unwrap();
        let store = Arc::new(f.store);
        let appended: Vec<_> = (0..8)
            .map(|t| {
                let store = Arc::clone(&store);
                std::thread::spawn(move || {
                    (0..25)
                        .map(|i| {
                            store
                                .append_event("r1", "backup-progress", &json!({ "t": t, "i": i }))
                                .unwrap()
                        })
                        .collect::<Vec<u64>>()
                })
            })
            .collect();
        let mut seqs: Vec<u64> = appended
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=200).collect::<Vec<u64>>());
        let stored: Vec<u64> = store
            .events("r1", 0)
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(stored, seqs);
        drop(store);
        drop(f.db);
    }

    #[test]
    fn only_events_and_progress_commit_without_waiting_for_the_disk() {
        let Some(db) = TestDb::create() else { return };
        // Options the URL gives are kept on both kinds of connection.
        let store = PgStore::open(&format!("{}?options=-c%20lock_timeout%3D7s", db.url)).unwrap();
        let show = |relaxed: bool| {
            let sql = "SELECT current_setting('synchronous_commit') || ' ' || \
                       current_setting('lock_timeout')";
            let f =
                move |c: Object| async move { col::<String>(&query(&c, sql, &[]).await?[0], 0) };
            if relaxed {
                store.call_relaxed(f).unwrap()
            } else {
                store.call(f).unwrap()
            }
        };
        assert_eq!(show(false), "on 7s");
        assert_eq!(show(true), "off 7s");
    }

    #[test]
    fn nul_characters_in_free_text_are_stored_as_replacement_characters() {
        let Some(store) = fixture() else { return };
        customers(&*store, &["c1"]);
        let mut run = new_run("r1", "c1");
        run.params.insert("note".into(), "a\0b".into());
        store.enqueue_run(&run, false).unwrap();
        let claimed = store.claim_next(&anyone("h"), HOUR).unwrap().unwrap();
        assert_eq!(claimed.params["note"], "a\u{FFFD}b");
        assert!(store.set_progress("r1", 1, 5.0, "tar: \0").unwrap());
        let seq = store
            .append_event(
                "r1",
                "backup-log",
                &json!({ "line": "x\0y", "k\0": [1, "\0"] }),
            )
            .unwrap();
        assert_eq!(
            store.events("r1", seq - 1).unwrap()[0].data,
            json!({ "line": "x\u{FFFD}y", "k\u{FFFD}": [1, "\u{FFFD}"] })
        );
        let failed = RunFinish {
            state: RunState::Failed,
            error: Some("step wrote \0".into()),
            backup_id: None,
        };
        assert!(store.finish_run("r1", claimed.epoch, &failed).unwrap());
        let run = store.run("r1").unwrap().unwrap();
        assert_eq!(run.error.as_deref(), Some("step wrote \u{FFFD}"));
        assert_eq!(run.message.as_deref(), Some("tar: \u{FFFD}"));
    }

    #[test]
    fn every_host_hears_each_stored_event_in_order_with_its_data_unless_too_large() {
        let Some(db) = TestDb::create() else { return };
        let h = hosts(&db, 2);
        let (tx, rx) = std::sync::mpsc::channel::<Option<super::super::StoredEvent>>();
        let tx = std::sync::Mutex::new(tx);
        assert!(h[0].listen_events(Arc::new(move |e| {
            let _ = tx.lock().unwrap().send(e);
        })));
        // First the listener says it connected (a `None`: look for what may have been missed).
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), None);
        h[1].upsert_customer("c1", "c1.example.com", None).unwrap();
        h[1].enqueue_run(&suite::new_run("r1", "c1"), false)
            .unwrap();
        let run = h[1]
            .claim_next(&suite::anyone("b"), suite::HOUR)
            .unwrap()
            .unwrap();
        let big = serde_json::json!({ "log": "x".repeat(10_000) });
        for i in 1..=20 {
            let data = if i == 7 {
                big.clone()
            } else {
                serde_json::json!({ "i": i })
            };
            let seq = h[1]
                .append_event_fenced("r1", run.epoch, "backup-progress", &data)
                .unwrap();
            assert_eq!(seq, Some(i));
        }
        for i in 1..=20u64 {
            let e = rx
                .recv_timeout(Duration::from_secs(10))
                .unwrap()
                .expect("an event");
            assert_eq!(
                (
                    e.run_id.as_str(),
                    e.customer_id.as_str(),
                    e.seq,
                    e.name.as_str()
                ),
                ("r1", "c1", i, "backup-progress")
            );
            if i == 7 {
                // Too large for a notification: the listener reads it from the store.
                assert_eq!(e.data, None);
            } else {
                assert_eq!(e.data, Some(serde_json::json!({ "i": i })));
            }
        }
        // A fenced-off write is neither stored nor announced.
        h[1].finish_run(
            "r1",
            run.epoch,
            &suite::finished(super::super::RunState::Succeeded),
        )
        .unwrap();
        assert_eq!(
            h[1].append_event_fenced("r1", run.epoch, "late", &serde_json::json!({}))
                .unwrap(),
            None
        );
        assert!(rx.recv_timeout(Duration::from_millis(500)).is_err());
    }

    #[test]
    fn leases_run_on_the_database_clock() {
        let Some(db) = TestDb::create() else { return };
        let h = hosts(&db, 1);
        h[0].upsert_customer("c1", "c1.example.com", None).unwrap();
        h[0].enqueue_run(&suite::new_run("r1", "c1"), false)
            .unwrap();
        h[0].claim_next(&suite::anyone("a"), Duration::from_secs(30))
            .unwrap()
            .unwrap();
        let row = h[0]
            .call(|c| async move {
                query_opt(
                    &c,
                    "SELECT lease_expires_at - qodify_now_ms() FROM runs WHERE id = 'r1'",
                    &[],
                )
                .await
            })
            .unwrap()
            .unwrap();
        let left: i64 = col(&row, 0).unwrap();
        assert!((29_000..=30_000).contains(&left), "{left}");
    }

    #[test]
    fn the_store_answers_inside_an_async_runtime_and_drops_there() {
        let Some(db) = TestDb::create() else { return };
        // One worker: a caller blocking it must not keep the store's own queries from running.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let url = db.url.clone();
        let found = runtime.block_on(async move {
            let store = PgStore::open(&url).unwrap();
            store
                .upsert_customer("c1", "one.example.com", None)
                .unwrap();
            tokio::spawn(async move {
                let found = store.customer_by_domain("ONE.example.com").unwrap();
                drop(store);
                found
            })
            .await
            .unwrap()
        });
        assert_eq!(found.unwrap().id, "c1");
    }

    #[test]
    fn an_unreachable_server_or_a_bad_url_is_a_clear_error_without_the_password() {
        // Port 1 on the loopback: nothing listens, the connection is refused at once.
        match PgStore::open("postgres://qodify:s3cret@127.0.0.1:1/state") {
            Err(StoreError::Db(e)) => {
                assert!(
                    e.contains(
                        "cannot connect to PostgreSQL at postgres://qodify@127.0.0.1:1/state"
                    ),
                    "{e}"
                );
                assert!(e.contains("check that the server runs"), "{e}");
                assert!(!e.contains("s3cret"), "{e}");
            }
            other => panic!("expected an error, got {other:?}"),
        }
        for bad in [
            "postgres://qodify:s3cret@127.0.0.1:port/state",
            "postgres://qodify:s3cret@127.0.0.1/state?sslmode=s3cret",
        ] {
            match PgStore::open(bad) {
                Err(StoreError::Db(e)) => {
                    assert!(e.contains("does not parse"), "{e}");
                    assert!(!e.contains("s3cret"), "{e}");
                }
                other => panic!("expected an error for {bad}, got {other:?}"),
            }
        }
    }

    #[test]
    fn created_times_are_read_as_sqlite_reads_them() {
        assert_eq!(unix_ms("1970-01-01T00:00:01Z"), Some(1000));
        assert_eq!(unix_ms("1970-01-01T00:00:01.0005Z"), Some(1001));
        assert_eq!(unix_ms("1970-01-01T02:00:00+02:00"), Some(0));
        assert_eq!(unix_ms("1970-01-01 00:00:02"), Some(2000));
        assert_eq!(unix_ms("1970-01-01T00:00:02.5"), Some(2500));
        assert_eq!(unix_ms("yesterday"), None);
    }
}
