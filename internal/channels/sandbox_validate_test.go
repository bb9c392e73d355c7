package channels_test

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/channels"
	"github.com/notificationservice/notificationservice/internal/testdb"
)

// TestSandboxRefusesAddressesTheProviderWould: the sandbox fails, for good
// and with the provider's reason, a message the real provider of its
// channel would refuse for its address, and records only the others.
func TestSandboxRefusesAddressesTheProviderWould(t *testing.T) {
	t.Parallel()
	db, _ := testdb.Postgres(t)
	email := func(to string) channels.Message {
		return channels.Message{Channel: "email", Subject: "s", Text: "t", To: []channels.Address{{Email: to}}}
	}
	sms := func(phone string) channels.Message { return channels.Message{Channel: "sms", Body: "hi", Phone: phone} }
	push := func(token string) channels.Message {
		return channels.Message{Channel: "push", Body: "hi", PushToken: token}
	}
	fcmToken := "dQw4w9WgXcQ:APA91bH" + strings.Repeat("x", 140)
	cases := []struct {
		name    string
		msg     channels.Message
		country string
		reason  string // "" when accepted
	}{
		{"email", email("ann@example.com"), "", ""},
		{"email with cc", func() channels.Message {
			m := email("ann@example.com")
			m.Cc = []channels.Address{{Email: "bob@example.com"}}
			return m
		}(), "", ""},
		{"email not an address", email("abc"), "", `invalid recipient address "abc"`},
		{"email with a display name", email("Ann <ann@example.com>"), "", "invalid recipient address"},
		{"email bad cc", func() channels.Message {
			m := email("ann@example.com")
			m.Cc = []channels.Address{{Email: "bob@"}}
			return m
		}(), "", `invalid recipient address "bob@"`},
		{"email no recipient", channels.Message{Channel: "email", Subject: "s", Text: "t"}, "", "no recipient"},
		{"email bad sender", func() channels.Message {
			m := email("ann@example.com")
			m.From = channels.Address{Email: "not-a-sender"}
			return m
		}(), "", "invalid sender address"},
		{"sms E.164", sms("+14155550100"), "", ""},
		{"sms with punctuation", sms("+1 (415) 555-0100"), "", ""},
		{"sms abc", sms("abc"), "", `invalid phone "abc"`},
		{"sms empty", sms(""), "", "not an E.164 number"},
		{"sms national, no country code", sms("409-685-4167"), "", "defaultCountryCode is not set"},
		{"sms national, country code 1", sms("409-685-4167"), "1", ""},
		{"sms too long", sms("+1234567890123456"), "", "not an E.164 number"},
		{"push FCM token", push(fcmToken), "", ""},
		{"push empty", push("  "), "", "no device token"},
		{"push with a space", push("abc def"), "", "not a valid registration token"},
		{"push too long", push(strings.Repeat("a", 5000)), "", "at most 4096"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sb := channels.NewSandbox(db, nil, nil, channels.SandboxCountryCode(tc.country))
			m := tc.msg
			m.DeliveryID = int64(1000 + i)
			res := sb.Send(context.Background(), []channels.Message{m})
			require.Len(t, res, 1)
			acc, err := sb.Accepted(context.Background(), []channels.InDoubt{{DeliveryID: m.DeliveryID}})
			require.NoError(t, err)
			if tc.reason == "" {
				require.NoError(t, res[0].Err)
				require.NotEmpty(t, res[0].ProviderMessageID)
				require.Contains(t, acc, m.DeliveryID)
				return
			}
			require.Error(t, res[0].Err)
			e := channels.Classify(channels.SandboxName, res[0].Err)
			require.True(t, e.Permanent, "a bad address is a permanent failure, as with the provider")
			require.Equal(t, channels.SandboxName, e.Provider)
			require.Contains(t, e.Reason, tc.reason)
			require.Empty(t, res[0].ProviderMessageID)
			require.NotContains(t, acc, m.DeliveryID, "a refused message is not recorded as sent")
			require.Empty(t, sb.Messages())
		})
	}

	// In a mixed batch each message gets its own result, in order.
	sb := channels.NewSandbox(nil, nil, nil)
	res := sb.Send(context.Background(), []channels.Message{sms("abc"), sms("+14155550100"), email("x"), push("tok-1")})
	require.Error(t, res[0].Err)
	require.NoError(t, res[1].Err)
	require.Error(t, res[2].Err)
	require.NoError(t, res[3].Err)
	require.Len(t, sb.Messages(), 2)
}
