-- Users exist once their phone is confirmed. Passwords are argon2id PHC strings.
CREATE TABLE users (
    id              TEXT PRIMARY KEY,
    phone           TEXT NOT NULL UNIQUE,
    password_hash   TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    failed_logins   BIGINT NOT NULL DEFAULT 0,
    locked_until    BIGINT NOT NULL DEFAULT 0
);

-- One pending SMS code per (phone, purpose); a new code replaces the old one. Codes are kept
-- as keyed hashes. A registration's password hash waits here until the phone is confirmed.
CREATE TABLE sms_codes (
    phone             TEXT NOT NULL,
    purpose           TEXT NOT NULL CHECK (purpose IN ('register', 'password_reset')),
    code_hash         BYTEA NOT NULL,
    device            TEXT,
    pending_password  TEXT,
    attempts          BIGINT NOT NULL DEFAULT 0,
    created_at        BIGINT NOT NULL,
    expires_at        BIGINT NOT NULL,
    PRIMARY KEY (phone, purpose)
);
CREATE INDEX sms_codes_expires ON sms_codes (expires_at);

-- Outgoing SMS, sent off the request path with retries. Bodies are sealed with the data key.
CREATE TABLE sms_messages (
    id               TEXT PRIMARY KEY,
    sender           TEXT NOT NULL,
    phone            TEXT NOT NULL,
    country          TEXT NOT NULL,
    purpose          TEXT NOT NULL,
    body_sealed      BYTEA NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('queued', 'sending', 'sent', 'failed')),
    attempts         BIGINT NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT NOT NULL,
    last_error       TEXT,
    provider_id      TEXT,
    created_at       BIGINT NOT NULL,
    sent_at          BIGINT
);
CREATE INDEX sms_messages_due ON sms_messages (status, next_attempt_at);
CREATE INDEX sms_messages_phone ON sms_messages (phone, created_at);

-- Opaque refresh tokens, hashed, rotated on every use; a family shares one login.
CREATE TABLE refresh_tokens (
    lookup      TEXT PRIMARY KEY,
    hash        BYTEA NOT NULL,
    family      TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    device      TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('active', 'used', 'revoked')),
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);
CREATE INDEX refresh_tokens_expires ON refresh_tokens (expires_at);

-- Access-token signing keys (ES256). The current key has no retired_at.
CREATE TABLE signing_keys (
    kid             TEXT PRIMARY KEY,
    private_sealed  BYTEA NOT NULL,
    public_jwk      TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    retired_at      BIGINT
);
