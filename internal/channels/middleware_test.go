package channels_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/channels"
)

type plainChannel struct{ name string }

func (c plainChannel) Name() string { return c.name }

func (plainChannel) Send(_ context.Context, msgs []channels.Message) []channels.Result {
	return make([]channels.Result, len(msgs))
}

type reconcilingChannel struct{ plainChannel }

func (reconcilingChannel) Accepted(_ context.Context, ds []channels.InDoubt) (map[int64]string, error) {
	return map[int64]string{ds[0].DeliveryID: "pm-1"}, nil
}

type exactChannel struct{ reconcilingChannel }

func (exactChannel) ReconcilesExactly() bool { return true }

// tag is a middleware that records, in order, that a Send passed through it
// on the way in and on the way out.
func tag(name string, trail *[]string) channels.Middleware {
	return func(ch channels.Channel) channels.Channel {
		return channels.Wrap(ch, func(ctx context.Context, msgs []channels.Message) []channels.Result {
			*trail = append(*trail, "in "+name)
			res := ch.Send(ctx, msgs)
			*trail = append(*trail, "out "+name)
			return res
		})
	}
}

// Recovery asks a provider what it accepted through the decorated channel
// the workers send with: no middleware may hide the capability, nor invent
// it for a provider without a lookup.
func TestMiddlewareKeepsCapabilities(t *testing.T) {
	t.Parallel()
	var trail []string
	mws := []channels.Middleware{tag("a", &trail), tag("b", &trail), tag("c", &trail)}

	rec := channels.Channel(reconcilingChannel{plainChannel{"fakeprovider"}})
	for i := range mws {
		rec = mws[i](rec)
		r, ok := rec.(channels.Reconciler)
		require.True(t, ok, "a reconciling channel is still a Reconciler after middleware %d", i)
		got, err := r.Accepted(context.Background(), []channels.InDoubt{{DeliveryID: 7}})
		require.NoError(t, err)
		require.Equal(t, map[int64]string{7: "pm-1"}, got, "Accepted asks the wrapped provider")
		require.Equal(t, "fakeprovider", rec.Name())
	}

	require.False(t, channels.ReconcilesExactly(rec), "a searching provider does not become exact")

	exact := channels.Chain(exactChannel{reconcilingChannel{plainChannel{"exact"}}}, mws...)
	require.True(t, channels.ReconcilesExactly(exact), "an exact reconciler stays exact through middleware")
	got, err := exact.(channels.Reconciler).Accepted(context.Background(), []channels.InDoubt{{DeliveryID: 7}})
	require.NoError(t, err)
	require.Equal(t, map[int64]string{7: "pm-1"}, got)

	plain := channels.Chain(plainChannel{"plain"}, mws...)
	_, ok := plain.(channels.Reconciler)
	require.False(t, ok, "a channel without a lookup does not gain one")
	require.False(t, channels.ReconcilesExactly(plain))
	require.Equal(t, "plain", plain.Name())

	trail = nil
	res := plain.Send(context.Background(), make([]channels.Message, 2))
	require.Len(t, res, 2)
	require.Equal(t, []string{"in a", "in b", "in c", "out c", "out b", "out a"}, trail, "the first middleware is outermost")
}
