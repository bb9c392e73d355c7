package actions_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/actions"
)

func TestContentForFallsBackByLocale(t *testing.T) {
	t.Parallel()
	cfg := actions.Config{
		Content: actions.Content{Subject: "Hello", HTML: "<p>Hello</p>", Text: "Hello", Data: map[string]string{"k": "default"}},
		Locales: map[string]actions.Content{
			"fr":    {Subject: "Bonjour", HTML: "<p>Bonjour</p>"},
			"fr_CA": {Subject: "Allo", Data: map[string]string{"k": "ca"}},
		},
	}
	cases := []struct {
		locale string
		want   actions.Content
	}{
		// fr_CA sets only the subject and data; the HTML comes from fr, the text from the default.
		{"fr_CA", actions.Content{Subject: "Allo", HTML: "<p>Bonjour</p>", Text: "Hello", Data: map[string]string{"k": "ca"}}},
		{"fr_BE", actions.Content{Subject: "Bonjour", HTML: "<p>Bonjour</p>", Text: "Hello", Data: map[string]string{"k": "default"}}},
		{"fr-BE", actions.Content{Subject: "Bonjour", HTML: "<p>Bonjour</p>", Text: "Hello", Data: map[string]string{"k": "default"}}},
		{"fr", actions.Content{Subject: "Bonjour", HTML: "<p>Bonjour</p>", Text: "Hello", Data: map[string]string{"k": "default"}}},
		{"de_DE", cfg.Content},
		{"", cfg.Content},
	}
	for _, tc := range cases {
		t.Run(tc.locale, func(t *testing.T) {
			require.Equal(t, tc.want, cfg.ContentFor(tc.locale))
		})
	}
}

func TestChannelOf(t *testing.T) {
	t.Parallel()
	require.Equal(t, actions.ChannelEmail, actions.ChannelOf(actions.ConfigEmail))
	require.Equal(t, actions.ChannelSMS, actions.Action{ConfigName: actions.ConfigSMS}.Channel())
	require.Equal(t, actions.ChannelPush, actions.ChannelOf(actions.ConfigPush))
	require.Empty(t, actions.ChannelOf("SendFaxConfig"))
}
