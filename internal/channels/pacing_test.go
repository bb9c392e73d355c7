package channels_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/actions"
	"github.com/notificationservice/notificationservice/internal/channels"
	"github.com/notificationservice/notificationservice/internal/config"
)

func TestLimiterKeysAreIndependent(t *testing.T) {
	t.Parallel()
	l := channels.NewLimiter("twilio", 1, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	require.NoError(t, l.Wait(ctx, "+15550001"))
	require.NoError(t, l.Wait(ctx, "+15550002"), "another sender has its own bucket")
	err := l.Wait(ctx, "+15550001")
	e := channels.Classify("twilio", err)
	require.False(t, e.Permanent)
	require.InDelta(t, 1.0, e.RetryAfter.Seconds(), 0.1)

	unlimited := channels.NewLimiter("x", 0, 1)
	for range 1000 {
		require.NoError(t, unlimited.Wait(ctx, "k"))
	}
}

func TestLimiterHonoursCancel(t *testing.T) {
	t.Parallel()
	l := channels.NewLimiter("fcm", 0.5, 1) // one every two seconds
	require.NoError(t, l.Wait(context.Background(), ""))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Wait(ctx, "") }()
	cancel()
	select {
	case err := <-done:
		require.ErrorIs(t, err, context.Canceled)
	case <-time.After(time.Second):
		t.Fatal("Wait did not return on cancel")
	}
}

func TestBreaker(t *testing.T) {
	t.Parallel()
	b := channels.NewBreaker("p", 2, 100*time.Millisecond, nil)
	fail := func(err error) {
		done, aerr := b.Allow()
		require.NoError(t, aerr)
		done(err)
	}
	// Permanent errors and our own cancellations say nothing of the provider.
	fail(channels.Permanent("p", "bad address", nil))
	fail(channels.Permanent("p", "bad address", nil))
	fail(context.Canceled)
	require.Equal(t, "closed", b.State())

	fail(channels.Retryable("p", "503", 0, nil))
	fail(nil) // a success resets the run
	fail(channels.Retryable("p", "503", 0, nil))
	require.Equal(t, "closed", b.State())
	fail(channels.Retryable("p", "503", 0, nil))
	require.Equal(t, "open", b.State())

	_, err := b.Allow()
	e := channels.Classify("p", err)
	require.False(t, e.Permanent)
	require.Contains(t, e.Reason, "circuit open")
	require.Greater(t, e.RetryAfter, time.Duration(0))
	require.LessOrEqual(t, e.RetryAfter, 100*time.Millisecond)

	// After the cooldown one probe goes through; its success closes the circuit.
	require.Eventually(t, func() bool { return b.State() == "half-open" }, time.Second, 5*time.Millisecond)
	done, err := b.Allow()
	require.NoError(t, err)
	_, err = b.Allow()
	require.Error(t, err, "only one probe at a time")
	done(nil)
	require.Equal(t, "closed", b.State())
}

func TestClassifyUnknownIsRetryable(t *testing.T) {
	t.Parallel()
	e := channels.Classify("p", errors.New("boom"))
	require.False(t, e.Permanent)
	require.Equal(t, "boom", e.Reason)
}

func TestSelect(t *testing.T) {
	t.Parallel()
	sandbox := channels.NewSandbox(nil, nil, nil)
	cfg := config.Default().Channels
	got, err := channels.Select(context.Background(), cfg, sandbox, nil)
	require.NoError(t, err)
	for _, ch := range []string{actions.ChannelEmail, actions.ChannelSMS, actions.ChannelPush} {
		require.Same(t, sandbox, got[ch], "no credentials: %s goes to the sandbox", ch)
	}

	cfg.SendGrid.APIKey = "SG.key"
	cfg.Twilio.AccountSID, cfg.Twilio.AuthToken = testAccountSID, testAuthToken
	cfg.Twilio.AuthToken = ""
	got, err = channels.Select(context.Background(), cfg, sandbox, nil)
	require.NoError(t, err)
	require.IsType(t, &channels.SendGrid{}, got[actions.ChannelEmail])
	require.Same(t, sandbox, got[actions.ChannelSMS], "twilio needs both the SID and the token")

	cfg.Twilio.AuthToken = testAuthToken
	got, err = channels.Select(context.Background(), cfg, sandbox, nil)
	require.NoError(t, err)
	require.IsType(t, &channels.Twilio{}, got[actions.ChannelSMS])
	require.Equal(t, "twilio", got[actions.ChannelSMS].Name())

	cfg.FCM.CredentialsFile = "/nonexistent/sa.json"
	_, err = channels.Select(context.Background(), cfg, sandbox, nil)
	require.Error(t, err, "configured but unusable credentials stop start-up")
}
