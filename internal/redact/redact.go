// Package redact is the slog handler every service log line goes through:
// it masks recipient addresses, removes secrets and adds the trace and span
// ids of the line's context (docs/observability.md).
package redact

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"
	"unsafe"

	"go.opentelemetry.io/otel/trace"

	"github.com/notificationservice/notificationservice/internal/jsonenc"
)

// Redacted replaces a secret in a log line.
const Redacted = "[REDACTED]"

// minSecretLen keeps short, common strings (guest) from being treated as
// known secrets and blanked wherever they appear.
const minSecretLen = 8

// Logger returns log with every line passing through the redacting
// handler, which also knows secrets. A logger Logger built is extended with
// secrets rather than wrapped twice.
func Logger(log *slog.Logger, secrets ...string) *slog.Logger {
	if h, ok := log.Handler().(*redactHandler); ok {
		return slog.New(&redactHandler{next: h.next, r: newRedactor(append(slices.Clone(h.r.secrets), secrets...))})
	}
	return slog.New(&redactHandler{next: log.Handler(), r: newRedactor(secrets)})
}

// redactHandler is the slog.Handler every service log line goes through.
// It masks recipient addresses (j***@example.com, ***-***-4167), removes
// secrets (configured values, bearer tokens, JWTs, Authorization and other
// secret-named attributes), and adds the trace and span ids of the span in
// the line's context, so a log line can be found from a trace and back.
type redactHandler struct {
	next slog.Handler
	r    *redactor
}

// Enabled defers to the wrapped handler.
func (h *redactHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

// Handle redacts the message and every attribute, adds the trace and span
// ids, and passes the new record on.
func (h *redactHandler) Handle(ctx context.Context, rec slog.Record) error {
	out := slog.NewRecord(rec.Time, rec.Level, h.r.text(rec.Message), rec.PC)
	rec.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(h.r.attr(a))
		return true
	})
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		out.AddAttrs(slog.String("traceId", sc.TraceID().String()), slog.String("spanId", sc.SpanID().String()))
	}
	return h.next.Handle(ctx, out)
}

// WithAttrs redacts attrs once, when they are bound, not on every line.
func (h *redactHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	red := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		red[i] = h.r.attr(a)
	}
	return &redactHandler{next: h.next.WithAttrs(red), r: h.r}
}

// WithGroup keeps redacting inside the group.
func (h *redactHandler) WithGroup(name string) slog.Handler {
	return &redactHandler{next: h.next.WithGroup(name), r: h.r}
}

// redactor holds the known secrets and does the masking.
type redactor struct {
	secrets  []string
	replacer *strings.Replacer
}

func newRedactor(secrets []string) *redactor {
	var keep []string
	for _, s := range secrets {
		if len(s) >= minSecretLen && !slices.Contains(keep, s) {
			keep = append(keep, s)
		}
	}
	// Longest first, so a secret that contains another is replaced whole.
	slices.SortFunc(keep, func(a, b string) int { return len(b) - len(a) })
	r := &redactor{secrets: keep}
	if len(keep) > 0 {
		pairs := make([]string, 0, 2*len(keep))
		for _, s := range keep {
			pairs = append(pairs, s, Redacted)
		}
		r.replacer = strings.NewReplacer(pairs...)
	}
	return r
}

var (
	emailRE  = regexp.MustCompile(`[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}`)
	e164RE   = regexp.MustCompile(`\+\d[\d ().\-]{5,20}\d`)
	nanpRE   = regexp.MustCompile(`\(?\b\d{3}\)?[ .\-]\d{3}[ .\-]\d{4}\b`)
	bearerRE = regexp.MustCompile(`(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=\-]+`)
	jwtRE    = regexp.MustCompile(`\beyJ[A-Za-z0-9_\-]*\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*`)
	sgKeyRE  = regexp.MustCompile(`\bSG\.[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}`)
)

// containsSecret reports whether s holds one of the known secrets. With
// two or more secrets strings.NewReplacer builds a generic replacer, whose
// Replace allocates a buffer for every string even when nothing matches:
// twelve allocations a logged request, measured once the webhooks key joined
// the auth secret (docs/benchmarks.md). A few Contains calls allocate none.
func (r *redactor) containsSecret(s string) bool {
	for _, secret := range r.secrets {
		if strings.Contains(s, secret) {
			return true
		}
	}
	return false
}

