// Package dispatch is the vocabulary of the send pipeline, shared by its
// parts: the request (the queue message and the REST send body, its parsing
// and validation) and the records it becomes (notifications, deliveries,
// their statuses). The parts are its subpackages, each readable alone:
//
//   - intake: the one submit path the queue consumer and the REST API
//     share: idempotency, name resolution, one transaction per batch.
//   - planning: what a notification becomes: a delivery per (recipient,
//     action), pending or skipped with a reason; the rule engine's
//     planning-time rules join there (planning.Rule).
//   - delivery: the workers: claim due deliveries under a lease, take the
//     intake's hand-offs, send through a channel, record the outcomes,
//     retry, recover a dead instance's deliveries, prune past retention;
//     send-time rules join before the provider call (delivery/gate.go).
//   - status: reading notifications and deliveries, and provider reports.
package dispatch

import (
	"bytes"
	"crypto/sha256"
	"database/sql/driver"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/notificationservice/notificationservice/internal/apperr"
)

// Limits on one request. A queue message over them is poison; an API request
// over them is INVALID_ARGUMENT.
const (
	maxNotifications = 100  // notification[] entries per request
	maxRecipients    = 1000 // recipients per notification
	maxNameLen       = 255
	maxAddresses     = 100 // tos + ccs + bccs per recipient
	maxMacros        = 200
	maxValueLen      = 64 << 10 // one macro value or address
	// MaxDataLen caps a notification's data object, as compact JSON: the
	// conditions that read it are linear in its size (docs/rules.md).
	MaxDataLen = 16 << 10
)

// Request is the NotificationQueue message and the REST send body, the
// seed's model: a collection and one or more named notifications.
type Request struct {
	CollectionID ID             `json:"collectionId"`
	Notification []Notification `json:"notification"`
}

// Notification is one named notification and its recipients.
type Notification struct {
	Name       string      `json:"name"`
	Recipients []Recipient `json:"recipients"`
	// SendAt, when set, is when its deliveries are due: they are planned
	// now and wait as scheduled until then (docs/rules.md). A time in the
	// past sends now.
	SendAt Timestamp `json:"sendAt,omitempty"`
	// Data is the trigger's payload, a free-form JSON object (an order's
	// amount, the invited user's name): conditions read it as
	// notification.data. Optional; at most MaxDataLen bytes.
	Data Data `json:"data,omitempty"`
}

// Data is a notification's free-form data object. JSON numbers decode as
// float64, objects as map[string]any and arrays as []any.
type Data map[string]any

// UnmarshalJSON refuses anything but an object (or null).
func (d *Data) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if string(b) == "null" {
		*d = nil
		return nil
	}
	if len(b) == 0 || b[0] != '{' {
		// The decoder names the field (notification.data).
		return &json.UnmarshalTypeError{Value: jsonKind(b), Type: dataType}
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	*d = m
	return nil
}

// Value stores the object as JSON text; "" when there is none.
func (d Data) Value() (driver.Value, error) {
	if d == nil {
		return "", nil
	}
	return jsonValue(map[string]any(d), "")
}

// Scan reads the object from JSON text; "" or NULL is none.
func (d *Data) Scan(src any) error {
	*d = nil
	return jsonScan(src, (*map[string]any)(d))
}

var dataType = reflect.TypeOf(map[string]any{})

// validData reports whether every key and string of v, at any depth, is
// text PostgreSQL can hold (apperr.ValidText): JSON escapes a NUL, so the
// encoded object would pass where its decoded strings would not.
func validData(v any) bool {
	switch v := v.(type) {
	case string:
		return apperr.ValidText(v)
	case Data:
		return validData(map[string]any(v))
	case map[string]any:
		for k, x := range v {
			if !apperr.ValidText(k) || !validData(x) {
				return false
			}
		}
	case []any:
		for _, x := range v {
			if !validData(x) {
				return false
			}
		}
	}
	return true
}

