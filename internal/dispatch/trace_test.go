package dispatch_test

import (
	"context"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/trace"
	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/channels"
	"github.com/notificationservice/notificationservice/internal/dispatch/intake"
	"github.com/notificationservice/notificationservice/internal/testdb"
)

// traceRecorder is a channel that remembers the trace each Send ran under.
type traceRecorder struct {
	mu     sync.Mutex
	traces map[int64]string // notification id → trace id of the Send ctx
}

func (r *traceRecorder) Name() string { return "recorder" }

func (r *traceRecorder) Send(ctx context.Context, msgs []channels.Message) []channels.Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	sc := trace.SpanContextFromContext(ctx)
	for _, m := range msgs {
		if sc.IsValid() {
			r.traces[m.NotificationID] = sc.TraceID().String()
		} else {
			r.traces[m.NotificationID] = ""
		}
	}
	return make([]channels.Result, len(msgs))
}

// The provider call of a delivery runs under the trace of the message or
// request that created its notification: a Submission's own traceparent (one
// per queue message in a batch) wins, else the span in Submit's context; a
// notification without one is sent without. Off (tracing disabled), the
// claim does not look traceparents up.
func TestProviderCallJoinsTheNotificationsTrace(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		rec := &traceRecorder{traces: map[int64]string{}}
		b := setup(t, db, rec)
		b.disp.JoinTraces = true
		const (
			fromMessage = "0af7651916cd43dd8448eb211c80319c"
			fromRequest = "4bf92f3577b34da6a3ce929d0e0e4736"
		)
		reqTrace, err := trace.TraceIDFromHex(fromRequest)
		require.NoError(t, err)
		ctx := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
			TraceID: reqTrace, SpanID: trace.SpanID{1}, TraceFlags: trace.FlagsSampled}))
		one := `{"collectionId": CID, "notification": [{"name": "USER_INVITEUSER", "recipients": [{"email": "a@example.com", "macros": {"FNAME": "Ann"}}]}]}`
		out, err := b.intake.Submit(ctx, []intake.Submission{
			{Source: intake.SourceQueue, Key: "m1", Request: request(t, b.collectionID, one), TraceParent: "00-" + fromMessage + "-b7ad6b7169203331-01"},
			{Source: intake.SourceQueue, Key: "m2", Request: request(t, b.collectionID, one)},
		})
		require.NoError(t, err)
		out2, err := b.intake.Submit(context.Background(), []intake.Submission{
			{Source: intake.SourceQueue, Key: "m3", Request: request(t, b.collectionID, one)},
		})
		require.NoError(t, err)
		n, err := b.disp.RunOnce(context.Background())
		require.NoError(t, err)
		require.Equal(t, 3, n)

		require.Equal(t, map[int64]string{
			out[0].Notifications[0].ID:  fromMessage,
			out[1].Notifications[0].ID:  fromRequest,
			out2[0].Notifications[0].ID: "",
		}, rec.traces)

		var stored string
		require.NoError(t, db.Raw("SELECT trace_parent FROM notifications WHERE id = ?", out[0].Notifications[0].ID).Scan(&stored).Error)
		require.Equal(t, "00-"+fromMessage+"-b7ad6b7169203331-01", stored)

		b.disp.JoinTraces = false
		out3, err := b.intake.Submit(ctx, []intake.Submission{{Source: intake.SourceQueue, Key: "m4", Request: request(t, b.collectionID, one)}})
		require.NoError(t, err)
		_, err = b.disp.RunOnce(context.Background())
		require.NoError(t, err)
		require.Equal(t, "", rec.traces[out3[0].Notifications[0].ID])
	})
}
