-- +goose Up
-- A collection's default email sender: used for the collection's email
-- actions whose config names no fromEmail, before the service-wide
-- channels.sendgrid.fromEmail (docs/channels.md). Empty means no default.
ALTER TABLE collections ADD COLUMN default_from_email TEXT NOT NULL DEFAULT '';
ALTER TABLE collections ADD COLUMN default_from_name TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE collections DROP COLUMN default_from_name;
ALTER TABLE collections DROP COLUMN default_from_email;
