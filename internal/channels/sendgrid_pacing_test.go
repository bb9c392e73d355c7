package channels_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/channels"
	"github.com/notificationservice/notificationservice/internal/config"
)

// TestSendGridPacing counts the requests that reach the fake against the
// channel's injected clock: with channels.sendgrid.ratePerSecond 2 and burst
// 2, a sender gets two requests at once, then one per half second; a request
// over the rate is not sent but comes back retryable with the wait as its
// Retry-After. The clock stands an hour after the real one, so every wait
// would outlast the attempt's deadline and none is slept.
func TestSendGridPacing(t *testing.T) {
	t.Parallel()
	f := newFake(t, accepted("sg"))
	sg := newSendGrid(t, f, func(c *config.SendGrid) { c.RatePerSecond, c.Burst = 2, 2 })
	now := time.Now().Add(time.Hour)
	sg.SetClock(func() time.Time { return now })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	next := int64(0)
	// batch returns n messages with different bodies: one request each.
	batch := func(n int) []channels.Message {
		msgs := make([]channels.Message, n)
		for i := range msgs {
			next++
			m := emailMsg(next, fmt.Sprintf("user%d@example.test", next))
			m.Subject, m.Text = "s", fmt.Sprintf("body %d", next)
			msgs[i] = m
		}
		return msgs
	}
	// send sends n messages and returns how many were sent; the rest must be
	// rate-limit refusals whose Retry-After is wait.
	send := func(n int, wait time.Duration) (sent int) {
		before := f.count()
		for _, r := range sg.Send(ctx, batch(n)) {
			if r.Err == nil {
				sent++
				continue
			}
			e := channels.Classify(channels.SendGridName, r.Err)
			require.False(t, e.Permanent, "%v", r.Err)
			require.Contains(t, e.Reason, "rate limit")
			require.Equal(t, wait, e.RetryAfter, "the wait for the next slot")
		}
		require.Equal(t, sent, f.count()-before, "requests at the fake")
		return sent
	}

	half := 500 * time.Millisecond
	require.Equal(t, 2, send(5, half), "the burst")
	now = now.Add(half - time.Millisecond)
	require.Equal(t, 0, send(1, time.Millisecond), "no slot before half a second")
	now = now.Add(time.Millisecond)
	require.Equal(t, 1, send(3, half), "one slot per half second")
	now = now.Add(10 * time.Second)
	require.Equal(t, 2, send(4, half), "an idle sender saves up to the burst, no more")

	// Another sender has its own bucket.
	other := batch(1)
	other[0].From = channels.Address{Email: "other@example.test"}
	res := sg.Send(ctx, other)
	require.NoError(t, res[0].Err)
	require.Equal(t, 6, f.count())
}
