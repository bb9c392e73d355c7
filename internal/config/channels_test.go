package config_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/config"
)

func TestChannelsValidate(t *testing.T) {
	t.Parallel()
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	der, err := x509.MarshalPKIXPublicKey(&ecKey.PublicKey)
	require.NoError(t, err)
	ecB64 := base64.StdEncoding.EncodeToString(der)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 1024)
	require.NoError(t, err)
	rsaDER, err := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	require.NoError(t, err)

	cases := []struct {
		key    string
		mutate func(c *config.Channels)
	}{
		{"channels.sendgrid.baseURL", func(c *config.Channels) { c.SendGrid.BaseURL = "api.sendgrid.com" }},
		{"channels.sendgrid.ratePerSecond", func(c *config.Channels) { c.SendGrid.RatePerSecond = -1 }},
		{"channels.sendgrid.burst", func(c *config.Channels) { c.SendGrid.Burst = 0 }},
		{"channels.sendgrid.timeout", func(c *config.Channels) { c.SendGrid.Timeout = 0 }},
		{"channels.sendgrid.webhookPublicKey", func(c *config.Channels) { c.SendGrid.WebhookPublicKey = "not base64!" }},
		{"channels.sendgrid.webhookPublicKey", func(c *config.Channels) {
			c.SendGrid.WebhookPublicKey = base64.StdEncoding.EncodeToString(rsaDER)
		}},
		{"channels.twilio.from", func(c *config.Channels) { c.Twilio.From = "409-685-4167" }},
		{"channels.twilio.statusCallbackURL", func(c *config.Channels) { c.Twilio.StatusCallbackURL = "/v1/webhooks/twilio/status" }},
		{"channels.twilio.concurrency", func(c *config.Channels) { c.Twilio.Concurrency = 0 }},
		{"channels.twilio.maxSegments", func(c *config.Channels) { c.Twilio.MaxSegments = -1 }},
		{"channels.twilio.defaultCountryCode", func(c *config.Channels) { c.Twilio.DefaultCountryCode = "0x1" }},
		{"channels.fcm.maxPayloadBytes", func(c *config.Channels) { c.FCM.MaxPayloadBytes = 5000 }},
		{"channels.fcm.concurrency", func(c *config.Channels) { c.FCM.Concurrency = 0 }},
		{"channels.breakerFailures", func(c *config.Channels) { c.BreakerFailures = 0 }},
		{"channels.breakerCooldown", func(c *config.Channels) { c.BreakerCooldown = 0 }},
	}
	for _, tc := range cases {
		cfg := config.Default()
		tc.mutate(&cfg.Channels)
		err := cfg.Validate()
		require.Error(t, err, tc.key)
		require.Contains(t, err.Error(), tc.key)
		require.Contains(t, err.Error(), config.EnvName(tc.key))
	}

	cfg := config.Default()
	cfg.Channels.SendGrid.WebhookPublicKey = ecB64
	cfg.Channels.Twilio.From = "+14155550100"
	cfg.Channels.Twilio.StatusCallbackURL = "https://notify.example.com/v1/webhooks/twilio/status"
	cfg.Channels.Twilio.DefaultCountryCode = "1"
	require.NoError(t, cfg.Validate())
	pk, err := config.ECDSAPublicKey(ecB64)
	require.NoError(t, err)
	require.True(t, pk.Equal(&ecKey.PublicKey))
}
