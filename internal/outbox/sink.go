package outbox

import (
	"context"
	"errors"
	"log/slog"
	"time"
)

// Sink publishes envelopes: EventBridge in production, the log by default.
//
// Put sends one batch (at most MaxBatchEntries entries, MaxBatchBytes bytes)
// and returns one error per entry, in order: nil for an entry the sink
// accepted, an *EntryError for one it refused. A non-nil second result means
// the call as a whole failed and no entry may be assumed published: the
// relay backs off and sends the batch again. Wrap ErrRejected when the sink
// refused the request as invalid (the relay then splits the batch to find
// the entry at fault); anything else is treated as the sink being
// unavailable (throttled, 5xx, timed out, unreachable, misconfigured).
type Sink interface {
	Put(ctx context.Context, entries []Entry) ([]error, error)
}

var (
	// ErrRejected marks a whole PutEvents call refused as invalid
	// (ValidationException): sending it again unchanged cannot succeed.
	ErrRejected = errors.New("outbox: request rejected by the sink")
	// ErrUnpublishable marks an entry no sink could ever accept (too large,
	// malformed); the relay parks it.
	ErrUnpublishable = errors.New("outbox: entry can never be published")
)

// EntryError is a sink's refusal of one entry, with EventBridge's error code.
type EntryError struct {
	Code    string
	Message string
}

func (e *EntryError) Error() string {
	if e.Message == "" {
		return e.Code
	}
	return e.Code + ": " + e.Message
}

// Permanent reports whether the entry can never succeed as it is, so it is
// parked at once instead of retried. The codes are the ones the PutEvents
// reference lists as non-retryable; an unknown code is retried (up to
// outbox.maxAttempts), since parking is the costlier mistake.
func (e *EntryError) Permanent() bool {
	switch e.Code {
	case "AccessDeniedException", "InvalidAccountIdException", "InvalidArgument", "MalformedDetail",
		"RedactionFailure", "NotAuthorizedForSourceException", "NotAuthorizedForDetailTypeException":
		return true
	}
	return false
}

// LogSink writes each envelope as one log line (msg "envelope") whose
// "event" attribute is shaped like the event EventBridge would deliver
// (version, id, detail-type, source, account, time, region, resources,
// detail), so the embedded default shows what a consumer would receive. With
// the JSON log format each line is one JSON object. It never fails an entry.
type LogSink struct {
	log     *slog.Logger
	account string
	region  string
}

// NewLogSink returns a LogSink writing to log. account and region fill the
// fields EventBridge would add.
func NewLogSink(log *slog.Logger, account, region string) *LogSink {
	return &LogSink{log: log, account: account, region: region}
}

// Put logs every entry.
func (s *LogSink) Put(ctx context.Context, entries []Entry) ([]error, error) {
	for _, e := range entries {
		// slog.GroupValue, not slog.Group: Group takes its attributes as
		// ...any, boxing each one, and builds a second slice of them.
		s.log.LogAttrs(ctx, slog.LevelInfo, "envelope",
			slog.String("eventBusName", e.EventBusName),
			slog.Attr{Key: "event", Value: slog.GroupValue(
				slog.String("version", "0"),
				slog.String("id", e.EnvelopeID),
				slog.String("detail-type", e.DetailType),
				slog.String("source", e.Source),
				slog.String("account", s.account),
				slog.String("time", e.Time.UTC().Format(time.RFC3339)),
				slog.String("region", s.region),
				slog.Any("resources", []string{}),
				slog.Any("detail", rawJSON(e.Detail)),
			)},
		)
	}
	return make([]error, len(entries)), nil
}

// rawJSON logs as the JSON it holds, not as a quoted string, with slog's
// JSON handler.
type rawJSON string

// MarshalJSON returns the JSON as is.
func (r rawJSON) MarshalJSON() ([]byte, error) { return []byte(r), nil }

// JSONText is the JSON as the string it is: the service's redacting
// handler reads it there instead of copying it out through MarshalJSON.
func (r rawJSON) JSONText() string { return string(r) }
