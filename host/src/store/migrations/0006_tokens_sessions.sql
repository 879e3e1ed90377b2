-- Named tokens people sign in with (only the SHA-256 of the secret is kept) and the console's
-- sessions (only the SHA-256 of the cookie's value is kept).
CREATE TABLE tokens (
    name         TEXT PRIMARY KEY,
    role         TEXT NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    hash         TEXT NOT NULL UNIQUE,
    created_at   TEXT NOT NULL,
    created_by   TEXT,
    last_used_at TEXT,
    -- Unix seconds of last_used_at, so that a request updates it at most once a minute.
    last_used_unix INTEGER
);

CREATE TABLE sessions (
    hash         TEXT PRIMARY KEY,
    -- A token's name, or `service` (the service token); revoking a token ends its sessions.
    principal    TEXT NOT NULL,
    role         TEXT NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    csrf         TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    expires_unix INTEGER NOT NULL
);
CREATE INDEX sessions_principal ON sessions (principal);
CREATE INDEX sessions_expiry ON sessions (expires_unix);
