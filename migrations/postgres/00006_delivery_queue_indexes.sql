-- +goose Up
-- Partial indexes for the two queues in deliveries, in place of one index on
-- (status, next_attempt_at, id): a delivery that is sent, delivered,
-- bounced, failed or skipped (nearly all of them, in time) is in neither,
-- so recording an outcome adds no entry to a status index and the claim and
-- the stale-sending scan walk only live work (docs/benchmarks.md).
CREATE INDEX deliveries_due_idx ON deliveries (next_attempt_at, id) WHERE status = 'pending';
CREATE INDEX deliveries_sending_idx ON deliveries (claimed_at, id) WHERE status = 'sending';
DROP INDEX deliveries_status_next_idx;

-- +goose Down
CREATE INDEX deliveries_status_next_idx ON deliveries (status, next_attempt_at, id);
DROP INDEX deliveries_sending_idx;
DROP INDEX deliveries_due_idx;
