-- Schedules (issue 15): for each customer and scheduled pipeline, since when the schedule applies
-- and the newest slot handled (queued, skipped or missed), so each slot is handled once across
-- restarts; and customers' own schedules, which replace their tier's.
CREATE TABLE schedule_slots (
    customer_id  TEXT NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    pipeline     TEXT NOT NULL,
    since_ms     INTEGER NOT NULL,
    last_slot_ms INTEGER,
    outcome      TEXT,
    run_id       TEXT,
    reason       TEXT,
    at           TEXT,
    PRIMARY KEY (customer_id, pipeline)
);

CREATE TABLE customer_schedules (
    customer_id TEXT NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    pipeline    TEXT NOT NULL,
    spec_json   TEXT NOT NULL,
    PRIMARY KEY (customer_id, pipeline)
);
