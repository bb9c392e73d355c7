package httpapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/notificationservice/notificationservice/internal/apperr"
	"github.com/notificationservice/notificationservice/internal/auth"
	"github.com/notificationservice/notificationservice/internal/dispatch"
	"github.com/notificationservice/notificationservice/internal/dispatch/intake"
	"github.com/notificationservice/notificationservice/internal/dispatch/status"
	"github.com/notificationservice/notificationservice/internal/message"
)

// NotificationService is what the notification routes need: the intake's
// Send and the status reads (app joins intake.Intake and status.Store).
type NotificationService interface {
	Send(ctx context.Context, req dispatch.Request, key string, correlation map[string]string, producer dispatch.Producer, actor auth.Principal) (intake.Outcome, error)
	Get(ctx context.Context, collectionID, id int64) (*dispatch.NotificationRecord, error)
	List(ctx context.Context, collectionID int64, f status.NotificationFilter) ([]dispatch.NotificationRecord, error)
	ListDeliveries(ctx context.Context, collectionID int64, f status.DeliveryFilter) ([]dispatch.Delivery, error)
	Cancel(ctx context.Context, collectionID, id int64, actor auth.Principal) (*dispatch.NotificationRecord, status.Cancellation, error)
}

// Headers of the send route.
const (
	IdempotencyKeyHeader = "Idempotency-Key"
	// ReplayedHeader is "true" on a response that repeats the first result
	// of an Idempotency-Key.
	ReplayedHeader      = "Idempotent-Replayed"
	CorrelationIDHeader = "X-Correlation-ID"
	// CorrelationIDsHeader is a JSON object of correlation ids, as the event
	// gateway sends them: {"order_id": "…"}.
	CorrelationIDsHeader = dispatch.HeaderCorrelationIDs
)

const maxKeyLen = 255

