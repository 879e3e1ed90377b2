-- Migration 10: restore drills. Each drill's verdict on one backup, kept per run: the history
-- shows a backup's newest, `/metrics` each customer's newest restorable one. No foreign keys:
-- verdicts outlive runs and backups, like the history lines they annotate.
CREATE TABLE drills (
    run_id      TEXT PRIMARY KEY NOT NULL,
    customer_id TEXT NOT NULL,
    backup_id   TEXT NOT NULL,
    restorable  INTEGER NOT NULL,
    reason      TEXT,
    drilled_at  TEXT NOT NULL,
    -- drilled_at as unix milliseconds, for ordering and ages.
    drilled_ms  INTEGER NOT NULL
);
-- A page of history lines asks for its backups' newest drills.
CREATE INDEX drills_backup ON drills (customer_id, backup_id, drilled_ms DESC);
-- Each customer's newest good drill, for `/metrics`.
CREATE INDEX drills_good ON drills (customer_id, drilled_ms) WHERE restorable = 1;
