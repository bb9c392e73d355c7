-- +goose Up
-- Customer webhook endpoints (internal/webhooks; docs/webhooks.md).

-- The webhook fan-out is the outbox's second reader beside the relay: it
-- marks each row it has turned into webhook messages. Rows that existed
-- before this migration are marked handled: they predate every endpoint.
ALTER TABLE outbox ADD COLUMN fanned_out_at INTEGER;
UPDATE outbox SET fanned_out_at = created_at;
CREATE INDEX outbox_fanout_idx ON outbox (id) WHERE fanned_out_at IS NULL;

-- secret and previous_secret are AES-GCM ciphertexts (webhooks.secretKey):
-- Standard Webhooks signs with HMAC, so the service must be able to read
-- the secret back, which rules out a hash.
CREATE TABLE webhooks (
    id                    INTEGER PRIMARY KEY AUTOINCREMENT,
    collection_id         INTEGER NOT NULL REFERENCES collections (id) ON DELETE RESTRICT,
    url                   TEXT    NOT NULL,
    description           TEXT    NOT NULL DEFAULT '',
    event_types           TEXT    NOT NULL DEFAULT '[]',
    state                 TEXT    NOT NULL,
    secret                TEXT    NOT NULL,
    previous_secret       TEXT    NOT NULL DEFAULT '',
    previous_secret_until INTEGER NOT NULL DEFAULT 0,
    last_validation       TEXT, -- JSON; NULL until the first HEALTH_CHECK
    failing_since         INTEGER NOT NULL DEFAULT 0,
    version               INTEGER NOT NULL DEFAULT 1,
    created_by            TEXT    NOT NULL DEFAULT '',
    updated_by            TEXT    NOT NULL DEFAULT '',
    created_time          INTEGER NOT NULL,
    updated_time          INTEGER NOT NULL
);
CREATE INDEX webhooks_collection_idx ON webhooks (collection_id, id);

-- One row per (endpoint, typed event): event_id is the Standard Webhooks
-- webhook-id, the same on every retry, and unique per endpoint so a
-- fan-out that runs twice for one envelope inserts nothing the second time.
CREATE TABLE webhook_messages (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    endpoint_id     INTEGER NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_id        TEXT    NOT NULL,
    event_type      TEXT    NOT NULL,
    body            TEXT    NOT NULL,
    status          TEXT    NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT    NOT NULL DEFAULT '',
    created_at      INTEGER NOT NULL
);
CREATE UNIQUE INDEX webhook_messages_event_key ON webhook_messages (endpoint_id, event_id);
CREATE INDEX webhook_messages_due_idx ON webhook_messages (next_attempt_at) WHERE status = 'pending';

-- Every POST to an endpoint, HEALTH_CHECKs included (GET …/attempts).
CREATE TABLE webhook_attempts (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    endpoint_id INTEGER NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_id    TEXT    NOT NULL,
    event_type  TEXT    NOT NULL,
    time        INTEGER NOT NULL,
    status_code INTEGER NOT NULL DEFAULT 0,
    latency_ms  INTEGER NOT NULL DEFAULT 0,
    error       TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX webhook_attempts_endpoint_idx ON webhook_attempts (endpoint_id, id);

-- +goose Down
DROP TABLE webhook_attempts;
DROP TABLE webhook_messages;
DROP TABLE webhooks;
DROP INDEX outbox_fanout_idx;
ALTER TABLE outbox DROP COLUMN fanned_out_at;
