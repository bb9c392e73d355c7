package httpapi

import (
	"context"
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"github.com/notificationservice/notificationservice/internal/auth"
	"github.com/notificationservice/notificationservice/internal/collections"
)

// CollectionService is what the collection and event routes need;
// *collections.Service implements it. ifVersion is the If-Match version, 0
// for none.
type CollectionService interface {
	CreateCollection(ctx context.Context, p auth.Principal, in collections.CollectionInput) (collections.Collection, error)
	ListCollections(ctx context.Context, p auth.Principal, f collections.Filter, pg collections.Page) ([]collections.Collection, error)
	GetCollection(ctx context.Context, p auth.Principal, id int64) (collections.Collection, error)
	UpdateCollection(ctx context.Context, p auth.Principal, id int64, patch collections.CollectionPatch, ifVersion int64) (collections.Collection, error)
	DeleteCollection(ctx context.Context, p auth.Principal, id, ifVersion int64) (collections.Deleted, error)

	CreateEvent(ctx context.Context, p auth.Principal, collectionID int64, in collections.Input) (collections.Event, error)
	ListEvents(ctx context.Context, p auth.Principal, collectionID int64, f collections.Filter, pg collections.Page) ([]collections.Event, error)
	GetEvent(ctx context.Context, p auth.Principal, collectionID, id int64) (collections.Event, error)
	UpdateEvent(ctx context.Context, p auth.Principal, collectionID, id int64, patch collections.Patch, ifVersion int64) (collections.Event, error)
	DeleteEvent(ctx context.Context, p auth.Principal, collectionID, id, ifVersion int64) (collections.Deleted, error)
}

