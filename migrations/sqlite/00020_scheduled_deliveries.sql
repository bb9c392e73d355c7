-- +goose Up
-- Scheduled deliveries (sendAt, an action's delay: docs/rules.md) wait in
-- the same queue as pending ones, with their due time in next_attempt_at,
-- and the claim takes both when due. One partial index over both statuses,
-- ordered by due time, keeps the claim a walk from the index's start: the
-- rows due now come first, and a backlog of future rows (a million in
-- BenchmarkQueueDrainWithScheduledBacklog, docs/benchmarks.md) sits after
-- them, unread. Sent, failed, skipped and canceled rows stay out of it.
CREATE INDEX deliveries_waiting_idx ON deliveries (next_attempt_at, id) WHERE status IN ('pending', 'scheduled');
DROP INDEX deliveries_due_idx;

-- +goose Down
CREATE INDEX deliveries_due_idx ON deliveries (next_attempt_at, id) WHERE status = 'pending';
DROP INDEX deliveries_waiting_idx;
