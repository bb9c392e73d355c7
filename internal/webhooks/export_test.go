package webhooks

// RetryDelay exposes retryDelay to the tests.
var RetryDelay = retryDelay
