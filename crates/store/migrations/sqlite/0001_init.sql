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
    key_hash            BLOB,
    client_id           TEXT UNIQUE,
    hmac_secret_sealed  BLOB,
    rsa_kid             TEXT,
    rsa_private_sealed  BLOB,
    signing_jwk         TEXT,
    created_at          INTEGER NOT NULL,
    rotated_at          INTEGER NOT NULL,
    last_used_at        INTEGER NOT NULL,
    revoked_at          INTEGER,
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
    secret_sealed   BLOB NOT NULL,
    step            INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    used_at         INTEGER,
    UNIQUE (identity, device_id)
);
CREATE INDEX enrollment_otps_expires ON enrollment_otps (expires_at);

-- Built-in mailbox: items sealed with the data key, returned once then deleted.
CREATE TABLE mailbox_items (
    id              TEXT PRIMARY KEY,
    identity        TEXT NOT NULL,
    payload_sealed  BLOB NOT NULL,
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL
);
CREATE INDEX mailbox_items_identity ON mailbox_items (identity, created_at);
CREATE INDEX mailbox_items_expires ON mailbox_items (expires_at);
