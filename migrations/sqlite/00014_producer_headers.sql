-- +goose Up
-- The producer headers of the event gateway (seed 004): who sent a
-- notification (tenant, team, service) and the entity it is about, kept on
-- the notification so it can be found by them. The correlation ids the
-- correlation-ids header carries join the existing correlation column.
ALTER TABLE notifications ADD COLUMN tenant TEXT NOT NULL DEFAULT '';
ALTER TABLE notifications ADD COLUMN team TEXT NOT NULL DEFAULT '';
ALTER TABLE notifications ADD COLUMN service TEXT NOT NULL DEFAULT '';
ALTER TABLE notifications ADD COLUMN entity_id TEXT NOT NULL DEFAULT '';
CREATE INDEX notifications_entity ON notifications (collection_id, entity_id) WHERE entity_id <> '';
-- A collection may belong to a tenant: a send whose tenant header names
-- another is refused. '' = no tenant, nothing checked.
ALTER TABLE collections ADD COLUMN tenant TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE collections DROP COLUMN tenant;
DROP INDEX notifications_entity;
ALTER TABLE notifications DROP COLUMN entity_id;
ALTER TABLE notifications DROP COLUMN service;
ALTER TABLE notifications DROP COLUMN team;
ALTER TABLE notifications DROP COLUMN tenant;
