-- +goose Up
-- The dedupe record moves onto the notifications themselves: a keyed
-- request's notifications carry its scope and key, each its position in the
-- request (ordinal), and the first the request's hash. The unique index on
-- (intake_scope, idempotency_key, ordinal) does what intake_keys' unique
-- (scope, key) did, and the intake's separate insert of a key row per
-- message (a fifth of the intake's database time, docs/benchmarks.md) is
-- gone. COLLATE "C": keys are compared for equality only, and byte order
-- spares every comparison the database collation's strcoll.
ALTER TABLE notifications ADD COLUMN intake_scope TEXT COLLATE "C" NOT NULL DEFAULT '';
ALTER TABLE notifications ADD COLUMN ordinal INTEGER NOT NULL DEFAULT 0;
ALTER TABLE notifications ADD COLUMN request_hash TEXT NOT NULL DEFAULT '';
ALTER TABLE notifications ALTER COLUMN idempotency_key TYPE TEXT COLLATE "C";

UPDATE notifications n SET intake_scope = k.scope, ordinal = o.ordinal,
    request_hash = CASE WHEN o.ordinal = 0 THEN k.request_hash ELSE '' END
FROM intake_keys k,
     (SELECT id, row_number() OVER (PARTITION BY intake_id ORDER BY id) - 1 AS ordinal
      FROM notifications WHERE intake_id IS NOT NULL) o
WHERE n.intake_id = k.id AND o.id = n.id;

CREATE UNIQUE INDEX notifications_intake_key ON notifications (intake_scope, idempotency_key, ordinal)
    WHERE idempotency_key <> '';
DROP INDEX notifications_intake_idx;
ALTER TABLE notifications DROP COLUMN intake_id;
DROP TABLE intake_keys;

-- +goose Down
CREATE TABLE intake_keys (
    id               BIGSERIAL PRIMARY KEY,
    scope            TEXT   NOT NULL,
    key              TEXT   NOT NULL,
    request_hash     TEXT   NOT NULL,
    created_time     BIGINT NOT NULL
);
CREATE UNIQUE INDEX intake_keys_scope_key ON intake_keys (scope, key);
CREATE INDEX intake_keys_created_idx ON intake_keys (created_time);
ALTER TABLE notifications ADD COLUMN intake_id BIGINT;
INSERT INTO intake_keys (scope, key, request_hash, created_time)
SELECT intake_scope, idempotency_key, request_hash, created_time FROM notifications
WHERE idempotency_key <> '' AND ordinal = 0;
UPDATE notifications n SET intake_id = k.id FROM intake_keys k
WHERE n.idempotency_key <> '' AND k.scope = n.intake_scope AND k.key = n.idempotency_key;
CREATE INDEX notifications_intake_idx ON notifications (intake_id) WHERE intake_id IS NOT NULL;
DROP INDEX notifications_intake_key;
ALTER TABLE notifications ALTER COLUMN idempotency_key TYPE TEXT COLLATE "default";
ALTER TABLE notifications DROP COLUMN request_hash;
ALTER TABLE notifications DROP COLUMN ordinal;
ALTER TABLE notifications DROP COLUMN intake_scope;
