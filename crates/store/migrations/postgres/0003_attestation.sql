-- Genuine app packages, measured by the challenge-response attestation.
CREATE TABLE app_releases (
    app_id      TEXT NOT NULL,
    version     TEXT NOT NULL,
    sha256      BYTEA NOT NULL,
    size        BIGINT NOT NULL,
    package     BYTEA NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('active', 'retired')),
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (app_id, version)
);

-- Integrity-token secrets (HS256). The current one has no retired_at.
CREATE TABLE integrity_keys (
    kid            TEXT PRIMARY KEY,
    secret_sealed  BYTEA NOT NULL,
    created_at     BIGINT NOT NULL,
    retired_at     BIGINT
);

-- App Attest keys, after a verified attestation; the counter only grows.
CREATE TABLE app_attest_keys (
    key_id       TEXT PRIMARY KEY,
    device       TEXT NOT NULL,
    public_key   BYTEA NOT NULL,
    counter      BIGINT NOT NULL,
    environment  TEXT NOT NULL,
    created_at   BIGINT NOT NULL
);