// text redacts free text: secrets, then credentials by shape, then
// addresses.
func (r *redactor) text(s string) string {
	if r.replacer != nil && r.containsSecret(s) {
		s = r.replacer.Replace(s)
	}
	if strings.Contains(s, "eyJ") {
		s = jwtRE.ReplaceAllString(s, Redacted)
	}
	if strings.Contains(s, "SG.") {
		s = sgKeyRE.ReplaceAllString(s, Redacted)
	}
	// The two patterns below run on every string of every line (the access
	// log's among them); skipping them when they cannot match halves the
	// cost of a logged request (docs/benchmarks.md).
	if mayHaveScheme(s) {
		s = bearerRE.ReplaceAllString(s, "$1 "+Redacted)
	}
	if strings.Contains(s, "@") {
		s = emailRE.ReplaceAllStringFunc(s, maskEmail)
	}
	if strings.Contains(s, "+") {
		s = e164RE.ReplaceAllStringFunc(s, maskPhone)
	}
	if !mayHaveNANP(s) {
		return s
	}
	return nanpRE.ReplaceAllStringFunc(s, maskPhone)
}

// mayHaveNANP reports whether s holds what every match of nanpRE holds:
// three digits, an optional ), a separator, three digits, a separator, four
// digits. Counting ten digits and a separator let every UUID through (an
// envelope detail has several), each costing a backtracking run. One pass,
// no allocation.
func mayHaveNANP(s string) bool {
	for i := 0; i+12 <= len(s); i++ { // twelve bytes at least
		if !digits(s, i, 3) {
			continue
		}
		j := i + 3
		if s[j] == ')' {
			j++
		}
		if j+9 > len(s) || !isSep(s[j]) || !digits(s, j+1, 3) || !isSep(s[j+4]) || !digits(s, j+5, 4) {
			continue
		}
		return true
	}
	return false
}

// digits reports whether s[i:i+n] is n ASCII digits.
func digits(s string, i, n int) bool {
	if i+n > len(s) {
		return false
	}
	for _, c := range []byte(s[i : i+n]) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func isSep(c byte) bool { return c == ' ' || c == '.' || c == '-' }

// mayHaveScheme reports whether s may hold "bearer" or "basic" in any case,
// as bearerRE needs: always when s is not ASCII (ſ folds to s, as in the
// pattern's (?i)). One pass, no allocation.
func mayHaveScheme(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x80 {
			return true
		}
		if c|0x20 != 'b' {
			continue
		}
		rest := s[i:]
		if len(rest) >= len("basic") && strings.EqualFold(rest[:len("basic")], "basic") ||
			len(rest) >= len("bearer") && strings.EqualFold(rest[:len("bearer")], "bearer") {
			return true
		}
	}
	return false
}

// field redacts the value of an attribute or JSON member named key
// (lower-cased): values under address-like keys are masked whatever their
// shape (a bare 4096854167 under "phone" is still a phone number).
func (r *redactor) field(key, s string) string {
	if secretKey(key) {
		return Redacted
	}
	s = r.text(s)
	if addressKey(key) {
		return maskAddress(s)
	}
	return s
}

func secretKey(k string) bool {
	switch k {
	case "authorization", "proxy-authorization", "cookie", "set-cookie", "token", "apikey", "api_key", "api-key",
		"authtoken", "accesstoken", "access_token", "refreshtoken", "privatekey", "private_key", "credentials":
		return true
	}
	return strings.Contains(k, "secret") || strings.Contains(k, "password")
}

func addressKey(k string) bool {
	switch k {
	case "email", "phone", "to", "address", "recipient", "pushid", "pushtoken", "token_device", "devicetoken":
		return true
	}
	return false
}

// maskAddress masks a value known to be an address: emails and phone
// numbers keep their masked shape, anything else (a push token) keeps its
// first four characters.
func maskAddress(s string) string {
	if strings.Contains(s, "***") || s == "" {
		return s // already masked by text
	}
	digits := 0
	for _, c := range s {
		if c >= '0' && c <= '9' {
			digits++
		}
	}
	if digits >= 5 && strings.Trim(s, "0123456789+-(). ") == "" {
		return maskPhone(s)
	}
	if len(s) <= 4 {
		return "***"
	}
	return s[:4] + "***"
}

// maskEmail keeps the first character of the local part and the domain:
// jane.doe@example.com is j***@example.com.
func maskEmail(s string) string {
	at := strings.LastIndexByte(s, '@')
	if at <= 0 {
		return "***" + s[at:]
	}
	return s[:1] + "***" + s[at:]
}

// maskPhone replaces every digit but the last four (the last two for
// numbers shorter than ten digits) with *, keeping + and separators.
func maskPhone(s string) string {
	digits := 0
	for _, c := range s {
		if c >= '0' && c <= '9' {
			digits++
		}
	}
	if digits < 7 || digits > 15 {
		return s
	}
	keep := 4
	if digits < 10 {
		keep = 2
	}
	b := []byte(s)
	seen := 0
	for i, c := range b {
		if c >= '0' && c <= '9' {
			seen++
			if seen <= digits-keep {
				b[i] = '*'
			}
		}
	}
	return string(b)
}

