-- +goose Up
-- The intake writes an intake key, its notifications and their deliveries in
-- one transaction, and nothing else writes these tables' keys, so the two
-- foreign keys below can only ever be satisfied. Each cost a locking read of
-- the parent row per inserted row (SELECT … FOR KEY SHARE, which writes WAL
-- to lock the tuple): measured in docs/benchmarks.md. Retention deletes
-- deliveries with their notifications explicitly.
ALTER TABLE deliveries DROP CONSTRAINT deliveries_notification_id_fkey;
ALTER TABLE notifications DROP CONSTRAINT notifications_intake_id_fkey;

-- +goose Down
ALTER TABLE notifications ADD CONSTRAINT notifications_intake_id_fkey
    FOREIGN KEY (intake_id) REFERENCES intake_keys (id);
ALTER TABLE deliveries ADD CONSTRAINT deliveries_notification_id_fkey
    FOREIGN KEY (notification_id) REFERENCES notifications (id) ON DELETE CASCADE;
