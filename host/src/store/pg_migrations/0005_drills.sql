-- Migration 5: restore drills. Each drill's verdict on one backup, kept per run: the history
-- shows a backup's newest, `/metrics` each customer's newest restorable one. No foreign keys:
-- verdicts outlive runs and backups, like the history lines they annotate.
CREATE TABLE drills (
    run_id      TEXT COLLATE "C" PRIMARY KEY,
    customer_id TEXT COLLATE "C" NOT NULL,
    backup_id   TEXT COLLATE "C" NOT NULL,
    restorable  BOOLEAN NOT NULL,
    reason      TEXT,
    drilled_at  TEXT COLLATE "C" NOT NULL,
    -- drilled_at as unix milliseconds, for ordering and ages.
    drilled_ms  BIGINT NOT NULL
);
-- A page of history lines asks for its backups' newest drills.
CREATE INDEX drills_backup ON drills (customer_id, backup_id, drilled_ms DESC, run_id DESC);
-- Each customer's newest good drill, for `/metrics`.
CREATE INDEX drills_good ON drills (customer_id, drilled_ms) WHERE restorable;
