package actions

import (
	"strconv"
	"time"

	"github.com/notificationservice/notificationservice/internal/apperr"
	"github.com/notificationservice/notificationservice/internal/schedule"
)

// QuietHours is an action's config.quietHours, which overrides its
// collection's: absent (the collection's window applies), JSON null (no
// quiet hours for this action), or a window.
type QuietHours = schedule.Optional

// Throttle keys: what a throttle's counter counts.
const (
	// ThrottleRecipient counts this action's deliveries to the recipient.
	ThrottleRecipient = "recipient"
	// ThrottleRecipientEvent counts the deliveries to the recipient of
	// every action of the event that declares a recipient+event throttle
	// (one counter per event, recipient and window length).
	ThrottleRecipientEvent = "recipient+event"
)

// MaxThrottleLimit bounds config.throttle.limit.
const MaxThrottleLimit = 1_000_000

// Throttle is an action's config.throttle: at most Limit deliveries per
// recipient per Window (a Go duration), counted by Key.
type Throttle struct {
	Limit  int    `json:"limit"`
	Window string `json:"window"`
	Key    string `json:"key,omitempty"`
}

// Every is the throttle's window as a duration (zero when invalid).
func (t Throttle) Every() time.Duration {
	d, err := time.ParseDuration(t.Window)
	if err != nil {
		return 0
	}
	return d
}

// KeyOrDefault is Key, recipient when empty.
func (t Throttle) KeyOrDefault() string {
	if t.Key == "" {
		return ThrottleRecipient
	}
	return t.Key
}

// checkTiming validates config's quietHours, urgent and throttle.
func checkTiming(f *apperr.Fields, c Config) {
	if c.QuietHours.Window != nil {
		CheckWindow(f, "config.quietHours", *c.QuietHours.Window)
	}
	if t := c.Throttle; t != nil {
		if t.Limit < 1 || t.Limit > MaxThrottleLimit {
			f.Add("config.throttle.limit", "must be between 1 and "+strconv.Itoa(MaxThrottleLimit))
		}
		if d, err := time.ParseDuration(t.Window); err != nil || d < time.Second || d > 31*24*time.Hour {
			f.Add("config.throttle.window", "must be a Go duration between 1s and 744h, such as 1h or 10m")
		} else if d%time.Second != 0 {
			f.Add("config.throttle.window", "must be a whole number of seconds")
		}
		if t.Key != "" {
			f.OneOf("config.throttle.key", t.Key, ThrottleRecipient, ThrottleRecipientEvent)
		}
	}
}

// CheckWindow adds what is wrong with quiet-hours window w at field (the
// collections' validation uses it too).
func CheckWindow(f *apperr.Fields, field string, w schedule.Window) {
	for _, e := range w.Validate() {
		f.Add(field+"."+e.Field, e.Reason)
	}
}
