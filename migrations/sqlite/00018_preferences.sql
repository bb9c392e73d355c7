-- +goose Up
-- Recipient preferences (internal/preferences; docs/rules.md, "Preferences"):
-- one document per (collection, recipient key). The key is the recipient's
-- id when the producer sends one, else a channel address (email, E.164
-- phone, push id); emails are stored lowercased. The document is JSON
-- ({"channels": {...}, "events": {...}}): planning reads every key of a
-- batch in one query by the primary key, and never inside the document.
CREATE TABLE preferences (
    collection_id INTEGER NOT NULL REFERENCES collections (id) ON DELETE CASCADE,
    recipient_key TEXT   NOT NULL,
    document      TEXT   NOT NULL,
    version       INTEGER NOT NULL DEFAULT 1,
    updated_by    TEXT   NOT NULL DEFAULT '',
    created_time  INTEGER NOT NULL,
    updated_time  INTEGER NOT NULL,
    PRIMARY KEY (collection_id, recipient_key)
);

-- +goose Down
DROP TABLE preferences;
