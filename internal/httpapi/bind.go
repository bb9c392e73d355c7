package httpapi

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/notificationservice/notificationservice/internal/apperr"
)

// decodeJSON reads the request body into dst strictly: unknown fields, wrong
// types, malformed or trailing JSON and oversized bodies are all
// INVALID_ARGUMENT with a detail naming the field, never a 500.
func decodeJSON(c *gin.Context, dst any) error {
	body, err := io.ReadAll(c.Request.Body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return apperr.Invalid("request body is too large",
				apperr.Detail{Field: "body", Reason: fmt.Sprintf("must be at most %d bytes", tooBig.Limit)})
		}
		return apperr.Invalid("request body could not be read", apperr.Detail{Field: "body", Reason: err.Error()})
	}
	return decodeStrict(body, dst)
}

// decodeStrict is decodeJSON on bytes already read.
func decodeStrict(body []byte, dst any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return apperr.Invalid("request body is required", apperr.Detail{Field: "body", Reason: "is empty"})
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return jsonError(err)
	}
	if dec.More() {
		return apperr.Invalid("request body is malformed", apperr.Detail{Field: "body", Reason: "has data after the JSON value"})
	}
	// JSON can carry NUL only escaped, so a body without the escape needs no
	// walk. (Invalid UTF-8 needs no check: the decoder replaces it.)
	if bytes.Contains(body, []byte(`\u0000`)) {
		if bad := textFields(body); len(bad) > 0 {
			return apperr.Invalid("request has fields that are not valid text", bad...)
		}
	}
	return nil
}

// textFields names every string of a JSON document (object keys too, at any
// depth) that apperr.ValidText refuses, by its path: name, config.subject,
// macros.code, tos[0].email. It walks the tokens rather than the decoded
// value so that fields decoded later (an action's raw config) and map keys
// are covered by the same check.
func textFields(body []byte) []apperr.Detail {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	type level struct {
		path   string
		object bool
		index  int  // next element of an array
		key    bool // an object's next string token is a key
	}
	var (
		stack []level
		out   []apperr.Detail
		key   string
	)
	// here is the path of the value the next token starts.
	here := func() string {
		if len(stack) == 0 {
			return "body"
		}
		top := &stack[len(stack)-1]
		switch {
		case top.object && top.path == "":
			return key
		case top.object:
			return top.path + "." + key
		default:
			p := fmt.Sprintf("%s[%d]", top.path, top.index)
			if top.path == "" {
				p = fmt.Sprintf("body[%d]", top.index)
			}
			return p
		}
	}
	// done moves past one value of the enclosing container.
	done := func() {
		if len(stack) == 0 {
			return
		}
		top := &stack[len(stack)-1]
		if top.object {
			top.key = true
		} else {
			top.index++
		}
	}
	for {
		tok, err := dec.Token()
		if err != nil {
			return out // io.EOF, or malformed JSON the strict decode already reported
		}
		if len(stack) > 0 && stack[len(stack)-1].object && stack[len(stack)-1].key {
			if d, ok := tok.(json.Delim); ok && d == '}' {
				stack = stack[:len(stack)-1]
				done()
				continue
			}
			key, _ = tok.(string)
			stack[len(stack)-1].key = false
			if !apperr.ValidText(key) {
				out = append(out, apperr.Detail{Field: here(), Reason: apperr.TextReason})
			}
			continue
		}
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{', '[':
				p := here()
				if len(stack) == 0 {
					p = ""
				}
				stack = append(stack, level{path: p, object: v == '{', key: v == '{'})
			default: // ']'; '}' is handled with the keys
				stack = stack[:len(stack)-1]
				done()
			}
		case string:
			if !apperr.ValidText(v) {
				out = append(out, apperr.Detail{Field: here(), Reason: apperr.TextReason})
			}
			done()
		default:
			done()
		}
	}
}

func jsonError(err error) error {
	var (
		syntax    *json.SyntaxError
		typeErr   *json.UnmarshalTypeError
		unmarshal *json.InvalidUnmarshalError
	)
	switch {
	case errors.As(err, &syntax):
		return apperr.Invalid("request body is malformed JSON",
			apperr.Detail{Field: "body", Reason: fmt.Sprintf("syntax error at offset %d: %s", syntax.Offset, syntax.Error())})
	case errors.Is(err, io.ErrUnexpectedEOF):
		return apperr.Invalid("request body is malformed JSON", apperr.Detail{Field: "body", Reason: "ends unexpectedly"})
	case errors.As(err, &typeErr):
		field := typeErr.Field
		if field == "" {
			field = "body"
		}
		return apperr.Invalid("request has fields of the wrong type",
			apperr.Detail{Field: field, Reason: fmt.Sprintf("must be %s, not %s", jsonType(typeErr.Type.Kind().String()), typeErr.Value)})
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return apperr.Invalid("request has unknown fields", apperr.Detail{Field: name, Reason: "is not a known field"})
	case errors.As(err, &unmarshal):
		return fmt.Errorf("httpapi: decode: %w", err)
	default:
		var e *apperr.Error
		if errors.As(err, &e) {
			return e
		}
		return apperr.Invalid("request body is malformed", apperr.Detail{Field: "body", Reason: err.Error()})
	}
}

func jsonType(kind string) string {
	switch kind {
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64":
		return "an integer"
	case "float32", "float64":
		return "a number"
	case "string":
		return "a string"
	case "bool":
		return "a boolean"
	case "slice", "array":
		return "an array"
	case "map", "struct":
		return "an object"
	default:
		return kind
	}
}

