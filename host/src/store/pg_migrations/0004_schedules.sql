-- Migration 4 (issue 15): schedules. For each customer and scheduled pipeline, since when the
-- schedule applies and the newest slot handled (queued, skipped or missed): a slot is taken with a
-- conditional update, so one host handles it once; and customers' own schedules.
CREATE TABLE schedule_slots (
    customer_id  TEXT COLLATE "C" NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    pipeline     TEXT COLLATE "C" NOT NULL,
    since_ms     BIGINT NOT NULL,
    last_slot_ms BIGINT,
    outcome      TEXT,
    run_id       TEXT,
    reason       TEXT,
    at           TEXT,
    PRIMARY KEY (customer_id, pipeline)
);

CREATE TABLE customer_schedules (
    customer_id TEXT COLLATE "C" NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    pipeline    TEXT COLLATE "C" NOT NULL,
    spec        JSONB NOT NULL,
    PRIMARY KEY (customer_id, pipeline)
);
