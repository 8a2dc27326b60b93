-- The audit log: security events (enrollments, confirmations, revocations, lockouts, key
-- rotations, admin calls), kept `audit.retention_days`. Ids are UUIDv7, so they sort by time.
CREATE TABLE audit_log (
    id       TEXT PRIMARY KEY,
    at       INTEGER NOT NULL,
    kind     TEXT NOT NULL,
    actor    TEXT NOT NULL,
    subject  TEXT,
    ip       TEXT,
    detail   TEXT
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_kind_at ON audit_log (kind, at);
CREATE INDEX audit_log_subject ON audit_log (subject);

-- Daily counters behind the dashboard (enrollments by mode, attestation results, SMS sent
-- and blocked, refusals by device and IP). Instances add their counts every few seconds.
CREATE TABLE daily_stats (
    day     INTEGER NOT NULL,
    metric  TEXT NOT NULL,
    label   TEXT NOT NULL,
    value   INTEGER NOT NULL,
    PRIMARY KEY (day, metric, label)
);
CREATE INDEX daily_stats_metric ON daily_stats (metric, day);
