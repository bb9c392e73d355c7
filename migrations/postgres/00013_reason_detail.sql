-- +goose Up
-- A rule-engine decision (docs/rules.md) keeps its code in reason
-- (condition_false, opted_out, suppressed, throttled, send_at, ...) so
-- clients can match on it, and its words here: the expression, the
-- preference, the suppression that decided.
ALTER TABLE deliveries ADD COLUMN reason_detail TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE deliveries DROP COLUMN reason_detail;