// notifications registers the send route and the status routes.
func (r *router) notifications() {
	svc := r.s.Notifications
	r.handle(http.MethodPost, "/collections/:collectionId/notifications", "NONTSND", sendCollection, func(c *gin.Context, p auth.Principal) error {
		cid, err := pathID(c, "collectionId")
		if err != nil {
			return err
		}
		key := strings.TrimSpace(c.GetHeader(IdempotencyKeyHeader))
		if key == "" && r.s.HTTP.RequireIdempotencyKey {
			// A producer that retries a send without a key sends it twice;
			// the event gateway's producers must send one (seed 004).
			return apperr.Invalid("header "+IdempotencyKeyHeader+" is required",
				apperr.Detail{Field: IdempotencyKeyHeader, Reason: "is required: a unique key per send, so a retried request is not sent twice (for example a UUID)"})
		}
		if len(key) > maxKeyLen {
			return apperr.Invalid("header "+IdempotencyKeyHeader+" is too long",
				apperr.Detail{Field: IdempotencyKeyHeader, Reason: fmt.Sprintf("must be at most %d characters", maxKeyLen)})
		}
		if !apperr.ValidText(key) {
			// HTTP allows any octet above 0x7F in a header; the key is stored
			// as text, which PostgreSQL refuses unless it is UTF-8.
			return apperr.Invalid("header "+IdempotencyKeyHeader+" is not valid text",
				apperr.Detail{Field: IdempotencyKeyHeader, Reason: apperr.TextReason})
		}
		producer, corrIDs, err := dispatch.ParseProducer(func(name string) string { return headerValue(c.Request.Header, name) })
		if err != nil {
			return producerErr(err)
		}
		body, err := readBody(c.Request)
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				return apperr.Invalid("request body is too large",
					apperr.Detail{Field: "body", Reason: fmt.Sprintf("must be at most %d bytes", tooBig.Limit)})
			}
			return apperr.Invalid("request body could not be read", apperr.Detail{Field: "body", Reason: err.Error()})
		}
		req, err := dispatch.ParseForCollection(body, cid)
		if err != nil {
			var prob *dispatch.Problem
			if errors.As(err, &prob) {
				return prob.AppErr()
			}
			return err
		}
		setLogAttrs(c, producerAttrs(producer)...)
		out, err := svc.Send(c.Request.Context(), req, key, apiCorrelation(c, corrIDs), producer, p)
		if err != nil {
			return err
		}
		msg := "Notification accepted"
		if out.Replayed {
			c.Header(ReplayedHeader, "true")
			msg = "Notification already accepted under this Idempotency-Key; this is the first result"
		}
		ids := make([]int64, len(out.Notifications))
		for i, n := range out.Notifications {
			ids[i] = n.ID
		}
		c.JSON(http.StatusAccepted, sendResponse{
			ResponseCode:    ResponseCode("NONTSND", http.StatusAccepted),
			ResponseMessage: msg,
			NotificationIDs: ids,
			Notifications:   out.Notifications,
			Replayed:        out.Replayed,
		})
		return nil
	})
	r.handle(http.MethodGet, "/collections/:collectionId/notifications/:notificationId", "NONTGET", readCollection, func(c *gin.Context, p auth.Principal) error {
		cid, err := pathID(c, "collectionId")
		if err != nil {
			return err
		}
		id, err := pathID(c, "notificationId")
		if err != nil {
			return err
		}
		n, err := svc.Get(c.Request.Context(), cid, id)
		if err != nil {
			return err
		}
		c.JSON(http.StatusOK, gin.H{"notification": n})
		return nil
	})
	// Cancel is the producer's: whoever may send may take a send back.
	r.handle(http.MethodPost, "/collections/:collectionId/notifications/:notificationId/cancel", "NONTCNL", sendCollection, func(c *gin.Context, p auth.Principal) error {
		cid, err := pathID(c, "collectionId")
		if err != nil {
			return err
		}
		id, err := pathID(c, "notificationId")
		if err != nil {
			return err
		}
		n, done, err := svc.Cancel(c.Request.Context(), cid, id, p)
		if err != nil {
			return err
		}
		c.JSON(http.StatusOK, gin.H{
			"responseCode":    ResponseCode("NONTCNL", http.StatusOK),
			"responseMessage": fmt.Sprintf("%d deliveries canceled; %d in flight", done.Canceled, done.InFlight),
			"notification":    n,
			"canceled":        done.Canceled,
			"inFlight":        done.InFlight,
		})
		return nil
	})
	r.handle(http.MethodGet, "/collections/:collectionId/notifications", "NONTLST", readCollection, func(c *gin.Context, p auth.Principal) error {
		cid, err := pathID(c, "collectionId")
		if err != nil {
			return err
		}
		return listRoute[status.NotificationFilter, dispatch.NotificationRecord]{
			key: "notifications", filters: []string{"name", "status", "from", "to", "entityId", "correlationId"}, exact: true, filter: notificationFilter,
			read: func(ctx context.Context, f status.NotificationFilter, pg Page) ([]dispatch.NotificationRecord, error) {
				f.After, f.Limit = pg.After, pg.Limit
				return svc.List(ctx, cid, f)
			},
			id: func(n dispatch.NotificationRecord) int64 { return n.ID },
		}.serve(c)
	})
	r.handle(http.MethodGet, "/collections/:collectionId/deliveries", "NODLLST", readCollection, func(c *gin.Context, p auth.Principal) error {
		cid, err := pathID(c, "collectionId")
		if err != nil {
			return err
		}
		return listRoute[status.DeliveryFilter, dispatch.Delivery]{
			key: "deliveries", filters: []string{"status", "channel", "notificationId"}, exact: true, filter: deliveryFilter,
			read: func(ctx context.Context, f status.DeliveryFilter, pg Page) ([]dispatch.Delivery, error) {
				f.After, f.Limit = pg.After, pg.Limit
				return svc.ListDeliveries(ctx, cid, f)
			},
			id: func(d dispatch.Delivery) int64 { return d.ID },
		}.serve(c)
	})
}

// notificationFilter reads the filters of the notification list.
func notificationFilter(c *gin.Context) (status.NotificationFilter, error) {
	var f apperr.Fields
	filter := status.NotificationFilter{Name: c.Query("name"), Status: c.Query("status")}
	if filter.Status != "" {
		f.OneOf("status", filter.Status, dispatch.NotificationAccepted, dispatch.NotificationRejected)
	}
	filter.CreatedFrom = queryMillis(c, "from", &f)
	filter.CreatedTo = queryMillis(c, "to", &f)
	filter.EntityID, filter.CorrelationID = c.Query("entityId"), c.Query("correlationId")
	f.Text("entityId", filter.EntityID)
	f.Text("correlationId", filter.CorrelationID)
	return filter, f.Err()
}

