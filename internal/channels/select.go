package channels

import (
	"context"
	"log/slog"

	"github.com/notificationservice/notificationservice/internal/config"
)

// Select builds the channel for each of email, sms and push: the provider
// when its credentials are configured (SendGrid: apiKey; Twilio: accountSID
// and authToken; FCM: credentialsFile), otherwise fallback, the sandbox. It
// fails only when credentials are set but unusable (an unreadable FCM key),
// so a misconfiguration stops start-up instead of silently sandboxing.
func Select(ctx context.Context, cfg config.Channels, fallback Channel, log *slog.Logger) (map[string]Channel, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	out := map[string]Channel{
		ChannelEmail: fallback,
		ChannelSMS:   fallback,
		ChannelPush:  fallback,
	}
	if cfg.SendGrid.APIKey != "" {
		out[ChannelEmail] = NewSendGrid(cfg.SendGrid, cfg.BreakerFailures, cfg.BreakerCooldown, log)
	}
	if cfg.Twilio.AccountSID != "" && cfg.Twilio.AuthToken != "" {
		tw, err := NewTwilio(cfg.Twilio, cfg.BreakerFailures, cfg.BreakerCooldown, log)
		if err != nil {
			return nil, err
		}
		out[ChannelSMS] = tw
	}
	if cfg.FCM.CredentialsFile != "" {
		p, err := NewPush(ctx, cfg.FCM, nil, cfg.BreakerFailures, cfg.BreakerCooldown, log)
		if err != nil {
			return nil, err
		}
		out[ChannelPush] = p
	}
	for _, ch := range []string{ChannelEmail, ChannelSMS, ChannelPush} {
		log.Info("channel provider", "channel", ch, "provider", out[ch].Name())
	}
	return out, nil
}
