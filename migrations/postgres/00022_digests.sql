-- +goose Up
-- Digests (docs/rules.md, Digest). One row per open window of an action's
-- config.digest and a recipient key: delivery_id is the delivery that
-- opened it (scheduled, reason digest, due at closes_at), item_count how
-- many deliveries it holds. Joining is one INSERT … ON CONFLICT DO UPDATE …
-- RETURNING on the primary key, so two instances never open two windows for
-- one key; a window past closes_at or full is replaced by the next opener in
-- the same statement. The worker that claims the opening delivery deletes
-- the row before it reads the items, so nothing joins a window once sent.
CREATE TABLE digest_windows (
    collection_id BIGINT NOT NULL,
    action_id BIGINT NOT NULL,
    recipient_key TEXT NOT NULL,
    delivery_id BIGINT NOT NULL,
    opened_at BIGINT NOT NULL,
    closes_at BIGINT NOT NULL,
    item_count INTEGER NOT NULL,
    max_items INTEGER NOT NULL,
    PRIMARY KEY (collection_id, action_id, recipient_key)
);

-- A digested delivery links to the delivery that sent it.
ALTER TABLE deliveries ADD COLUMN digest_delivery_id BIGINT NOT NULL DEFAULT 0;
CREATE INDEX deliveries_digest_idx ON deliveries (digest_delivery_id) WHERE digest_delivery_id <> 0;

-- +goose Down
DROP INDEX deliveries_digest_idx;
ALTER TABLE deliveries DROP COLUMN digest_delivery_id;
DROP TABLE digest_windows;
