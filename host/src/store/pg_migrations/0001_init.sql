-- Migration 1: the state store's schema on PostgreSQL, what SQLite's migrations 1 to 6 make.
--
-- Times are RFC 3339 UTC text exactly as the host writes and reads them (fixed width, so they sort
-- as times), as in SQLite; lease expiry and `created_ms` are unix milliseconds. Names that lists
-- are ordered or paged by are `COLLATE "C"`: byte order, as SQLite's, whatever the database's
-- locale. JSON is `jsonb`.

CREATE TABLE customers (
    id          TEXT COLLATE "C" PRIMARY KEY,
    -- DNS names are case-insensitive (`customers_domain` below); ASCII only, so C's `lower` is
    -- SQLite's NOCASE.
    domain      TEXT COLLATE "C" NOT NULL,
    tier        TEXT,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    -- `customer_claims` value of this customer's latest claimed run (0: never): the queue serves
    -- the customer that waited longest since its last turn first (round robin).
    last_claim  BIGINT NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX customers_domain ON customers (lower(domain));
CREATE INDEX customers_last_claim ON customers (last_claim);
CREATE SEQUENCE customer_claims;

CREATE TABLE runs (
    -- Queue order (never reused, so FIFO holds even after rows are deleted).
    seq              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id               TEXT COLLATE "C" NOT NULL UNIQUE,
    customer_id      TEXT COLLATE "C" NOT NULL REFERENCES customers (id),
    pipeline         TEXT COLLATE "C" NOT NULL,
    params           JSONB NOT NULL DEFAULT '{}',
    triggered_by     TEXT,
    state            TEXT COLLATE "C" NOT NULL CHECK (state IN
                         ('queued', 'running', 'succeeded', 'failed', 'cancelled', 'interrupted')),
    created_at       TEXT NOT NULL,
    started_at       TEXT,
    finished_at      TEXT,
    error            TEXT,
    backup_id        TEXT,
    cancel_requested BOOLEAN NOT NULL DEFAULT false,
    lease_owner      TEXT,
    lease_expires_at BIGINT,
    epoch            BIGINT NOT NULL DEFAULT 0,
    progress         DOUBLE PRECISION,
    message          TEXT,
    -- What the run learnt about itself while it ran (preflight figures, warnings).
    insight          JSONB,
    -- From start to end in milliseconds, set when a run that started ends (succeeded, failed,
    -- cancelled while running); NULL for runs cancelled while queued and for interrupted ones.
    duration_ms      BIGINT,
    -- The seq of the run's newest event: appending bumps it, so concurrent appends to one run
    -- are numbered 1, 2, 3… without gaps or duplicates.
    last_event_seq   BIGINT NOT NULL DEFAULT 0
);
-- A customer never has two runs running, whichever host claimed or started them. (Queued runs
-- may wait behind an active one when the caller asked to queue; admitting a run only when the
-- customer has none active is serialised on the customer's row.)
CREATE UNIQUE INDEX runs_one_running ON runs (customer_id) WHERE state = 'running';
CREATE INDEX runs_customer_state ON runs (customer_id, state, seq);
CREATE INDEX runs_state ON runs (state, seq);
CREATE INDEX runs_customer_seq ON runs (customer_id, seq);
-- The run duration histogram by pipeline and result: everything it reads is in the index.
CREATE INDEX runs_durations ON runs (pipeline, state, duration_ms) WHERE duration_ms IS NOT NULL;

CREATE TABLE events (
    run_id TEXT COLLATE "C" NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq    BIGINT NOT NULL,
    name   TEXT NOT NULL,
    data   JSONB NOT NULL,
    at     TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
);

-- Backup history. No foreign keys: lines outlive runs and may describe backups made by the CLI.
CREATE TABLE backups (
    run_id       TEXT COLLATE "C" PRIMARY KEY,
    customer_id  TEXT COLLATE "C" NOT NULL,
    backup_id    TEXT,
    kind         TEXT NOT NULL,
    size         BIGINT,
    duration_ms  BIGINT,
    result       TEXT NOT NULL,
    triggered_by TEXT,
    created_at   TEXT COLLATE "C" NOT NULL,
    -- created_at as unix milliseconds (NULL when it does not parse), for ordering: RFC 3339
    -- strings with varying fraction digits and offsets do not sort as text.
    created_ms   BIGINT,
    -- Why the line has its result when the result alone does not say (e.g. `retention`).
    note         TEXT
);
-- A customer's history newest first, without sorting every line of the customer.
CREATE INDEX backups_customer_order
    ON backups (customer_id, COALESCE(created_ms, -1) DESC, created_at DESC, run_id DESC);
-- Each customer's complete backups that are still there, newest first: the newest one, their
-- count and their size.
CREATE INDEX backups_present
    ON backups (customer_id, COALESCE(created_ms, -1) DESC, created_at DESC, run_id DESC)
    INCLUDE (size)
    WHERE backup_id IS NOT NULL AND result <> 'deleted';

-- Audit log. No foreign keys: entries outlive what they describe.
CREATE TABLE audit (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          TEXT NOT NULL,
    actor       TEXT,
    action      TEXT NOT NULL,
    customer_id TEXT,
    run_id      TEXT,
    detail      JSONB NOT NULL
);
CREATE INDEX audit_customer ON audit (customer_id, id);

-- Named tokens people sign in with (only the SHA-256 of the secret is kept) and the console's
-- sessions (only the SHA-256 of the cookie's value is kept).
CREATE TABLE tokens (
    name           TEXT COLLATE "C" PRIMARY KEY,
    role           TEXT NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    hash           TEXT NOT NULL UNIQUE,
    created_at     TEXT NOT NULL,
    created_by     TEXT,
    last_used_at   TEXT,
    -- Unix seconds of last_used_at, so that a request updates it at most once a minute.
    last_used_unix BIGINT
);

CREATE TABLE sessions (
    hash         TEXT PRIMARY KEY,
    -- A token's name, or `service` (the service token); revoking a token ends its sessions.
    principal    TEXT NOT NULL,
    role         TEXT NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    csrf         TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    expires_unix BIGINT NOT NULL
);
CREATE INDEX sessions_principal ON sessions (principal);
CREATE INDEX sessions_expiry ON sessions (expires_unix);
