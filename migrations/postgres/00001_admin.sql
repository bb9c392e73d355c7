-- +goose Up
-- Collections, events and actions: the rule engine's configuration.
-- version backs ETag/If-Match; *_time columns are epoch milliseconds, as in the wire format.
CREATE TABLE collections (
    id           BIGSERIAL PRIMARY KEY,
    name         TEXT   NOT NULL,
    description  TEXT   NOT NULL DEFAULT '',
    status       TEXT   NOT NULL,
    version      BIGINT NOT NULL DEFAULT 1,
    created_by   TEXT   NOT NULL DEFAULT '',
    updated_by   TEXT   NOT NULL DEFAULT '',
    created_time BIGINT NOT NULL,
    updated_time BIGINT NOT NULL
);
CREATE UNIQUE INDEX collections_name_key ON collections (name);

CREATE TABLE events (
    id            BIGSERIAL PRIMARY KEY,
    collection_id BIGINT NOT NULL REFERENCES collections (id) ON DELETE RESTRICT,
    name          TEXT   NOT NULL,
    description   TEXT   NOT NULL DEFAULT '',
    status        TEXT   NOT NULL,
    version       BIGINT NOT NULL DEFAULT 1,
    created_by    TEXT   NOT NULL DEFAULT '',
    updated_by    TEXT   NOT NULL DEFAULT '',
    created_time  BIGINT NOT NULL,
    updated_time  BIGINT NOT NULL
);
CREATE UNIQUE INDEX events_collection_name_key ON events (collection_id, name);

CREATE TABLE actions (
    id            BIGSERIAL PRIMARY KEY,
    collection_id BIGINT NOT NULL REFERENCES collections (id) ON DELETE RESTRICT,
    event_id      BIGINT NOT NULL REFERENCES events (id) ON DELETE RESTRICT,
    name          TEXT   NOT NULL,
    description   TEXT   NOT NULL DEFAULT '',
    status        TEXT   NOT NULL,
    config_name   TEXT   NOT NULL,
    template      TEXT   NOT NULL DEFAULT '',
    config        TEXT   NOT NULL DEFAULT '{}',
    version       BIGINT NOT NULL DEFAULT 1,
    created_by    TEXT   NOT NULL DEFAULT '',
    updated_by    TEXT   NOT NULL DEFAULT '',
    created_time  BIGINT NOT NULL,
    updated_time  BIGINT NOT NULL
);
CREATE INDEX actions_collection_id_idx ON actions (collection_id, id);
CREATE INDEX actions_event_status_idx ON actions (event_id, status);

-- +goose Down
DROP TABLE actions;
DROP TABLE events;
DROP TABLE collections;
