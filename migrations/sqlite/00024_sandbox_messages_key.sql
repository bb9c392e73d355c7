-- +goose Up
-- On PostgreSQL this version keys sandbox_messages by (delivery_id, id) and
-- drops the index on delivery_id, one index entry less per send. Here the
-- id is the table's rowid, which costs no index of its own, and SQLite
-- cannot change a table's primary key without rebuilding it: nothing to do.
SELECT 1;

-- +goose Down
SELECT 1;
