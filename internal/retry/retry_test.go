package retry_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/retry"
)

// policy is 1 s doubling to a 60 s cap: the dispatch defaults' shape.
var policy = retry.Policy{Initial: time.Second, Max: time.Minute}

func TestDelayBoundsPerAttempt(t *testing.T) {
	t.Parallel()
	// The schedule before jitter: doubling from Initial, then the cap.
	want := []time.Duration{1, 2, 4, 8, 16, 32, 60, 60, 60, 60}
	for i, w := range want {
		n, w := i+1, w*time.Second
		require.Equal(t, w/2, policy.DelayAt(n, 0), "attempt %d: jitter never retries sooner than half", n)
		require.Equal(t, w, policy.DelayAt(n, 1), "attempt %d: nor later than the schedule", n)
		require.Equal(t, w, policy.DelayAt(n, 7), "attempt %d: r is clamped to [0,1]", n)
		for range 50 {
			d := policy.Delay(n)
			require.GreaterOrEqual(t, d, w/2, "attempt %d", n)
			require.LessOrEqual(t, d, w, "attempt %d", n)
		}
		noJitter := policy
		noJitter.NoJitter = true
		require.Equal(t, w, noJitter.Delay(n), "attempt %d without jitter", n)
	}
	require.Equal(t, time.Minute, policy.DelayAt(1_000_000, 1), "a huge attempt count stays at the cap")
}

func TestDelayJitterSpreads(t *testing.T) {
	t.Parallel()
	seen := map[time.Duration]bool{}
	for range 100 {
		seen[policy.Delay(5)] = true
	}
	require.Greater(t, len(seen), 10, "jittered waits of one attempt differ")
}

func TestDelayNoCap(t *testing.T) {
	t.Parallel()
	p := retry.Policy{Initial: time.Second, NoJitter: true}
	require.Equal(t, 1024*time.Second, p.Delay(11))
	require.Positive(t, p.Delay(200), "no overflow without a cap")
}

func TestAfterHonoursRetryAfterCapped(t *testing.T) {
	t.Parallel()
	p := policy
	p.NoJitter = true
	require.Equal(t, 90*time.Second, p.After(1, 90*time.Second), "Retry-After beats the 1 s schedule")
	require.Equal(t, 4*time.Second, p.After(3, time.Second), "a shorter Retry-After is only a floor")
	require.Equal(t, 4*time.Second, p.After(3, -time.Hour), "a negative one is ignored")
	require.Equal(t, retry.DefaultMaxRetryAfter, p.After(1, 1000*time.Hour), "capped by default")
	p.MaxRetryAfter = 5 * time.Minute
	require.Equal(t, 5*time.Minute, p.After(1, time.Hour), "capped at MaxRetryAfter")
}

// fast is a policy for Do tests: waits of a millisecond or less.
var fast = retry.Policy{Initial: time.Millisecond, Max: time.Millisecond}

func TestDoRetriesUntilSuccess(t *testing.T) {
	t.Parallel()
	calls, notified := 0, 0
	err := fast.Do(context.Background(), func() error {
		calls++
		if calls < 4 {
			return errors.New("busy")
		}
		return nil
	}, func(err error, wait time.Duration) {
		notified++
		require.LessOrEqual(t, wait, time.Millisecond)
	})
	require.NoError(t, err)
	require.Equal(t, 4, calls)
	require.Equal(t, 3, notified)
}

func TestDoStopsAtPermanent(t *testing.T) {
	t.Parallel()
	cause := errors.New("invalid")
	calls := 0
	err := fast.Do(context.Background(), func() error {
		calls++
		return retry.Permanent(cause)
	}, nil)
	require.ErrorIs(t, err, cause)
	require.Equal(t, 1, calls)
}

func TestDoStopsAtMaxAttempts(t *testing.T) {
	t.Parallel()
	p := fast
	p.MaxAttempts = 3
	cause := errors.New("busy")
	calls := 0
	err := p.Do(context.Background(), func() error { calls++; return cause }, nil)
	require.ErrorIs(t, err, cause)
	require.Equal(t, 3, calls)
}

func TestDoStopsAtMaxElapsed(t *testing.T) {
	t.Parallel()
	// The first wait (an hour) would end past MaxElapsed: give up at once
	// rather than sleep.
	p := retry.Policy{Initial: time.Hour, MaxElapsed: time.Minute}
	cause := errors.New("down")
	calls := 0
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	err := p.Do(ctx, func() error { calls++; return cause },
		func(error, time.Duration) { cancel() }) // it would wait: fail, not hang
	require.ErrorIs(t, err, cause)
	require.Equal(t, 1, calls)
}

func TestDoStopsWhenCtxEnds(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	p := retry.Policy{Initial: time.Hour} // the loop would otherwise wait an hour
	calls := 0
	err := p.Do(ctx, func() error {
		calls++
		cancel()
		return errors.New("down")
	}, nil)
	require.ErrorIs(t, err, context.Canceled)
	require.Equal(t, 1, calls)

	// Cancelled during the wait.
	ctx, cancel = context.WithCancel(context.Background())
	calls = 0
	err = p.Do(ctx, func() error { calls++; return errors.New("down") },
		func(error, time.Duration) { cancel() })
	require.ErrorIs(t, err, context.Canceled)
	require.Equal(t, 1, calls)
}

func TestDoRetryAfterIsAFloorCapped(t *testing.T) {
	t.Parallel()
	p := retry.Policy{Initial: time.Millisecond, Max: time.Millisecond, MaxRetryAfter: time.Hour, MaxAttempts: 2}
	var waits []time.Duration
	cause := errors.New("429")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	err := p.Do(ctx, func() error { return retry.RetryAfter(cause, 1000*time.Hour) },
		func(err error, wait time.Duration) {
			require.ErrorIs(t, err, cause)
			waits = append(waits, wait)
			cancel() // do not sleep the hour
		})
	require.ErrorIs(t, err, context.Canceled)
	require.Equal(t, []time.Duration{time.Hour}, waits, "Retry-After honoured up to MaxRetryAfter")

	waits = nil
	calls := 0
	err = p.Do(context.Background(), func() error {
		calls++
		return retry.RetryAfter(cause, 0) // shorter than the schedule: the schedule wins
	}, func(_ error, wait time.Duration) { waits = append(waits, wait) })
	require.ErrorIs(t, err, cause, "the cause survives the Retry-After mark")
	require.Equal(t, 2, calls)
	require.Len(t, waits, 1)
	require.GreaterOrEqual(t, waits[0], time.Millisecond/2)
}

func TestBackOffResetStartsOver(t *testing.T) {
	t.Parallel()
	p := retry.Policy{Initial: time.Second, Max: time.Minute, NoJitter: true}
	b := p.NewBackOff()
	require.Equal(t, time.Second, b.NextBackOff())
	require.Equal(t, 2*time.Second, b.NextBackOff())
	require.Equal(t, 4*time.Second, b.NextBackOff())
	b.Reset()
	require.Equal(t, time.Second, b.NextBackOff())
	for range 20 {
		b.NextBackOff()
	}
	require.Equal(t, time.Minute, b.NextBackOff(), "capped")

	j := retry.Policy{Initial: time.Second, Max: time.Minute}.NewBackOff()
	for n := range 10 {
		d := j.NextBackOff()
		w := policy.DelayAt(n+1, 1)
		require.GreaterOrEqual(t, d, w/2)
		require.LessOrEqual(t, d, w)
	}
}
