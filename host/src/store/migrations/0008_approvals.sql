-- Approvals (issue 13): what a running run asks people, and the answer, kept with the rest of
-- the state so that any surface (and, on PostgreSQL, any host) decides it the same way.
CREATE TABLE approvals (
    run_id        TEXT PRIMARY KEY NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    request_json  TEXT NOT NULL,
    decision_json TEXT
);
