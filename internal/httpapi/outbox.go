package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"github.com/notificationservice/notificationservice/internal/apperr"
	"github.com/notificationservice/notificationservice/internal/auth"
	"github.com/notificationservice/notificationservice/internal/outbox"
)

// OutboxService is what the envelope (replay) routes need; *outbox.Store
// implements it.
type OutboxService interface {
	List(ctx context.Context, f outbox.Filter, after int64, limit int) ([]outbox.Envelope, error)
	Get(ctx context.Context, envelopeID string) (outbox.Envelope, error)
	Replay(ctx context.Context, f outbox.Filter) (outbox.ReplayResult, error)
	Stats(ctx context.Context) (outbox.Stats, error)
}

// outbox registers the super-admin envelope routes: what was published, what
// waits, what is parked, and publishing again after a consumer's outage.
func (r *router) outbox() {
	svc := r.s.Outbox
	r.handle(http.MethodGet, "/envelopes", "NOOBLST", superAdminOnly, func(c *gin.Context, _ auth.Principal) error {
		return listRoute[outbox.Filter, outbox.Envelope]{
			key: "envelopes", filters: []string{"since", "until", "detailType", "collectionId", "state"},
			filter: envelopeFilter,
			read: func(ctx context.Context, f outbox.Filter, pg Page) ([]outbox.Envelope, error) {
				return svc.List(ctx, f, pg.After, pg.Limit)
			},
			id: func(e outbox.Envelope) int64 { return e.ID },
		}.serve(c)
	})
	r.handle(http.MethodGet, "/envelopes/stats", "NOOBGET", superAdminOnly, func(c *gin.Context, _ auth.Principal) error {
		st, err := svc.Stats(c.Request.Context())
		if err != nil {
			return err
		}
		c.JSON(http.StatusOK, gin.H{"stats": st})
		return nil
	})
	r.handle(http.MethodGet, "/envelopes/:envelopeId", "NOOBGET", superAdminOnly, func(c *gin.Context, _ auth.Principal) error {
		e, err := svc.Get(c.Request.Context(), c.Param("envelopeId"))
		if err != nil {
			return err
		}
		c.JSON(http.StatusOK, gin.H{"envelope": e})
		return nil
	})
	r.handle(http.MethodPost, "/envelopes/replay", "NOOBRPL", superAdminOnly, func(c *gin.Context, _ auth.Principal) error {
		var in replayInput
		if err := decodeJSON(c, &in); err != nil {
			return err
		}
		var fields apperr.Fields
		if isAbsent(in.Since) {
			fields.Add("since", "is required: epoch milliseconds (0 for the beginning) or an RFC 3339 time")
		}
		f := outbox.Filter{
			Since:        parseTime(&fields, "since", in.Since),
			Until:        parseTime(&fields, "until", in.Until),
			DetailType:   in.DetailType,
			CollectionID: in.CollectionID,
		}
		if err := fields.Err(); err != nil {
			return err
		}
		res, err := svc.Replay(c.Request.Context(), f)
		if err != nil {
			return err
		}
		c.JSON(http.StatusAccepted, gin.H{
			"responseCode":    ResponseCode("NOOBRPL", http.StatusAccepted),
			"responseMessage": strconv.FormatInt(res.Replayed, 10) + " envelopes will be published again",
			"replay":          res,
		})
		return nil
	})
}

// replayInput is the body of POST /v1/envelopes/replay. since and until are
// epoch milliseconds (a number) or RFC 3339 strings.
type replayInput struct {
	Since        json.RawMessage `json:"since"`
	Until        json.RawMessage `json:"until"`
	DetailType   string          `json:"detailType"`
	CollectionID int64           `json:"collectionId"`
}

const timeReason = "must be epoch milliseconds or an RFC 3339 time such as 2024-03-07T04:40:05Z"

// isAbsent reports whether a JSON field was left out or sent as null.
func isAbsent(raw []byte) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) == 0 || bytes.Equal(raw, []byte("null"))
}

// parseTime reads one time field; 0 when absent or null. since may be 0
// (the epoch, so from the beginning), as the schema allows; until must be
// after it, since 0 there means no bound.
func parseTime(fields *apperr.Fields, name string, raw []byte) int64 {
	if isAbsent(raw) {
		return 0
	}
	raw = bytes.TrimSpace(raw)
	s := string(raw)
	if raw[0] == '"' {
		if err := json.Unmarshal(raw, &s); err != nil {
			fields.Add(name, timeReason)
			return 0
		}
	}
	ms, err := outbox.ParseTime(s)
	if err != nil || ms < 0 || (ms == 0 && name != "since") {
		fields.Add(name, timeReason)
		return 0
	}
	return ms
}

// envelopeFilter reads ?since=&until=&detailType=&collectionId=&state=.
func envelopeFilter(c *gin.Context) (outbox.Filter, error) {
	var f outbox.Filter
	var fields apperr.Fields
	if raw := c.Query("since"); raw != "" {
		f.Since = parseTime(&fields, "since", []byte(strconv.Quote(raw)))
	}
	if raw := c.Query("until"); raw != "" {
		f.Until = parseTime(&fields, "until", []byte(strconv.Quote(raw)))
	}
	id, err := queryID(c, "collectionId")
	if err != nil {
		fields.Add("collectionId", "must be a positive integer")
	}
	f.CollectionID = id
	f.DetailType = c.Query("detailType")
	f.State = outbox.State(c.Query("state"))
	return f, fields.Err()
}
