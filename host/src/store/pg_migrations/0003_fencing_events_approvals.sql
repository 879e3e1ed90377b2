-- Migration 3 (issue 13): leases on the database's clock, events fanned out to every host, and
-- approvals kept in the database.

-- Unix milliseconds by the database server's clock: every host's leases are granted and expired
-- by this one clock, so a host whose own clock is off cannot keep or steal a lease.
CREATE FUNCTION qodify_now_ms() RETURNS BIGINT
    LANGUAGE sql VOLATILE
    AS $$ SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint $$;

-- Expiring leases looks only at running runs.
CREATE INDEX runs_running_lease ON runs (lease_expires_at) WHERE state = 'running';

-- What a running run asks people, and the answer.
CREATE TABLE approvals (
    run_id   TEXT COLLATE "C" PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
    request  JSONB NOT NULL,
    decision JSONB
);
