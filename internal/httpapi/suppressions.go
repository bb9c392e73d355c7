package httpapi

import (
	"context"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/notificationservice/notificationservice/internal/apperr"
	"github.com/notificationservice/notificationservice/internal/auth"
	"github.com/notificationservice/notificationservice/internal/suppressions"
)

// SuppressionService is what the suppression-list routes need;
// *suppressions.Service implements it.
type SuppressionService interface {
	Create(ctx context.Context, p auth.Principal, collectionID int64, in suppressions.Input) (suppressions.Suppression, error)
	List(ctx context.Context, p auth.Principal, collectionID int64, channel string, pg suppressions.Page) ([]suppressions.Suppression, error)
	Get(ctx context.Context, p auth.Principal, collectionID int64, address, channel string) ([]suppressions.Suppression, error)
	Delete(ctx context.Context, p auth.Principal, collectionID int64, address, channel string) (suppressions.Deleted, error)
}

// channelQuery reads the optional ?channel= that picks one channel of an
// address (or of a list).
func channelQuery(c *gin.Context) (string, error) {
	ch := c.Query("channel")
	if ch == "" {
		return "", nil
	}
	var f apperr.Fields
	f.OneOf("channel", ch, "email", "sms", "push")
	return ch, f.Err()
}

// suppressionPath reads :collectionId, :address (URL-decoded by the
// router) and ?channel=, the only query parameter these routes take.
func suppressionPath(c *gin.Context) (int64, string, string, error) {
	var f apperr.Fields
	f.Collect(allowQuery(c, "channel"))
	cid, err := pathID(c, "collectionId")
	f.Collect(err)
	ch, err := channelQuery(c)
	f.Collect(err)
	return cid, c.Param("address"), ch, f.Err()
}

// suppressions registers the suppression-list routes. An address is
// suppressed per channel: GET and DELETE on an address act on every
// channel it is suppressed on, or on ?channel= alone.
func (r *router) suppressions() {
	svc := r.s.Suppressions
	const base = "/collections/:collectionId/suppressions"
	const one = base + "/:address"
	r.handle(http.MethodPost, base, "NOSPCRT", manageCollection, func(c *gin.Context, p auth.Principal) error {
		cid, err := pathID(c, "collectionId")
		if err != nil {
			return err
		}
		var in suppressions.Input
		if err := decodeJSON(c, &in); err != nil {
			return err
		}
		out, err := svc.Create(c.Request.Context(), p, cid, in)
		if err != nil {
			return err
		}
		c.Header("Location", suppressions.Href(out))
		c.JSON(http.StatusCreated, gin.H{"suppression": out})
		return nil
	})
	r.handle(http.MethodGet, base, "NOSPLST", readCollection, func(c *gin.Context, p auth.Principal) error {
		cid, err := pathID(c, "collectionId")
		if err != nil {
			return err
		}
		return listRoute[string, suppressions.Suppression]{
			key: "suppressions", filters: []string{"channel"}, filter: channelQuery,
			read: func(ctx context.Context, ch string, pg Page) ([]suppressions.Suppression, error) {
				return svc.List(ctx, p, cid, ch, suppressions.Page{Limit: pg.Limit, After: pg.After})
			},
			id: func(e suppressions.Suppression) int64 { return e.ID },
		}.serve(c)
	})
	r.handle(http.MethodGet, one, "NOSPGET", readCollection, func(c *gin.Context, p auth.Principal) error {
		cid, addr, ch, err := suppressionPath(c)
		if err != nil {
			return err
		}
		out, err := svc.Get(c.Request.Context(), p, cid, addr, ch)
		if err != nil {
			return err
		}
		c.JSON(http.StatusOK, gin.H{"suppressions": out})
		return nil
	})
	r.handle(http.MethodDelete, one, "NOSPDEL", manageCollection, func(c *gin.Context, p auth.Principal) error {
		cid, addr, ch, err := suppressionPath(c)
		if err != nil {
			return err
		}
		d, err := svc.Delete(c.Request.Context(), p, cid, addr, ch)
		if err != nil {
			return err
		}
		c.JSON(http.StatusOK, d)
		return nil
	})
}
