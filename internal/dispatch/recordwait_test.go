package dispatch_test

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/actions"
	"github.com/notificationservice/notificationservice/internal/channels"
	"github.com/notificationservice/notificationservice/internal/config"
	"github.com/notificationservice/notificationservice/internal/dispatch"
	"github.com/notificationservice/notificationservice/internal/dispatch/delivery"
	"github.com/notificationservice/notificationservice/internal/dispatch/intake"
	"github.com/notificationservice/notificationservice/internal/outbox"
	"github.com/notificationservice/notificationservice/internal/testdb"
)

// blocked reports whether some goroutine's stack holds every one of parts
// (its state, as in "[chan send", and frames).
func blocked(parts ...string) bool {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(g, p)
		}
		if all {
			return true
		}
	}
	return false
}

// waitingInReserve reports whether a worker is blocked in the recorder's
// reservation.
func waitingInReserve() bool { return blocked("sync.(*Cond).Wait", "delivery.(*recorder).reserve") }

// runDispatcher starts a Dispatcher on db sending every channel through ch,
// with cfg, as b's intake's hand-off target; before is called on it before
// Run. It stops when the test ends, after ch is opened.
func runDispatcher(t *testing.T, db *gorm.DB, b *bundle, ch *holding, cfg config.Dispatch, before func(*delivery.Dispatcher)) {
	t.Helper()
	runDispatcherOn(t, db, b, ch, ch, cfg, before)
}

// runDispatcherOn is runDispatcher sending through send, which sends
// through ch.
func runDispatcherOn(t *testing.T, db *gorm.DB, b *bundle, ch *holding, send channels.Channel, cfg config.Dispatch, before func(*delivery.Dispatcher)) {
	t.Helper()
	disp := delivery.New(db, map[string]channels.Channel{"email": send, "sms": send}, cfg,
		delivery.Senders{Email: channels.Address{Email: "noreply@example.com"}}, discard(), nil)
	if before != nil {
		before(disp)
	}
	b.intake = intake.New(db, actions.NewRules(db), outbox.NewWriter(nil, nil), nil, disp)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = disp.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	t.Cleanup(ch.open) // first: a failed test must not leave Run in Send
}

// exactHolding is a holding channel that reconciles exactly
// (channels.ExactReconciler), as the sandbox recording to the database does.
type exactHolding struct{ *holding }

func (exactHolding) Accepted(context.Context, []channels.InDoubt) (map[int64]string, error) {
	return map[int64]string{}, nil
}

func (exactHolding) ReconcilesExactly() bool { return true }

// A worker that finds dispatch.recordBatch deliveries sent and not yet
// recorded waits before its provider call (the in-doubt bound), and the
// time it waited is reported (Dispatcher.OnRecordWait; the app's
// notify_dispatch_record_wait_seconds_total), so an operator can see when
// that bound, not the CPU or the database, is what holds the drain back.
// With room in the bound both groups are sent at once and nothing is
// reported. A channel that reconciles exactly is not held to the bound,
// only to delivery.ExactBacklog times it: a crash leaves none of its sends
// in doubt.
func TestWorkersReportTheirWaitForTheRecordBound(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		recordBatch int
		exact       bool
		recipients  int // each an email and an SMS: two groups of this many deliveries
		waits       bool
	}{
		{"one group fills the bound", 1, false, 1, true},
		{"room for both groups", 256, false, 1, false},
		{"an exact channel is not held by the bound", 1, true, 1, false},
		// Two groups of ExactBacklog deliveries are more than
		// ExactBacklog record groups of one: the first fills them.
		{"an exact channel is held by its backlog", 1, true, delivery.ExactBacklog, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			db, _ := testdb.Postgres(t)
			b := setup(t, db)
			// Both provider calls are held until ch.open.
			ch := newHolding("a@example.com", "+15550001")
			cfg := testConfig()
			cfg.Workers, cfg.RecordBatch = 1, tc.recordBatch
			var mu sync.Mutex
			var waits []time.Duration
			var send channels.Channel = ch
			if tc.exact {
				send = exactHolding{ch}
			}
			runDispatcherOn(t, db, b, ch, send, cfg, func(disp *delivery.Dispatcher) {
				disp.OnRecordWait = func(d time.Duration) {
					mu.Lock()
					waits = append(waits, d)
					mu.Unlock()
				}
			})

			// An email and an SMS action: two provider calls of
			// tc.recipients deliveries each, both held (the first
			// recipient's addresses).
			recipients := make([]string, tc.recipients)
			for i := range recipients {
				recipients[i] = fmt.Sprintf(`{"email": "r%d@example.com", "phone": "+1555000%d", "macros": {"FNAME": "Ann"}}`, i, i+1)
			}
			recipients[0] = `{"email": "a@example.com", "phone": "+15550001", "macros": {"FNAME": "Ann"}}`
			out, err := b.intake.Submit(context.Background(), []intake.Submission{{Source: intake.SourceQueue,
				Request: request(t, b.collectionID, `{"collectionId": CID, "notification": [{"name": "USER_INVITEUSER", "recipients": [`+
					strings.Join(recipients, ",")+`]}]}`)}})
			require.NoError(t, err)
			id := out[0].Notifications[0].ID

			<-ch.entered
			if tc.waits {
				require.Eventually(t, waitingInReserve, 10*time.Second, 5*time.Millisecond,
					"the second call waits for the first's outcome to be recorded")
			} else {
				select {
				case <-ch.entered:
				case <-time.After(10 * time.Second):
					t.Fatal("with room in the bound both calls are made at once")
				}
			}
			ch.open()
			for _, c := range []string{"email", "sms"} {
				require.Eventually(t, func() bool {
					for _, d := range deliveries(t, b, id, c) {
						if d.Status != dispatch.StatusSent {
							return false
						}
					}
					return true
				}, 10*time.Second, 5*time.Millisecond)
			}
			mu.Lock()
			defer mu.Unlock()
			if !tc.waits {
				require.Empty(t, waits)
				return
			}
			require.Len(t, waits, 1)
			require.Positive(t, waits[0])
		})
	}
}
