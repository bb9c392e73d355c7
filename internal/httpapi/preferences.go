package httpapi

import (
	"context"
	"encoding/json"
	"html/template"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/notificationservice/notificationservice/internal/auth"
	"github.com/notificationservice/notificationservice/internal/preferences"
)

// PreferenceService is what the recipient preference routes need;
// *preferences.Service implements it.
type PreferenceService interface {
	Get(ctx context.Context, p auth.Principal, collectionID int64, key string) (preferences.Document, error)
	Put(ctx context.Context, p auth.Principal, collectionID int64, key string, d preferences.Document) (preferences.Document, error)
	Patch(ctx context.Context, p auth.Principal, collectionID int64, key string, patch json.RawMessage) (preferences.Document, error)
}

// UnsubscribeService is what the public one-click unsubscribe routes need;
// *preferences.Unsubscribes implements it.
type UnsubscribeService interface {
	Target(ctx context.Context, token string) (preferences.Target, error)
	Unsubscribe(ctx context.Context, token string) (preferences.Target, error)
}

// preferences registers the recipient preference routes. Writing needs the
// send right, which admins have too: the producer's backend sets a user's
// preferences on their behalf with its sender token.
func (r *router) preferences() {
	svc := r.s.Preferences
	const path = "/collections/:collectionId/recipients/:recipientId/preferences"
	r.handle(http.MethodGet, path, "NOPRGET", readCollection, func(c *gin.Context, p auth.Principal) error {
		cid, err := pathID(c, "collectionId")
		if err != nil {
			return err
		}
		d, err := svc.Get(c.Request.Context(), p, cid, c.Param("recipientId"))
		if err != nil {
			return err
		}
		c.JSON(http.StatusOK, d)
		return nil
	})
	r.handle(http.MethodPut, path, "NOPRPUT", sendCollection, func(c *gin.Context, p auth.Principal) error {
		cid, err := pathID(c, "collectionId")
		if err != nil {
			return err
		}
		var in preferences.Document
		if err := decodeJSON(c, &in); err != nil {
			return err
		}
		d, err := svc.Put(c.Request.Context(), p, cid, c.Param("recipientId"), in)
		if err != nil {
			return err
		}
		c.JSON(http.StatusOK, d)
		return nil
	})
	r.handle(http.MethodPatch, path, "NOPRPAT", sendCollection, func(c *gin.Context, p auth.Principal) error {
		cid, err := pathID(c, "collectionId")
		if err != nil {
			return err
		}
		var patch json.RawMessage
		if err := decodeJSON(c, &patch); err != nil {
			return err
		}
		d, err := svc.Patch(c.Request.Context(), p, cid, c.Param("recipientId"), patch)
		if err != nil {
			return err
		}
		c.JSON(http.StatusOK, d)
		return nil
	})
}

// confirmPage is the GET page of an unsubscribe link: it changes nothing
// (mail scanners follow links) and posts the RFC 8058 body back to the same
// URL, as a mail provider's one-click POST does.
var confirmPage = template.Must(template.New("confirm").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="robots" content="noindex"><title>Unsubscribe</title></head>
<body><h1>Unsubscribe</h1>
<p>Stop receiving {{if .}}&ldquo;{{.}}&rdquo; {{end}}emails?</p>
<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click"><button type="submit">Unsubscribe</button></form>
</body></html>
`))

// donePage answers an unsubscribe POST.
const donePage = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Unsubscribed</title></head><body><p>You are unsubscribed.</p></body></html>
`

// unsubscribe registers the public one-click unsubscribe routes, outside
// /v1: the token in the path is the authentication (signed, expiring).
func (r *router) unsubscribe() {
	svc := r.s.Unsubscribe
	const path = "/unsubscribe/:token"
	private := func(c *gin.Context) {
		// The token is a credential in the URL: no caching, no referrer.
		c.Header("Cache-Control", "no-store")
		c.Header("Referrer-Policy", "no-referrer")
		c.Header("X-Robots-Tag", "noindex")
	}
	r.handle(http.MethodGet, path, "NOUNGET", public, func(c *gin.Context, _ auth.Principal) error {
		t, err := svc.Target(c.Request.Context(), c.Param("token"))
		if err != nil {
			return err
		}
		private(c)
		c.Status(http.StatusOK)
		c.Header("Content-Type", "text/html; charset=utf-8")
		return confirmPage.Execute(c.Writer, t.EventName)
	})
	r.handle(http.MethodPost, path, "NOUNPST", public, func(c *gin.Context, _ auth.Principal) error {
		if _, err := svc.Unsubscribe(c.Request.Context(), c.Param("token")); err != nil {
			return err
		}
		private(c)
		c.Data(http.StatusOK, "text/html; charset=utf-8", []byte(donePage))
		return nil
	})
}
