-- Migration 4: what `/metrics` reads on every scrape, from indexes rather than every row.
-- How long a run took from its start to its end, in milliseconds: set when a run that started
-- ends (succeeded, failed, cancelled while running); NULL for runs cancelled while queued and
-- for interrupted ones (their end is when a host noticed, not when they stopped).
ALTER TABLE runs ADD COLUMN duration_ms INTEGER;
UPDATE runs
   SET duration_ms = MAX(0, CAST(round((julianday(finished_at) - julianday(started_at))
                                       * 86400000.0) AS INTEGER))
 WHERE state IN ('succeeded', 'failed', 'cancelled')
   AND started_at IS NOT NULL AND finished_at IS NOT NULL;
-- The run duration histogram by pipeline and result: everything it reads is in the index.
CREATE INDEX runs_durations ON runs (pipeline, state, duration_ms) WHERE duration_ms IS NOT NULL;
-- Each customer's complete backups that are still there, newest first (the history's order):
-- the newest one, their count and their size.
CREATE INDEX backups_present
    ON backups (customer_id, IFNULL(created_ms, -1) DESC, created_at DESC, run_id DESC, size)
    WHERE backup_id IS NOT NULL AND result <> 'deleted';
