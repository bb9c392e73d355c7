package preferences

import (
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/config"
)

// Links.Token writes its tokens itself rather than through
// jwt.Token.SignedString (its doc says why); they must be the very bytes
// the library writes for the same claims, every optional claim present or
// not, and a recipient key that needs escaping.
func TestLinkTokensAreTheLibrarys(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 12, 5, 22, 40, 1, 987654321, time.UTC)
	l := NewLinks(config.Unsubscribe{TTL: 30*24*time.Hour + 500*time.Millisecond}, config.Auth{HMACSecret: "hmac-secret-0123456789"},
		"127.0.0.1:8080", func() time.Time { return at })
	for _, tg := range []Target{
		{CollectionID: 772, RecipientKey: "externalevents1709786394020@gmail.com", EventID: 41, Channel: "email"},
		{CollectionID: 1, RecipientKey: "user-1", EventID: 9},
		{CollectionID: 3, RecipientKey: "id:\"quoted\" <b>&amp; \u00e9\u2028\\", Channel: "sms"},
	} {
		got, err := l.Token(tg)
		require.NoError(t, err)
		want, err := jwt.NewWithClaims(jwt.SigningMethodHS256, linkClaims{
			RegisteredClaims: jwt.RegisteredClaims{
				Audience:  jwt.ClaimStrings{unsubscribeAudience},
				IssuedAt:  jwt.NewNumericDate(at),
				ExpiresAt: jwt.NewNumericDate(at.Add(l.ttl)),
			},
			Collection: tg.CollectionID, Recipient: tg.RecipientKey, Event: tg.EventID, Channel: tg.Channel,
		}).SignedString(l.key)
		require.NoError(t, err)
		require.Equal(t, want, got, "%+v", tg)
		back, err := l.Parse(got)
		require.NoError(t, err)
		require.Equal(t, tg, back)
	}
}
