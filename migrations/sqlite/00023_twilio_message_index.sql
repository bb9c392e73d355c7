-- +goose Up
-- Only Twilio's status callbacks find a delivery by the provider's message
-- id (its MessageSid); SendGrid's events carry our delivery id, and the
-- sandbox, FCM and webhooks send no reports. The index held an entry for
-- every accepted send that no lookup could want; it now holds Twilio's rows
-- only (the PostgreSQL migration of this version says what that saved), and
-- status.Store's lookup repeats this predicate, as SQLite needs to use a
-- partial index.
CREATE INDEX deliveries_twilio_message_idx ON deliveries (provider_message_id)
    WHERE provider = 'twilio' AND provider_message_id IS NOT NULL;
DROP INDEX deliveries_provider_message_idx;

-- +goose Down
CREATE INDEX deliveries_provider_message_idx ON deliveries (provider, provider_message_id)
    WHERE provider_message_id IS NOT NULL;
DROP INDEX deliveries_twilio_message_idx;
