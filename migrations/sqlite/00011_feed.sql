-- +goose Up
-- The event feed (docs/outbox.md): named consumers pull the outbox in id
-- order and acknowledge envelopes one by one. A consumer's processed set is
-- a low-water mark (every outbox id <= acked_through is processed) plus the
-- ids acked above it, so a consumer acking in order keeps one row here and
-- none in outbox_feed_acks.
CREATE TABLE outbox_feed_consumers (
    name          TEXT    PRIMARY KEY,
    category      TEXT    NOT NULL DEFAULT '', -- the one category it reads; empty = all
    acked_through INTEGER NOT NULL DEFAULT 0,
    -- The low-water mark moves only over ids known to be final: committed,
    -- or never to be (a rolled-back or pruned row). settled_id is that bound;
    -- probe_id/probe_xid are the next one, final once every transaction in
    -- flight when it was taken has ended (PostgreSQL snapshot xmax).
    settled_id    INTEGER NOT NULL DEFAULT 0,
    probe_id      INTEGER NOT NULL DEFAULT 0,
    probe_xid     INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE TABLE outbox_feed_acks (
    consumer  TEXT   NOT NULL REFERENCES outbox_feed_consumers (name) ON DELETE CASCADE,
    outbox_id INTEGER NOT NULL,
    PRIMARY KEY (consumer, outbox_id)
);
-- The feed filters by category (detail type) in id order.
CREATE INDEX outbox_detail_type_idx ON outbox (detail_type, id);

-- +goose Down
DROP INDEX outbox_detail_type_idx;
DROP TABLE outbox_feed_acks;
DROP TABLE outbox_feed_consumers;