// jsonKind names the kind of a JSON value, for a type error.
func jsonKind(b []byte) string {
	if len(b) == 0 {
		return "nothing"
	}
	switch b[0] {
	case '"':
		return "string"
	case '[':
		return "array"
	case 't', 'f':
		return "bool"
	case 'n':
		return "null"
	}
	return "number"
}

// Timestamp is an instant in epoch milliseconds that accepts an RFC 3339
// string or an epoch-milliseconds number, and encodes as the number (so a
// request's Hash is the same whichever form it came in). Zero is unset. A
// value of neither form decodes to invalidTimestamp, which Validate reports
// with the field's name; the decoder would only name the body.
type Timestamp int64

const invalidTimestamp Timestamp = -1

// UnmarshalJSON accepts "2026-12-24T18:00:00+01:00" and 1798131600000.
func (t *Timestamp) UnmarshalJSON(b []byte) error {
	s := string(bytes.TrimSpace(b))
	switch {
	case s == "null":
		*t = 0
	case strings.HasPrefix(s, `"`):
		var str string
		if err := json.Unmarshal(b, &str); err != nil {
			return err
		}
		at, err := time.Parse(time.RFC3339Nano, str)
		if err != nil || at.UnixMilli() <= 0 {
			*t = invalidTimestamp
			return nil
		}
		*t = Timestamp(at.UnixMilli())
	default:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n <= 0 {
			*t = invalidTimestamp
			return nil
		}
		*t = Timestamp(n)
	}
	return nil
}

// Time is t as a time; the zero time when t is unset.
func (t Timestamp) Time() time.Time {
	if t <= 0 {
		return time.Time{}
	}
	return time.UnixMilli(int64(t))
}

// Recipient is one person the notification is for. Email is shorthand for a
// single Tos entry; Phone is the SMS address; PushID the device token.
type Recipient struct {
	Tos    []Address `json:"tos,omitempty"`
	Ccs    []Address `json:"ccs,omitempty"`
	Bccs   []Address `json:"bccs,omitempty"`
	Email  string    `json:"email,omitempty"`
	Phone  string    `json:"phone,omitempty"`
	PushID string    `json:"pushId,omitempty"`
	Locale string    `json:"locale,omitempty"`
	Macros Macros    `json:"macros,omitempty"`
	// ID is the producer's id for the person (its user id): it keys the
	// recipient's preferences; without it the channel address does
	// (docs/rules.md).
	ID string `json:"id,omitempty"`
	// Timezone is the recipient's IANA zone (Europe/Paris), for quiet hours
	// and conditions on local time; empty: the collection's default zone.
	Timezone string `json:"timezone,omitempty"`
}

// Address is an email address with an optional display name.
type Address struct {
	Email string `json:"email"`
	Name  string `json:"name,omitempty"`
}

// To returns the recipient's email To list: Tos, plus Email when it is not
// already among them.
func (r Recipient) To() []Address {
	to := make([]Address, 0, len(r.Tos)+1)
	to = append(to, r.Tos...)
	if r.Email != "" {
		dup := false
		for _, a := range r.Tos {
			if strings.EqualFold(a.Email, r.Email) {
				dup = true
				break
			}
		}
		if !dup {
			to = append(to, Address{Email: r.Email})
		}
	}
	return to
}

// ID is a positive int64 that accepts a JSON number or a numeric string: the
// event catalogue writes collectionId both ways ("772" in envelopes).
type ID int64

// UnmarshalJSON accepts 772 and "772".
func (id *ID) UnmarshalJSON(b []byte) error {
	s := string(bytes.TrimSpace(b))
	if s == "null" {
		return nil
	}
	if strings.HasPrefix(s, `"`) {
		var str string
		if err := json.Unmarshal(b, &str); err != nil {
			return err
		}
		s = str
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return &json.UnmarshalTypeError{Value: "value " + apperr.Truncate(s, 40), Type: idType}
	}
	*id = ID(n)
	return nil
}

var idType = reflect.TypeOf(int64(0))

// Macros are a recipient's macro values. The seed calls it a HashMap: string
// values as they are; numbers and booleans become their JSON text; null
// becomes ""; objects and arrays are a schema error.
type Macros map[string]string

