-- +goose Up
-- The dedupe record moves onto the notifications themselves (see
-- migrations/postgres/00008): a keyed request's notifications carry its
-- scope and key, each its position in the request (ordinal), and the first
-- the request's hash, under a unique (intake_scope, idempotency_key,
-- ordinal). SQLite keeps notifications.intake_id, NULL from here on, and an
-- empty intake_keys: the column has a foreign key to the table, and
-- dropping either means rebuilding notifications, whose deliveries
-- reference it with ON DELETE CASCADE.
ALTER TABLE notifications ADD COLUMN intake_scope TEXT NOT NULL DEFAULT '';
ALTER TABLE notifications ADD COLUMN ordinal INTEGER NOT NULL DEFAULT 0;
ALTER TABLE notifications ADD COLUMN request_hash TEXT NOT NULL DEFAULT '';

UPDATE notifications SET
    intake_scope = (SELECT k.scope FROM intake_keys k WHERE k.id = notifications.intake_id),
    ordinal = (SELECT COUNT(*) FROM notifications e WHERE e.intake_id = notifications.intake_id AND e.id < notifications.id)
WHERE intake_id IS NOT NULL;
UPDATE notifications SET
    request_hash = (SELECT k.request_hash FROM intake_keys k WHERE k.id = notifications.intake_id)
WHERE intake_id IS NOT NULL AND ordinal = 0;

CREATE UNIQUE INDEX notifications_intake_key ON notifications (intake_scope, idempotency_key, ordinal)
    WHERE idempotency_key <> '';
DROP INDEX notifications_intake_idx;
UPDATE notifications SET intake_id = NULL WHERE intake_id IS NOT NULL;
DELETE FROM intake_keys;

-- +goose Down
INSERT INTO intake_keys (scope, key, request_hash, created_time)
SELECT intake_scope, idempotency_key, request_hash, created_time FROM notifications
WHERE idempotency_key <> '' AND ordinal = 0;
UPDATE notifications SET intake_id = (SELECT k.id FROM intake_keys k
    WHERE k.scope = notifications.intake_scope AND k.key = notifications.idempotency_key)
WHERE idempotency_key <> '';
CREATE INDEX notifications_intake_idx ON notifications (intake_id) WHERE intake_id IS NOT NULL;
DROP INDEX notifications_intake_key;
ALTER TABLE notifications DROP COLUMN request_hash;
ALTER TABLE notifications DROP COLUMN ordinal;
ALTER TABLE notifications DROP COLUMN intake_scope;
