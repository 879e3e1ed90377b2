//! The embedded [`Store`]: one SQLite file in the data folder (WAL mode), shared safely by the
//! service's blocking threads (one connection behind a mutex) and by other processes that open
//! the same file (SQLite's locks; every read-then-write runs in a `BEGIN IMMEDIATE`
//! transaction, so it takes the write lock up front and waits `busy_timeout` for it instead of
//! failing with `SQLITE_BUSY` when a deferred transaction tries to upgrade).
//!
//! Schema changes are numbered migrations (`migrations/NNNN_*.sql`), recorded in
//! `PRAGMA user_version`, each applied in its own immediate transaction.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::types::Type;
use rusqlite::{Connection, OptionalExtension as _, Row, TransactionBehavior, params};

use super::{
    ActiveRun, ApprovalRecord, AuditEntry, AuditQuery, AuditRow, BackupRecord, BackupSummary,
    CANCELLED_BEFORE_START, Claimant, CustomerOverview, CustomerQuery, CustomerRecord,
    CustomerSchedule, Decided, DrillRecord, DurationHistogram, EventRecord, INTERRUPTED,
    LEASE_EXPIRED, LastBackup, NewRun, NodeBeat, NodeRecord, RUNS_DEFAULT_LIMIT, RUNS_MAX_LIMIT,
    RunFilter, RunFinish, RunQuery, RunRecord, RunState, ScheduleSlot, SessionRecord, Store,
    StoreError, StoreResult, TokenRecord, duration_ms, now, parse_state, state_str, to_i64,
};
use crate::auth::Role;

/// The migrations, in order: migration N is `MIGRATIONS[N - 1]`. Append only, never edit one that
/// shipped.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_init.sql"),
    include_str!("migrations/0002_history_indexes.sql"),
    include_str!("migrations/0003_history_notes.sql"),
    include_str!("migrations/0004_metrics.sql"),
    include_str!("migrations/0005_run_insight.sql"),
    include_str!("migrations/0006_tokens_sessions.sql"),
    include_str!("migrations/0007_nodes.sql"),
    include_str!("migrations/0008_approvals.sql"),
    include_str!("migrations/0009_schedules.sql"),
    include_str!("migrations/0010_drills.sql"),
];

/// How long a statement waits for another connection's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_millis(5000);

/// The columns [`run_from_row`] reads, in its order.
const RUN_COLUMNS: &str = "id, customer_id, pipeline, params_json, triggered_by, state, \
     created_at, started_at, finished_at, error, backup_id, cancel_requested, lease_owner, \
     epoch, progress, message, insight_json, node";

/// The SQLite state store.
pub struct SqliteStore {
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating it, mode 0600, in a folder created 0700 when missing) the database at
    /// `path`, switches it to WAL and applies pending migrations.
    pub fn open(path: &Path) -> StoreResult<Self> {
        use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};

        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(|e| StoreError::Db(format!("creating {}: {e}", parent.display())))?;
        }
        // Create it ourselves so it is private from the start (SQLite would use 0644 less the
        // umask); its -wal and -shm files take the database file's mode.
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(|e| StoreError::Db(format!("opening {}: {e}", path.display())))?;
        let conn = Connection::open(path)
            .map_err(|e| StoreError::Db(format!("opening {}: {e}", path.display())))?;
        Self::setup(conn)
    }

    /// A private in-memory database (tests).
    pub fn open_in_memory() -> StoreResult<Self> {
        Self::setup(Connection::open_in_memory().db()?)
    }

    fn setup(mut conn: Connection) -> StoreResult<Self> {
        // First, so that everything below waits for other connections instead of failing.
        conn.busy_timeout(BUSY_TIMEOUT).db()?;
        // Returns the mode now in force: `memory` for an in-memory database.
        // Switching a new database to WAL needs a lock SQLite does not wait for with the busy
        // handler: several processes opening it at once retry here for as long.
        let until = std::time::Instant::now() + BUSY_TIMEOUT;
        let mode: String = loop {
            match conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0)) {
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if matches!(
                        e.code,
                        rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                    ) && std::time::Instant::now() < until =>
                {
                    std::thread::sleep(Duration::from_millis(5));
                }
                other => break other.db()?,
            }
        };
        if !mode.eq_ignore_ascii_case("wal") && !mode.eq_ignore_ascii_case("memory") {
            tracing::warn!(mode, "state store: SQLite refused WAL mode");
        }
        conn.pragma_update(None, "synchronous", "NORMAL").db()?;
        conn.pragma_update(None, "foreign_keys", "ON").db()?;
        migrate(&mut conn)?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    /// Appends an event (when `epoch` is given, only while the run runs at that epoch).
    fn append(
        &self,
        run_id: &str,
        epoch: Option<i64>,
        name: &str,
        data: &serde_json::Value,
    ) -> StoreResult<Option<u64>> {
        let data_json = to_json(data)?;
        let (now, _) = now();
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .db()?;
        if let Some(epoch) = epoch {
            let running: bool = tx
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM runs WHERE id = ?1 AND epoch = ?2 \
                     AND state = 'running')",
                    params![run_id, epoch],
                    |r| r.get(0),
                )
                .db()?;
            if !running {
                return Ok(None);
            }
        }
        let seq: i64 = tx
            .query_row(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM events WHERE run_id = ?1",
                [run_id],
                |r| r.get(0),
            )
            .db()?;
        tx.execute(
            "INSERT INTO events (run_id, seq, name, data_json, at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![run_id, seq, name, data_json, now],
        )
        .db()?;
        tx.commit().db()?;
        Ok(Some(u64::try_from(seq).unwrap_or(0)))
    }

    /// Marks `interrupted` (with `error`) the running runs whose lease expired, and those of
    /// `owner` when given; returns them. A running run without a lease cannot be renewed by
    /// anyone: it counts as expired.
    fn interrupt_running(&self, owner: Option<&str>, error: &str) -> StoreResult<Vec<RunRecord>> {
        let (now, now_ms) = now();
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .db()?;
        let ids: Vec<String> = query_all(
            &tx,
            "SELECT id FROM runs WHERE state = 'running' AND (lease_owner = ?1 \
             OR lease_expires_at IS NULL OR lease_expires_at < ?2) ORDER BY seq",
            params![owner, now_ms],
            |r| r.get(0),
        )?;
        let mut ended = Vec::with_capacity(ids.len());
        for id in &ids {
            tx.execute(
                "UPDATE runs SET state = 'interrupted', finished_at = ?2, error = ?3, \
                 lease_owner = NULL, lease_expires_at = NULL WHERE id = ?1",
                params![id, now, error],
            )
            .db()?;
            ended.push(must_get_run(&tx, id)?);
        }
        tx.commit().db()?;
        Ok(ended)
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while the lock was held rolled its transaction back (dropping a `Transaction`
        // rolls back), so the connection is fine to use.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Applies the migrations the database has not seen yet.
fn migrate(conn: &mut Connection) -> StoreResult<()> {
    let latest = MIGRATIONS.len() as i64;
    let current = user_version(conn)?;
    if current > latest {
        return Err(StoreError::Db(format!(
            "the database's schema version {current} is newer than this host knows ({latest}); \
             upgrade the host"
        )));
    }
    for (version, sql) in (1..).zip(MIGRATIONS) {
        if version <= current {
            continue;
        }
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .db()?;
        // Another process may have applied it while we waited for the lock.
        if user_version(&tx)? >= version {
            continue;
        }
        tx.execute_batch(sql)
            .map_err(|e| StoreError::Db(format!("migration {version}: {e}")))?;
        tx.pragma_update(None, "user_version", version).db()?;
        tx.commit().db()?;
    }
    Ok(())
}

fn user_version(conn: &Connection) -> StoreResult<i64> {
    conn.pragma_query_value(None, "user_version", |r| r.get(0))
        .db()
}

/// `rusqlite::Result` → [`StoreResult`].
trait Db<T> {
    fn db(self) -> StoreResult<T>;
}

impl<T> Db<T> for rusqlite::Result<T> {
    fn db(self) -> StoreResult<T> {
        self.map_err(|e| StoreError::Db(e.to_string()))
    }
}

fn conversion_error(
    idx: usize,
    e: impl std::error::Error + Send + Sync + 'static,
) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, Box::new(e))
}

#[derive(Debug, thiserror::Error)]
#[error("unknown run state {0:?}")]
struct BadState(String);

