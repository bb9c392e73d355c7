-- +goose Up
-- Every read of sandbox_messages is by delivery (Messages, accepted,
-- Delete), in id order within one delivery; nothing looks a row up by id
-- alone. A primary key on (delivery_id, id) serves all of them, so the
-- separate index on delivery_id goes: the sandbox, the default channel,
-- writes one index entry per send instead of two (docs/benchmarks.md).
ALTER TABLE sandbox_messages DROP CONSTRAINT sandbox_messages_pkey;
ALTER TABLE sandbox_messages ADD PRIMARY KEY (delivery_id, id);
DROP INDEX sandbox_messages_delivery_idx;

-- +goose Down
CREATE INDEX sandbox_messages_delivery_idx ON sandbox_messages (delivery_id);
ALTER TABLE sandbox_messages DROP CONSTRAINT sandbox_messages_pkey;
ALTER TABLE sandbox_messages ADD PRIMARY KEY (id);
