-- Migration 1: the initial schema of the service's state store.
-- Times are RFC 3339 UTC strings; lease expiry is unix milliseconds.

CREATE TABLE customers (
    id          TEXT PRIMARY KEY NOT NULL,
    -- DNS names are case-insensitive: `Example.com` and `example.com` are one customer's.
    domain      TEXT NOT NULL UNIQUE COLLATE NOCASE,
    tier        TEXT,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    -- Global claim counter value of this customer's latest claimed run (0: never): the queue
    -- serves the customer that waited longest since its last turn first (round robin).
    last_claim  INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX customers_last_claim ON customers (last_claim);

CREATE TABLE runs (
    -- Queue order (never reused, so FIFO holds even after rows are deleted).
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    id               TEXT NOT NULL UNIQUE,
    customer_id      TEXT NOT NULL REFERENCES customers (id),
    pipeline         TEXT NOT NULL,
    params_json      TEXT NOT NULL DEFAULT '{}',
    triggered_by     TEXT,
    state            TEXT NOT NULL CHECK (state IN
                         ('queued', 'running', 'succeeded', 'failed', 'cancelled', 'interrupted')),
    created_at       TEXT NOT NULL,
    started_at       TEXT,
    finished_at      TEXT,
    error            TEXT,
    backup_id        TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0 CHECK (cancel_requested IN (0, 1)),
    lease_owner      TEXT,
    lease_expires_at INTEGER,
    epoch            INTEGER NOT NULL DEFAULT 0,
    progress         REAL,
    message          TEXT
);
CREATE INDEX runs_customer_state ON runs (customer_id, state);
CREATE INDEX runs_state ON runs (state, seq);
CREATE INDEX runs_customer_created ON runs (customer_id, created_at);

CREATE TABLE events (
    run_id    TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq       INTEGER NOT NULL,
    name      TEXT NOT NULL,
    data_json TEXT NOT NULL,
    at        TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;

-- Backup history. No foreign keys: lines outlive runs and may describe backups made by the CLI.
CREATE TABLE backups (
    run_id       TEXT PRIMARY KEY NOT NULL,
    customer_id  TEXT NOT NULL,
    backup_id    TEXT,
    kind         TEXT NOT NULL,
    size         INTEGER,
    duration_ms  INTEGER,
    result       TEXT NOT NULL,
    triggered_by TEXT,
    created_at   TEXT NOT NULL,
    -- created_at as unix milliseconds (NULL when it does not parse), for ordering: RFC 3339
    -- strings with varying fraction digits do not sort as text.
    created_ms   INTEGER
);
CREATE INDEX backups_customer_created ON backups (customer_id, created_ms, created_at);

-- Audit log. No foreign keys: entries outlive what they describe.
CREATE TABLE audit (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          TEXT NOT NULL,
    actor       TEXT,
    action      TEXT NOT NULL,
    customer_id TEXT,
    run_id      TEXT,
    detail_json TEXT NOT NULL
);
CREATE INDEX audit_customer ON audit (customer_id, id);