fn slot_row(row: &Row<'_>) -> rusqlite::Result<ScheduleSlot> {
    Ok(ScheduleSlot {
        customer_id: row.get(0)?,
        pipeline: row.get(1)?,
        since_ms: row.get(2)?,
        last_slot_ms: row.get(3)?,
        outcome: row.get(4)?,
        run_id: row.get(5)?,
        reason: row.get(6)?,
        at: row.get(7)?,
    })
}

fn json_column<T: serde::de::DeserializeOwned>(row: &Row<'_>, idx: usize) -> rusqlite::Result<T> {
    let text: String = row.get(idx)?;
    serde_json::from_str(&text).map_err(|e| conversion_error(idx, e))
}

fn run_from_row(row: &Row<'_>) -> rusqlite::Result<RunRecord> {
    let state: String = row.get(5)?;
    let state = parse_state(&state).ok_or_else(|| conversion_error(5, BadState(state)))?;
    let progress: Option<f64> = row.get(14)?;
    Ok(RunRecord {
        id: row.get(0)?,
        customer_id: row.get(1)?,
        pipeline: row.get(2)?,
        params: json_column::<BTreeMap<String, String>>(row, 3)?,
        triggered_by: row.get(4)?,
        state,
        created_at: row.get(6)?,
        started_at: row.get(7)?,
        finished_at: row.get(8)?,
        error: row.get(9)?,
        backup_id: row.get(10)?,
        cancel_requested: row.get(11)?,
        lease_owner: row.get(12)?,
        epoch: row.get(13)?,
        progress: progress.map(|p| p as f32),
        message: row.get(15)?,
        insight: row
            .get::<_, Option<String>>(16)?
            .and_then(|t| serde_json::from_str(&t).ok()),
        node: row.get(17)?,
    })
}

/// The customer columns `id, domain, tier, created_at, updated_at` from 0, and `node` at `node_at`.
fn customer_at(row: &Row<'_>, node_at: usize) -> rusqlite::Result<CustomerRecord> {
    Ok(CustomerRecord {
        id: row.get(0)?,
        domain: row.get(1)?,
        tier: row.get(2)?,
        created_at: row.get(3)?,
        updated_at: row.get(4)?,
        node: row.get(node_at)?,
    })
}

/// [`CUSTOMER_COLUMNS`].
fn customer_from_row(row: &Row<'_>) -> rusqlite::Result<CustomerRecord> {
    customer_at(row, 5)
}

const CUSTOMER_COLUMNS: &str = "id, domain, tier, created_at, updated_at, node";

/// Inside a write transaction: the customer is registered and has no active run (`Busy` names
/// the running one if any, else the oldest queued).
fn check_free(conn: &Connection, customer: &str) -> StoreResult<()> {
    if get_customer(conn, customer)?.is_none() {
        return Err(StoreError::UnknownCustomer(customer.to_owned()));
    }
    let active: Option<(String, String, String)> = conn
        .query_row(
            "SELECT id, pipeline, state FROM runs \
             WHERE customer_id = ?1 AND state IN ('queued', 'running') \
             ORDER BY state = 'running' DESC, seq LIMIT 1",
            [customer],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()
        .db()?;
    match active {
        Some((run_id, pipeline, state)) => Err(StoreError::Busy {
            customer: customer.to_owned(),
            run_id,
            pipeline,
            state: parse_state(&state).unwrap_or(RunState::Queued),
        }),
        None => Ok(()),
    }
}

fn get_customer(conn: &Connection, id: &str) -> StoreResult<Option<CustomerRecord>> {
    conn.query_row(
        &format!("SELECT {CUSTOMER_COLUMNS} FROM customers WHERE id = ?1"),
        [id],
        customer_from_row,
    )
    .optional()
    .db()
}

fn get_run(conn: &Connection, id: &str) -> StoreResult<Option<RunRecord>> {
    conn.query_row(
        &format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?1"),
        [id],
        run_from_row,
    )
    .optional()
    .db()
}

/// A run that must exist (it was just written in the same transaction).
fn must_get_run(conn: &Connection, id: &str) -> StoreResult<RunRecord> {
    get_run(conn, id)?.ok_or_else(|| StoreError::Db(format!("run {id} vanished")))
}

fn backup_from_row(row: &Row<'_>) -> rusqlite::Result<BackupRecord> {
    let size: Option<i64> = row.get(4)?;
    let duration_ms: Option<i64> = row.get(5)?;
    Ok(BackupRecord {
        customer_id: row.get(0)?,
        run_id: row.get(1)?,
        backup_id: row.get(2)?,
        kind: row.get(3)?,
        size: size.map(|v| u64::try_from(v).unwrap_or(0)),
        duration_ms: duration_ms.map(|v| u64::try_from(v).unwrap_or(0)),
        result: row.get(6)?,
        triggered_by: row.get(7)?,
        created_at: row.get(8)?,
        note: row.get(9)?,
    })
}

fn audit_from_row(row: &Row<'_>) -> rusqlite::Result<AuditEntry> {
    Ok(AuditEntry {
        at: row.get(0)?,
        actor: row.get(1)?,
        action: row.get(2)?,
        customer_id: row.get(3)?,
        run_id: row.get(4)?,
        detail: json_column(row, 5)?,
    })
}

fn role_column(row: &Row<'_>, i: usize) -> rusqlite::Result<Role> {
    let text: String = row.get(i)?;
    text.parse().map_err(|e: crate::auth::UnknownRole| {
        rusqlite::Error::FromSqlConversionFailure(i, Type::Text, Box::new(e))
    })
}

fn token_from_row(row: &Row<'_>) -> rusqlite::Result<TokenRecord> {
    Ok(TokenRecord {
        name: row.get(0)?,
        role: role_column(row, 1)?,
        created_at: row.get(2)?,
        created_by: row.get(3)?,
        last_used_at: row.get(4)?,
    })
}

/// Every row of a query, mapped.
fn query_all<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    f: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
) -> StoreResult<Vec<T>> {
    let mut stmt = conn.prepare_cached(sql).db()?;
    stmt.query_map(params, f)
        .db()?
        .collect::<rusqlite::Result<Vec<_>>>()
        .db()
}

fn to_json(v: &impl serde::Serialize) -> StoreResult<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Db(format!("encoding JSON: {e}")))
}

fn from_json(text: &str) -> StoreResult<serde_json::Value> {
    serde_json::from_str(text).map_err(|e| StoreError::Db(format!("decoding stored JSON: {e}")))
}

/// Per customer, the index `backups_present` gives the newest present backup (its first entry)
/// and their count and size (a range of it); the run, by its unique id.
fn backup_summaries_sql() -> String {
    const PRESENT: &str =
        "p.customer_id = c.id AND p.backup_id IS NOT NULL AND p.result <> 'deleted'";
    format!(
        "SELECT c.id, c.domain, b.backup_id, b.size, \
         COALESCE(CAST(round((julianday(r.finished_at) - 2440587.5) * 86400000.0) AS INTEGER), \
                  b.created_ms), \
         (SELECT count(*) FROM backups p WHERE {PRESENT}), \
         (SELECT IFNULL(sum(p.size), 0) FROM backups p WHERE {PRESENT}) \
         FROM customers c \
         LEFT JOIN backups b ON b.run_id = \
             (SELECT p.run_id FROM backups p WHERE {PRESENT} \
              ORDER BY IFNULL(p.created_ms, -1) DESC, p.created_at DESC, p.run_id DESC LIMIT 1) \
         LEFT JOIN runs r ON r.id = b.run_id \
         ORDER BY c.id"
    )
}

/// One pass over the index `runs_durations`, in its order: no run row is read. Parameters
/// `?1..=?bounds` are the bounds in milliseconds.
fn run_durations_sql(bounds: usize) -> String {
    use std::fmt::Write as _;
    let mut sql = String::from("SELECT pipeline, state, count(*), IFNULL(sum(duration_ms), 0)");
    for i in 1..=bounds {
        let _ = write!(sql, ", IFNULL(sum(duration_ms <= ?{i}), 0)");
    }
    sql.push_str(
        " FROM runs WHERE duration_ms IS NOT NULL GROUP BY pipeline, state \
         ORDER BY pipeline, state",
    );
    sql
}

