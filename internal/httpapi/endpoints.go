package httpapi

import (
	"context"
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"github.com/notificationservice/notificationservice/internal/auth"
	"github.com/notificationservice/notificationservice/internal/webhooks"
)

// EndpointService is what the customer webhook endpoint routes need;
// *webhooks.Service implements it. (The inbound provider status webhooks
// are Deps.Webhooks, webhooks.go.)
type EndpointService interface {
	Create(ctx context.Context, p auth.Principal, collectionID int64, in webhooks.Input) (webhooks.WithSecret, error)
	List(ctx context.Context, p auth.Principal, collectionID int64, pg webhooks.Page) ([]webhooks.Endpoint, error)
	Get(ctx context.Context, p auth.Principal, collectionID, id int64) (webhooks.Endpoint, error)
	Update(ctx context.Context, p auth.Principal, collectionID, id int64, patch webhooks.Patch) (webhooks.Endpoint, error)
	Delete(ctx context.Context, p auth.Principal, collectionID, id int64) (webhooks.Deleted, error)
	RotateSecret(ctx context.Context, p auth.Principal, collectionID, id int64) (webhooks.WithSecret, error)
	Validate(ctx context.Context, p auth.Principal, collectionID, id int64) (webhooks.Endpoint, error)
	Attempts(ctx context.Context, p auth.Principal, collectionID, id int64, pg webhooks.Page) ([]webhooks.Attempt, error)
}

// noFilter is the filter of a list that takes none.
func noFilter(*gin.Context) (struct{}, error) { return struct{}{}, nil }

// endpointPath reads :collectionId and :webhookId.
func endpointPath(c *gin.Context) (int64, int64, error) {
	cid, err := pathID(c, "collectionId")
	if err != nil {
		return 0, 0, err
	}
	id, err := pathID(c, "webhookId")
	return cid, id, err
}

// endpointRoute is a route on one endpoint that answers {"webhook": …}.
func endpointRoute(fn func(ctx context.Context, p auth.Principal, cid, id int64) (webhooks.Endpoint, error)) handlerFunc {
	return func(c *gin.Context, p auth.Principal) error {
		cid, id, err := endpointPath(c)
		if err != nil {
			return err
		}
		e, err := fn(c.Request.Context(), p, cid, id)
		if err != nil {
			return err
		}
		c.JSON(http.StatusOK, gin.H{"webhook": e})
		return nil
	}
}

// endpoints registers the customer webhook endpoint routes.
func (r *router) endpoints() {
	svc := r.s.Endpoints
	const base = "/collections/:collectionId/webhooks"
	const one = base + "/:webhookId"
	r.handle(http.MethodPost, base, "NOHKCRT", manageCollection, func(c *gin.Context, p auth.Principal) error {
		cid, err := pathID(c, "collectionId")
		if err != nil {
			return err
		}
		var in webhooks.Input
		if err := decodeJSON(c, &in); err != nil {
			return err
		}
		out, err := svc.Create(c.Request.Context(), p, cid, in)
		if err != nil {
			return err
		}
		c.Header("Location", "/v1/collections/"+strconv.FormatInt(cid, 10)+"/webhooks/"+strconv.FormatInt(out.Webhook.ID, 10))
		c.JSON(http.StatusCreated, out)
		return nil
	})
	r.handle(http.MethodGet, base, "NOHKLST", readCollection, func(c *gin.Context, p auth.Principal) error {
		cid, err := pathID(c, "collectionId")
		if err != nil {
			return err
		}
		return listRoute[struct{}, webhooks.Endpoint]{
			key: "webhooks", filter: noFilter,
			read: func(ctx context.Context, _ struct{}, pg Page) ([]webhooks.Endpoint, error) {
				return svc.List(ctx, p, cid, webhooks.Page{Limit: pg.Limit, After: pg.After})
			},
			id: func(e webhooks.Endpoint) int64 { return e.ID },
		}.serve(c)
	})
	r.handle(http.MethodGet, one, "NOHKGET", readCollection, endpointRoute(func(ctx context.Context, p auth.Principal, cid, id int64) (webhooks.Endpoint, error) {
		return svc.Get(ctx, p, cid, id)
	}))
	r.handle(http.MethodPatch, one, "NOHKUPD", manageCollection, func(c *gin.Context, p auth.Principal) error {
		var patch webhooks.Patch
		if err := decodeJSON(c, &patch); err != nil {
			return err
		}
		return endpointRoute(func(ctx context.Context, p auth.Principal, cid, id int64) (webhooks.Endpoint, error) {
			return svc.Update(ctx, p, cid, id, patch)
		})(c, p)
	})
	r.handle(http.MethodDelete, one, "NOHKDEL", manageCollection, func(c *gin.Context, p auth.Principal) error {
		cid, id, err := endpointPath(c)
		if err != nil {
			return err
		}
		d, err := svc.Delete(c.Request.Context(), p, cid, id)
		if err != nil {
			return err
		}
		c.JSON(http.StatusOK, d)
		return nil
	})
	r.handle(http.MethodPost, one+"/rotate-secret", "NOHKROT", manageCollection, func(c *gin.Context, p auth.Principal) error {
		cid, id, err := endpointPath(c)
		if err != nil {
			return err
		}
		out, err := svc.RotateSecret(c.Request.Context(), p, cid, id)
		if err != nil {
			return err
		}
		c.JSON(http.StatusOK, out)
		return nil
	})
	r.handle(http.MethodPost, one+"/validate", "NOHKVAL", manageCollection, endpointRoute(svc.Validate))
	r.handle(http.MethodGet, one+"/attempts", "NOHKATT", readCollection, func(c *gin.Context, p auth.Principal) error {
		cid, id, err := endpointPath(c)
		if err != nil {
			return err
		}
		return listRoute[struct{}, webhooks.Attempt]{
			key: "attempts", filter: noFilter,
			read: func(ctx context.Context, _ struct{}, pg Page) ([]webhooks.Attempt, error) {
				return svc.Attempts(ctx, p, cid, id, webhooks.Page{Limit: pg.Limit, After: pg.After})
			},
			id: func(a webhooks.Attempt) int64 { return a.ID },
		}.serve(c)
	})
}
