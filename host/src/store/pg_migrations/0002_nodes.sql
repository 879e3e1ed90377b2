-- Migration 2: nodes (issue 13), the hosts that execute runs, each customer belonging to one.
-- A node's workers claim only its customers' runs, and are woken by `NOTIFY` on the node's
-- channel (`qodify_node_<first 16 hex digits of sha256(name)>`; `qodify_unassigned` for a
-- customer of no node) when a run for it is queued, cancelled or ends.

-- The node whose workers run the customer's runs; NULL until a node claims it.
ALTER TABLE customers ADD COLUMN node TEXT COLLATE "C";
CREATE INDEX customers_node ON customers (node);
-- The node that claimed the run (kept after it ended).
ALTER TABLE runs ADD COLUMN node TEXT COLLATE "C";

CREATE TABLE nodes (
    name          TEXT COLLATE "C" PRIMARY KEY,
    version       TEXT NOT NULL,
    started_at    TEXT NOT NULL,
    heartbeat_at  TEXT NOT NULL,
    -- heartbeat_at as unix milliseconds, for its age.
    heartbeat_ms  BIGINT NOT NULL,
    -- Where other hosts reach its API (`advertise_url`), when set.
    advertise_url TEXT
);

-- The channel a node listens on.
CREATE FUNCTION qodify_node_channel(node TEXT) RETURNS TEXT
    LANGUAGE sql IMMUTABLE STRICT
    AS $$ SELECT 'qodify_node_' || left(encode(sha256(convert_to(node, 'UTF8')), 'hex'), 16) $$;

-- Wakes the node of customer `customer` (or every node, when it has none) with `payload`.
CREATE FUNCTION qodify_wake(customer TEXT, payload TEXT) RETURNS void
    LANGUAGE sql
    AS $$ SELECT pg_notify(COALESCE(qodify_node_channel(c.node), 'qodify_unassigned'), payload)
          FROM customers c WHERE c.id = customer $$;
