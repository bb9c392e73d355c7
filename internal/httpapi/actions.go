package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/notificationservice/notificationservice/internal/actions"
	"github.com/notificationservice/notificationservice/internal/apperr"
	"github.com/notificationservice/notificationservice/internal/auth"
)

// ActionService is what the actions routes need (actions.Service).
type ActionService interface {
	Create(ctx context.Context, p auth.Principal, collectionID int64, in actions.Input) (actions.Action, error)
	Get(ctx context.Context, p auth.Principal, collectionID, id int64) (actions.Action, error)
	List(ctx context.Context, p auth.Principal, collectionID int64, f actions.Filter, pg actions.Page) ([]actions.Action, error)
	Update(ctx context.Context, p auth.Principal, collectionID, id int64, patch actions.Patch, ifVersion int64) (actions.Action, error)
	Delete(ctx context.Context, p auth.Principal, collectionID, id, ifVersion int64) (actions.Deleted, error)
}

// actionBody is the body that creates an action. config stays raw until the
// rest is decoded so its unknown fields can be reported as config.<name>.
type actionBody struct {
	Name        string          `json:"name"`
	Description string          `json:"description"`
	Status      string          `json:"status"`
	EventID     int64           `json:"eventId"`
	ConfigName  string          `json:"configName"`
	Template    string          `json:"template"`
	Config      json.RawMessage `json:"config"`
}

// actionPatchBody is the body of a PATCH: absent (or null) fields stay as they are.
type actionPatchBody struct {
	Name        *string         `json:"name"`
	Description *string         `json:"description"`
	Status      *string         `json:"status"`
	EventID     *int64          `json:"eventId"`
	ConfigName  *string         `json:"configName"`
	Template    *string         `json:"template"`
	Config      json.RawMessage `json:"config"`
}

func (r *router) actions() {
	const (
		list = "/collections/:collectionId/actions"
		one  = "/collections/:collectionId/actions/:actionId"
	)
	r.handle(http.MethodPost, list, "NOACCRT", manageCollection, r.createAction)
	r.handle(http.MethodGet, list, "NOACLST", readCollection, r.listActions)
	r.handle(http.MethodGet, one, "NOACGET", readCollection, r.getAction)
	r.handle(http.MethodPatch, one, "NOACUPD", manageCollection, r.updateAction)
	r.handle(http.MethodDelete, one, "NOACDEL", manageCollection, r.deleteAction)
}

func (r *router) createAction(c *gin.Context, p auth.Principal) error {
	cid, err := pathID(c, "collectionId")
	if err != nil {
		return err
	}
	var b actionBody
	if err := decodeJSON(c, &b); err != nil {
		return err
	}
	cfg, err := decodeActionConfig(b.Config)
	if err != nil {
		return err
	}
	a, err := r.s.Actions.Create(c.Request.Context(), p, cid, actions.Input{
		Name: b.Name, Description: b.Description, Status: b.Status, EventID: b.EventID,
		ConfigName: b.ConfigName, Template: b.Template, Config: cfg,
	})
	if err != nil {
		return err
	}
	setETag(c, a.Version)
	c.Header("Location", "/v1/collections/"+strconv.FormatInt(cid, 10)+"/actions/"+strconv.FormatInt(a.ID, 10))
	c.JSON(http.StatusCreated, actions.Envelope{Action: a})
	return nil
}

func (r *router) listActions(c *gin.Context, p auth.Principal) error {
	cid, err := pathID(c, "collectionId")
	if err != nil {
		return err
	}
	return listRoute[actions.Filter, actions.Action]{
		key: "actions", filters: []string{"eventId", "status", "configName"},
		filter: func(c *gin.Context) (actions.Filter, error) {
			eventID, err := queryID(c, "eventId")
			return actions.Filter{EventID: eventID, Status: c.Query("status"), ConfigName: c.Query("configName")}, err
		},
		read: func(ctx context.Context, f actions.Filter, pg Page) ([]actions.Action, error) {
			return r.s.Actions.List(ctx, p, cid, f, actions.Page{Limit: pg.Limit, After: pg.After})
		},
		id: func(a actions.Action) int64 { return a.ID },
	}.serve(c)
}

func (r *router) getAction(c *gin.Context, p auth.Principal) error {
	cid, id, err := actionPath(c)
	if err != nil {
		return err
	}
	a, err := r.s.Actions.Get(c.Request.Context(), p, cid, id)
	if err != nil {
		return err
	}
	setETag(c, a.Version)
	c.JSON(http.StatusOK, actions.Envelope{Action: a})
	return nil
}

func (r *router) updateAction(c *gin.Context, p auth.Principal) error {
	cid, id, err := actionPath(c)
	if err != nil {
		return err
	}
	version, err := ifMatch(c)
	if err != nil {
		return err
	}
	var b actionPatchBody
	if err := decodeJSON(c, &b); err != nil {
		return err
	}
	patch := actions.Patch{
		Name: b.Name, Description: b.Description, Status: b.Status, EventID: b.EventID,
		ConfigName: b.ConfigName, Template: b.Template,
	}
	if len(b.Config) > 0 && !bytes.Equal(bytes.TrimSpace(b.Config), []byte("null")) {
		cfg, err := decodeActionConfig(b.Config)
		if err != nil {
			return err
		}
		patch.Config = &cfg
	}
	a, err := r.s.Actions.Update(c.Request.Context(), p, cid, id, patch, version)
	if err != nil {
		return err
	}
	setETag(c, a.Version)
	c.JSON(http.StatusOK, actions.Envelope{Action: a})
	return nil
}

func (r *router) deleteAction(c *gin.Context, p auth.Principal) error {
	cid, id, err := actionPath(c)
	if err != nil {
		return err
	}
	version, err := ifMatch(c)
	if err != nil {
		return err
	}
	d, err := r.s.Actions.Delete(c.Request.Context(), p, cid, id, version)
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, d)
	return nil
}

func actionPath(c *gin.Context) (collectionID, id int64, err error) {
	if collectionID, err = pathID(c, "collectionId"); err != nil {
		return 0, 0, err
	}
	if id, err = pathID(c, "actionId"); err != nil {
		return 0, 0, err
	}
	return collectionID, id, nil
}

// decodeActionConfig decodes an action's config strictly, naming the fields
// in its errors config.<field>. An absent or null config is the empty one.
func decodeActionConfig(raw json.RawMessage) (actions.Config, error) {
	var cfg actions.Config
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 || bytes.Equal(trimmed, []byte("null")) {
		return cfg, nil
	}
	if err := decodeStrict(trimmed, &cfg); err != nil {
		if e, ok := apperr.As(err); ok {
			for i, d := range e.Details {
				if d.Field == "body" {
					e.Details[i].Field = "config"
				} else {
					// A type error's path names the embedded Content struct; the
					// JSON has no such level.
					e.Details[i].Field = "config." + strings.TrimPrefix(d.Field, "Content.")
				}
			}
		}
		return cfg, err
	}
	return cfg, nil
}
