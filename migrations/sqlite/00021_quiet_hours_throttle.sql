-- +goose Up
-- A collection's default time zone (IANA; recipients without a timezone of
-- their own are read in it) and its quiet hours (a JSON window
-- {"start":"21:00","end":"08:00"}, or NULL for none). docs/rules.md.
ALTER TABLE collections ADD COLUMN timezone TEXT NOT NULL DEFAULT 'UTC';
ALTER TABLE collections ADD COLUMN quiet_hours TEXT;

-- Throttle counters: how many deliveries one key (an action's or an
-- event's, and a recipient) let through in one fixed window starting at
-- window_start (epoch ms). One INSERT … ON CONFLICT DO UPDATE … WHERE n <
-- limit per delivery counts and decides at once, so instances sharing the
-- database never let more than the limit through. expires_at (the window's
-- end) is what the retention prune deletes by.
CREATE TABLE throttle_counters (
    collection_id BIGINT NOT NULL,
    key TEXT NOT NULL,
    window_start BIGINT NOT NULL,
    n INTEGER NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (collection_id, key, window_start)
);
CREATE INDEX throttle_counters_expires ON throttle_counters (expires_at);

-- +goose Down
DROP TABLE throttle_counters;
ALTER TABLE collections DROP COLUMN quiet_hours;
ALTER TABLE collections DROP COLUMN timezone;
