-- +goose Up
-- PostgreSQL drops the foreign keys from notifications to intake_keys and
-- from deliveries to notifications here (see migrations/postgres/00007): the
-- intake writes all three in one transaction, and each check cost a locking
-- read of the parent row. SQLite keeps them: dropping one means rebuilding
-- the table, and its check is an in-process index lookup without a lock.
SELECT 1;

-- +goose Down
SELECT 1;
