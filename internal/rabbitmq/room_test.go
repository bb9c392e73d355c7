package rabbitmq_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestBacklogIsHandedOffNotClaimed: with Consumer.Room wired as app wires
// it, a backlog on the queue waits there for room in the dispatcher's
// hand-off queue, so its deliveries are inserted claimed and handed to the
// workers rather than inserted pending and claimed again (one UPDATE more
// each). Without the wait most of a backlog overflowed the hand-off.
func TestBacklogIsHandedOffNotClaimed(t *testing.T) {
	t.Parallel()
	for _, room := range []bool{true, false} {
		e := newEnv(t)
		e.room = room
		const n = 1500 // 3,000 deliveries: six times the hand-off queue
		e.publishMany("backlog", n)
		e.start(true)
		require.Eventually(t, func() bool {
			return e.count("SELECT COUNT(*) FROM deliveries WHERE status = 'sent'") == 2*n
		}, 60*time.Second, 50*time.Millisecond)
		claimed := e.count("SELECT COUNT(*) FROM deliveries WHERE claimed_at <> created_time")
		t.Logf("room=%v: %d of %d deliveries claimed after the intake, %d claim statements", room, claimed, 2*n, e.disp.Claims())
		if room {
			require.Less(t, claimed, int64(2*n/5), "most of the backlog is handed off")
		}
	}
}
