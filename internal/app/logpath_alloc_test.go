package app

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/channels"
	"github.com/notificationservice/notificationservice/internal/outbox"
	"github.com/notificationservice/notificationservice/internal/testalloc"
)

// The lines the default configuration writes for every REST send (the
// envelope on the log sink, an outcome per delivery) go through the
// redacting JSON logger with few allocations: the envelope's detail is read
// where it is, not copied into a []byte, a string and a []byte again; its
// group is built without boxing each attribute; lower-casing the keys
// (deliveryId, collectionId, the detail's members) allocates nothing. Each
// of those was measured at 5 to 18 allocations of the 55 the two lines
// took before (docs/benchmarks.md).
func TestLogPathAllocations(t *testing.T) {
	testalloc.SkipUnderRace(t)
	log, closeLog := benchLogger(io.Discard)
	t.Cleanup(closeLog)
	sink := outbox.NewLogSink(log, "123456789012", "us-east-1")
	entries := []outbox.Entry{{EnvelopeID: "00000000-0000-4000-8000-000000000001", Source: "notificationservice",
		DetailType: outbox.NotificationsSend, Detail: benchDetail, EventBusName: "default", Time: time.Unix(1709786395, 0)}}
	ch := logOutcomes(log)(plainChannel{})
	msgs := []channels.Message{{DeliveryID: 41, NotificationID: 7, CollectionID: 772, Channel: "email"}}
	ctx := context.Background()

	envelope := testing.AllocsPerRun(200, func() {
		_, err := sink.Put(ctx, entries)
		require.NoError(t, err)
	})
	outcome := testing.AllocsPerRun(200, func() { ch.Send(ctx, msgs) })
	t.Logf("allocations: envelope line %.0f, outcome line %.0f", envelope, outcome)
	require.LessOrEqual(t, envelope, 20.0, "the envelope line")
	require.LessOrEqual(t, outcome, 3.0, "an outcome line")
}
