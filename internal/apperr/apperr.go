// Package apperr defines the error kinds every layer returns and the HTTP
// edge maps, once, to a status and a response code. Domain code says what went
// wrong (Kind, message, field details); it never picks an HTTP status.
package apperr

import (
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"unicode/utf8"
)

// Kind is the canonical class of an error, named after the API's statuses.
type Kind int

// The kinds. The zero value is Internal, so an unclassified error is never
// reported as the caller's fault.
const (
	Internal Kind = iota
	InvalidArgument
	NotFound
	AlreadyExists
	FailedPrecondition // the resource's state forbids the operation (409)
	PreconditionFailed // a stale If-Match (412); reported as FAILED_PRECONDITION
	PermissionDenied
	Unauthenticated
	Unavailable
	ResourceExhausted // the caller is over a rate limit (429, with Retry-After)
	// MethodNotAllowed is a request with a method its resource does not
	// take (405, with the Allow header); only the HTTP edge raises it.
	MethodNotAllowed
)

// String is the canonical status name used in response bodies.
func (k Kind) String() string {
	switch k {
	case InvalidArgument:
		return "INVALID_ARGUMENT"
	case NotFound:
		return "NOT_FOUND"
	case AlreadyExists:
		return "ALREADY_EXISTS"
	case FailedPrecondition, PreconditionFailed:
		return "FAILED_PRECONDITION"
	case PermissionDenied:
		return "PERMISSION_DENIED"
	case Unauthenticated:
		return "UNAUTHENTICATED"
	case Unavailable:
		return "UNAVAILABLE"
	case ResourceExhausted:
		return "RESOURCE_EXHAUSTED"
	case MethodNotAllowed:
		return "METHOD_NOT_ALLOWED"
	default:
		return "INTERNAL"
	}
}

// Detail names one thing that was wrong: a request field, or a resource that
// blocks the operation.
type Detail struct {
	Field  string `json:"field"`
	Reason string `json:"reason"`
}

// Error is an error with a kind, a message safe to show the caller, and
// optional details. Err, when set, is the cause (kept for logs, not shown).
type Error struct {
	Kind    Kind
	Message string
	Details []Detail
	Err     error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Message + ": " + e.Err.Error()
	}
	return e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// Is makes errors.Is(err, &Error{Kind: k}) match any error of kind k.
func (e *Error) Is(target error) bool {
	var t *Error
	if !errors.As(target, &t) {
		return false
	}
	return t.Message == "" && t.Kind == e.Kind
}

// New builds an error of kind k.
func New(k Kind, format string, args ...any) *Error {
	return &Error{Kind: k, Message: fmt.Sprintf(format, args...)}
}

// Invalid is an INVALID_ARGUMENT error with field details.
func Invalid(msg string, details ...Detail) *Error {
	return &Error{Kind: InvalidArgument, Message: msg, Details: details}
}

// KindOf returns the kind of err, Internal when it has none.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return Internal
}

// As returns err as an *Error, if it is or wraps one.
func As(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}

// Fields collects field-level validation failures so a caller sees all of
// them in one response, not one per attempt.
type Fields []Detail

// Add records that field is wrong for reason.
func (f *Fields) Add(field, reason string) { *f = append(*f, Detail{Field: field, Reason: reason}) }

// Required records field as missing when value is empty.
func (f *Fields) Required(field, value string) bool {
	if value == "" {
		f.Add(field, "is required")
		return false
	}
	return true
}

// MaxLen records field as too long when value has more than n characters.
func (f *Fields) MaxLen(field, value string, n int) {
	if len([]rune(value)) > n {
		f.Add(field, fmt.Sprintf("must be at most %d characters", n))
	}
}

// OneOf records field as invalid when value is not one of allowed.
func (f *Fields) OneOf(field, value string, allowed ...string) {
	for _, a := range allowed {
		if value == a {
			return
		}
	}
	f.Add(field, fmt.Sprintf("must be one of %v", allowed))
}

// maxEmailLen is the longest address SMTP carries (RFC 5321's path limit).
const maxEmailLen = 254

// Email records field as invalid unless value is a bare email address
// (noreply@example.com): no display name, since a sender's name has a field
// of its own, and no surrounding space. Action configs and collection
// defaults share it, so a sender valid in one is valid in the other.
func (f *Fields) Email(field, value string) {
	a, err := mail.ParseAddress(value)
	if len(value) > maxEmailLen || err != nil || a.Name != "" || a.Address != value {
		f.Add(field, "must be an email address such as noreply@example.com")
	}
}

// Collect adds the details of err, an error from a parameter parser such as
// an INVALID_ARGUMENT *Error, so a handler reports every bad parameter in
// one response. A nil err adds nothing; an error without details adds one
// detail with its message.
func (f *Fields) Collect(err error) {
	if err == nil {
		return
	}
	if e, ok := As(err); ok && len(e.Details) > 0 {
		*f = append(*f, e.Details...)
		return
	}
	f.Add("request", err.Error())
}

// Err returns an INVALID_ARGUMENT error carrying the collected details, or
// nil when there are none.
func (f Fields) Err() error {
	if len(f) == 0 {
		return nil
	}
	return Invalid("request has invalid fields", f...)
}

// TextReason is the detail reason for a string that Text refuses.
const TextReason = "must be valid UTF-8 without NUL characters"

// ValidText reports whether s can be stored as text by every database the
// service runs on: PostgreSQL refuses NUL and invalid UTF-8 in text (the
// write fails, which would surface as a 500), while SQLite stores them, so
// the same request would behave differently on the two. Every string that
// comes from outside (body fields, query and path parameters, idempotency
// keys, queue message fields) is checked with it before it is used.
func ValidText(s string) bool {
	return utf8.ValidString(s) && strings.IndexByte(s, 0) < 0
}

// Text records field as invalid unless ValidText(value).
func (f *Fields) Text(field, value string) bool {
	if !ValidText(value) {
		f.Add(field, TextReason)
		return false
	}
	return true
}

// Truncate shortens s, a text on its way to a column, a header, a span or a
// log line (an error text, a reason, an identifier), to at most n bytes. It
// cuts between characters, never inside one, and marks the cut with "…"
// (when n leaves room for it); invalid UTF-8 and NUL become U+FFFD. So the
// result is always storable text (ValidText), which a byte cut of valid
// input is not.
func Truncate(s string, n int) string {
	if !ValidText(s) {
		s = strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
	}
	if len(s) <= n {
		return s
	}
	const mark = "…"
	cut := n
	if n > len(mark) {
		cut = n - len(mark)
	}
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	if n > len(mark) {
		return s[:cut] + mark
	}
	return s[:cut]
}
