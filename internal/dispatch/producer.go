package dispatch

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/notificationservice/notificationservice/internal/apperr"
)

// The producer headers of the event gateway (seed 004), on the REST send
// and as AMQP headers of a queue message, by their seed names. HTTP matches
// them in any case; AMQP header tables are exact, so producers send them in
// lower case, as the seed writes them.
const (
	HeaderTenant         = "tenant"
	HeaderTeam           = "team"
	HeaderService        = "service"
	HeaderEntityID       = "entity-id"
	HeaderCorrelationIDs = "correlation-ids"
)

// Limits on the producer headers.
const (
	maxProducerLen       = 128  // tenant, team, service
	maxEntityIDLen       = 255  // entity-id
	maxCorrelationIDs    = 20   // entries of correlation-ids
	maxCorrelationKeyLen = 64   // one correlation id's type (order_id)
	maxCorrelationLen    = 256  // one correlation id's value
	maxCorrelationJSON   = 8192 // the correlation-ids header, bytes
)

// ProblemHeader is the Problem code of a producer header that is not valid;
// the queue dead-letters such a message with it as its reason.
const ProblemHeader = "invalid_header"

// Producer is who sent a notification and what it is about: the tenant,
// team and service of the producer and the id of the entity the
// notification concerns (an order, a customer). It is kept on the
// notification; none of it changes what is sent. The correlation-ids
// header is not here: its ids join the notification's correlation map.
type Producer struct {
	Tenant   string `json:"tenant"`
	Team     string `json:"team"`
	Service  string `json:"service"`
	EntityID string `json:"entityId"`
}

// ParseProducer reads the producer headers through header (a header's
// value, "" when absent) and validates them: the four names are trimmed
// and must be valid text within their length; correlation-ids, when
// present, must be a JSON object whose values are strings. It returns the
// producer and the correlation ids (nil when none). The error is a
// *Problem (ProblemHeader) whose details name each bad header.
func ParseProducer(header func(name string) string) (Producer, map[string]string, error) {
	var f apperr.Fields
	text := func(name string, limit int) string {
		v := strings.TrimSpace(header(name))
		switch {
		case !apperr.ValidText(v):
			f.Add(name, apperr.TextReason)
			return ""
		case len(v) > limit:
			f.Add(name, fmt.Sprintf("must be at most %d characters", limit))
			return ""
		}
		return v
	}
	p := Producer{
		Tenant:   text(HeaderTenant, maxProducerLen),
		Team:     text(HeaderTeam, maxProducerLen),
		Service:  text(HeaderService, maxProducerLen),
		EntityID: text(HeaderEntityID, maxEntityIDLen),
	}
	ids, reason := parseCorrelationIDs(header(HeaderCorrelationIDs))
	if reason != "" {
		f.Add(HeaderCorrelationIDs, reason)
	}
	if err := f.Err(); err != nil {
		return Producer{}, nil, &Problem{Code: ProblemHeader, Message: "message has invalid headers", Details: f}
	}
	return p, ids, nil
}

// parseCorrelationIDs reads the correlation-ids header: a JSON object of
// strings, as the seed shows it ('{"order_id": "…", "customer_id": "…"}').
// An empty header is no ids. reason says what is wrong, "" when nothing.
func parseCorrelationIDs(raw string) (map[string]string, string) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return nil, ""
	}
	const shape = `must be a JSON object of string values, such as {"order_id": "1234"}`
	if len(raw) > maxCorrelationJSON {
		return nil, fmt.Sprintf("must be at most %d bytes", maxCorrelationJSON)
	}
	if !apperr.ValidText(raw) {
		return nil, apperr.TextReason
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(raw), &m); err != nil || m == nil {
		return nil, shape
	}
	if len(m) > maxCorrelationIDs {
		return nil, fmt.Sprintf("must have at most %d entries", maxCorrelationIDs)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys) // the first bad entry is named the same way every time
	out := make(map[string]string, len(m))
	for _, k := range keys {
		var s string
		// null decodes into a string without an error; it is not one.
		if v := bytes.TrimSpace(m[k]); len(v) == 0 || v[0] != '"' || json.Unmarshal(v, &s) != nil {
			return nil, fmt.Sprintf("%s: %q is not a string", shape, apperr.Truncate(k, maxCorrelationKeyLen))
		}
		switch {
		case strings.TrimSpace(k) == "":
			return nil, "must not have an empty key"
		case len(k) > maxCorrelationKeyLen:
			return nil, fmt.Sprintf("must have keys of at most %d characters", maxCorrelationKeyLen)
		case len(s) > maxCorrelationLen:
			return nil, fmt.Sprintf("must have values of at most %d characters", maxCorrelationLen)
		case !apperr.ValidText(k) || !apperr.ValidText(s):
			// Escapes such as \u0000 decode to text the database refuses.
			return nil, apperr.TextReason
		}
		out[k] = s
	}
	if len(out) == 0 {
		return nil, ""
	}
	return out, ""
}
