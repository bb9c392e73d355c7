-- +goose Up
-- How recovery resolved a delivery's in-doubt attempts (an attempt whose
-- worker stopped between the provider call and the record of its outcome):
-- how many there were, and the last resolution (provider_accepted,
-- provider_not_found, resent, unknown; docs/queue.md). Empty when none.
ALTER TABLE deliveries ADD COLUMN in_doubt INTEGER NOT NULL DEFAULT 0;
ALTER TABLE deliveries ADD COLUMN reconciled TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE deliveries DROP COLUMN reconciled;
ALTER TABLE deliveries DROP COLUMN in_doubt;
