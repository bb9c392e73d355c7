package channels_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/channels"
	"github.com/notificationservice/notificationservice/internal/testalloc"
)

// A send through the sandbox (in memory here: the database adds the row's
// own) allocates what it keeps and returns, not the arguments of its debug
// line when debug is off: DebugContext's ...any boxed the delivery id and
// two strings on every delivery (issue 17, docs/benchmarks.md).
func TestSandboxSendAllocations(t *testing.T) {
	testalloc.SkipUnderRace(t)
	sb := channels.NewSandbox(nil, nil, nil)
	msg := channels.Message{Channel: channels.ChannelEmail, From: channels.Address{Email: "noreply@example.com"},
		To: []channels.Address{{Email: "u1@example.com", Name: "U 1"}}, Subject: "Hi U1", HTML: "<b>U1</b>",
		NotificationID: 7, CollectionID: 1, ActionID: 1}
	msgs := make([]channels.Message, 1)
	id := int64(100000)
	ctx := context.Background()
	allocs := testing.AllocsPerRun(200, func() {
		id++
		msgs[0] = msg
		msgs[0].DeliveryID = id
		require.NoError(t, sb.Send(ctx, msgs)[0].Err)
	})
	t.Logf("allocations per send: %.0f", allocs)
	require.LessOrEqual(t, allocs, 16.0)
}
