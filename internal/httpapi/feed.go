package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/notificationservice/notificationservice/internal/apperr"
	"github.com/notificationservice/notificationservice/internal/auth"
	"github.com/notificationservice/notificationservice/internal/outbox"
)

// FeedService is what the event feed routes need; *outbox.Feed implements it.
type FeedService interface {
	Read(ctx context.Context, p auth.Principal, q outbox.FeedQuery) ([]outbox.FeedEvent, error)
	Ack(ctx context.Context, p auth.Principal, consumer, envelopeID string) (outbox.AckResult, error)
	Reset(ctx context.Context, p auth.Principal, consumer string, since int64) (outbox.ResetResult, error)
}

// sinceReason says which forms the reset time takes.
const sinceReason = "must be an RFC 3339 time, such as 2024-03-07T04:40:05Z or 2024-03-07T04:40:05.347Z " +
	"(an offset such as +02:00 is converted to UTC)"

// feed registers the event feed (seed 003): any authenticated caller, who
// sees only the collections its token may read (filtered, not refused).
func (r *router) feed() {
	svc := r.s.Feed
	r.handle(http.MethodGet, "/feed", "NOFDLST", authenticated, func(c *gin.Context, p auth.Principal) error {
		if err := allowQuery(c, "consumer", "category", "limit", "cursor"); err != nil {
			return err
		}
		q := outbox.FeedQuery{Consumer: c.Query("consumer"), Category: c.Query("category"), Limit: outbox.FeedDefaultLimit}
		var fields apperr.Fields
		if raw := c.Query("limit"); raw != "" {
			n, err := strconv.Atoi(raw)
			if err != nil || n < 1 || n > outbox.FeedMaxLimit {
				fields.Add("limit", fmt.Sprintf("must be an integer from 1 to %d", outbox.FeedMaxLimit))
			}
			q.Limit = n
		}
		if raw := c.Query("cursor"); raw != "" {
			after, err := decodeCursor(raw)
			if err != nil {
				fields.Add("cursor", "is not a cursor this API returned")
			}
			q.After = after
		}
		if err := fields.Err(); err != nil {
			return err
		}
		pg := Page{Limit: q.Limit, After: q.After}
		q.Limit++ // one more tells whether a next page exists
		events, err := svc.Read(c.Request.Context(), p, q)
		if err != nil {
			return err
		}
		events, next := trimPage(events, pg, func(e outbox.FeedEvent) int64 { return e.Seq })
		c.JSON(http.StatusOK, outbox.FeedPage{Events: events, NextCursor: next})
		return nil
	})
	r.handle(http.MethodPost, "/feed/:envelopeId/ack", "NOFDACK", authenticated, func(c *gin.Context, p auth.Principal) error {
		if err := allowQuery(c, "consumer"); err != nil {
			return err
		}
		res, err := svc.Ack(c.Request.Context(), p, c.Query("consumer"), c.Param("envelopeId"))
		if err != nil {
			return err
		}
		c.JSON(http.StatusOK, res)
		return nil
	})
	r.handle(http.MethodPost, "/feed/reset/:DateTimeUTC", "NOFDRST", authenticated, func(c *gin.Context, p auth.Principal) error {
		if err := allowQuery(c, "consumer"); err != nil {
			return err
		}
		t, err := time.Parse(time.RFC3339Nano, c.Param("DateTimeUTC"))
		if err != nil || t.UnixMilli() < 0 {
			return apperr.Invalid("the reset time is invalid", apperr.Detail{Field: "DateTimeUTC", Reason: sinceReason})
		}
		res, err := svc.Reset(c.Request.Context(), p, c.Query("consumer"), t.UnixMilli())
		if err != nil {
			return err
		}
		c.JSON(http.StatusOK, res)
		return nil
	})
}
