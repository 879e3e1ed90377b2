-- A customer's runs and backup history are listed newest first: indexes that give that order
-- without sorting every row of the customer (found by `cargo xtask bench --api-only`).
CREATE INDEX IF NOT EXISTS runs_customer_seq ON runs (customer_id, seq);
CREATE INDEX IF NOT EXISTS backups_customer_order
    ON backups (customer_id, IFNULL(created_ms, -1) DESC, created_at DESC, run_id DESC);
