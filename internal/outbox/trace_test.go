package outbox_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/trace"
	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/outbox"
	"github.com/notificationservice/notificationservice/internal/testdb"
)

// testSpanContext is the W3C specification's example trace, with a tracestate.
func testSpanContext(t *testing.T) trace.SpanContext {
	t.Helper()
	ts, err := trace.ParseTraceState("congo=t61rcWkgMzE")
	require.NoError(t, err)
	return trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    trace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36},
		SpanID:     trace.SpanID{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7},
		TraceFlags: trace.FlagsSampled,
		TraceState: ts,
		Remote:     true, // as the tracing middleware extracts it from a request's traceparent
	})
}

// The envelope carries the W3C trace context of the request that made the
// change (traceparent, and seed 002's traceId and spanContext), and nothing
// when there was none (so the catalogue's shape, and the golden files, are
// unchanged for untraced changes).
func TestRecordCarriesTheTraceContext(t *testing.T) {
	t.Parallel()
	db, _ := testdb.SQLite(t)
	w := outbox.NewWriter(func() time.Time { return time.UnixMilli(1709786405347) }, nil)
	traced := trace.ContextWithSpanContext(context.Background(), testSpanContext(t))
	for _, ctx := range []context.Context{traced, context.Background()} {
		require.NoError(t, db.Transaction(func(tx *gorm.DB) error { return w.Record(ctx, tx, change(1)) }))
	}
	var rows []outbox.Row
	require.NoError(t, db.Order("id").Find(&rows).Error)
	require.Len(t, rows, 2)

	var d outbox.Detail
	require.NoError(t, json.Unmarshal([]byte(rows[0].Detail), &d))
	require.Equal(t, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", d.TraceParent)
	require.Equal(t, "4bf92f3577b34da6a3ce929d0e0e4736", d.TraceID)
	require.Equal(t, &outbox.SpanContext{TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", SpanID: "00f067aa0ba902b7",
		TraceFlags: "01", TraceState: "congo=t61rcWkgMzE"}, d.SpanContext)

	var raw map[string]any
	require.NoError(t, json.Unmarshal([]byte(rows[1].Detail), &raw))
	require.NotContains(t, raw, "traceparent")
	require.NotContains(t, raw, "traceId")
	require.NotContains(t, raw, "spanContext")
}

// TestGoldenTracedEnvelope pins the traced detail byte for byte: the
// untraced golden files plus traceparent, traceId and spanContext.
func TestGoldenTracedEnvelope(t *testing.T) {
	t.Parallel()
	tc := goldenCases()[0]
	sc := testSpanContext(t)
	detail, err := outbox.EncodeDetail(tc.change, goldenEnvelopeID, time.UnixMilli(tc.at), &outbox.SpanContext{
		TraceID: sc.TraceID().String(), SpanID: sc.SpanID().String(), TraceFlags: sc.TraceFlags().String(), TraceState: sc.TraceState().String(),
	})
	require.NoError(t, err)
	e := outbox.EntryFromRow(outbox.Row{EnvelopeID: goldenEnvelopeID, DetailType: tc.change.DetailType, Detail: detail, CreatedAt: tc.at},
		"notificationservice", "default")
	requireGolden(t, tc.name+"_traced", goldenEntryOf(e))
}