// collections registers the collection routes and the event routes nested
// under them.
func (r *router) collections() {
	svc := r.s.Collections
	r.handle(http.MethodPost, "/collections", "NOCOCRT", superAdminOnly, func(c *gin.Context, p auth.Principal) error {
		var in collections.CollectionInput
		if err := decodeJSON(c, &in); err != nil {
			return err
		}
		col, err := svc.CreateCollection(c.Request.Context(), p, in)
		if err != nil {
			return err
		}
		setETag(c, col.Version)
		c.Header("Location", "/v1/collections/"+strconv.FormatInt(col.ID, 10))
		c.JSON(http.StatusCreated, gin.H{"collection": col})
		return nil
	})
	r.handle(http.MethodGet, "/collections", "NOCOLST", authenticated, func(c *gin.Context, p auth.Principal) error {
		return listRoute[collections.Filter, collections.Collection]{
			key: "collections", filters: collectionFilters, filter: collectionFilter,
			read: func(ctx context.Context, f collections.Filter, pg Page) ([]collections.Collection, error) {
				return svc.ListCollections(ctx, p, f, collections.Page{Limit: pg.Limit, After: pg.After})
			},
			id: func(c collections.Collection) int64 { return c.ID },
		}.serve(c)
	})
	r.handle(http.MethodGet, "/collections/:collectionId", "NOCOGET", readCollection, func(c *gin.Context, p auth.Principal) error {
		id, err := pathID(c, "collectionId")
		if err != nil {
			return err
		}
		col, err := svc.GetCollection(c.Request.Context(), p, id)
		if err != nil {
			return err
		}
		setETag(c, col.Version)
		c.JSON(http.StatusOK, gin.H{"collection": col})
		return nil
	})
	r.handle(http.MethodPatch, "/collections/:collectionId", "NOCOUPD", manageCollection, func(c *gin.Context, p auth.Principal) error {
		id, err := pathID(c, "collectionId")
		if err != nil {
			return err
		}
		patch, version, err := patchParams[collections.CollectionPatch](c)
		if err != nil {
			return err
		}
		col, err := svc.UpdateCollection(c.Request.Context(), p, id, patch, version)
		if err != nil {
			return err
		}
		setETag(c, col.Version)
		c.JSON(http.StatusOK, gin.H{"collection": col})
		return nil
	})
	r.handle(http.MethodDelete, "/collections/:collectionId", "NOCODEL", manageCollection, func(c *gin.Context, p auth.Principal) error {
		id, err := pathID(c, "collectionId")
		if err != nil {
			return err
		}
		version, err := ifMatch(c)
		if err != nil {
			return err
		}
		d, err := svc.DeleteCollection(c.Request.Context(), p, id, version)
		if err != nil {
			return err
		}
		c.JSON(http.StatusOK, d)
		return nil
	})

	r.handle(http.MethodPost, "/collections/:collectionId/events", "NOEVCRT", manageCollection, func(c *gin.Context, p auth.Principal) error {
		cid, err := pathID(c, "collectionId")
		if err != nil {
			return err
		}
		var in collections.Input
		if err := decodeJSON(c, &in); err != nil {
			return err
		}
		ev, err := svc.CreateEvent(c.Request.Context(), p, cid, in)
		if err != nil {
			return err
		}
		setETag(c, ev.Version)
		c.Header("Location", "/v1/collections/"+strconv.FormatInt(cid, 10)+"/events/"+strconv.FormatInt(ev.ID, 10))
		c.JSON(http.StatusCreated, gin.H{"event": ev})
		return nil
	})
	r.handle(http.MethodGet, "/collections/:collectionId/events", "NOEVLST", readCollection, func(c *gin.Context, p auth.Principal) error {
		cid, err := pathID(c, "collectionId")
		if err != nil {
			return err
		}
		return listRoute[collections.Filter, collections.Event]{
			key: "events", filters: collectionFilters, filter: collectionFilter,
			read: func(ctx context.Context, f collections.Filter, pg Page) ([]collections.Event, error) {
				return svc.ListEvents(ctx, p, cid, f, collections.Page{Limit: pg.Limit, After: pg.After})
			},
			id: func(e collections.Event) int64 { return e.ID },
		}.serve(c)
	})
	r.handle(http.MethodGet, "/collections/:collectionId/events/:eventId", "NOEVGET", readCollection, func(c *gin.Context, p auth.Principal) error {
		cid, id, err := eventPath(c)
		if err != nil {
			return err
		}
		ev, err := svc.GetEvent(c.Request.Context(), p, cid, id)
		if err != nil {
			return err
		}
		setETag(c, ev.Version)
		c.JSON(http.StatusOK, gin.H{"event": ev})
		return nil
	})
	r.handle(http.MethodPatch, "/collections/:collectionId/events/:eventId", "NOEVUPD", manageCollection, func(c *gin.Context, p auth.Principal) error {
		cid, id, err := eventPath(c)
		if err != nil {
			return err
		}
		patch, version, err := patchParams[collections.Patch](c)
		if err != nil {
			return err
		}
		ev, err := svc.UpdateEvent(c.Request.Context(), p, cid, id, patch, version)
		if err != nil {
			return err
		}
		setETag(c, ev.Version)
		c.JSON(http.StatusOK, gin.H{"event": ev})
		return nil
	})
	r.handle(http.MethodDelete, "/collections/:collectionId/events/:eventId", "NOEVDEL", manageCollection, func(c *gin.Context, p auth.Principal) error {
		cid, id, err := eventPath(c)
		if err != nil {
			return err
		}
		version, err := ifMatch(c)
		if err != nil {
			return err
		}
		d, err := svc.DeleteEvent(c.Request.Context(), p, cid, id, version)
		if err != nil {
			return err
		}
		c.JSON(http.StatusOK, d)
		return nil
	})
}

// collectionFilters are the filters of the collection and event lists.
var collectionFilters = []string{"status", "name"}

// collectionFilter reads the filters of a collection or event list (the
// service validates them).
func collectionFilter(c *gin.Context) (collections.Filter, error) {
	return collections.Filter{Status: c.Query("status"), Name: c.Query("name")}, nil
}

// patchParams reads a PATCH body (a collections.Patch for an event, a
// collections.CollectionPatch for a collection) and its If-Match version.
func patchParams[P any](c *gin.Context) (P, int64, error) {
	var patch P
	version, err := ifMatch(c)
	if err != nil {
		return patch, 0, err
	}
	if err := decodeJSON(c, &patch); err != nil {
		return patch, 0, err
	}
	return patch, version, nil
}

// eventPath reads :collectionId and :eventId.
func eventPath(c *gin.Context) (collectionID, eventID int64, err error) {
	if collectionID, err = pathID(c, "collectionId"); err != nil {
		return 0, 0, err
	}
	if eventID, err = pathID(c, "eventId"); err != nil {
		return 0, 0, err
	}
	return collectionID, eventID, nil
}