/// A page of customers in domain order (the unique index on `domain` gives the order and the
/// cursor's range), each with its newest history line (the index `backups_customer_order`), its
/// active run (`runs_customer_state`: the running one, else the oldest queued) and that run's
/// latest step (the newest progress event naming one, walking the run's events back from its
/// last). Each lookup is by index, nothing is sorted, and only the page's rows are joined. `?1`: the text filter (lowercase) or NULL, `?2`: the cursor domain
/// (`''` for the first page), `?3`: the limit.
const CUSTOMER_OVERVIEWS_SQL: &str = "SELECT c.id, c.domain, c.tier, c.created_at, c.updated_at, \
     b.customer_id, b.run_id, b.backup_id, b.kind, b.size, b.duration_ms, b.result, \
     b.triggered_by, b.created_at, b.note, \
     r.id, r.pipeline, r.state, r.progress, \
     (SELECT json_extract(e.data_json, '$.step') FROM events e \
      WHERE e.run_id = r.id AND e.name GLOB '*-progress' \
        AND json_extract(e.data_json, '$.step') IS NOT NULL \
      ORDER BY e.seq DESC LIMIT 1), \
     c.node \
     FROM customers c \
     LEFT JOIN backups b ON b.run_id = \
         (SELECT p.run_id FROM backups p WHERE p.customer_id = c.id \
          ORDER BY IFNULL(p.created_ms, -1) DESC, p.created_at DESC, p.run_id DESC LIMIT 1) \
     LEFT JOIN runs r ON r.id = COALESCE( \
         (SELECT x.id FROM runs x WHERE x.customer_id = c.id AND x.state = 'running' \
          ORDER BY x.seq LIMIT 1), \
         (SELECT x.id FROM runs x WHERE x.customer_id = c.id AND x.state = 'queued' \
          ORDER BY x.seq LIMIT 1)) \
     WHERE c.domain > ?2 \
       AND (?1 IS NULL OR instr(lower(c.id), ?1) > 0 OR instr(lower(c.domain), ?1) > 0) \
     ORDER BY c.domain LIMIT ?3";

fn customer_overview_from_row(row: &Row<'_>) -> rusqlite::Result<CustomerOverview> {
    let customer = customer_at(row, 20)?;
    let last_backup = match row.get::<_, Option<String>>(6)? {
        Some(run_id) => {
            let size: Option<i64> = row.get(9)?;
            let duration_ms: Option<i64> = row.get(10)?;
            Some(BackupRecord {
                customer_id: row.get(5)?,
                run_id,
                backup_id: row.get(7)?,
                kind: row.get(8)?,
                size: size.map(|v| u64::try_from(v).unwrap_or(0)),
                duration_ms: duration_ms.map(|v| u64::try_from(v).unwrap_or(0)),
                result: row.get(11)?,
                triggered_by: row.get(12)?,
                created_at: row.get(13)?,
                note: row.get(14)?,
            })
        }
        None => None,
    };
    let active_run = match row.get::<_, Option<String>>(15)? {
        Some(run_id) => {
            let state: String = row.get(17)?;
            let state = parse_state(&state).ok_or_else(|| conversion_error(17, BadState(state)))?;
            let percent: Option<f64> = row.get(18)?;
            Some(ActiveRun {
                run_id,
                pipeline: row.get(16)?,
                state,
                percent: percent.map(|p| p as f32),
                // `json_extract` gives whatever JSON type the event held: only text is a step.
                step: match row.get_ref(19)? {
                    rusqlite::types::ValueRef::Text(t) => {
                        Some(String::from_utf8_lossy(t).into_owned())
                    }
                    _ => None,
                },
            })
        }
        None => None,
    };
    Ok(CustomerOverview {
        customer,
        last_backup,
        active_run,
    })
}

/// `SELECT … WHERE <filters> ORDER BY <order> LIMIT ?n` of one of the console's pages: each
/// filter given adds one condition, so SQLite sees only the conditions that apply and picks the
/// index for them (`?x IS NULL OR …` would keep it off the indexes).
#[derive(Default)]
struct Filtered {
    conditions: Vec<String>,
    values: Vec<rusqlite::types::Value>,
}

impl Filtered {
    /// A parameter holding `value`, as the SQL names it (`?3`).
    fn param(&mut self, value: rusqlite::types::Value) -> String {
        self.values.push(value);
        format!("?{}", self.values.len())
    }

    /// The statement, with the limit as its last parameter.
    fn sql(&mut self, select: &str, order: &str, limit: usize) -> String {
        let limit = self.param(rusqlite::types::Value::Integer(
            i64::try_from(limit).unwrap_or(i64::MAX),
        ));
        let filter = if self.conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.conditions.join(" AND "))
        };
        format!("{select}{filter} ORDER BY {order} LIMIT {limit}")
    }
}

fn text(v: &str) -> rusqlite::types::Value {
    rusqlite::types::Value::Text(v.to_owned())
}

/// The SQL of [`Store::runs_page`] and its parameters.
fn runs_page_sql(query: &RunQuery) -> (String, Vec<rusqlite::types::Value>) {
    let mut f = Filtered::default();
    if let Some(customer) = &query.customer_id {
        let p = f.param(text(customer));
        f.conditions.push(format!("customer_id = {p}"));
    }
    if !query.states.is_empty() {
        let marks: Vec<String> = query
            .states
            .iter()
            .map(|s| f.param(text(state_str(*s))))
            .collect();
        f.conditions
            .push(format!("state IN ({})", marks.join(", ")));
    }
    // An unknown cursor compares with NULL: an empty page, never the first one again.
    if let Some(before) = &query.before {
        let p = f.param(text(before));
        f.conditions
            .push(format!("seq < (SELECT seq FROM runs WHERE id = {p})"));
    }
    let sql = f.sql(
        &format!("SELECT {RUN_COLUMNS} FROM runs"),
        "seq DESC",
        query.limit,
    );
    (sql, f.values)
}

/// The SQL of [`Store::audit_page`] and its parameters.
fn audit_page_sql(query: &AuditQuery) -> (String, Vec<rusqlite::types::Value>) {
    let mut f = Filtered::default();
    for (column, value) in [
        ("customer_id", &query.customer_id),
        ("action", &query.action),
        ("actor", &query.actor),
    ] {
        if let Some(value) = value {
            let p = f.param(text(value));
            f.conditions.push(format!("{column} = {p}"));
        }
    }
    if let Some(before) = query.before {
        let p = f.param(rusqlite::types::Value::Integer(before));
        f.conditions.push(format!("id < {p}"));
    }
    let sql = f.sql(
        "SELECT id, at, actor, action, customer_id, run_id, detail_json FROM audit",
        "id DESC",
        query.limit,
    );
    (sql, f.values)
}