// UnmarshalJSON applies the rules above.
func (m *Macros) UnmarshalJSON(b []byte) error {
	// Macros are almost always strings (or null, which decodes as "" here
	// too): decoded straight into the map, they cost one pass and no
	// json.RawMessage per value. A number, a boolean, an object or an array
	// fails that decode, and the rules below decide.
	var strs map[string]string
	if err := json.Unmarshal(b, &strs); err == nil {
		*m = strs
		return nil
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	if raw == nil {
		*m = nil
		return nil
	}
	out := make(Macros, len(raw))
	for k, v := range raw {
		v = bytes.TrimSpace(v)
		switch {
		case len(v) == 0 || string(v) == "null":
			out[k] = ""
		case v[0] == '"' && bytes.IndexByte(v, '\\') < 0 && utf8.Valid(v):
			// The document was validated as a whole: a string without
			// escapes is its bytes between the quotes (invalid UTF-8 would
			// have become U+FFFD, hence the check). Most macro values are
			// such strings; decoding each again cost 6.6% of the drain's
			// CPU (issue 17).
			out[k] = string(v[1 : len(v)-1])
		case v[0] == '"':
			var s string
			if err := json.Unmarshal(v, &s); err != nil {
				return err
			}
			out[k] = s
		case v[0] == '{' || v[0] == '[':
			return &json.UnmarshalTypeError{Value: "object or array", Type: stringType, Field: k}
		default: // number or boolean
			out[k] = string(v)
		}
	}
	*m = out
	return nil
}

var stringType = reflect.TypeOf("")

// Problem is why a request cannot be accepted. Code is stable (the queue's
// dead-letter reason header carries it); Details name the fields.
type Problem struct {
	Code    string // not_json | schema | too_large
	Message string
	Details []apperr.Detail
}

func (p *Problem) Error() string {
	if len(p.Details) == 0 {
		return p.Message
	}
	parts := make([]string, 0, len(p.Details))
	for _, d := range p.Details {
		parts = append(parts, d.Field+" "+d.Reason)
	}
	return p.Message + ": " + strings.Join(parts, "; ")
}

// AppErr is the problem as an INVALID_ARGUMENT error for the API.
func (p *Problem) AppErr() error { return apperr.Invalid(p.Message, p.Details...) }

// Problem codes.
const (
	ProblemNotJSON  = "not_json"
	ProblemSchema   = "schema"
	ProblemTooLarge = "too_large"
)

// Parse decodes and validates a queue message. Unknown fields are accepted,
// so producers can add fields before the service knows them. The error is
// always a *Problem.
func Parse(body []byte, maxBytes int) (Request, error) {
	return parse(body, maxBytes, false, 0)
}

// ParseForCollection decodes and validates a REST send body for the
// collection in the path: unknown fields are refused (as everywhere in the
// API), collectionId may be left out, and if given must match.
func ParseForCollection(body []byte, collectionID int64) (Request, error) {
	return parse(body, 0, true, collectionID)
}

func parse(body []byte, maxBytes int, strict bool, collectionID int64) (Request, error) {
	if maxBytes > 0 && len(body) > maxBytes {
		return Request{}, &Problem{Code: ProblemTooLarge, Message: "message is too large",
			Details: []apperr.Detail{{Field: "body", Reason: fmt.Sprintf("is %d bytes; the limit is %d", len(body), maxBytes)}}}
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return Request{}, &Problem{Code: ProblemNotJSON, Message: "message is empty",
			Details: []apperr.Detail{{Field: "body", Reason: "is empty"}}}
	}
	// No json.Valid pass first: the decoder reads the whole value, checking
	// its syntax, before it decodes any of it, so bad syntax always shows
	// as a syntax error (or an unexpected end), never as a schema one, and
	// data after the value shows at the next token. The extra pass was 2%
	// of the drain's CPU (docs/benchmarks.md).
	var req Request
	dec := json.NewDecoder(bytes.NewReader(body))
	if strict {
		dec.DisallowUnknownFields()
	}
	err := dec.Decode(&req)
	if err != nil && syntaxError(err) {
		return Request{}, notJSON(body)
	}
	// Data after the value makes the body not JSON even when the value
	// itself did not fit ("00" is 0 then 0): checked before the schema.
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Request{}, notJSON(body)
	}
	if err != nil {
		return Request{}, schemaProblem(err)
	}
	if collectionID > 0 {
		if req.CollectionID != 0 && int64(req.CollectionID) != collectionID {
			return Request{}, &Problem{Code: ProblemSchema, Message: "message has invalid fields",
				Details: []apperr.Detail{{Field: "collectionId", Reason: "must match the collection in the path or be left out"}}}
		}
		req.CollectionID = ID(collectionID)
	}
	if err := req.Validate(); err != nil {
		return Request{}, err
	}
	return req, nil
}

