package redact

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/trace"
)

type rawDetail string

func (r rawDetail) MarshalJSON() ([]byte, error) { return []byte(r), nil }

func TestRedactorMasksAddressesAndSecrets(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log := Logger(slog.New(slog.NewJSONHandler(&buf, nil)), "sendgrid-key-0123456789", "short")

	detail := `{"id":"USER_INVITEUSER","timestamp":1709786395165,"payload":{"notification":{"recipients":[` +
		`{"email":"externalevents1709786394020@gmail.com","pushId":"hj7sdf67sqc9","phone":"409-685-4167","macros":{"FNAME":"John <b>"}},` +
		`{"tos":[{"email":"jane.doe@example.com","name":"Jane"}],"phone":4096854167}]}},"roles":["ROLE_SUPER_ADMIN"],"ok":true,"none":null}`
	log.Info("sent to jane.doe@example.com and +14096854167 with sendgrid-key-0123456789",
		"authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abc",
		"error", errors.New(`twilio: The 'To' number +1 409 685 4167 is not valid; header Bearer abc.def`),
		"detail", rawDetail(detail),
		slog.Group("recipient", "email", "bob@example.org", "phone", "4096854167"),
		"apiKey", "SG.aaaaaaaaaaaaaaaaaaaa.bbbbbbbbbbbbbbbbbbbbbbb",
		"text", "token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig and SG.aaaaaaaaaaaaaaaaaaaa.bbbbbbbbbbbbbbbbbbbbbbb",
		"correlation", map[string]string{"to": "+447911123456"},
		"timestamp", "1709786395165",
		"uuid", "d02b9c9f-8ec1-4465-22db-df2608ac4f87",
		"at", "2024-03-07T04:39:55Z",
		"short", "short",
	)
	line := buf.String()
	for _, leak := range []string{
		"jane.doe@example.com", "externalevents1709786394020@gmail.com", "bob@example.org",
		"14096854167", "409-685-4167", "4096854167", "409 685 4167", "447911123456",
		"sendgrid-key-0123456789", "eyJhbGciOiJIUzI1NiJ9", "SG.aaaa", "hj7sdf67sqc9", "abc.def",
	} {
		require.NotContains(t, line, leak)
	}
	var m map[string]any
	require.NoError(t, json.Unmarshal([]byte(line), &m), "the line stays JSON: %s", line)
	require.Equal(t, "sent to j***@example.com and +*******4167 with [REDACTED]", m["msg"])
	require.Equal(t, Redacted, m["authorization"])
	require.Equal(t, Redacted, m["apiKey"])
	require.Contains(t, m["error"], "+* *** *** 4167") // separators kept, last four digits shown
	require.Contains(t, m["error"], "Bearer "+Redacted)
	d := m["detail"].(map[string]any)
	require.EqualValues(t, 1709786395165, d["timestamp"], "numbers are not phone numbers")
	rc := d["payload"].(map[string]any)["notification"].(map[string]any)["recipients"].([]any)
	first := rc[0].(map[string]any)
	require.Equal(t, "e***@gmail.com", first["email"])
	require.Equal(t, "***-***-4167", first["phone"])
	require.Equal(t, "hj7s***", first["pushId"])
	require.Equal(t, "John <b>", first["macros"].(map[string]any)["FNAME"], "other strings are untouched, not HTML-escaped")
	second := rc[1].(map[string]any)
	require.Equal(t, "j***@example.com", second["tos"].([]any)[0].(map[string]any)["email"])
	require.Equal(t, "******4167", second["phone"])
	require.Equal(t, true, d["ok"])
	require.Nil(t, d["none"])
	require.Equal(t, map[string]any{"email": "b***@example.org", "phone": "******4167"}, m["recipient"])
	require.Equal(t, map[string]any{"to": "+********3456"}, m["correlation"])
	require.Equal(t, "1709786395165", m["timestamp"])
	require.Equal(t, "d02b9c9f-8ec1-4465-22db-df2608ac4f87", m["uuid"])
	require.Equal(t, "2024-03-07T04:39:55Z", m["at"])
	require.Equal(t, "short", m["short"], "values under 8 bytes are not treated as secrets")
	require.NotContains(t, m, "traceId", "no span, no trace id")
}

func TestRedactingAddsTraceIDsAndExtendsSecrets(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	// What app.NewLogger builds for log.format json: a logger already redacting.
	base := Logger(slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})))
	log := Logger(base, "hmac-secret-0123456789").With("static", "hmac-secret-0123456789 x@y.example.com")
	_, isRedact := log.Handler().(*redactHandler)
	require.True(t, isRedact)

	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1, 2, 3}, SpanID: trace.SpanID{4, 5}, TraceFlags: trace.FlagsSampled,
	})
	ctx := trace.ContextWithSpanContext(context.Background(), sc)
	log.InfoContext(ctx, "hello", "k", "hmac-secret-0123456789")
	line := buf.String()
	require.NotContains(t, line, "hmac-secret-0123456789")
	require.NotContains(t, line, "x@y.example.com")
	var m map[string]any
	require.NoError(t, json.Unmarshal([]byte(line), &m))
	require.Equal(t, sc.TraceID().String(), m["traceId"])
	require.Equal(t, sc.SpanID().String(), m["spanId"])
	require.Equal(t, Redacted+" x***@y.example.com", m["static"])
	require.Equal(t, 1, strings.Count(line, "traceId"))
}

// JSON text is redacted the same whichever way it reaches the handler: a
// json.Marshaler, a json.RawMessage, or a string with JSONText (the log
// sink's envelope detail, read in place). The JSON handler writes it as
// JSON, the text handler as quoted text.
type jsonTextDetail string

func (d jsonTextDetail) MarshalJSON() ([]byte, error) { panic("read through JSONText, not copied out") }
func (d jsonTextDetail) JSONText() string             { return string(d) }

func TestJSONValuesEveryWayIn(t *testing.T) {
	t.Parallel()
	const doc = `{"email":"jane.doe@example.com","n":1}`
	for name, v := range map[string]any{
		"marshaler": rawDetail(doc), "raw": json.RawMessage(doc), "text": jsonTextDetail(doc),
	} {
		var js, txt bytes.Buffer
		Logger(slog.New(slog.NewJSONHandler(&js, nil))).Info("m", "detail", v)
		Logger(slog.New(slog.NewTextHandler(&txt, nil))).Info("m", "detail", v)
		require.Contains(t, js.String(), `"detail":{"email":"j***@example.com","n":1}`, name)
		require.Contains(t, txt.String(), `detail="{\"email\":\"j***@example.com\",\"n\":1}"`, name)
	}
	// Not JSON after all: logged as redacted text, still masked.
	var js bytes.Buffer
	Logger(slog.New(slog.NewJSONHandler(&js, nil))).Info("m", "detail", jsonTextDetail(`{"email":"jane.doe@example.com"`))
	require.Contains(t, js.String(), `"detail":"{\"email\":\"j***@example.com\""`)
}
