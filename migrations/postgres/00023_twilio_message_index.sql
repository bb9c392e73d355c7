-- +goose Up
-- Only Twilio's status callbacks find a delivery by the provider's message
-- id (its MessageSid); SendGrid's events carry our delivery id, and the
-- sandbox, FCM and webhooks send no reports. The index on every delivery's
-- (provider, provider_message_id) took an entry from each accepted send
-- (recording an outcome changes status, so the update is never HOT and
-- adds a new entry to every index) that no lookup could want: the sandbox's
-- outcome update ran about 15% faster without it (docs/benchmarks.md). It
-- now holds Twilio's rows only, and status.Store's lookup repeats this
-- predicate so the planner may use it with the id as a parameter.
CREATE INDEX deliveries_twilio_message_idx ON deliveries (provider_message_id)
    WHERE provider = 'twilio' AND provider_message_id IS NOT NULL;
DROP INDEX deliveries_provider_message_idx;

-- +goose Down
CREATE INDEX deliveries_provider_message_idx ON deliveries (provider, provider_message_id)
    WHERE provider_message_id IS NOT NULL;
DROP INDEX deliveries_twilio_message_idx;