// deliveryFilter reads the filters of the delivery list.
func deliveryFilter(c *gin.Context) (status.DeliveryFilter, error) {
	var f apperr.Fields
	filter := status.DeliveryFilter{Status: c.Query("status"), Channel: c.Query("channel")}
	if filter.Status != "" {
		f.OneOf("status", filter.Status, dispatch.DeliveryStatuses...)
	}
	if filter.Channel != "" {
		f.OneOf("channel", filter.Channel, message.Email, message.SMS, message.Push, message.Webhook)
	}
	nid, err := queryID(c, "notificationId")
	f.Collect(err)
	filter.NotificationID = nid
	return filter, f.Err()
}

// queryMillis reads an optional epoch-milliseconds query parameter.
func queryMillis(c *gin.Context, name string, f *apperr.Fields) int64 {
	raw := c.Query(name)
	if raw == "" {
		return 0
	}
	v, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || v <= 0 {
		f.Add(name, "must be a time in epoch milliseconds")
		return 0
	}
	return v
}

// apiCorrelation gathers the correlation ids of a send request: ids (the
// correlation-ids header, validated by dispatch.ParseProducer),
// X-Correlation-ID and the request id.
func apiCorrelation(c *gin.Context, ids map[string]string) map[string]string {
	out := make(map[string]string, len(ids)+2)
	maps.Copy(out, ids)
	out["requestId"] = requestID(c)
	if v := headerValue(c.Request.Header, CorrelationIDHeader); v != "" && len(v) <= 256 && apperr.ValidText(v) {
		out["correlationId"] = v
	}
	return out
}

// producerErr is a producer header problem as the API's 400.
func producerErr(err error) error {
	var prob *dispatch.Problem
	if errors.As(err, &prob) {
		return apperr.Invalid("request has invalid headers", prob.Details...)
	}
	return err
}

// producerAttrs are the producer headers a send's access log line carries
// (the ones given).
func producerAttrs(p dispatch.Producer) []slog.Attr {
	var attrs []slog.Attr
	for _, a := range []slog.Attr{slog.String("tenant", p.Tenant), slog.String("team", p.Team),
		slog.String("service", p.Service), slog.String("entityId", p.EntityID)} {
		if a.Value.String() != "" {
			attrs = append(attrs, a)
		}
	}
	return attrs
}

// sendResponse is the send's 202 body. Its fields are in the order of their
// JSON names, so it encodes byte for byte as the map it replaced (encoding/json
// sorts a map's keys) without the map, the boxing of each value and the sort.
type sendResponse struct {
	NotificationIDs []int64          `json:"notificationIds"`
	Notifications   []intake.Summary `json:"notifications"`
	Replayed        bool             `json:"replayed"`
	ResponseCode    string           `json:"responseCode"`
	ResponseMessage string           `json:"responseMessage"`
}

// headerValue is the first value of the header name in h. The send's
// headers are named in forms that are not canonical (the producer headers
// in lower case, X-Correlation-ID), and http.Header.Get canonicalised each
// into a new string on every send; their canonical forms are spelt out
// here. Any other name goes through Get.
func headerValue(h http.Header, name string) string {
	var key string
	switch name {
	case dispatch.HeaderTenant:
		key = "Tenant"
	case dispatch.HeaderTeam:
		key = "Team"
	case dispatch.HeaderService:
		key = "Service"
	case dispatch.HeaderEntityID:
		key = "Entity-Id"
	case dispatch.HeaderCorrelationIDs:
		key = "Correlation-Ids"
	case CorrelationIDHeader:
		key = "X-Correlation-Id"
	default:
		return h.Get(name)
	}
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// readBody reads r's body into one buffer of its declared length, which
// io.ReadAll would grow from 512 bytes, copying, for a send of a few
// recipients. A length past 64 KiB is not trusted to size the buffer
// (limitBody refuses what it must); a body without one, or longer than
// declared, is read as io.ReadAll does.
func readBody(r *http.Request) ([]byte, error) {
	n := r.ContentLength
	if n <= 0 || n > 64<<10 {
		return io.ReadAll(r.Body)
	}
	// One byte more than declared, so the read that finds io.EOF needs no
	// room of its own.
	buf := make([]byte, 0, n+1)
	for {
		m, err := r.Body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+m]
		switch {
		case errors.Is(err, io.EOF):
			return buf, nil
		case err != nil:
			return buf, err
		case len(buf) == cap(buf):
			rest, err := io.ReadAll(r.Body)
			return append(buf, rest...), err
		}
	}
}
