-- +goose Up
-- Transactional outbox: one row per EventBridge envelope, written in the same
-- transaction as the mutation it describes. Rows are relayed in id order.
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    envelope_id     TEXT    NOT NULL,
    detail_type     TEXT    NOT NULL,
    collection_id   INTEGER NOT NULL DEFAULT 0,
    detail          TEXT    NOT NULL,
    created_at      INTEGER NOT NULL,
    published_at    INTEGER,
    parked_at       INTEGER,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT    NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX outbox_envelope_id_key ON outbox (envelope_id);
CREATE INDEX outbox_pending_idx ON outbox (id) WHERE published_at IS NULL AND parked_at IS NULL;
CREATE INDEX outbox_created_at_idx ON outbox (created_at);
-- Parked rows are few and must stay cheap to count and list (GET /v1/envelopes?state=parked).
CREATE INDEX outbox_parked_idx ON outbox (id) WHERE parked_at IS NOT NULL;
-- The replay API filters by collection.
CREATE INDEX outbox_collection_idx ON outbox (collection_id, id);

-- +goose Down
DROP TABLE outbox;
