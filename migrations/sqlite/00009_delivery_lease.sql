-- +goose Up
-- A claimed delivery carries a lease: the instance that holds it
-- (lease_owner, one id per process) and until when (lease_until, epoch ms).
-- The owner renews its leases every dispatch.lease/3; recovery takes the
-- rows in sending whose lease has expired, so a dead owner's rows come back
-- within seconds and a slow live send is never taken (docs/queue.md).
ALTER TABLE deliveries ADD COLUMN lease_owner TEXT NOT NULL DEFAULT '';
ALTER TABLE deliveries ADD COLUMN lease_until BIGINT NOT NULL DEFAULT 0;
-- Rows an instance of the previous version holds keep the 5-minute rule it
-- relied on (its default dispatch.staleSending), so an upgrade that runs
-- beside it does not take its live sends.
UPDATE deliveries SET lease_until = claimed_at + 300000 WHERE status = 'sending';
-- The recovery scan walks only live claims, oldest lease first (a partial
-- index, as on PostgreSQL); the old (claimed_at, id) index served the
-- stale-sending rule this replaces.
CREATE INDEX deliveries_lease_idx ON deliveries (lease_until, id) WHERE status = 'sending';
DROP INDEX deliveries_sending_idx;

-- +goose Down
CREATE INDEX deliveries_sending_idx ON deliveries (claimed_at, id) WHERE status = 'sending';
DROP INDEX deliveries_lease_idx;
ALTER TABLE deliveries DROP COLUMN lease_until;
ALTER TABLE deliveries DROP COLUMN lease_owner;
