package config

import (
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/base64"
	"net/url"
	"regexp"
	"strings"
	"time"
)

var (
	e164        = regexp.MustCompile(`^\+[1-9][0-9]{1,14}$`)
	countryCode = regexp.MustCompile(`^[1-9][0-9]{0,2}$`)
)

// Channels configures the providers. A provider without credentials falls
// back to the sandbox channel. Each provider gets its own token-bucket rate
// limit (ratePerSecond, burst; 0 means unlimited) and circuit breaker.
type Channels struct {
	SendGrid SendGrid `koanf:"sendgrid"`
	Twilio   Twilio   `koanf:"twilio"`
	FCM      FCM      `koanf:"fcm"`
	// BreakerFailures consecutive retryable failures (timeouts, 429, 5xx)
	// open a provider's circuit; it stays open for BreakerCooldown, then
	// lets one probe through.
	BreakerFailures int           `koanf:"breakerFailures"`
	BreakerCooldown time.Duration `koanf:"breakerCooldown"`
}

// validate checks the channels section, provider by provider; bad records
// a finding.
func (c Channels) validate(bad func(key, msg string)) {
	c.SendGrid.validate(bad)
	c.Twilio.validate(bad)
	c.FCM.validate(bad)
	if c.BreakerFailures < 1 {
		bad("channels.breakerFailures", "must be at least 1")
	}
	if c.BreakerCooldown <= 0 {
		bad("channels.breakerCooldown", "must be positive")
	}
}

// SendGrid configures email delivery. Credentials: APIKey.
type SendGrid struct {
	APIKey        string        `koanf:"apiKey"`
	BaseURL       string        `koanf:"baseURL"`
	FromEmail     string        `koanf:"fromEmail"`
	FromName      string        `koanf:"fromName"`
	RatePerSecond float64       `koanf:"ratePerSecond"` // mail/send API calls per second
	Burst         int           `koanf:"burst"`
	Timeout       time.Duration `koanf:"timeout"`
	// WebhookPublicKey is the Event Webhook's verification key (base64 DER
	// ECDSA, as SendGrid shows it). Empty: the webhook route refuses events.
	WebhookPublicKey string        `koanf:"webhookPublicKey"`
	WebhookMaxSkew   time.Duration `koanf:"webhookMaxSkew"`
	// Reconcile lets recovery ask the Email Activity API (a paid add-on of
	// the account) which in-doubt deliveries SendGrid accepted.
	Reconcile bool `koanf:"reconcile"`
}

func (sg SendGrid) validate(bad func(key, msg string)) {
	checkAbsURL(bad, "channels.sendgrid.baseURL", sg.BaseURL, true)
	checkPacing(bad, "channels.sendgrid", sg.RatePerSecond, sg.Burst)
	if sg.Timeout <= 0 {
		bad("channels.sendgrid.timeout", "must be positive")
	}
	if sg.WebhookPublicKey != "" {
		if _, err := ECDSAPublicKey(sg.WebhookPublicKey); err != nil {
			bad("channels.sendgrid.webhookPublicKey", "must be the base64 ECDSA public key SendGrid shows: "+err.Error())
		}
	}
	if sg.WebhookMaxSkew <= 0 {
		bad("channels.sendgrid.webhookMaxSkew", "must be positive")
	}
}

// Twilio configures SMS delivery. Credentials: AccountSID and AuthToken.
type Twilio struct {
	AccountSID          string `koanf:"accountSID"`
	AuthToken           string `koanf:"authToken"`
	BaseURL             string `koanf:"baseURL"`
	From                string `koanf:"from"`
	MessagingServiceSID string `koanf:"messagingServiceSID"`
	// StatusCallbackURL is this service's public URL of
	// /v1/webhooks/twilio/status; empty: no status callbacks are requested.
	StatusCallbackURL string        `koanf:"statusCallbackURL"`
	RatePerSecond     float64       `koanf:"ratePerSecond"` // messages per second per sender (From or service)
	Burst             int           `koanf:"burst"`
	Concurrency       int           `koanf:"concurrency"` // requests in flight per Send call
	Timeout           time.Duration `koanf:"timeout"`
	MaxSegments       int           `koanf:"maxSegments"` // longer bodies fail before sending; 0: no limit
	// DefaultCountryCode (digits, e.g. 1) turns a national number such as
	// 409-685-4167 into E.164; empty: only +E.164 numbers are accepted.
	DefaultCountryCode string `koanf:"defaultCountryCode"`
}

