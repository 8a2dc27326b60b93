-- PostgreSQL twin of migrations/sqlite/0001_init.sql: the same tables, with BYTEA for BLOB and
-- BIGINT for INTEGER (Unix seconds and counters are 64-bit). Ids stay TEXT so rows move
-- between backends unchanged (`moat admin migrate`).
-- Devices: one row per (identity, device_id). The credential columns are rotated in place on
-- re-enrollment. Secrets are stored only as keyed hashes (API keys) or sealed with the data
-- key (HMAC secrets, RSA private keys).
CREATE TABLE devices (
    id                  TEXT PRIMARY KEY,
    identity            TEXT NOT NULL,
    device_id           TEXT NOT NULL,
    mode                TEXT NOT NULL,
    platform            TEXT,
    status              TEXT NOT NULL CHECK (status IN ('active', 'revoked')),
    key_lookup          TEXT UNIQUE,
    key_hash            BYTEA,
    client_id           TEXT UNIQUE,
    hmac_secret_sealed  BYTEA,
    rsa_kid             TEXT,
    rsa_private_sealed  BYTEA,
    signing_jwk         TEXT,
    created_at          BIGINT NOT NULL,
    rotated_at          BIGINT NOT NULL,
    last_used_at        BIGINT NOT NULL,
    revoked_at          BIGINT,
    UNIQUE (identity, device_id)
);
CREATE INDEX devices_identity ON devices (identity, status, rotated_at);
CREATE INDEX devices_last_used ON devices (last_used_at);

-- Enrollment OTPs (otp mode): one pending code per (identity, device_id).
CREATE TABLE enrollment_otps (
    id              TEXT PRIMARY KEY,
    identity        TEXT NOT NULL,
    device_id       TEXT NOT NULL,
    platform        TEXT,
    secret_sealed   BYTEA NOT NULL,
    step            BIGINT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,
    used_at         BIGINT,
    UNIQUE (identity, device_id)
);
CREATE INDEX enrollment_otps_expires ON enrollment_otps (expires_at);

-- Built-in mailbox: items sealed with the data key, returned once then deleted.
CREATE TABLE mailbox_items (
    id              TEXT PRIMARY KEY,
    identity        TEXT NOT NULL,
    payload_sealed  BYTEA NOT NULL,
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL
);
CREATE INDEX mailbox_items_identity ON mailbox_items (identity, created_at);
CREATE INDEX mailbox_items_expires ON mailbox_items (expires_at);
