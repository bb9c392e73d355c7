package config

import (
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/base64"
	"net/url"
	"regexp"
	"strings"
)

var (
	e164        = regexp.MustCompile(`^\+[1-9][0-9]{1,14}$`)
	countryCode = regexp.MustCompile(`^[1-9][0-9]{0,2}$`)
)

// validate checks the channels section; bad records a finding.
func (c Channels) validate(bad func(key, msg string)) {
	absURL := func(key, v string, required bool) {
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
	pacing := func(prefix string, perSecond float64, burst int) {
		if perSecond < 0 {
			bad(prefix+".ratePerSecond", "must be 0 (unlimited) or positive")
		}
		if burst < 1 {
			bad(prefix+".burst", "must be at least 1")
		}
	}

	sg := c.SendGrid
	absURL("channels.sendgrid.baseURL", sg.BaseURL, true)
	pacing("channels.sendgrid", sg.RatePerSecond, sg.Burst)
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

	tw := c.Twilio
	absURL("channels.twilio.baseURL", tw.BaseURL, true)
	absURL("channels.twilio.statusCallbackURL", tw.StatusCallbackURL, false)
	pacing("channels.twilio", tw.RatePerSecond, tw.Burst)
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

	fcm := c.FCM
	absURL("channels.fcm.baseURL", fcm.BaseURL, true)
	pacing("channels.fcm", fcm.RatePerSecond, fcm.Burst)
	if fcm.Concurrency < 1 {
		bad("channels.fcm.concurrency", "must be at least 1")
	}
	if fcm.Timeout <= 0 {
		bad("channels.fcm.timeout", "must be positive")
	}
	if fcm.MaxPayloadBytes < 1 || fcm.MaxPayloadBytes > 4096 {
		bad("channels.fcm.maxPayloadBytes", "must be from 1 to 4096 (the FCM limit)")
	}

	if c.BreakerFailures < 1 {
		bad("channels.breakerFailures", "must be at least 1")
	}
	if c.BreakerCooldown <= 0 {
		bad("channels.breakerCooldown", "must be positive")
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