// syntaxError reports whether the decoder found err in the JSON's syntax
// (a truncated value included), not in how it fits a Request.
func syntaxError(err error) bool {
	var syntax *json.SyntaxError
	return errors.As(err, &syntax) || errors.Is(err, io.ErrUnexpectedEOF)
}

// notJSON is the problem of a body that is not one JSON value.
func notJSON(body []byte) *Problem {
	return &Problem{Code: ProblemNotJSON, Message: "message is not JSON",
		Details: []apperr.Detail{{Field: "body", Reason: syntaxReason(body)}}}
}

func syntaxReason(body []byte) string {
	var v any
	err := json.Unmarshal(body, &v)
	if err == nil {
		return "is not valid JSON"
	}
	return apperr.Truncate(err.Error(), 200)
}

func schemaProblem(err error) *Problem {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		field := typeErr.Field
		if field == "" {
			field = "body"
		}
		return &Problem{Code: ProblemSchema, Message: "message has fields of the wrong type",
			Details: []apperr.Detail{{Field: field, Reason: fmt.Sprintf("must be %s, not %s", kindName(typeErr.Type.Kind().String()), typeErr.Value)}}}
	}
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		return &Problem{Code: ProblemSchema, Message: "message has unknown fields",
			Details: []apperr.Detail{{Field: strings.Trim(name, `"`), Reason: "is not a known field"}}}
	}
	return &Problem{Code: ProblemSchema, Message: "message does not match the schema",
		Details: []apperr.Detail{{Field: "body", Reason: apperr.Truncate(msg, 200)}}}
}

func kindName(kind string) string {
	switch kind {
	case "int", "int64":
		return "an integer"
	case "string":
		return "a string"
	case "slice":
		return "an array"
	case "map", "struct":
		return "an object"
	}
	return kind
}

