package channels_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/actions"
	"github.com/notificationservice/notificationservice/internal/channels"
)

// An action's channel (the action model names it through package message,
// as channels does) must be one Select has a provider for.
func TestChannelNamesAreTheActionModels(t *testing.T) {
	t.Parallel()
	require.Equal(t, channels.ChannelEmail, actions.ChannelOf(actions.ConfigEmail))
	require.Equal(t, channels.ChannelSMS, actions.ChannelOf(actions.ConfigSMS))
	require.Equal(t, channels.ChannelPush, actions.ChannelOf(actions.ConfigPush))
	require.Equal(t, channels.ChannelWebhook, actions.ChannelOf(actions.ConfigWebhook))
}
