package httpapi

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
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
	return nil
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
	c.Header("ETag", `"`+strconv.FormatInt(version, 10)+`"`)
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
