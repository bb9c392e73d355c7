package httpapi

import (
	"errors"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/notificationservice/notificationservice/internal/apperr"
	"github.com/notificationservice/notificationservice/internal/auth"
	"github.com/notificationservice/notificationservice/internal/macros"
	"github.com/notificationservice/notificationservice/internal/preview"
)

// PreviewConfig enables the preview route: the limits it checks are the
// channels' (channels.twilio.maxSegments, channels.fcm.maxPayloadBytes).
type PreviewConfig struct {
	Limits macros.Limits
}

// previewBody is the recipient a preview renders for.
type previewBody struct {
	Locale string            `json:"locale"`
	Macros map[string]string `json:"macros"`
}

// preview registers the route that renders an action for given macros and
// locale without sending. Anyone who may read the collection may preview.
func (r *router) preview() {
	r.handle(http.MethodPost, "/collections/:collectionId/actions/:actionId/preview", "NOPVCRT", readCollection,
		func(c *gin.Context, p auth.Principal) error {
			cid, err := pathID(c, "collectionId")
			if err != nil {
				return err
			}
			aid, err := pathID(c, "actionId")
			if err != nil {
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
			out, err := preview.Action(a, body.Locale, body.Macros, r.s.Preview.Limits)
			var fe *macros.FieldError
			if errors.As(err, &fe) {
				return &apperr.Error{Kind: apperr.FailedPrecondition, Err: err, Message: "the action's template does not render; fix the action",
					Details: []apperr.Detail{{Field: "config." + fe.Field, Reason: fe.Err.Error()}}}
			}
			if err != nil {
				return err
			}
			c.JSON(http.StatusOK, gin.H{"preview": out})
			return nil
		})
}
