package rabbitmq_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/config"
)

// faultMessages is how many messages the fault tests push through.
const faultMessages = 10_000

// tally is what a fault test reports: for every message published, did it
// become a notification, and did every planned delivery reach the channel
// exactly once?
type tally struct {
	Messages, Notifications, DistinctKeys      int64
	Planned, Sends, DistinctSent, DeadLettered int64
}

func (e *env) tally(published int64) tally {
	var t tally
	t.Messages = published
	t.Notifications = e.count("SELECT COUNT(*) FROM notifications")
	t.DistinctKeys = e.count("SELECT COUNT(DISTINCT idempotency_key) FROM notifications")
	t.Planned = e.count("SELECT COUNT(*) FROM deliveries WHERE status <> 'skipped'")
	t.Sends = e.count("SELECT COUNT(*) FROM sandbox_messages")
	t.DistinctSent = e.count("SELECT COUNT(DISTINCT delivery_id) FROM sandbox_messages")
	t.DeadLettered = int64(e.inspectQueue(e.cfg.DeadLetterQueue).Messages)
	return t
}

// LostMessages are published messages with no notification.
func (t tally) LostMessages() int64 { return t.Messages - t.DistinctKeys }

// DuplicateNotifications are notifications beyond one per message.
func (t tally) DuplicateNotifications() int64 { return t.Notifications - t.DistinctKeys }

// LostSends are planned deliveries the channel never got.
func (t tally) LostSends() int64 { return t.Planned - t.DistinctSent }

// DuplicateSends are channel sends beyond one per delivery.
func (t tally) DuplicateSends() int64 { return t.Sends - t.DistinctSent }

func (t tally) String() string {
	return fmt.Sprintf("messages=%d notifications=%d lostMessages=%d duplicateNotifications=%d plannedDeliveries=%d channelSends=%d lostSends=%d duplicateSends=%d deadLettered=%d",
		t.Messages, t.Notifications, t.LostMessages(), t.DuplicateNotifications(), t.Planned, t.Sends, t.LostSends(), t.DuplicateSends(), t.DeadLettered)
}

// done reports whether every message is in and every delivery settled.
func (e *env) settled(published int64) bool {
	return e.count("SELECT COUNT(DISTINCT idempotency_key) FROM notifications") == published &&
		e.count("SELECT COUNT(*) FROM deliveries WHERE status IN ('pending', 'sending')") == 0
}

// The broker closes the service's connections three times while 10,000
// messages stream in: every message still becomes exactly one notification
// and every planned delivery reaches the channel exactly once.
func TestConnectionFaultsLoseAndDuplicateNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000-message fault test; run without -short (make test does)")
	}
	t.Parallel()
	e := newEnv(t)
	e.start(true)
	var wg sync.WaitGroup
	wg.Go(func() { e.publishMany("cf", faultMessages) })

	closed := 0
	for _, at := range []int64{1500, 4000, 7000} {
		require.Eventually(t, func() bool { return e.count("SELECT COUNT(*) FROM notifications") >= at }, 3*time.Minute, 5*time.Millisecond)
		n := closeConnections(t, e.consumer.Name)
		require.Positive(t, n, "no connection named %s to close", e.consumer.Name)
		closed += n
	}
	wg.Wait()
	require.Eventually(t, func() bool { return e.settled(faultMessages) }, 5*time.Minute, 50*time.Millisecond)
	// The last messages can all be committed before the last close (their
	// acks then go with the connection): the consumer reconnects after it,
	// but maybe only after everything has settled.
	require.Eventually(t, func() bool { return e.consumer.Stats().Reconnects >= int64(closed) }, time.Minute, 10*time.Millisecond,
		"%d connections closed, %d reconnects", closed, e.consumer.Stats().Reconnects)
	got := e.tally(faultMessages)
	t.Logf("connection fault (%d connections closed by the broker, %d reconnects): %s", closed, e.consumer.Stats().Reconnects, got)
	require.Zero(t, got.LostMessages(), got.String())
	require.Zero(t, got.DuplicateNotifications(), got.String())
	require.EqualValues(t, 2*faultMessages, got.Planned, got.String())
	require.Zero(t, got.LostSends(), got.String())
	require.Zero(t, got.DuplicateSends(), got.String())
	require.Zero(t, got.DeadLettered, got.String())
}

