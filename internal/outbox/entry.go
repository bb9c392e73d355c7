package outbox

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// PutEvents limits (EventBridge service quotas that cannot be raised).
const (
	// MaxBatchEntries is the most entries one PutEvents call may carry.
	MaxBatchEntries = 10
	// MaxBatchBytes is the most a PutEvents call may carry, and so the most
	// one entry may be, counted as EntrySize counts.
	MaxBatchBytes = 256 * 1024
)

// Entry is one EventBridge PutEvents entry: the envelope as it is sent.
// EventBridge adds version, id, account, region and resources on delivery.
type Entry struct {
	// EnvelopeID is detail.envelopeId, repeated here so sinks and logs need not
	// parse Detail; it is not sent as a separate field.
	EnvelopeID   string
	Source       string
	DetailType   string
	Detail       string // the detail object as a JSON string, byte for byte as stored
	EventBusName string
	Time         time.Time
}

// entryTimeBytes is what a set Time adds to an entry's size.
const entryTimeBytes = 14

// Size is the entry's size as EventBridge counts it against the 256 KB
// limit: 14 bytes for Time, plus the UTF-8 bytes of Source, DetailType and
// Detail (and of any resources, which the service never sends).
func (e Entry) Size() int {
	n := len(e.Source) + len(e.DetailType) + len(e.Detail)
	if !e.Time.IsZero() {
		n += entryTimeBytes
	}
	return n
}

// EntryFromRow builds the PutEvents entry for an outbox row. Time is the
// row's commit-side timestamp (detail.timestamp), so a replay carries the
// original time, not the time of the replay.
func EntryFromRow(r Row, source, eventBusName string) Entry {
	return Entry{
		EnvelopeID:   r.EnvelopeID,
		Source:       source,
		DetailType:   r.DetailType,
		Detail:       r.Detail,
		EventBusName: eventBusName,
		Time:         time.UnixMilli(r.CreatedAt).UTC(),
	}
}

// check reports why EventBridge could never accept e, or nil. Such an entry
// is parked instead of being sent: retrying cannot help it.
func (e Entry) check() error {
	if n := e.Size(); n > MaxBatchBytes {
		return fmt.Errorf("%w: entry is %d bytes; PutEvents accepts at most %d", ErrUnpublishable, n, MaxBatchBytes)
	}
	if e.Source == "" || e.DetailType == "" {
		return fmt.Errorf("%w: source and detail-type are required", ErrUnpublishable)
	}
	if len(e.DetailType) > 128 {
		return fmt.Errorf("%w: detail-type is %d characters; EventBridge accepts at most 128", ErrUnpublishable, len(e.DetailType))
	}
	if !utf8.ValidString(e.Detail) || !json.Valid([]byte(e.Detail)) {
		return fmt.Errorf("%w: detail is not valid JSON", ErrUnpublishable)
	}
	// Valid JSON whose first token opens an object is an object. Decoding it
	// into a map to find that out was four fifths of this check and 3% of a REST
	// send's CPU (issue 17): every envelope comes through here.
	if d := strings.TrimLeft(e.Detail, " \t\r\n"); d == "" || d[0] != '{' {
		return fmt.Errorf("%w: detail is not a JSON object", ErrUnpublishable)
	}
	return nil
}