// pathID parses the path parameter name as a positive int64.
func pathID(c *gin.Context, name string) (int64, error) {
	raw := c.Param(name)
	id, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || id <= 0 {
		return 0, apperr.Invalid("path has an invalid id", apperr.Detail{Field: name, Reason: "must be a positive integer"})
	}
	return id, nil
}

// queryID parses an optional positive int64 query parameter; 0 when absent.
func queryID(c *gin.Context, name string) (int64, error) {
	raw, ok := c.GetQuery(name)
	if !ok || raw == "" {
		return 0, nil
	}
	id, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || id <= 0 {
		return 0, apperr.Invalid("query has an invalid id", apperr.Detail{Field: name, Reason: "must be a positive integer"})
	}
	return id, nil
}

// Page is a keyset page request: at most Limit rows with id > After.
type Page struct {
	Limit int
	After int64
}

const (
	defaultLimit = 50
	maxLimit     = 500
)

// pageParams reads ?limit= and ?cursor=. The cursor is opaque to clients; it
// encodes the last id of the previous page, so pages stay stable while rows
// are added.
func pageParams(c *gin.Context) (Page, error) {
	p := Page{Limit: defaultLimit}
	var fields apperr.Fields
	if raw := c.Query("limit"); raw != "" {
		n, err := strconv.Atoi(raw)
		if err != nil || n < 1 || n > maxLimit {
			fields.Add("limit", fmt.Sprintf("must be an integer from 1 to %d", maxLimit))
		} else {
			p.Limit = n
		}
	}
	if raw := c.Query("cursor"); raw != "" {
		after, err := decodeCursor(raw)
		if err != nil {
			fields.Add("cursor", "is not a cursor this API returned")
		} else {
			p.After = after
		}
	}
	return p, fields.Err()
}

func encodeCursor(lastID int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte("id:" + strconv.FormatInt(lastID, 10)))
}

func decodeCursor(s string) (int64, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return 0, err
	}
	raw, ok := strings.CutPrefix(string(b), "id:")
	if !ok {
		return 0, errors.New("bad cursor")
	}
	id, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || id < 0 {
		return 0, errors.New("bad cursor")
	}
	return id, nil
}

// nextCursor returns the cursor for the page after one that returned n rows
// ending at lastID, or "" when that page was the last.
func nextCursor(p Page, n int, lastID int64) string {
	if n < p.Limit {
		return ""
	}
	return encodeCursor(lastID)
}

// setETag sets the ETag header for a resource at version.
func setETag(c *gin.Context, version int64) {
	// Straight into the header map under the canonical key ("Etag", as
	// Header.Set would store it): Set canonicalised "ETag" into a new string
	// on every response. The value is built in one buffer.
	var buf [24]byte
	b := append(buf[:0], '"')
	b = strconv.AppendInt(b, version, 10)
	c.Writer.Header()["Etag"] = []string{string(append(b, '"'))}
}

// ifMatch returns the version an If-Match header demands, 0 when the header is
// absent or "*" (no precondition).
func ifMatch(c *gin.Context) (int64, error) {
	raw := strings.TrimSpace(c.GetHeader("If-Match"))
	if raw == "" || raw == "*" {
		return 0, nil
	}
	raw = strings.TrimPrefix(raw, "W/")
	v, err := strconv.ParseInt(strings.Trim(raw, `"`), 10, 64)
	if err != nil || v <= 0 {
		return 0, apperr.Invalid("If-Match header is not an ETag this API returned",
			apperr.Detail{Field: "If-Match", Reason: "must be a quoted version such as \"3\""})
	}
	return v, nil
}

// checkParams refuses a request whose query string is malformed or whose
// query or path parameters (names and values) are not storable text
// (apperr.ValidText): `?name=%00` and `?name=%FF` would otherwise reach a
// PostgreSQL query and fail there as a 500. It runs for every route, before
// the handler, so no handler can forget it. A malformed query is refused
// rather than half-read: url.Values drops the pairs it cannot parse.
func checkParams(c *gin.Context) error {
	var fields apperr.Fields
	// Most requests have no query: parsing and sorting the empty one cost
	// three allocations on every request.
	if raw := c.Request.URL.RawQuery; raw != "" {
		query, err := url.ParseQuery(raw)
		if err != nil {
			fields.Add("query", "is not a valid query string: "+apperr.Truncate(err.Error(), 200))
		}
		for _, name := range slices.Sorted(maps.Keys(query)) {
			if !fields.Text(name, name) {
				continue
			}
			for _, v := range query[name] {
				if !fields.Text(name, v) {
					break
				}
			}
		}
	}
	for _, p := range c.Params {
		fields.Text(p.Key, p.Value)
	}
	return fields.Err()
}

// allowQuery refuses query parameters a list route does not take, naming
// each, so a misspelt filter (`?stauts=sent`) is a 400 rather than a list of
// everything.
func allowQuery(c *gin.Context, allowed ...string) error {
	var fields apperr.Fields
	for _, name := range slices.Sorted(maps.Keys(c.Request.URL.Query())) {
		if !slices.Contains(allowed, name) {
			fields.Add(name, "is not a query parameter of this list; use "+strings.Join(allowed, ", "))
		}
	}
	return fields.Err()
}
