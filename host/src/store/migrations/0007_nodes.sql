-- Nodes (issue 13): the hosts that execute runs, each customer belonging to one. With SQLite
-- there is one node, the host itself; the same schema as PostgreSQL's keeps the two alike.

-- The node whose workers run the customer's runs; NULL until a node claims it.
ALTER TABLE customers ADD COLUMN node TEXT;
CREATE INDEX customers_node ON customers (node);
-- The node that claimed the run (kept after it ended).
ALTER TABLE runs ADD COLUMN node TEXT;

CREATE TABLE nodes (
    name          TEXT PRIMARY KEY NOT NULL,
    version       TEXT NOT NULL,
    started_at    TEXT NOT NULL,
    heartbeat_at  TEXT NOT NULL,
    -- heartbeat_at as unix milliseconds, for its age.
    heartbeat_ms  INTEGER NOT NULL,
    -- Where other hosts reach its API (`advertise_url`), when set.
    advertise_url TEXT
);
