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

// The envelope carries the W3C trace context of the request that made the
// change, and nothing when there was none (so the catalogue's shape, and the
// golden files, are unchanged for untraced changes).
func TestRecordCarriesTheTraceContext(t *testing.T) {
	t.Parallel()
	db, _ := testdb.SQLite(t)
	w := outbox.NewWriter(func() time.Time { return time.UnixMilli(1709786405347) }, nil)
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    trace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36},
		SpanID:     trace.SpanID{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7},
		TraceFlags: trace.FlagsSampled,
	})
	traced := trace.ContextWithSpanContext(context.Background(), sc)
	for _, ctx := range []context.Context{traced, context.Background()} {
		require.NoError(t, db.Transaction(func(tx *gorm.DB) error { return w.Record(ctx, tx, change(1)) }))
	}
	var rows []outbox.Row
	require.NoError(t, db.Order("id").Find(&rows).Error)
	require.Len(t, rows, 2)

	var d outbox.Detail
	require.NoError(t, json.Unmarshal([]byte(rows[0].Detail), &d))
	require.Equal(t, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", d.TraceParent)

	var raw map[string]any
	require.NoError(t, json.Unmarshal([]byte(rows[1].Detail), &raw))
	require.NotContains(t, raw, "traceparent")
}
