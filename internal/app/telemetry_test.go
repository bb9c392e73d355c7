package app

import (
	"context"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/notificationservice/notificationservice/internal/channels"
	"github.com/notificationservice/notificationservice/internal/config"
	"github.com/notificationservice/notificationservice/internal/metrics"
	"github.com/notificationservice/notificationservice/internal/tracing"
)

type plainChannel struct{}

func (plainChannel) Name() string { return "plain" }
func (plainChannel) Send(_ context.Context, msgs []channels.Message) []channels.Result {
	return make([]channels.Result, len(msgs))
}

// Recovery asks a provider what it accepted through the same decorated
// channel the workers send with: logging, metrics and tracing must not hide
// the capability, nor invent it.
func TestInstrumentedChannelsKeepTheReconciler(t *testing.T) {
	t.Parallel()
	a := &App{Log: slog.New(slog.DiscardHandler), Metrics: metrics.New(),
		Tracing: tracing.NewWithExporter(tracetest.NewInMemoryExporter(), "test", "test")}
	sb := channels.NewSandbox(nil, nil, nil)
	sg := channels.NewSendGrid(config.Default().Channels.SendGrid, 3, 0, nil)
	out := a.instrumentChannels(map[string]channels.Channel{"email": sg, "sms": sb, "push": plainChannel{}})

	res := out["sms"].Send(context.Background(), []channels.Message{{DeliveryID: 41, Channel: "sms", To: []channels.Address{{}}, Phone: "+14155550100"}})
	require.NoError(t, res[0].Err)
	rec, ok := out["sms"].(channels.Reconciler)
	require.True(t, ok, "a logged, metered and traced sandbox is still a Reconciler")
	got, err := rec.Accepted(context.Background(), []channels.InDoubt{{DeliveryID: 41}, {DeliveryID: 42}})
	require.NoError(t, err)
	require.Equal(t, map[int64]string{41: res[0].ProviderMessageID}, got)

	_, ok = out["email"].(channels.Reconciler)
	require.True(t, ok, "SendGrid too")
	_, ok = out["push"].(channels.Reconciler)
	require.False(t, ok, "a channel without a lookup does not pretend to have one")
}