// keyBuf holds a lower-cased attribute or member name on the stack. Keys
// are matched in lower case (secretKey, addressKey), and strings.ToLower
// allocates for every name with a capital (deliveryId, collectionId, and
// most of an envelope's members): a third of the allocations of a log line
// (issue 17). The string lower returns lives as long as the buffer; it is
// only compared and passed down the walk, never kept.
type keyBuf [32]byte

// lower is k in lower case: in b when k is ASCII and fits, otherwise from
// strings.ToLower.
func (b *keyBuf) lower(k string) string {
	if len(k) > len(b) {
		return strings.ToLower(k)
	}
	upper := false
	for i := 0; i < len(k); i++ {
		c := k[i]
		if c >= utf8.RuneSelf {
			return strings.ToLower(k)
		}
		if 'A' <= c && c <= 'Z' {
			upper = true
			c += 'a' - 'A'
		}
		b[i] = c
	}
	if !upper {
		return k
	}
	return unsafe.String(&b[0], len(k))
}

func (r *redactor) attr(a slog.Attr) slog.Attr {
	var buf keyBuf
	key := buf.lower(a.Key)
	v := a.Value.Resolve()
	if secretKey(key) && v.Kind() != slog.KindGroup {
		return slog.String(a.Key, Redacted)
	}
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, r.field(key, v.String()))
	case slog.KindGroup:
		g := v.Group()
		out := make([]slog.Attr, len(g))
		for i, ga := range g {
			out[i] = r.attr(ga)
		}
		return slog.Attr{Key: a.Key, Value: slog.GroupValue(out...)}
	case slog.KindAny:
		return slog.Attr{Key: a.Key, Value: r.anyValue(key, v.Any())}
	default:
		return slog.Attr{Key: a.Key, Value: v}
	}
}

// redactedJSON is a JSON value after redaction; the JSON handler writes it
// as JSON, the text handler as its text. A byte slice, as the rewrite
// writes it: a string type cost two copies of every envelope detail, one
// into the string and one back out of MarshalJSON (issue 17).
type redactedJSON []byte

// MarshalJSON returns the JSON as is (encoding/json copies it out).
func (j redactedJSON) MarshalJSON() ([]byte, error) { return j, nil }

// MarshalText is the JSON as the text handler writes it: as text, as it
// wrote the string this type was before, not as quoted bytes.
func (j redactedJSON) MarshalText() ([]byte, error) { return j, nil }

// jsonText is JSON held as a string (the log sink's envelope detail). The
// rewrite reads it where it is; as a json.Marshaler it would first be
// copied into the []byte MarshalJSON returns.
type jsonText interface{ JSONText() string }

func (r *redactor) anyValue(key string, x any) slog.Value {
	switch v := x.(type) {
	case nil:
		return slog.AnyValue(nil)
	case error:
		return slog.StringValue(r.field(key, v.Error()))
	case jsonText:
		return r.jsonValue(key, v.JSONText())
	case json.RawMessage:
		return r.jsonValue(key, view(v))
	case json.Marshaler:
		raw, err := v.MarshalJSON()
		if err != nil {
			return slog.StringValue(r.field(key, fmt.Sprint(v)))
		}
		return r.jsonValue(key, view(raw))
	case fmt.Stringer:
		return slog.StringValue(r.field(key, v.String()))
	case []byte:
		return slog.StringValue(r.field(key, string(v)))
	}
	raw, err := json.Marshal(x)
	if err != nil {
		return slog.StringValue(r.field(key, fmt.Sprintf("%+v", x)))
	}
	return r.jsonValue(key, view(raw))
}