// Validate checks the request's shape. Address syntax is not checked here:
// a bad address skips that recipient's delivery with a reason, it does not
// refuse the whole request.
func (r Request) Validate() error {
	var f apperr.Fields
	if r.CollectionID <= 0 {
		f.Add("collectionId", "is required and must be a positive integer")
	}
	switch n := len(r.Notification); {
	case n == 0:
		f.Add("notification", "must have at least one entry")
	case n > maxNotifications:
		f.Add("notification", fmt.Sprintf("must have at most %d entries", maxNotifications))
	}
	for i, n := range r.Notification {
		p := fmt.Sprintf("notification[%d]", i)
		if strings.TrimSpace(n.Name) == "" {
			f.Add(p+".name", "is required")
		}
		if len(n.Name) > maxNameLen {
			f.Add(p+".name", fmt.Sprintf("must be at most %d characters", maxNameLen))
		}
		if n.Data != nil {
			if b, err := json.Marshal(n.Data); err != nil || len(b) > MaxDataLen {
				f.Add(p+".data", fmt.Sprintf("must be at most %d bytes of JSON", MaxDataLen))
			} else if !validData(n.Data) {
				f.Add(p+".data", apperr.TextReason)
			}
		}
		if n.SendAt < 0 {
			f.Add(p+".sendAt", "must be an RFC 3339 time (2026-12-24T18:00:00Z) or epoch milliseconds after 1970")
		}
		switch c := len(n.Recipients); {
		case c == 0:
			f.Add(p+".recipients", "must have at least one recipient")
		case c > maxRecipients:
			f.Add(p+".recipients", fmt.Sprintf("must have at most %d recipients", maxRecipients))
		}
		for j, rc := range n.Recipients {
			// Named only when something is wrong: most recipients are fine.
			rp := func() string { return fmt.Sprintf("%s.recipients[%d]", p, j) }
			if len(rc.Tos)+len(rc.Ccs)+len(rc.Bccs) > maxAddresses {
				f.Add(rp(), fmt.Sprintf("must have at most %d tos, ccs and bccs together", maxAddresses))
			}
			if len(rc.ID) > maxNameLen {
				f.Add(rp()+".id", fmt.Sprintf("must be at most %d characters", maxNameLen))
			}
			if rc.Timezone != "" {
				if _, err := time.LoadLocation(rc.Timezone); err != nil || len(rc.Timezone) > maxNameLen {
					f.Add(rp()+".timezone", "must be an IANA time zone name, such as Europe/Paris")
				}
			}
			if len(rc.Macros) > maxMacros {
				f.Add(rp()+".macros", fmt.Sprintf("must have at most %d entries", maxMacros))
			}
			for s := range rc.strings {
				if !apperr.ValidText(s) {
					f.Add(rp(), apperr.TextReason)
					break
				}
				if len(s) > maxValueLen {
					f.Add(rp(), fmt.Sprintf("has a value over %d bytes", maxValueLen))
					break
				}
			}
		}
	}
	if !apperr.ValidText(strings.Join(r.names(), "")) {
		f.Add("notification.name", apperr.TextReason)
	}
	if len(f) == 0 {
		return nil
	}
	return &Problem{Code: ProblemSchema, Message: "message has invalid fields", Details: f}
}

// CheckSchedule refuses a request with a sendAt more than ahead after
// now, naming each such entry; a sendAt in the past is fine (it sends now).
// It is apart from Validate because it needs the clock and the service's
// dispatch.maxScheduleAhead; ahead <= 0 checks nothing.
func (r Request) CheckSchedule(now time.Time, ahead time.Duration) *Problem {
	if ahead <= 0 {
		return nil
	}
	var f apperr.Fields
	latest := now.Add(ahead).UnixMilli()
	for i, n := range r.Notification {
		if int64(n.SendAt) > latest {
			f.Add(fmt.Sprintf("notification[%d].sendAt", i),
				fmt.Sprintf("must be at most %s ahead (dispatch.maxScheduleAhead); it is %s ahead", ahead, n.SendAt.Time().Sub(now).Round(time.Second)))
		}
	}
	if len(f) == 0 {
		return nil
	}
	return &Problem{Code: ProblemSchema, Message: "message has invalid fields", Details: f}
}

func (r Request) names() []string {
	out := make([]string, len(r.Notification))
	for i, n := range r.Notification {
		out[i] = n.Name
	}
	return out
}

// strings yields every string of rc, for Validate, without collecting them
// (it runs for every recipient of every message).
func (rc *Recipient) strings(yield func(string) bool) {
	for _, s := range [...]string{rc.Email, rc.Phone, rc.PushID, rc.Locale, rc.ID, rc.Timezone} {
		if !yield(s) {
			return
		}
	}
	for _, l := range [...][]Address{rc.Tos, rc.Ccs, rc.Bccs} {
		for _, a := range l {
			if !yield(a.Email) || !yield(a.Name) {
				return
			}
		}
	}
	for k, v := range rc.Macros {
		if !yield(k) || !yield(v) {
			return
		}
	}
}

// Hash is a digest of the request's meaning (canonical JSON: map keys are
// sorted by encoding/json), so the same key with the same body replays and
// with a different body conflicts, whatever the whitespace or key order.
func (r Request) Hash() string {
	b, _ := json.Marshal(r) // cannot fail: strings, ints, slices, maps and data decoded from JSON
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