impl Store for SqliteStore {
    fn upsert_customer(
        &self,
        id: &str,
        domain: &str,
        tier: Option<&str>,
    ) -> StoreResult<CustomerRecord> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .db()?;
        let owner: Option<String> = tx
            .query_row(
                "SELECT id FROM customers WHERE domain = ?1",
                [domain],
                |r| r.get(0),
            )
            .optional()
            .db()?;
        if let Some(owner) = owner
            && owner != id
        {
            return Err(StoreError::DomainTaken {
                domain: domain.to_owned(),
                owner,
            });
        }
        let (now, _) = now();
        match get_customer(&tx, id)? {
            Some(existing) => {
                // `updated_at` tells when the registration last changed, not when it was last
                // repeated.
                if existing.domain != domain || existing.tier.as_deref() != tier {
                    tx.execute(
                        "UPDATE customers SET domain = ?2, tier = ?3, updated_at = ?4 \
                         WHERE id = ?1",
                        params![id, domain, tier, now],
                    )
                    .db()?;
                }
            }
            None => {
                tx.execute(
                    "INSERT INTO customers (id, domain, tier, created_at, updated_at) \
                     VALUES (?1, ?2, ?3, ?4, ?4)",
                    params![id, domain, tier, now],
                )
                .db()?;
            }
        }
        let record = get_customer(&tx, id)?
            .ok_or_else(|| StoreError::Db(format!("customer {id} vanished")))?;
        tx.commit().db()?;
        Ok(record)
    }

    fn customer(&self, id: &str) -> StoreResult<Option<CustomerRecord>> {
        get_customer(&self.conn(), id)
    }

    fn move_customer(&self, id: &str, node: &str) -> StoreResult<CustomerRecord> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .db()?;
        let Some(before) = get_customer(&tx, id)? else {
            return Err(StoreError::UnknownCustomer(id.to_owned()));
        };
        if before.node.as_deref() == Some(node) {
            return Ok(before);
        }
        // Its runs find its folder on its node's disk: never move it under a run.
        check_free(&tx, id)?;
        let (now, _) = now();
        tx.execute(
            "UPDATE customers SET node = ?2, updated_at = ?3 WHERE id = ?1",
            params![id, node, now],
        )
        .db()?;
        let record = get_customer(&tx, id)?
            .ok_or_else(|| StoreError::Db(format!("customer {id} vanished")))?;
        tx.commit().db()?;
        Ok(record)
    }

    fn adopt_customer(&self, id: &str, node: &str) -> StoreResult<bool> {
        let (now, _) = now();
        let changed = self
            .conn()
            .execute(
                "UPDATE customers SET node = ?2, updated_at = ?3 WHERE id = ?1 AND node IS NULL",
                params![id, node, now],
            )
            .db()?;
        Ok(changed > 0)
    }

    fn unassigned_customers(&self) -> StoreResult<Vec<CustomerRecord>> {
        query_all(
            &self.conn(),
            &format!(
                "SELECT {CUSTOMER_COLUMNS} FROM customers WHERE node IS NULL ORDER BY id LIMIT 1000"
            ),
            [],
            customer_from_row,
        )
    }

    fn heartbeat(&self, beat: &NodeBeat) -> StoreResult<()> {
        let (now, now_ms) = now();
        self.conn()
            .execute(
                "INSERT INTO nodes (name, version, started_at, heartbeat_at, heartbeat_ms, \
                 advertise_url) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                 ON CONFLICT (name) DO UPDATE SET version = excluded.version, \
                   started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at, \
                   heartbeat_ms = excluded.heartbeat_ms, advertise_url = excluded.advertise_url",
                params![
                    beat.name,
                    beat.version,
                    beat.started_at,
                    now,
                    now_ms,
                    beat.advertise_url
                ],
            )
            .db()?;
        Ok(())
    }

    fn nodes(&self) -> StoreResult<Vec<NodeRecord>> {
        query_all(
            &self.conn(),
            "SELECT name, version, started_at, heartbeat_at, heartbeat_ms, advertise_url \
             FROM nodes ORDER BY name",
            [],
            |r| {
                Ok(NodeRecord {
                    name: r.get(0)?,
                    version: r.get(1)?,
                    started_at: r.get(2)?,
                    heartbeat_at: r.get(3)?,
                    heartbeat_ms: r.get(4)?,
                    advertise_url: r.get(5)?,
                })
            },
        )
    }

    fn active_runs_by_node(&self) -> StoreResult<Vec<(Option<String>, RunRecord)>> {
        let columns: Vec<String> = RUN_COLUMNS
            .split(", ")
            .map(|c| format!("r.{}", c.trim()))
            .collect();
        query_all(
            &self.conn(),
            &format!(
                "SELECT {}, COALESCE(r.node, c.node) FROM runs r \
                 JOIN customers c ON c.id = r.customer_id \
                 WHERE r.state IN ('running', 'queued') \
                 ORDER BY r.state = 'running' DESC, r.seq LIMIT 1000",
                columns.join(", ")
            ),
            [],
            |r| Ok((r.get(18)?, run_from_row(r)?)),
        )
    }

    fn enqueue_run(&self, run: &NewRun, queue_if_busy: bool) -> StoreResult<RunRecord> {
        let params_json = to_json(&run.params)?;
        let mut conn = self.conn();
        // Immediate: the check for an active run and the insert must not interleave with
        // another connection's, or two concurrent requests could both see "not busy".
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .db()?;
        if !queue_if_busy {
            check_free(&tx, &run.customer_id)?;
        } else if get_customer(&tx, &run.customer_id)?.is_none() {
            return Err(StoreError::UnknownCustomer(run.customer_id.clone()));
        }
        let (now, _) = now();
        tx.execute(
            "INSERT INTO runs (id, customer_id, pipeline, params_json, triggered_by, state, \
             created_at) VALUES (?1, ?2, ?3, ?4, ?5, 'queued', ?6)",
            params![
                run.id,
                run.customer_id,
                run.pipeline,
                params_json,
                run.triggered_by,
                now
            ],
        )
        .db()?;
        let record = must_get_run(&tx, &run.id)?;
        tx.commit().db()?;
        Ok(record)
    }

    fn start_run(&self, run: &NewRun, owner: &str, lease: Duration) -> StoreResult<RunRecord> {
        let params_json = to_json(&run.params)?;
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .db()?;
        check_free(&tx, &run.customer_id)?;
        let (now, now_ms) = now();
        let expires = now_ms.saturating_add(duration_ms(lease));
        tx.execute(
            "INSERT INTO runs (id, customer_id, pipeline, params_json, triggered_by, state, \
             created_at, started_at, lease_owner, lease_expires_at, epoch) \
             VALUES (?1, ?2, ?3, ?4, ?5, 'running', ?6, ?6, ?7, ?8, 1)",
            params![
                run.id,
                run.customer_id,
                run.pipeline,
                params_json,
                run.triggered_by,
                now,
                owner,
                expires
            ],
        )
        .db()?;
        let record = must_get_run(&tx, &run.id)?;
        tx.commit().db()?;
        Ok(record)
    }

    fn all_customers(&self) -> StoreResult<Vec<CustomerRecord>> {
        let conn = self.conn();
        let ids: Vec<String> = {
            let mut stmt = conn.prepare("SELECT id FROM customers ORDER BY id").db()?;
            let rows = stmt.query_map([], |r| r.get(0)).db()?;
            rows.collect::<Result<_, _>>().db()?
        };
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(c) = get_customer(&conn, &id)? {
                out.push(c);
            }
        }
        Ok(out)
    }

    fn customer_by_domain(&self, domain: &str) -> StoreResult<Option<CustomerRecord>> {
        let conn = self.conn();
        let id: Option<String> = conn
            .query_row(
                "SELECT id FROM customers WHERE domain = ?1",
                [domain],
                |r| r.get(0),
            )
            .optional()
            .db()?;
        match id {
            Some(id) => get_customer(&conn, &id),
            None => Ok(None),
        }
    }

    fn run(&self, id: &str) -> StoreResult<Option<RunRecord>> {
        get_run(&self.conn(), id)
    }

    fn runs(&self, filter: &RunFilter) -> StoreResult<Vec<RunRecord>> {
        let limit = filter
            .limit
            .unwrap_or(RUNS_DEFAULT_LIMIT)
            .min(RUNS_MAX_LIMIT) as i64;
        let conn = self.conn();
        // Two statements rather than `?1 IS NULL OR …`, which would keep SQLite off the indexes.
        match &filter.customer_id {
            Some(customer) => query_all(
                &conn,
                &format!(
                    "SELECT {RUN_COLUMNS} FROM runs WHERE customer_id = ?1 \
                     ORDER BY seq DESC LIMIT ?2"
                ),
                params![customer, limit],
                run_from_row,
            ),
            None => query_all(
                &conn,
                &format!("SELECT {RUN_COLUMNS} FROM runs ORDER BY seq DESC LIMIT ?1"),
                params![limit],
                run_from_row,
            ),
        }
    }

    fn claim_next(&self, by: &Claimant<'_>, lease: Duration) -> StoreResult<Option<RunRecord>> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .db()?;
        // Candidates: each customer's oldest queued run, for customers with nothing running
        // (so a customer never has two runs at once). Among them, the customer whose last turn
        // is the oldest (never: first) goes, then the oldest run: customers take turns, and one
        // with a long queue cannot starve the others. Only the runs of this node's customers
        // (and of customers of no node, when asked).
        let next: Option<(String, String)> = tx
            .query_row(
                "SELECT r.id, r.customer_id FROM runs r JOIN customers c ON c.id = r.customer_id \
                 WHERE r.state = 'queued' AND (c.node = ?1 OR (?2 AND c.node IS NULL)) \
                   AND r.seq = (SELECT MIN(q.seq) FROM runs q \
                                WHERE q.customer_id = r.customer_id AND q.state = 'queued') \
                   AND NOT EXISTS (SELECT 1 FROM runs x \
                                   WHERE x.customer_id = r.customer_id AND x.state = 'running') \
                 ORDER BY c.last_claim, r.seq LIMIT 1",
                params![by.node, by.unassigned],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .db()?;
        let Some((run_id, customer_id)) = next else {
            return Ok(None);
        };
        let (now, now_ms) = now();
        let expires = now_ms.saturating_add(duration_ms(lease));
        tx.execute(
            "UPDATE runs SET state = 'running', started_at = ?2, lease_owner = ?3, \
             lease_expires_at = ?4, epoch = epoch + 1, node = ?5 WHERE id = ?1",
            params![run_id, now, by.owner, expires, by.node],
        )
        .db()?;
        tx.execute(
            "UPDATE customers SET last_claim = \
             (SELECT COALESCE(MAX(last_claim), 0) + 1 FROM customers) WHERE id = ?1",
            [&customer_id],
        )
        .db()?;
        let record = must_get_run(&tx, &run_id)?;
        tx.commit().db()?;
        Ok(Some(record))
    }

    fn renew_lease(
        &self,
        run_id: &str,
        owner: &str,
        epoch: i64,
        lease: Duration,
    ) -> StoreResult<bool> {
        let (_, now_ms) = now();
        let expires = now_ms.saturating_add(duration_ms(lease));
        let changed = self
            .conn()
            .execute(
                "UPDATE runs SET lease_expires_at = ?4 \
                 WHERE id = ?1 AND lease_owner = ?2 AND epoch = ?3 AND state = 'running'",
                params![run_id, owner, epoch, expires],
            )
            .db()?;
        Ok(changed > 0)
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
        let changed = self
            .conn()
            .execute(
                "UPDATE runs SET progress = COALESCE(?3, progress), message = ?4 \
                 WHERE id = ?1 AND epoch = ?2 AND state = 'running'",
                params![run_id, epoch, percent, message],
            )
            .db()?;
        Ok(changed > 0)
    }

    fn set_insight(
        &self,
        run_id: &str,
        epoch: i64,
        insight: &serde_json::Value,
    ) -> StoreResult<bool> {
        let changed = self
            .conn()
            .execute(
                "UPDATE runs SET insight_json = ?3 WHERE id = ?1 AND epoch = ?2 AND state = 'running'",
                params![run_id, epoch, insight.to_string()],
            )
            .db()?;
        Ok(changed > 0)
    }

    fn set_backup_id(&self, run_id: &str, epoch: i64, backup_id: &str) -> StoreResult<bool> {
        let changed = self
            .conn()
            .execute(
                "UPDATE runs SET backup_id = ?3 WHERE id = ?1 AND epoch = ?2 AND state = 'running'",
                params![run_id, epoch, backup_id],
            )
            .db()?;
        Ok(changed > 0)
    }

    fn finish_run(&self, run_id: &str, epoch: i64, finish: &RunFinish) -> StoreResult<bool> {
        if finish.state.is_active() {
            return Err(StoreError::Db(format!(
                "cannot finish run {run_id} as {}: not a final state",
                finish.state
            )));
        }
        let (now, _) = now();
        // `duration_ms` as migration 4 fills it in for older runs.
        let changed = self
            .conn()
            .execute(
                "UPDATE runs SET state = ?3, finished_at = ?4, error = ?5, \
                 backup_id = COALESCE(?6, backup_id), \
                 duration_ms = MAX(0, CAST(round((julianday(?4) - julianday(started_at)) \
                                                 * 86400000.0) AS INTEGER)), \
                 lease_owner = NULL, lease_expires_at = NULL \
                 WHERE id = ?1 AND epoch = ?2 AND state = 'running'",
                params![
                    run_id,
                    epoch,
                    state_str(finish.state),
                    now,
                    finish.error,
                    finish.backup_id
                ],
            )
            .db()?;
        Ok(changed > 0)
    }

    fn request_cancel(&self, run_id: &str) -> StoreResult<Option<RunRecord>> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .db()?;
        let Some(run) = get_run(&tx, run_id)? else {
            return Ok(None);
        };
        match run.state {
            RunState::Queued => {
                let (now, _) = now();
                tx.execute(
                    "UPDATE runs SET state = 'cancelled', finished_at = ?2, error = ?3 \
                     WHERE id = ?1",
                    params![run_id, now, CANCELLED_BEFORE_START],
                )
                .db()?;
            }
            RunState::Running => {
                tx.execute(
                    "UPDATE runs SET cancel_requested = 1 WHERE id = ?1",
                    [run_id],
                )
                .db()?;
            }
            _ => return Ok(Some(run)),
        }
        let record = must_get_run(&tx, run_id)?;
        tx.commit().db()?;
        Ok(Some(record))
    }

    fn recover_interrupted(&self, owner: &str) -> StoreResult<Vec<RunRecord>> {
        self.interrupt_running(Some(owner), INTERRUPTED)
    }

    fn expire_leases(&self) -> StoreResult<Vec<RunRecord>> {
        self.interrupt_running(None, LEASE_EXPIRED)
    }

    fn annotate_run(&self, run_id: &str, error: &str) -> StoreResult<()> {
        self.conn()
            .execute(
                "UPDATE runs SET error = ?2 WHERE id = ?1 AND state = 'interrupted'",
                params![run_id, error],
            )
            .db()?;
        Ok(())
    }

    fn append_event(&self, run_id: &str, name: &str, data: &serde_json::Value) -> StoreResult<u64> {
        self.append(run_id, None, name, data)?
            .ok_or_else(|| StoreError::Db(format!("run {run_id} vanished")))
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

    fn ask_approval(
        &self,
        run_id: &str,
        epoch: i64,
        request: &serde_json::Value,
    ) -> StoreResult<bool> {
        let request = to_json(request)?;
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .db()?;
        let running: bool = tx
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM runs WHERE id = ?1 AND epoch = ?2 \
                 AND state = 'running')",
                params![run_id, epoch],
                |r| r.get(0),
            )
            .db()?;
        if running {
            tx.execute(
                "INSERT INTO approvals (run_id, request_json, decision_json) VALUES (?1, ?2, NULL) \
                 ON CONFLICT (run_id) DO UPDATE SET request_json = excluded.request_json, \
                   decision_json = NULL",
                params![run_id, request],
            )
            .db()?;
        }
        tx.commit().db()?;
        Ok(running)
    }

    fn approval(&self, run_id: &str) -> StoreResult<Option<ApprovalRecord>> {
        let row: Option<(String, Option<String>)> = self
            .conn()
            .query_row(
                "SELECT request_json, decision_json FROM approvals WHERE run_id = ?1",
                [run_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .db()?;
        row.map(|(request, decision)| {
            Ok(ApprovalRecord {
                request: from_json(&request)?,
                decision: decision.as_deref().map(from_json).transpose()?,
            })
        })
        .transpose()
    }

    fn decide_approval(&self, run_id: &str, decision: &serde_json::Value) -> StoreResult<Decided> {
        let decision = to_json(decision)?;
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .db()?;
        let row: Option<(String, Option<String>)> = tx
            .query_row(
                "SELECT request_json, decision_json FROM approvals WHERE run_id = ?1",
                [run_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .db()?;
        let outcome = match row {
            None => Decided::NotWaiting,
            Some((_, Some(_))) => Decided::AlreadyDecided,
            Some((request, None)) => {
                tx.execute(
                    "UPDATE approvals SET decision_json = ?2 WHERE run_id = ?1",
                    params![run_id, decision],
                )
                .db()?;
                Decided::Recorded(from_json(&request)?)
            }
        };
        tx.commit().db()?;
        Ok(outcome)
    }

    fn clear_approval(&self, run_id: &str) -> StoreResult<()> {
        self.conn()
            .execute("DELETE FROM approvals WHERE run_id = ?1", [run_id])
            .db()?;
        Ok(())
    }

    fn schedule_slots(&self, customer_id: Option<&str>) -> StoreResult<Vec<ScheduleSlot>> {
        query_all(
            &self.conn(),
            "SELECT customer_id, pipeline, since_ms, last_slot_ms, outcome, run_id, reason, at \
             FROM schedule_slots WHERE ?1 IS NULL OR customer_id = ?1 \
             ORDER BY customer_id, pipeline",
            [customer_id],
            slot_row,
        )
    }

    fn schedule_seen(
        &self,
        customer_id: &str,
        pipeline: &str,
        since_ms: i64,
    ) -> StoreResult<ScheduleSlot> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO schedule_slots (customer_id, pipeline, since_ms) VALUES (?1, ?2, ?3) \
             ON CONFLICT (customer_id, pipeline) DO NOTHING",
            params![customer_id, pipeline, since_ms],
        )
        .db()?;
        conn.query_row(
            "SELECT customer_id, pipeline, since_ms, last_slot_ms, outcome, run_id, reason, at \
             FROM schedule_slots WHERE customer_id = ?1 AND pipeline = ?2",
            params![customer_id, pipeline],
            slot_row,
        )
        .db()
    }

    fn record_slot(&self, slot: &ScheduleSlot, only_if_newer: bool) -> StoreResult<bool> {
        let changed = self
            .conn()
            .execute(
                "UPDATE schedule_slots SET last_slot_ms = ?3, outcome = ?4, run_id = ?5, \
                   reason = ?6, at = ?7 \
                 WHERE customer_id = ?1 AND pipeline = ?2 AND (CASE WHEN ?8 \
                   THEN last_slot_ms IS NULL OR last_slot_ms < ?3 \
                   ELSE last_slot_ms = ?3 END)",
                params![
                    slot.customer_id,
                    slot.pipeline,
                    slot.last_slot_ms,
                    slot.outcome,
                    slot.run_id,
                    slot.reason,
                    slot.at,
                    only_if_newer
                ],
            )
            .db()?;
        Ok(changed > 0)
    }

    fn customer_schedules(&self, customer_id: Option<&str>) -> StoreResult<Vec<CustomerSchedule>> {
        query_all(
            &self.conn(),
            "SELECT customer_id, pipeline, spec_json FROM customer_schedules \
             WHERE ?1 IS NULL OR customer_id = ?1 ORDER BY customer_id, pipeline",
            [customer_id],
            |row| {
                Ok(CustomerSchedule {
                    customer_id: row.get(0)?,
                    pipeline: row.get(1)?,
                    spec: json_column(row, 2)?,
                })
            },
        )
    }

    fn set_customer_schedule(
        &self,
        customer_id: &str,
        pipeline: &str,
        spec: Option<&serde_json::Value>,
    ) -> StoreResult<()> {
        let conn = self.conn();
        match spec {
            Some(spec) => {
                let known: bool = conn
                    .query_row(
                        "SELECT EXISTS (SELECT 1 FROM customers WHERE id = ?1)",
                        [customer_id],
                        |r| r.get(0),
                    )
                    .db()?;
                if !known {
                    return Err(StoreError::UnknownCustomer(customer_id.to_owned()));
                }
                conn.execute(
                    "INSERT INTO customer_schedules (customer_id, pipeline, spec_json) \
                     VALUES (?1, ?2, ?3) ON CONFLICT (customer_id, pipeline) \
                     DO UPDATE SET spec_json = excluded.spec_json",
                    params![customer_id, pipeline, to_json(spec)?],
                )
                .db()?;
            }
            None => {
                conn.execute(
                    "DELETE FROM customer_schedules WHERE customer_id = ?1 AND pipeline = ?2",
                    params![customer_id, pipeline],
                )
                .db()?;
            }
        }
        Ok(())
    }

    fn events(&self, run_id: &str, after_seq: u64) -> StoreResult<Vec<EventRecord>> {
        query_all(
            &self.conn(),
            "SELECT run_id, seq, name, data_json, at FROM events \
             WHERE run_id = ?1 AND seq > ?2 ORDER BY seq",
            params![run_id, to_i64(after_seq)],
            |row| {
                let seq: i64 = row.get(1)?;
                Ok(EventRecord {
                    run_id: row.get(0)?,
                    seq: u64::try_from(seq).unwrap_or(0),
                    name: row.get(2)?,
                    data: json_column(row, 3)?,
                    at: row.get(4)?,
                })
            },
        )
    }

    fn record_backup(&self, b: &BackupRecord) -> StoreResult<()> {
        // `created_ms`: SQLite's own date parser reads RFC 3339 (any fraction digits, `Z` or an
        // offset); NULL when it cannot.
        self.conn()
            .execute(
                "INSERT INTO backups (run_id, customer_id, backup_id, kind, size, duration_ms, \
                 result, triggered_by, created_at, created_ms, note) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, \
                 CAST(round((julianday(?9) - 2440587.5) * 86400000.0) AS INTEGER), ?10) \
                 ON CONFLICT (run_id) DO UPDATE SET customer_id = excluded.customer_id, \
                 backup_id = excluded.backup_id, kind = excluded.kind, size = excluded.size, \
                 duration_ms = excluded.duration_ms, result = excluded.result, \
                 triggered_by = excluded.triggered_by, created_at = excluded.created_at, \
                 created_ms = excluded.created_ms, note = excluded.note",
                params![
                    b.run_id,
                    b.customer_id,
                    b.backup_id,
                    b.kind,
                    b.size.map(to_i64),
                    b.duration_ms.map(to_i64),
                    b.result,
                    b.triggered_by,
                    b.created_at,
                    b.note
                ],
            )
            .db()?;
        Ok(())
    }

    fn backups(
        &self,
        customer_id: &str,
        limit: usize,
        before: Option<&str>,
    ) -> StoreResult<Vec<BackupRecord>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        // The cursor row's sort key; rows strictly after it in the listing order follow.
        // An unknown cursor run gives an empty page rather than the first one again.
        query_all(
            &self.conn(),
            "SELECT customer_id, run_id, backup_id, kind, size, duration_ms, result, \
             triggered_by, created_at, note FROM backups WHERE customer_id = ?1 \
             AND (?3 IS NULL OR (IFNULL(created_ms, -1), created_at, run_id) < \
                  (SELECT IFNULL(created_ms, -1), created_at, run_id FROM backups \
                   WHERE customer_id = ?1 AND run_id = ?3)) \
             ORDER BY IFNULL(created_ms, -1) DESC, created_at DESC, run_id DESC LIMIT ?2",
            params![customer_id, limit, before],
            backup_from_row,
        )
    }

    fn record_drill(&self, d: &DrillRecord) -> StoreResult<()> {
        self.conn()
            .execute(
                "INSERT INTO drills (run_id, customer_id, backup_id, restorable, reason, \
                 drilled_at, drilled_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, \
                 IFNULL(CAST(round((julianday(?6) - 2440587.5) * 86400000.0) AS INTEGER), 0)) \
                 ON CONFLICT (run_id) DO UPDATE SET customer_id = excluded.customer_id, \
                 backup_id = excluded.backup_id, restorable = excluded.restorable, \
                 reason = excluded.reason, drilled_at = excluded.drilled_at, \
                 drilled_ms = excluded.drilled_ms",
                params![
                    d.run_id,
                    d.customer_id,
                    d.backup_id,
                    d.restorable,
                    d.reason,
                    d.drilled_at
                ],
            )
            .db()?;
        Ok(())
    }

    fn drills(&self, customer_id: &str, backup_ids: &[String]) -> StoreResult<Vec<DrillRecord>> {
        let ids = to_json(&backup_ids)?;
        // Newest first per backup; the first line of each backup is its newest drill.
        let all = query_all(
            &self.conn(),
            "SELECT customer_id, backup_id, run_id, restorable, reason, drilled_at FROM drills \
             WHERE customer_id = ?1 AND backup_id IN (SELECT value FROM json_each(?2)) \
             ORDER BY backup_id, drilled_ms DESC, run_id DESC",
            params![customer_id, ids],
            |row| {
                Ok(DrillRecord {
                    customer_id: row.get(0)?,
                    backup_id: row.get(1)?,
                    run_id: row.get(2)?,
                    restorable: row.get(3)?,
                    reason: row.get(4)?,
                    drilled_at: row.get(5)?,
                })
            },
        )?;
        let mut newest: Vec<DrillRecord> = Vec::new();
        for d in all {
            if newest.last().is_none_or(|n| n.backup_id != d.backup_id) {
                newest.push(d);
            }
        }
        Ok(newest)
    }

    fn last_good_drills(&self) -> StoreResult<Vec<(String, i64)>> {
        query_all(
            &self.conn(),
            "SELECT customer_id, max(drilled_ms) FROM drills WHERE restorable = 1 \
             GROUP BY customer_id ORDER BY customer_id",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
    }

    fn audit(&self, entry: &AuditEntry) -> StoreResult<()> {
        let detail_json = to_json(&entry.detail)?;
        self.conn()
            .execute(
                "INSERT INTO audit (at, actor, action, customer_id, run_id, detail_json) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    entry.at,
                    entry.actor,
                    entry.action,
                    entry.customer_id,
                    entry.run_id,
                    detail_json
                ],
            )
            .db()?;
        Ok(())
    }

    fn audit_log(&self, customer_id: Option<&str>, limit: usize) -> StoreResult<Vec<AuditEntry>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let conn = self.conn();
        const COLUMNS: &str = "at, actor, action, customer_id, run_id, detail_json";
        // Two statements rather than `?1 IS NULL OR …`, which would keep SQLite off the index.
        match customer_id {
            Some(customer) => query_all(
                &conn,
                &format!(
                    "SELECT {COLUMNS} FROM audit WHERE customer_id = ?1 ORDER BY id DESC LIMIT ?2"
                ),
                params![customer, limit],
                audit_from_row,
            ),
            None => query_all(
                &conn,
                &format!("SELECT {COLUMNS} FROM audit ORDER BY id DESC LIMIT ?1"),
                params![limit],
                audit_from_row,
            ),
        }
    }

    fn backup_summaries(&self) -> StoreResult<Vec<BackupSummary>> {
        query_all(&self.conn(), &backup_summaries_sql(), [], |row| {
            let backup_id: Option<String> = row.get(2)?;
            let size: Option<i64> = row.get(3)?;
            let present: i64 = row.get(5)?;
            let present_bytes: i64 = row.get(6)?;
            Ok(BackupSummary {
                customer_id: row.get(0)?,
                domain: row.get(1)?,
                last: match backup_id {
                    Some(backup_id) => Some(LastBackup {
                        backup_id,
                        size: size.map(|v| u64::try_from(v).unwrap_or(0)),
                        made_ms: row.get(4)?,
                    }),
                    None => None,
                },
                present: u64::try_from(present).unwrap_or(0),
                present_bytes: u64::try_from(present_bytes).unwrap_or(0),
            })
        })
    }

    fn run_durations(&self, bounds_ms: &[u64]) -> StoreResult<Vec<DurationHistogram>> {
        query_all(
            &self.conn(),
            &run_durations_sql(bounds_ms.len()),
            rusqlite::params_from_iter(bounds_ms.iter().map(|b| to_i64(*b))),
            |row| {
                let state: String = row.get(1)?;
                let result =
                    parse_state(&state).ok_or_else(|| conversion_error(1, BadState(state)))?;
                let count = |i: usize| -> rusqlite::Result<u64> {
                    Ok(u64::try_from(row.get::<_, i64>(i)?).unwrap_or(0))
                };
                Ok(DurationHistogram {
                    pipeline: row.get(0)?,
                    result,
                    count: count(2)?,
                    sum_ms: count(3)?,
                    at_most: (0..bounds_ms.len())
                        .map(|i| count(4 + i))
                        .collect::<rusqlite::Result<_>>()?,
                })
            },
        )
    }

    fn run_counts(&self) -> StoreResult<Vec<(RunState, u64)>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT state, count(*) FROM runs GROUP BY state")
            .map_err(|e| StoreError::Db(e.to_string()))?;
        let rows = stmt
            .query_map([], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
            })
            .map_err(|e| StoreError::Db(e.to_string()))?;
        let mut out = Vec::new();
        for row in rows {
            let (state, n) = row.map_err(|e| StoreError::Db(e.to_string()))?;
            let state: RunState = serde_json::from_value(serde_json::Value::String(state))
                .map_err(|e| StoreError::Db(e.to_string()))?;
            out.push((state, n.max(0) as u64));
        }
        Ok(out)
    }

    // What the web console reads (issue 12).

    fn customer_overviews(&self, query: &CustomerQuery) -> StoreResult<Vec<CustomerOverview>> {
        let text = query
            .text
            .as_deref()
            .filter(|t| !t.is_empty())
            .map(str::to_ascii_lowercase);
        let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
        query_all(
            &self.conn(),
            CUSTOMER_OVERVIEWS_SQL,
            params![text, query.after_domain.as_deref().unwrap_or(""), limit],
            customer_overview_from_row,
        )
    }

    fn runs_page(&self, query: &RunQuery) -> StoreResult<Vec<RunRecord>> {
        let (sql, values) = runs_page_sql(query);
        query_all(
            &self.conn(),
            &sql,
            rusqlite::params_from_iter(values),
            run_from_row,
        )
    }

    fn audit_page(&self, query: &AuditQuery) -> StoreResult<Vec<AuditRow>> {
        let (sql, values) = audit_page_sql(query);
        query_all(
            &self.conn(),
            &sql,
            rusqlite::params_from_iter(values),
            |row| {
                Ok(AuditRow {
                    id: row.get(0)?,
                    entry: AuditEntry {
                        at: row.get(1)?,
                        actor: row.get(2)?,
                        action: row.get(3)?,
                        customer_id: row.get(4)?,
                        run_id: row.get(5)?,
                        detail: json_column(row, 6)?,
                    },
                })
            },
        )
    }

    fn add_token(&self, token: &TokenRecord, hash: &str) -> StoreResult<()> {
        let res = self.conn().execute(
            "INSERT INTO tokens (name, role, hash, created_at, created_by) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                token.name,
                token.role.as_str(),
                hash,
                token.created_at,
                token.created_by
            ],
        );
        match res {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(StoreError::TokenExists(token.name.clone()))
            }
            Err(e) => Err(StoreError::Db(e.to_string())),
        }
    }

    fn tokens(&self) -> StoreResult<Vec<TokenRecord>> {
        query_all(
            &self.conn(),
            "SELECT name, role, created_at, created_by, last_used_at FROM tokens ORDER BY name",
            [],
            token_from_row,
        )
    }

    fn use_token(&self, hash: &str, now: &str, now_unix: i64) -> StoreResult<Option<TokenRecord>> {
        let conn = self.conn();
        // At most one write a minute per token: reading the API must not mean writing to disk.
        conn.execute(
            "UPDATE tokens SET last_used_at = ?2, last_used_unix = ?3 WHERE hash = ?1 \
             AND (last_used_unix IS NULL OR last_used_unix <= ?3 - 60)",
            params![hash, now, now_unix],
        )
        .db()?;
        conn.prepare_cached(
            "SELECT name, role, created_at, created_by, last_used_at FROM tokens WHERE hash = ?1",
        )
        .db()?
        .query_row(params![hash], token_from_row)
        .optional()
        .db()
    }

    fn revoke_token(&self, name: &str) -> StoreResult<bool> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .db()?;
        let removed = tx
            .execute("DELETE FROM tokens WHERE name = ?1", params![name])
            .db()?;
        tx.execute("DELETE FROM sessions WHERE principal = ?1", params![name])
            .db()?;
        tx.commit().db()?;
        Ok(removed > 0)
    }

    fn add_session(&self, session: &SessionRecord, now_unix: i64) -> StoreResult<()> {
        let conn = self.conn();
        conn.execute(
            "DELETE FROM sessions WHERE expires_unix <= ?1",
            params![now_unix],
        )
        .db()?;
        conn.execute(
            "INSERT INTO sessions (hash, principal, role, csrf, created_at, expires_unix) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                session.hash,
                session.principal,
                session.role.as_str(),
                session.csrf,
                session.created_at,
                session.expires_unix
            ],
        )
        .db()?;
        Ok(())
    }

    fn session(&self, hash: &str, now_unix: i64) -> StoreResult<Option<SessionRecord>> {
        self.conn()
            .prepare_cached(
                "SELECT hash, principal, role, csrf, created_at, expires_unix FROM sessions \
                 WHERE hash = ?1 AND expires_unix > ?2",
            )
            .db()?
            .query_row(params![hash, now_unix], |row| {
                Ok(SessionRecord {
                    hash: row.get(0)?,
                    principal: row.get(1)?,
                    role: role_column(row, 2)?,
                    csrf: row.get(3)?,
                    created_at: row.get(4)?,
                    expires_unix: row.get(5)?,
                })
            })
            .optional()
            .db()
    }

    fn end_session(&self, hash: &str) -> StoreResult<bool> {
        Ok(self
            .conn()
            .execute("DELETE FROM sessions WHERE hash = ?1", params![hash])
            .db()?
            > 0)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Barrier};

    use super::*;
    use crate::store::suite::{self, HOUR, SuiteStore, anyone, customers, new_run, ran};

    impl SuiteStore for SqliteStore {
        fn set_started_at(&self, run_id: &str, at: &str) {
            self.conn()
                .execute(
                    "UPDATE runs SET started_at = ?2 WHERE id = ?1",
                    params![run_id, at],
                )
                .unwrap();
        }

        fn delete_run(&self, run_id: &str) {
            self.conn()
                .execute("DELETE FROM runs WHERE id = ?1", [run_id])
                .unwrap();
        }

        fn stored_sessions(&self) -> Vec<String> {
            query_all(&self.conn(), "SELECT hash FROM sessions", [], |r| r.get(0)).unwrap()
        }
    }

    /// A fresh store in a temporary folder, removed with it.
    struct Fixture {
        store: SqliteStore,
        _dir: tempfile::TempDir,
    }

    impl std::ops::Deref for Fixture {
        type Target = SqliteStore;
        fn deref(&self) -> &SqliteStore {
            &self.store
        }
    }

    fn fixture() -> Option<Fixture> {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("state").join("qodify.db")).unwrap();
        Some(Fixture { store, _dir: dir })
    }

    suite::store_suite!(fixture);

    fn temp_store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("state").join("qodify.db")).unwrap();
        (dir, store)
    }

    #[test]
    fn concurrent_enqueues_on_separate_handles_admit_exactly_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qodify.db");
        customers(&SqliteStore::open(&path).unwrap(), &["c1"]);

        const N: usize = 100;
        let barrier = Arc::new(Barrier::new(N));
        let handles: Vec<_> = (0..N)
            .map(|i| {
                let path = path.clone();
                let barrier = Arc::clone(&barrier);
                std::thread::spawn(move || {
                    let store = SqliteStore::open(&path).unwrap();
                    barrier.wait();
                    store.enqueue_run(&new_run(&format!("r{i}"), "c1"), false)
                })
            })
            .collect();
        let mut accepted = Vec::new();
        let mut busy = 0;
        for handle in handles {
            match handle.join().unwrap() {
                Ok(run) => accepted.push(run.id),
                Err(StoreError::Busy { .. }) => busy += 1,
                Err(e) => panic!("unexpected error: {e}"),
            }
        }
        assert_eq!(accepted.len(), 1, "accepted: {accepted:?}");
        assert_eq!(busy, N - 1);
        let store = SqliteStore::open(&path).unwrap();
        let runs = store.runs(&RunFilter::default()).unwrap();
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].id, accepted[0]);
    }

    #[test]
    fn reopening_keeps_data_and_migrations_are_idempotent() {
        use std::os::unix::fs::PermissionsExt as _;

        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("data");
        let path = folder.join("qodify.db");
        {
            let store = SqliteStore::open(&path).unwrap();
            customers(&store, &["c1"]);
            store.enqueue_run(&new_run("r1", "c1"), false).unwrap();
        }
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&folder), 0o700);

        for _ in 0..2 {
            let store = SqliteStore::open(&path).unwrap();
            let conn = store.conn();
            assert_eq!(user_version(&conn).unwrap(), MIGRATIONS.len() as i64);
            let journal: String = conn
                .pragma_query_value(None, "journal_mode", |r| r.get(0))
                .unwrap();
            assert_eq!(journal, "wal");
            let fk: i64 = conn
                .pragma_query_value(None, "foreign_keys", |r| r.get(0))
                .unwrap();
            assert_eq!(fk, 1);
            drop(conn);
            assert_eq!(store.run("r1").unwrap().unwrap().state, RunState::Queued);
        }

        // A database from a newer host is refused rather than misread.
        {
            let store = SqliteStore::open(&path).unwrap();
            store
                .conn()
                .pragma_update(None, "user_version", MIGRATIONS.len() as i64 + 1)
                .unwrap();
        }
        assert!(matches!(SqliteStore::open(&path), Err(StoreError::Db(_))));
    }

    #[test]
    fn concurrent_first_opens_migrate_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fresh.db");
        const N: usize = 16;
        let barrier = Arc::new(Barrier::new(N));
        let handles: Vec<_> = (0..N)
            .map(|i| {
                let path = path.clone();
                let barrier = Arc::clone(&barrier);
                std::thread::spawn(move || {
                    barrier.wait();
                    let store = SqliteStore::open(&path)?;
                    store.upsert_customer(&format!("c{i}"), &format!("c{i}.example.com"), None)
                })
            })
            .collect();
        for handle in handles {
            handle.join().unwrap().unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(
            user_version(&store.conn()).unwrap(),
            MIGRATIONS.len() as i64
        );
        for i in 0..N {
            assert!(store.customer(&format!("c{i}")).unwrap().is_some());
        }
    }

    /// What SQLite plans for `sql`, one step a line.
    fn query_plan(store: &SqliteStore, sql: &str, params: impl rusqlite::Params) -> String {
        query_all(
            &store.conn(),
            &format!("EXPLAIN QUERY PLAN {sql}"),
            params,
            |r| r.get::<_, String>(3),
        )
        .unwrap()
        .join("\n")
    }

    #[test]
    fn migration_4_gives_the_runs_that_ended_before_it_their_durations() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.sqlite");
        {
            let store = SqliteStore::open(&path).unwrap();
            customers(&store, &["c1"]);
            ran(&store, "r1", "c1", "backup", 42.0, RunState::Failed);
            store.enqueue_run(&new_run("r2", "c1"), false).unwrap();
            store.request_cancel("r2").unwrap();
            // The database as a host before migration 4 left it.
            store
                .conn()
                .execute_batch(
                    "DROP TABLE drills; DROP TABLE customer_schedules; DROP TABLE schedule_slots; \
                     DROP TABLE approvals; DROP TABLE nodes; DROP INDEX customers_node; \
                     ALTER TABLE customers DROP COLUMN node; ALTER TABLE runs DROP COLUMN node; \
                     DROP TABLE sessions; DROP TABLE tokens; \
                     DROP INDEX runs_durations; DROP INDEX backups_present; \
                     ALTER TABLE runs DROP COLUMN insight_json; \
                     ALTER TABLE runs DROP COLUMN duration_ms; PRAGMA user_version = 3;",
                )
                .unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        let got = store.run_durations(&[60_000]).unwrap();
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(
            (got[0].result, got[0].count, &got[0].at_most[..]),
            (RunState::Failed, 1, &[1][..])
        );
        assert!((42_000..43_000).contains(&got[0].sum_ms), "{got:?}");
    }

    #[test]
    fn customer_overviews_look_up_each_row_of_the_page_by_index() {
        let (_dir, store) = temp_store();
        // Each customer's history and runs are found through their indexes; the customers
        // come in the order of the domain index, so only the page's rows are joined.
        let plan = query_plan(
            &store,
            CUSTOMER_OVERVIEWS_SQL,
            params![Option::<String>::None, "", 100],
        );
        assert!(
            plan.contains("INDEX sqlite_autoindex_customers_2"),
            "{plan}"
        );
        assert!(plan.contains("INDEX backups_customer_order"), "{plan}");
        assert!(plan.contains("INDEX runs_customer_state"), "{plan}");
        for scan in [
            "SCAN p",
            "SCAN b",
            "SCAN r",
            "SCAN x",
            "SCAN e",
            "TEMP B-TREE FOR ORDER BY",
        ] {
            assert!(!plan.contains(scan), "{scan}: {plan}");
        }
    }

    #[test]
    fn in_memory_store_works() {
        let store = SqliteStore::open_in_memory().unwrap();
        customers(&store, &["c1"]);
        store.enqueue_run(&new_run("r1", "c1"), false).unwrap();
        assert_eq!(
            store.claim_next(&anyone("h"), HOUR).unwrap().unwrap().id,
            "r1"
        );
    }

    #[test]
    fn run_durations_read_the_index_alone() {
        let (_dir, store) = temp_store();
        customers(&store, &["c1"]);
        ran(&store, "r1", "c1", "backup", 90.0, RunState::Succeeded);
        let bounds = [1_000, 5_000, 100_000, 10_000_000];
        // Whatever the number of runs, no run row is read and nothing is sorted.
        let plan = query_plan(
            &store,
            &run_durations_sql(bounds.len()),
            rusqlite::params_from_iter(bounds.map(to_i64)),
        );
        assert!(
            plan.contains("USING COVERING INDEX runs_durations"),
            "{plan}"
        );
        assert!(!plan.contains("TEMP B-TREE"), "{plan}");
    }

    #[test]
    fn backup_summaries_find_each_customer_s_backups_through_the_index() {
        let (_dir, store) = temp_store();
        let plan = query_plan(&store, &backup_summaries_sql(), []);
        assert!(plan.contains("INDEX backups_present"), "{plan}");
        for table in ["SCAN p", "SCAN b", "SCAN r"] {
            assert!(!plan.contains(table), "{plan}");
        }
    }
}
