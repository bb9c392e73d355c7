package channels

import (
	"context"
	"fmt"
)

// Direct sends single messages now, each through the channel its Channel
// field names, outside the delivery workers: the test-send route's sender.
// It records nothing and does not retry; the caller reports the outcome.
type Direct map[string]Channel

// SendOne sends m through its channel and returns the provider's name and
// message id. The error is the provider's, an *Error (or wrapping one) saying
// whether a retry could help; an unknown channel is a plain error.
func (d Direct) SendOne(ctx context.Context, m Message) (provider, providerMessageID string, err error) {
	ch, ok := d[m.Channel]
	if !ok {
		return "", "", fmt.Errorf("channels: no channel %q", m.Channel)
	}
	res := ch.Send(ctx, []Message{m})
	if len(res) != 1 {
		return ch.Name(), "", Retryable(ch.Name(), fmt.Sprintf("%d results for one message", len(res)), 0, nil)
	}
	return ch.Name(), res[0].ProviderMessageID, res[0].Err
}
