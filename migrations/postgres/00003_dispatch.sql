-- +goose Up
-- Dispatch: accepted notifications, the deliveries planned from them, the
-- idempotency records that make intake exactly-once, and what the sandbox
-- channel "sent". Times are epoch milliseconds; JSON is TEXT.

-- One row per accepted message or API request that carried a dedupe key. The
-- unique (scope, key) is what makes a redelivered message or a repeated
-- Idempotency-Key create nothing new: the insert and the notifications commit
-- together, so a key is either fully processed or not at all.
CREATE TABLE intake_keys (
    id               BIGSERIAL PRIMARY KEY,
    scope            TEXT   NOT NULL,              -- queue | api:<collectionId>
    key              TEXT   NOT NULL,              -- AMQP message_id / idempotency-key header / Idempotency-Key
    request_hash     TEXT   NOT NULL,              -- sha256 of the canonical request
    created_time     BIGINT NOT NULL
);
CREATE UNIQUE INDEX intake_keys_scope_key ON intake_keys (scope, key);
CREATE INDEX intake_keys_created_idx ON intake_keys (created_time);

-- No foreign key to collections: a notification for an unknown collection is
-- recorded (status rejected, with its reason), not refused.
CREATE TABLE notifications (
    id              BIGSERIAL PRIMARY KEY,
    collection_id   BIGINT  NOT NULL,
    name            TEXT    NOT NULL,
    source          TEXT    NOT NULL,              -- queue | api
    intake_id       BIGINT REFERENCES intake_keys (id), -- the dedupe record, NULL when the request had no key
    idempotency_key TEXT    NOT NULL DEFAULT '',
    correlation     TEXT    NOT NULL DEFAULT '{}', -- JSON object of correlation ids
    recipients      TEXT    NOT NULL,              -- JSON array, as received (normalised)
    status          TEXT    NOT NULL,              -- accepted | rejected
    reason          TEXT    NOT NULL DEFAULT '',
    event_id        BIGINT  NOT NULL DEFAULT 0,
    delivery_count  INTEGER NOT NULL DEFAULT 0,    -- planned deliveries, skipped ones included
    skipped_count   INTEGER NOT NULL DEFAULT 0,
    created_by      TEXT    NOT NULL DEFAULT '',
    created_time    BIGINT  NOT NULL
);
CREATE INDEX notifications_collection_idx ON notifications (collection_id, id);
CREATE INDEX notifications_collection_name_idx ON notifications (collection_id, name, id);
CREATE INDEX notifications_created_idx ON notifications (collection_id, created_time);
CREATE INDEX notifications_intake_idx ON notifications (intake_id) WHERE intake_id IS NOT NULL;

CREATE TABLE deliveries (
    id                  BIGSERIAL PRIMARY KEY,
    notification_id     BIGINT  NOT NULL REFERENCES notifications (id) ON DELETE CASCADE,
    collection_id       BIGINT  NOT NULL,
    action_id           BIGINT  NOT NULL,
    recipient_index     INTEGER NOT NULL,
    channel             TEXT    NOT NULL,              -- email | sms | push
    address             TEXT    NOT NULL DEFAULT '',   -- for display and filtering
    recipient           TEXT    NOT NULL DEFAULT '{}', -- JSON: addresses, locale, macros
    status              TEXT    NOT NULL,              -- pending | sending | sent | delivered | bounced | failed | skipped
    reason              TEXT    NOT NULL DEFAULT '',   -- skip reason or last error
    attempts            INTEGER NOT NULL DEFAULT 0,
    next_attempt_at     BIGINT  NOT NULL DEFAULT 0,
    claimed_at          BIGINT  NOT NULL DEFAULT 0,
    provider            TEXT    NOT NULL DEFAULT '',
    provider_message_id TEXT,
    sent_time           BIGINT  NOT NULL DEFAULT 0,
    created_time        BIGINT  NOT NULL,
    updated_time        BIGINT  NOT NULL
);
-- One delivery per (notification, recipient, action), whatever happens.
CREATE UNIQUE INDEX deliveries_plan_key ON deliveries (notification_id, recipient_index, action_id);
-- Claiming due work and finding stale sends.
CREATE INDEX deliveries_status_next_idx ON deliveries (status, next_attempt_at, id);
-- Provider webhooks find a delivery by the provider's message id.
CREATE INDEX deliveries_provider_message_idx ON deliveries (provider, provider_message_id)
    WHERE provider_message_id IS NOT NULL;
CREATE INDEX deliveries_collection_idx ON deliveries (collection_id, id);

-- What the sandbox channel would have sent: one row per message per Send call,
-- so a delivery sent twice shows twice.
CREATE TABLE sandbox_messages (
    id                  BIGSERIAL PRIMARY KEY,
    delivery_id         BIGINT NOT NULL,
    notification_id     BIGINT NOT NULL,
    channel             TEXT   NOT NULL,
    provider_message_id TEXT   NOT NULL,
    message             TEXT   NOT NULL, -- the channels.Message as JSON
    created_time        BIGINT NOT NULL
);
CREATE INDEX sandbox_messages_delivery_idx ON sandbox_messages (delivery_id);

-- +goose Down
DROP TABLE sandbox_messages;
DROP TABLE deliveries;
DROP TABLE notifications;
DROP TABLE intake_keys;
