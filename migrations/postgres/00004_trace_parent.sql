-- +goose Up
-- The W3C traceparent of the request or queue message that created a
-- notification, so the dispatch worker's provider call joins that trace
-- (docs/observability.md). Empty when there was none.
ALTER TABLE notifications ADD COLUMN trace_parent TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE notifications DROP COLUMN trace_parent;