// view is b as a string without a copy, for reading while the call that
// was handed b runs: the rewrite reads its input and never keeps it (its
// output is a new slice), so a caller's json.RawMessage is not copied
// first. What outlives the call (the fallback's text) is cloned.
func view(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// readOnly is s as bytes without a copy, for the encoding/json calls that
// only read their input (Valid, Unmarshal): the other way of view.
func readOnly(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

func (r *redactor) jsonValue(key, doc string) slog.Value {
	out, err := r.json(key, doc)
	if err != nil {
		return slog.StringValue(r.field(key, strings.Clone(doc)))
	}
	return slog.AnyValue(redactedJSON(out))
}

// json rewrites a JSON document member by member, order kept, redacting
// every string by the name of the member it is in (array elements take the
// array's name). It scans the bytes itself: json.Decoder.Token allocated
// for every token and was most of the cost of an envelope line on the log
// sink (docs/benchmarks.md). A string that redaction leaves as it is and
// that is plain ASCII without escapes is copied as is; any other is decoded
// and encoded again as encoding/json would (HTML left unescaped), so the
// output is byte for byte what the decoder-based rewrite produced
// (FuzzJSONRewriteMatchesDecoder).
func (r *redactor) json(key, doc string) ([]byte, error) {
	if !json.Valid(readOnly(doc)) {
		return nil, errInvalidJSON
	}
	w := jsonRewriter{r: r, in: doc, out: make([]byte, 0, len(doc)+len(doc)/8)}
	if err := w.value(key); err != nil {
		return nil, err
	}
	return w.out, nil
}

var errInvalidJSON = errors.New("redact: invalid JSON")

// jsonRewriter walks a document json.Valid accepted.
type jsonRewriter struct {
	r   *redactor
	in  string
	i   int
	out []byte
}

func (w *jsonRewriter) skipSpace() {
	for w.i < len(w.in) {
		switch w.in[w.i] {
		case ' ', '\t', '\n', '\r':
			w.i++
		default:
			return
		}
	}
}

// value rewrites the value at w.i, named key (lower-cased).
func (w *jsonRewriter) value(key string) error {
	w.skipSpace()
	switch c := w.in[w.i]; c {
	case '{', '[':
		end := byte('}')
		if c == '[' {
			end = ']'
		}
		w.out = append(w.out, c)
		w.i++
		var buf keyBuf // this level's member names, lower-cased
		for n := 0; ; n++ {
			w.skipSpace()
			if w.in[w.i] == end {
				w.i++
				w.out = append(w.out, end)
				return nil
			}
			if n > 0 {
				w.i++ // the comma
				w.skipSpace()
				w.out = append(w.out, ',')
			}
			elemKey := key
			if c == '{' {
				k, plain, err := w.str()
				if err != nil {
					return err
				}
				w.appendString(k, plain)
				elemKey = buf.lower(k)
				w.skipSpace()
				w.i++ // the colon
				w.out = append(w.out, ':')
			}
			if err := w.value(elemKey); err != nil {
				return err
			}
		}
	case '"':
		s, plain, err := w.str()
		if err != nil {
			return err
		}
		red := w.r.field(key, s)
		w.appendString(red, plain && red == s)
	case 't':
		w.i += len("true")
		w.out = append(w.out, "true"...)
	case 'f':
		w.i += len("false")
		w.out = append(w.out, "false"...)
	case 'n':
		w.i += len("null")
		w.out = append(w.out, "null"...)
	default:
		start := w.i
		for w.i < len(w.in) && strings.IndexByte("0123456789+-.eE", w.in[w.i]) >= 0 {
			w.i++
		}
		num := w.in[start:w.i]
		switch {
		case secretKey(key):
			w.out = append(w.out, `"`+Redacted+`"`...)
		case addressKey(key):
			w.appendString(maskAddress(num), false)
		default:
			w.out = append(w.out, num...)
		}
	}
	return nil
}

// str reads the string at w.i. plain says its bytes are ASCII without
// escapes, so they are also its encoding.
func (w *jsonRewriter) str() (s string, plain bool, err error) {
	start := w.i
	plain = true
	j := start + 1
	for ; w.in[j] != '"'; j++ {
		switch c := w.in[j]; {
		case c == '\\':
			plain = false
			j++
		case c >= utf8.RuneSelf:
			plain = false
		}
	}
	w.i = j + 1
	if plain {
		// A substring of the input, not a copy: copying every key and
		// value was a seventh of the allocations of a REST send (the
		// envelope on the log sink; docs/benchmarks.md). field returns it
		// or a new string, appendString copies either into w.out, and a
		// key's lower case is only passed down the walk.
		return w.in[start+1 : j], true, nil
	}
	// A variable of its own: Unmarshal into the named result would move
	// that to the heap on every call, plain strings' included.
	var decoded string
	if err := json.Unmarshal(readOnly(w.in[start:w.i]), &decoded); err != nil {
		return "", false, err
	}
	return decoded, false, nil
}

// appendString writes s as a JSON string: its bytes when plain, otherwise
// escaped as encoding/json's encoder escapes with SetEscapeHTML(false), as
// slog's JSON handler writes the strings it does not redact.
func (w *jsonRewriter) appendString(s string, plain bool) {
	if plain {
		w.out = append(w.out, '"')
		w.out = append(w.out, s...)
		w.out = append(w.out, '"')
		return
	}
	w.out = jsonenc.AppendStringNoHTMLEscape(w.out, s)
}
