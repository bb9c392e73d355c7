package dispatch_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/actions"
	"github.com/notificationservice/notificationservice/internal/channels"
	"github.com/notificationservice/notificationservice/internal/config"
	"github.com/notificationservice/notificationservice/internal/dispatch"
	"github.com/notificationservice/notificationservice/internal/dispatch/delivery"
	"github.com/notificationservice/notificationservice/internal/dispatch/intake"
	"github.com/notificationservice/notificationservice/internal/testdb"
)

// BenchmarkIntakeAndDispatch measures the two halves of the pipeline on
// PostgreSQL without the broker: committing batches of 250 one-recipient
// messages through the intake, then sending the 20,000 planned deliveries
// through the sandbox (recording in memory) with the default workers.
func BenchmarkIntakeAndDispatch(b *testing.B) {
	const n = 20_000
	for range b.N {
		db, _ := testdb.Postgres(b)
		cid, _ := seedRule(b, db, "USER_INVITEUSER", emailAction())
		sb := channels.NewSandbox(nil, nil, nil)
		cfg := config.Default().Dispatch
		disp := delivery.New(db, map[string]channels.Channel{"email": sb}, cfg, delivery.Senders{}, discard(), nil)
		in := intake.New(db, actions.NewRules(db), nil, nil, nil)
		ctx := context.Background()
		start := time.Now()
		for i := 0; i < n; i += 250 {
			subs := make([]intake.Submission, 250)
			for j := range subs {
				subs[j] = intake.Submission{Source: intake.SourceQueue, Key: fmt.Sprint("k", i+j),
					Request: request(b, cid, fmt.Sprintf(`{"collectionId": CID, "notification": [{"name": "USER_INVITEUSER", "recipients": [{"email": "u%d@example.com", "macros": {"FNAME": "U"}}]}]}`, i+j))}
			}
			_, err := in.Submit(ctx, subs)
			require.NoError(b, err)
		}
		intake := time.Since(start)
		var sent atomic.Int64
		disp.OnSent = func(*dispatch.Delivery) { sent.Add(1) }
		rctx, cancel := context.WithCancel(ctx)
		start = time.Now()
		done := make(chan struct{})
		go func() { _ = disp.Run(rctx); close(done) }()
		require.Eventually(b, func() bool { return sent.Load() == n }, 5*time.Minute, time.Millisecond)
		send := time.Since(start)
		cancel()
		<-done
		b.ReportMetric(n/intake.Seconds(), "intake_msgs/s")
		b.ReportMetric(n/send.Seconds(), "dispatch_deliveries/s")
	}
}
