package preferences_test

import (
	"testing"
	"time"

	"github.com/notificationservice/notificationservice/internal/config"
	"github.com/notificationservice/notificationservice/internal/preferences"
)

// BenchmarkLinkToken is the unsubscribe link every email of a non-required
// event carries: one signed token per delivery.
func BenchmarkLinkToken(b *testing.B) {
	l := preferences.NewLinks(config.Unsubscribe{TTL: 30 * 24 * time.Hour}, config.Auth{HMACSecret: "hmac-secret-0123456789"}, "127.0.0.1:8080", time.Now)
	t := preferences.Target{CollectionID: 772, RecipientKey: "externalevents1709786394020@gmail.com", EventID: 41, Channel: "email"}
	b.ReportAllocs()
	for range b.N {
		if _, err := l.Token(t); err != nil {
			b.Fatal(err)
		}
	}
}
