-- +goose Up
-- An event's condition (an expr-lang expression, docs/rules.md) gates every
-- action of the event; '' is none. A required event (password reset,
-- security alerts) ignores recipients' opt-outs.
ALTER TABLE events ADD COLUMN condition TEXT NOT NULL DEFAULT '';
ALTER TABLE events ADD COLUMN required BOOLEAN NOT NULL DEFAULT FALSE;
-- The notification's free-form data object (JSON text; '' when the
-- request had none): conditions read it as notification.data.
ALTER TABLE notifications ADD COLUMN data TEXT NOT NULL DEFAULT '';
-- Actions' config.condition is not rewritten: a stored object form
-- {macro, equals} is translated to its expression when it is read
-- (actions.Condition), so old rows and old producers keep working.

-- +goose Down
ALTER TABLE notifications DROP COLUMN data;
ALTER TABLE events DROP COLUMN required;
ALTER TABLE events DROP COLUMN condition;