// The service binary, run against PostgreSQL, is SIGKILLed twice: once
// while it consumes and once while it dispatches, and restarted each time.
// No message is lost and no notification duplicated, and the deliveries a
// kill caught between the provider's accept and the status commit are
// reconciled with the channel, not sent again.
func TestProcessKilledMidBatchLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000-message fault test; run without -short (make test does)")
	}
	t.Parallel()
	bin := buildService(t)
	e := newEnv(t)
	e.publishMany("pk", faultMessages)

	run := func(name string) *exec.Cmd {
		cmd := exec.Command(bin, "-config", filepath.Join(t.TempDir(), "none.yaml"), "serve")
		cmd.Env = append(cleanEnv(),
			config.EnvName("database.url")+"="+e.dbURL,
			config.EnvName("http.addr")+"=127.0.0.1:0",
			config.EnvName("log.level")+"=warn",
			config.EnvName("amqp.url")+"="+e.cfg.URL,
			config.EnvName("amqp.exchange")+"="+e.cfg.Exchange,
			config.EnvName("amqp.queue")+"="+e.cfg.Queue,
			config.EnvName("amqp.routingKey")+"="+e.cfg.RoutingKey,
			config.EnvName("amqp.deadLetterExchange")+"="+e.cfg.DeadLetterExchange,
			config.EnvName("amqp.deadLetterQueue")+"="+e.cfg.DeadLetterQueue,
			config.EnvName("dispatch.sendTimeout")+"=5s",
			config.EnvName("dispatch.lease")+"=5s",
		)
		var logs bytes.Buffer
		cmd.Stdout, cmd.Stderr = &logs, &logs
		require.NoError(t, cmd.Start())
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			if t.Failed() {
				t.Logf("%s log:\n%s", name, logs.String())
			}
		})
		return cmd
	}
	kill := func(cmd *exec.Cmd) {
		require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
		_ = cmd.Wait()
	}

	first := run("first")
	require.Eventually(t, func() bool { return e.count("SELECT COUNT(*) FROM notifications") >= 2500 }, 3*time.Minute, 2*time.Millisecond)
	kill(first)
	atKill1 := e.count("SELECT COUNT(*) FROM notifications")
	inFlight := e.count("SELECT COUNT(*) FROM deliveries WHERE status = 'sending'")

	second := run("second")
	require.Eventually(t, func() bool {
		return e.count("SELECT COUNT(*) FROM sandbox_messages") >= faultMessages
	}, 3*time.Minute, 2*time.Millisecond)
	kill(second)
	inFlight += e.count("SELECT COUNT(*) FROM deliveries WHERE status = 'sending'")

	third := run("third")
	require.Eventually(t, func() bool { return e.settled(faultMessages) }, 5*time.Minute, 50*time.Millisecond)
	require.NoError(t, third.Process.Signal(syscall.SIGTERM))
	require.NoError(t, third.Wait(), "graceful stop")

	got := e.tally(faultMessages)
	t.Logf("SIGKILL (first kill after %d notifications; %d deliveries in sending at the two kills): %s", atKill1, inFlight, got)
	require.Zero(t, got.LostMessages(), got.String())
	require.Zero(t, got.DuplicateNotifications(), got.String())
	require.EqualValues(t, 2*faultMessages, got.Planned, got.String())
	require.Zero(t, got.LostSends(), got.String())
	// The sandbox answers Recover's question (did you accept it?), so even
	// the deliveries a kill caught in flight are not sent twice. A provider
	// without that lookup would send up to inFlight of them again.
	require.Zero(t, got.DuplicateSends(), got.String())
	require.Zero(t, got.DeadLettered, got.String())
}

// buildService builds the service binary.
func buildService(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "notificationservice")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/notificationservice/notificationservice/cmd/notificationservice").CombinedOutput()
	require.NoError(t, err, "%s", out)
	return bin
}

// cleanEnv is the test's environment without NOTIFY_* variables, which the
// service would refuse (the test runner's own) or that would override ours.
func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, config.EnvPrefix) {
			out = append(out, kv)
		}
	}
	return out
}
