package httpapi

import (
	"context"
	"errors"
	"math"
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"github.com/notificationservice/notificationservice/internal/actions"
	"github.com/notificationservice/notificationservice/internal/apperr"
	"github.com/notificationservice/notificationservice/internal/auth"
	"github.com/notificationservice/notificationservice/internal/channels"
	"github.com/notificationservice/notificationservice/internal/dispatch"
	"github.com/notificationservice/notificationservice/internal/macros"
	"github.com/notificationservice/notificationservice/internal/message"
	"github.com/notificationservice/notificationservice/internal/render"
)

// TestSendConfig enables the test-send route, which renders an action for
// one recipient through package render, as the delivery workers do, and
// sends it at once. It also needs Actions and Preview (whose rate it uses).
type TestSendConfig struct {
	// Actions gives the action as a send uses it: with its collection's
	// default sender when its config names none (actions.Rules.ForSend).
	Actions interface {
		ForSend(ctx context.Context, refs []actions.Ref) ([]actions.Action, error)
	}
	// Sender sends one message now through the channel it names
	// (channels.Direct).
	Sender interface {
		SendOne(ctx context.Context, m message.Message) (provider, providerMessageID string, err error)
	}
	Senders render.Senders      // the service's default senders
	Limits  macros.RenderLimits // templates.*, as the workers render
	// Unsubscribes gives a test email the one-click unsubscribe link a
	// send would carry (a working one, for the test recipient); nil: none.
	Unsubscribes interface {
		Link(collectionID, eventID int64, rc dispatch.Recipient) (render.Unsubscribe, error)
	}
}

// testSendResult is the route's answer: what the provider said.
type testSendResult struct {
	Channel           string `json:"channel"`
	Provider          string `json:"provider,omitempty"`
	ProviderMessageID string `json:"providerMessageId,omitempty"`
	Status            string `json:"status"` // sent | failed
	Reason            string `json:"reason,omitempty"`
}

// testSend registers the route that sends one message of an action to a
// given recipient now, outside the delivery workers: no notification, no
// delivery row, no retry. Changing the collection is what it takes, as for
// the action routes: a test-send reaches a real recipient.
func (r *router) testSend() {
	rates := newUserRates(r.s.Preview.RatePerMinute)
	cfg := r.s.TestSend
	r.handle(http.MethodPost, "/collections/:collectionId/actions/:actionId/test-send", "NOTSCRT", manageCollection,
		func(c *gin.Context, p auth.Principal) error {
			cid, aid, err := actionPath(c)
			if err != nil {
				return err
			}
			// A test-send renders and calls a provider on demand: each
			// user gets preview.ratePerMinute of them (a bucket of their
			// own, apart from previews).
			if err := rates.take(c, p.UserID, "test sends"); err != nil {
				return err
			}
			// The body is a recipient of the send API: the preview's
			// locale and macros, plus where to send.
			var body dispatch.Recipient
			if err := decodeJSON(c, &body); err != nil {
				return err
			}
			ctx := c.Request.Context()
			// Get finds the action in the path's collection (404
			// otherwise); ForSend gives it as a send uses it, with its
			// collection's default sender.
			if _, err := r.s.Actions.Get(ctx, p, cid, aid); err != nil {
				return err
			}
			list, err := cfg.Actions.ForSend(ctx, []actions.Ref{{CollectionID: cid, ID: aid}})
			if err != nil {
				return err
			}
			if len(list) == 0 {
				return apperr.New(apperr.NotFound, "action %d not found", aid)
			}
			a := list[0]
			if err := hasAddress(body, a.Channel()); err != nil {
				return err
			}
			out := testSendResult{Channel: a.Channel()}
			rr := body.ForRender()
			if cfg.Unsubscribes != nil && a.Channel() == message.Email {
				if rr.Unsubscribe, err = cfg.Unsubscribes.Link(cid, a.EventID, body); err != nil {
					return err
				}
			}
			m, err := render.Message(a, rr, cfg.Senders, cfg.Limits)
			var miss *macros.MissingError
			var empty *render.EmptyError
			switch {
			case errors.As(err, &miss) || errors.As(err, &empty):
				// What the workers would fail the delivery with; nothing
				// reaches the provider.
				out.Status, out.Reason = "failed", "render: "+err.Error()
				c.JSON(http.StatusOK, gin.H{"testSend": out})
				return nil
			case err != nil:
				return renderError(err)
			}
			out.Provider, out.ProviderMessageID, err = cfg.Sender.SendOne(ctx, m)
			var perr *channels.Error
			switch {
			case err == nil:
				out.Status = "sent"
			case errors.As(err, &perr) && perr.Permanent:
				// The provider refused this message: the answer to the
				// test, not a failure of the route.
				out.Status, out.Reason, out.ProviderMessageID = "failed", perr.Error(), ""
			case errors.As(err, &perr):
				if perr.RetryAfter > 0 {
					c.Header("Retry-After", strconv.Itoa(int(math.Ceil(perr.RetryAfter.Seconds()))))
				}
				return &apperr.Error{Kind: apperr.Unavailable, Err: err, Message: "the provider is unavailable; try again later (" + perr.Error() + ")"}
			default:
				return err
			}
			c.JSON(http.StatusOK, gin.H{"testSend": out})
			return nil
		})
}

// hasAddress checks rc has an address on channel. The address's format is
// the provider's to judge: its refusal is the test's answer.
func hasAddress(rc dispatch.Recipient, channel string) error {
	switch {
	case channel == actions.ChannelEmail && len(rc.To()) == 0:
		return apperr.Invalid("the action sends email: the recipient needs an address",
			apperr.Detail{Field: "email", Reason: "is required (or tos) for an email action"})
	case channel == actions.ChannelSMS && rc.Phone == "":
		return apperr.Invalid("the action sends SMS: the recipient needs a phone number",
			apperr.Detail{Field: "phone", Reason: "is required for an SMS action"})
	case channel == actions.ChannelPush && rc.PushID == "":
		return apperr.Invalid("the action sends push: the recipient needs a device token",
			apperr.Detail{Field: "pushId", Reason: "is required for a push action"})
	}
	return nil
}
