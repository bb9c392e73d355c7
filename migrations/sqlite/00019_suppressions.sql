-- +goose Up
-- The suppression list (internal/suppressions; docs/rules.md "Suppressions"):
-- addresses a collection must not send to on a channel, because the provider
-- reported a hard bounce, a spam report or a STOP, or an admin added them.
-- address is normalized (emails lower-cased, phones as given); one row per
-- (collection, channel, address), so an automatic report that arrives twice
-- inserts nothing the second time.
CREATE TABLE suppressions (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    collection_id INTEGER NOT NULL REFERENCES collections (id) ON DELETE CASCADE,
    channel       TEXT   NOT NULL,
    address       TEXT   NOT NULL,
    reason        TEXT   NOT NULL DEFAULT '',
    source        TEXT   NOT NULL,
    created_by    TEXT   NOT NULL DEFAULT '',
    created_time  INTEGER NOT NULL
);
CREATE UNIQUE INDEX suppressions_address_key ON suppressions (collection_id, channel, address);
-- Planning looks a batch's addresses up by (collection, address), any channel.
CREATE INDEX suppressions_lookup_idx ON suppressions (collection_id, address);

-- +goose Down
DROP TABLE suppressions;
