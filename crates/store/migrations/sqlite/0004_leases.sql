-- Leases: a job that must run on one instance at a time (cleanup) takes the lease of its
-- name until expires_at, and renews it while it runs.
CREATE TABLE leases (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    expires_at  INTEGER NOT NULL
);
