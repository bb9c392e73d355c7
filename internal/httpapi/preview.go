package httpapi

import (
	"errors"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"golang.org/x/time/rate"

	"github.com/notificationservice/notificationservice/internal/apperr"
	"github.com/notificationservice/notificationservice/internal/auth"
	"github.com/notificationservice/notificationservice/internal/macros"
	"github.com/notificationservice/notificationservice/internal/preview"
	"github.com/notificationservice/notificationservice/internal/render"
)

// PreviewConfig enables the preview route: the limits it checks are the
// channels' (channels.twilio.maxSegments, channels.fcm.maxPayloadBytes) and
// the render's (templates.*), as the dispatcher applies them.
type PreviewConfig struct {
	Limits macros.Limits
	// RatePerMinute is each user's preview rate (preview.ratePerMinute),
	// with as many in a burst; 0: unlimited.
	RatePerMinute int
	// Unsubscribe is the sample one-click unsubscribe link an email
	// preview shows (its headers and {{unsubscribeUrl}}); zero: none.
	Unsubscribe render.Unsubscribe
}

// previewBody is the recipient a preview renders for.
type previewBody struct {
	Locale string            `json:"locale"`
	Macros map[string]string `json:"macros"`
}

// preview registers the route that renders an action for given macros and
// locale without sending. Anyone who may read the collection may preview.
func (r *router) preview() {
	rates := newUserRates(r.s.Preview.RatePerMinute)
	r.handle(http.MethodPost, "/collections/:collectionId/actions/:actionId/preview", "NOPVCRT", readCollection,
		func(c *gin.Context, p auth.Principal) error {
			cid, aid, err := actionPath(c)
			if err != nil {
				return err
			}
			// A preview renders a tenant's template on demand: each user
			// gets a rate, so one cannot keep the renderer busy.
			if err := rates.take(c, p.UserID, "previews"); err != nil {
				return err
			}
			var body previewBody
			if err := decodeJSON(c, &body); err != nil {
				return err
			}
			a, err := r.s.Actions.Get(c.Request.Context(), p, cid, aid)
			if err != nil {
				return err
			}
			out, err := preview.Action(a, body.Locale, body.Macros, r.s.Preview.Unsubscribe, r.s.Preview.Limits)
			if err != nil {
				return renderError(err)
			}
			c.JSON(http.StatusOK, gin.H{"preview": out})
			return nil
		})
}

// renderError maps a render failure of an action's template to the
// caller: over a render limit with the request's macros is the request's
// (400), a template that does not render is the action's (409), each naming
// the config field. Other errors pass through.
func renderError(err error) error {
	var fe *macros.FieldError
	if errors.As(err, &fe) && errors.Is(err, macros.ErrRenderLimit) {
		// Over a render limit with these macros: what the
		// dispatcher would fail the delivery with.
		return &apperr.Error{Kind: apperr.InvalidArgument, Err: err,
			Message: "the action does not render within the template limits for these macros",
			Details: []apperr.Detail{{Field: "config." + fe.Field, Reason: fe.Err.Error()}}}
	}
	if errors.As(err, &fe) {
		return &apperr.Error{Kind: apperr.FailedPrecondition, Err: err, Message: "the action's template does not render; fix the action",
			Details: []apperr.Detail{{Field: "config." + fe.Field, Reason: fe.Err.Error()}}}
	}
	return err
}

// userRates holds one token bucket per user.
type userRates struct {
	mu        sync.Mutex
	perMinute int
	users     map[string]*rate.Limiter
}

// maxUserRates bounds the buckets kept; past it, full buckets (users idle
// for a minute) are dropped, which loses nothing.
const maxUserRates = 10_000

func newUserRates(perMinute int) *userRates {
	return &userRates{perMinute: perMinute, users: map[string]*rate.Limiter{}}
}

// take takes a token from user's bucket, or answers RESOURCE_EXHAUSTED
// (429) with Retry-After; what names the requests counted.
func (u *userRates) take(c *gin.Context, user, what string) error {
	wait, ok := u.allow(user, time.Now())
	if ok {
		return nil
	}
	secs := strconv.Itoa(int(math.Ceil(wait.Seconds())))
	c.Header("Retry-After", secs)
	return &apperr.Error{Kind: apperr.ResourceExhausted,
		Message: "too many " + what + "; retry after " + secs + "s (preview.ratePerMinute)"}
}

// allow takes a token from user's bucket, or says how long until one.
func (u *userRates) allow(user string, now time.Time) (time.Duration, bool) {
	if u.perMinute <= 0 {
		return 0, true
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	l := u.users[user]
	if l == nil {
		if len(u.users) >= maxUserRates {
			for k, v := range u.users {
				if v.TokensAt(now) >= float64(v.Burst()) {
					delete(u.users, k)
				}
			}
		}
		l = rate.NewLimiter(rate.Limit(float64(u.perMinute)/60), u.perMinute)
		u.users[user] = l
	}
	res := l.ReserveN(now, 1)
	if wait := res.DelayFrom(now); wait > 0 {
		res.CancelAt(now)
		return wait, false
	}
	return 0, true
}
