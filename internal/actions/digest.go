package actions

import (
	"strconv"
	"time"

	"github.com/notificationservice/notificationservice/internal/apperr"
)

// DigestRecipient is the one digest key: one window per (action,
// recipient). The recipient is its id, or the address when it has none.
const DigestRecipient = "recipient"

// MaxDigestItems bounds config.digest.maxItems: every item is rendered into
// the one message.
const MaxDigestItems = 1000

// Digest is an action's config.digest (docs/rules.md, Digest): the first
// delivery to a recipient opens a window of Window; the ones that arrive
// before it closes, up to MaxItems in all, are sent as one delivery whose
// template sees items and count.
type Digest struct {
	Window   string `json:"window"`
	MaxItems int    `json:"maxItems"`
	Key      string `json:"key,omitempty"`
}

// Every is the digest's window as a duration (zero when invalid).
func (d Digest) Every() time.Duration {
	w, err := time.ParseDuration(d.Window)
	if err != nil {
		return 0
	}
	return w
}

// checkDigest validates config.digest.
func checkDigest(f *apperr.Fields, c Config) {
	d := c.Digest
	if d == nil {
		return
	}
	if w, err := time.ParseDuration(d.Window); err != nil || w < time.Second || w > 7*24*time.Hour {
		f.Add("config.digest.window", "must be a Go duration between 1s and 168h, such as 10m or 1h")
	}
	if d.MaxItems < 2 || d.MaxItems > MaxDigestItems {
		f.Add("config.digest.maxItems", "must be between 2 and "+strconv.Itoa(MaxDigestItems))
	}
	if d.Key != "" {
		f.OneOf("config.digest.key", d.Key, DigestRecipient)
	}
}
