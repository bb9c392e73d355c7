package webhooks

// RetryDelay exposes retryDelay to the tests.
var RetryDelay = retryDelay

// RelayFirst exposes relayFirst to the tests.
const RelayFirst = relayFirst
