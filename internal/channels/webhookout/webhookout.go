// Package webhookout sends signed HTTP POSTs to customer webhook endpoints:
// Standard Webhooks signatures, an SSRF-guarded client (the address actually
// dialled is checked, not only the name), no redirects, a timeout and a cap
// on the response body read. The endpoint registry (internal/webhooks) uses
// it today, and the coming SendWebhookConfig channel can reuse it; it knows
// no table and no registry.
package webhookout

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// SecretPrefix starts every signing secret (Standard Webhooks format).
const SecretPrefix = "whsec_"

// MaxResponseBytes caps how much of an endpoint's answer is read: enough
// for a HEALTH_CHECK echo and an error message, never an unbounded body.
const MaxResponseBytes = 16 << 10

// ErrBlockedAddress is the refusal of an address in a private, loopback,
// link-local, CGNAT or metadata range while private networks are not allowed.
var ErrBlockedAddress = errors.New("webhookout: address is not public")

// NewSecret returns a fresh signing secret: whsec_ and 32 random bytes in
// base64, as Standard Webhooks prints them.
func NewSecret() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("webhookout: new secret: %w", err)
	}
	return SecretPrefix + base64.StdEncoding.EncodeToString(b), nil
}

// Sign returns the webhook-signature header value for one message: one
// "v1,<sig>" per secret, space separated, which Standard Webhooks defines
// for secret rotation (a receiver accepts the message when any matches).
func Sign(secrets []string, msgID string, ts time.Time, body []byte) (string, error) {
	sigs := make([]string, 0, len(secrets))
	for _, s := range secrets {
		wh, err := standardwebhooks.NewWebhook(s)
		if err != nil {
			return "", fmt.Errorf("webhookout: secret: %w", err)
		}
		sig, err := wh.Sign(msgID, ts, body)
		if err != nil {
			return "", fmt.Errorf("webhookout: sign: %w", err)
		}
		sigs = append(sigs, sig)
	}
	return strings.Join(sigs, " "), nil
}

// blocked are the ranges an endpoint may not reach unless private networks
// are allowed: besides what netip classifies (loopback, private, link-local
// with the 169.254.169.254 metadata address, unspecified, multicast), CGNAT
// and the IETF special-purpose blocks.
var blocked = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"), // CGNAT
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("64:ff9b::/96"), // NAT64 can map any IPv4 address, private ones included
}

// Blocked reports whether ip is not a public unicast address.
func Blocked(ip netip.Addr) bool {
	ip = ip.Unmap()
	if ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsUnspecified() || ip.IsMulticast() || ip.IsInterfaceLocalMulticast() {
		return true
	}
	for _, p := range blocked {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// CheckURL says why raw may not be registered, or nil: an absolute https
// URL without credentials; http:// only when allowPrivate is set and the host
// is one that setting allows (localhost or a non-public address literal).
// A name is checked again, on the address dialled, at every send.
func CheckURL(raw string, allowPrivate bool) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.Hostname() == "" {
		return errors.New("must be an absolute http(s) URL")
	}
	if u.User != nil {
		return errors.New("must not carry credentials")
	}
	private := strings.EqualFold(u.Hostname(), "localhost")
	if ip, err := netip.ParseAddr(u.Hostname()); err == nil {
		private = Blocked(ip)
	}
	if private && !allowPrivate {
		return fmt.Errorf("%s is a loopback, private, link-local or metadata address; set webhooks.allowPrivateNetworks to allow it", u.Hostname())
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if private && allowPrivate {
			return nil
		}
		return errors.New("must use https (http:// is accepted only for the private addresses webhooks.allowPrivateNetworks allows)")
	}
	return errors.New("must use https")
}

// Config tunes a Client.
type Config struct {
	// Timeout bounds one POST, connection and body read included.
	Timeout time.Duration
	// AllowPrivateNetworks lets the client dial non-public addresses (tests,
	// a receiver on the same host or VPC).
	AllowPrivateNetworks bool
}

// Client posts signed messages. It is safe for concurrent use.
type Client struct {
	http *http.Client
}

// New returns a Client.
func New(cfg Config) *Client {
	dialer := &net.Dialer{Timeout: cfg.Timeout}
	if !cfg.AllowPrivateNetworks {
		// Control runs on the address about to be dialled, after DNS: a
		// name that resolves (or re-resolves) to a private address is
		// refused here, whatever it looked like at registration.
		dialer.Control = func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("%w: %s", ErrBlockedAddress, address)
			}
			if Blocked(ap.Addr()) {
				return fmt.Errorf("%w: %s", ErrBlockedAddress, ap.Addr())
			}
			return nil
		}
	}
	tr := &http.Transport{
		Proxy:                 nil, // a proxy would make the dialled address the proxy's
		DialContext:           dialer.DialContext,
		TLSHandshakeTimeout:   cfg.Timeout,
		ResponseHeaderTimeout: cfg.Timeout,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       90 * time.Second,
	}
	return &Client{http: &http.Client{
		Transport: tr,
		Timeout:   cfg.Timeout,
		// A redirect would let an endpoint point the service anywhere; the
		// 3xx is the answer, and counts as a failure.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// Message is one POST.
type Message struct {
	URL       string
	ID        string // webhook-id: the same on every retry of one event
	Timestamp time.Time
	Body      []byte
	Secrets   []string // signs with each (the current secret, and the previous during a rotation overlap)
}

// Result is what one POST got.
type Result struct {
	StatusCode int // 0 when no response arrived
	Body       []byte
	Latency    time.Duration
	// RetryAfter is the endpoint's Retry-After (seconds or HTTP date), 0 when absent.
	RetryAfter time.Duration
	Err        error // transport failure, or a non-2xx answer
}

// OK reports a 2xx answer.
func (r Result) OK() bool { return r.Err == nil && r.StatusCode >= 200 && r.StatusCode < 300 }

// Send POSTs m, signed, and reports the outcome; it never returns early
// without a Result.
func (c *Client) Send(ctx context.Context, m Message) Result {
	start := time.Now()
	res := c.send(ctx, m)
	res.Latency = time.Since(start)
	return res
}

func (c *Client) send(ctx context.Context, m Message) Result {
	sig, err := Sign(m.Secrets, m.ID, m.Timestamp, m.Body)
	if err != nil {
		return Result{Err: err}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, m.URL, bytes.NewReader(m.Body))
	if err != nil {
		return Result{Err: fmt.Errorf("webhookout: request: %w", err)}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "notificationservice-webhooks/1")
	req.Header.Set("webhook-id", m.ID)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(m.Timestamp.Unix(), 10))
	req.Header.Set("webhook-signature", sig)
	resp, err := c.http.Do(req)
	if err != nil {
		return Result{Err: fmt.Errorf("webhookout: post: %w", err)}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBytes))
	res := Result{StatusCode: resp.StatusCode, Body: body, RetryAfter: retryAfter(resp.Header.Get("Retry-After"), time.Now())}
	switch {
	case err != nil:
		res.Err = fmt.Errorf("webhookout: read answer: %w", err)
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		res.Err = fmt.Errorf("webhookout: endpoint answered %d", resp.StatusCode)
	}
	return res
}

// retryAfter parses a Retry-After value: delay seconds or an HTTP date.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