func (tw Twilio) validate(bad func(key, msg string)) {
	checkAbsURL(bad, "channels.twilio.baseURL", tw.BaseURL, true)
	checkAbsURL(bad, "channels.twilio.statusCallbackURL", tw.StatusCallbackURL, false)
	checkPacing(bad, "channels.twilio", tw.RatePerSecond, tw.Burst)
	if tw.Concurrency < 1 {
		bad("channels.twilio.concurrency", "must be at least 1")
	}
	if tw.Timeout <= 0 {
		bad("channels.twilio.timeout", "must be positive")
	}
	if tw.From != "" && !e164.MatchString(tw.From) {
		bad("channels.twilio.from", "must be an E.164 number such as +14155550100")
	}
	if tw.MaxSegments < 0 {
		bad("channels.twilio.maxSegments", "must be 0 (no limit) or positive")
	}
	if tw.DefaultCountryCode != "" && !countryCode.MatchString(strings.TrimPrefix(tw.DefaultCountryCode, "+")) {
		bad("channels.twilio.defaultCountryCode", "must be a country calling code such as 1 or 44")
	}
}

// FCM configures push delivery through Firebase Cloud Messaging HTTP v1.
// Credentials: CredentialsFile (a service-account JSON key).
type FCM struct {
	CredentialsFile string        `koanf:"credentialsFile"`
	ProjectID       string        `koanf:"projectID"` // default: the key's project
	BaseURL         string        `koanf:"baseURL"`
	RatePerSecond   float64       `koanf:"ratePerSecond"`
	Burst           int           `koanf:"burst"`
	Concurrency     int           `koanf:"concurrency"`
	Timeout         time.Duration `koanf:"timeout"`
	MaxPayloadBytes int           `koanf:"maxPayloadBytes"`
}

func (fcm FCM) validate(bad func(key, msg string)) {
	checkAbsURL(bad, "channels.fcm.baseURL", fcm.BaseURL, true)
	checkPacing(bad, "channels.fcm", fcm.RatePerSecond, fcm.Burst)
	if fcm.Concurrency < 1 {
		bad("channels.fcm.concurrency", "must be at least 1")
	}
	if fcm.Timeout <= 0 {
		bad("channels.fcm.timeout", "must be positive")
	}
	if fcm.MaxPayloadBytes < 1 || fcm.MaxPayloadBytes > 4096 {
		bad("channels.fcm.maxPayloadBytes", "must be from 1 to 4096 (the FCM limit)")
	}
}

// checkAbsURL records key unless v is an absolute http(s) URL; an empty v
// is a finding only when required.
func checkAbsURL(bad func(key, msg string), key, v string, required bool) {
	if v == "" {
		if required {
			bad(key, "must be set")
		}
		return
	}
	if u, err := url.Parse(v); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad(key, "must be an absolute http(s) URL")
	}
}

// checkPacing checks a provider's token bucket under prefix.
func checkPacing(bad func(key, msg string), prefix string, perSecond float64, burst int) {
	if perSecond < 0 {
		bad(prefix+".ratePerSecond", "must be 0 (unlimited) or positive")
	}
	if burst < 1 {
		bad(prefix+".burst", "must be at least 1")
	}
}

// ECDSAPublicKey parses a base64 DER (PKIX) ECDSA public key, the form the
// SendGrid console shows for the signed Event Webhook.
func ECDSAPublicKey(b64 string) (*ecdsa.PublicKey, error) {
	der, err := base64.StdEncoding.DecodeString(strings.TrimSpace(b64))
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, err
	}
	pk, ok := k.(*ecdsa.PublicKey)
	if !ok {
		return nil, errNotECDSA
	}
	return pk, nil
}

type configError string

func (e configError) Error() string { return string(e) }

const errNotECDSA = configError("not an ECDSA key")
