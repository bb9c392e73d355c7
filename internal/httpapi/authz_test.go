package httpapi_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/auth"
)

// perm is the permission a route is documented to need (docs/api.md,
// "Permissions"). The test states it independently of the router, so a
// route whose registered permission changes, or a check that lets everyone
// through, fails here.
type perm int

const (
	permPublic perm = iota // no token asked for (health, contract, metrics)
	permSigned             // provider webhook: the signature, not a token, is checked; unsigned is 401 for anyone
	permAny                // any valid token; the route shows only what the token may read
	permRead               // read the :collectionId in the path
	permWrite              // change the :collectionId in the path
	permSend               // send through the :collectionId in the path
	permSuper              // ROLE_SUPER_ADMIN
)

// routePermissions is every route the service registers, with the
// permission it needs. A new route fails TestRoutePermissions until it has a
// row here: adding a route is one r.handle line in the router and one row
// in this table.
var routePermissions = map[string]perm{
	"GET /healthz":      permPublic,
	"GET /readyz":       permPublic,
	"GET /openapi.yaml": permPublic,
	"GET /metrics":      permPublic,

	"POST /v1/webhooks/sendgrid/events": permSigned,
	"POST /v1/webhooks/twilio/status":   permSigned,

	"POST /v1/collections":                      permSuper,
	"GET /v1/collections":                       permAny,
	"GET /v1/collections/:collectionId":         permRead,
	"PATCH /v1/collections/:collectionId":       permWrite,
	"DELETE /v1/collections/:collectionId":      permWrite,
	"POST /v1/collections/:collectionId/events": permWrite,
	"GET /v1/collections/:collectionId/events":  permRead,

	"GET /v1/collections/:collectionId/events/:eventId":    permRead,
	"PATCH /v1/collections/:collectionId/events/:eventId":  permWrite,
	"DELETE /v1/collections/:collectionId/events/:eventId": permWrite,

	"POST /v1/collections/:collectionId/actions":                              permWrite,
	"GET /v1/collections/:collectionId/actions":                               permRead,
	"GET /v1/collections/:collectionId/actions/:actionId":                     permRead,
	"PATCH /v1/collections/:collectionId/actions/:actionId":                   permWrite,
	"DELETE /v1/collections/:collectionId/actions/:actionId":                  permWrite,
	"POST /v1/collections/:collectionId/actions/:actionId/preview":            permRead,
	"POST /v1/collections/:collectionId/actions/:actionId/test-send":          permWrite,
	"POST /v1/collections/:collectionId/notifications":                        permSend,
	"GET /v1/collections/:collectionId/notifications":                         permRead,
	"GET /v1/collections/:collectionId/notifications/:notificationId":         permRead,
	"POST /v1/collections/:collectionId/notifications/:notificationId/cancel": permSend,
	"GET /v1/collections/:collectionId/deliveries":                            permRead,

	"POST /v1/collections/:collectionId/webhooks":                          permWrite,
	"GET /v1/collections/:collectionId/webhooks":                           permRead,
	"GET /v1/collections/:collectionId/webhooks/:webhookId":                permRead,
	"PATCH /v1/collections/:collectionId/webhooks/:webhookId":              permWrite,
	"DELETE /v1/collections/:collectionId/webhooks/:webhookId":             permWrite,
	"POST /v1/collections/:collectionId/webhooks/:webhookId/rotate-secret": permWrite,
	"POST /v1/collections/:collectionId/webhooks/:webhookId/validate":      permWrite,
	"GET /v1/collections/:collectionId/webhooks/:webhookId/attempts":       permRead,

	"POST /v1/collections/:collectionId/suppressions":                         permWrite,
	"GET /v1/collections/:collectionId/suppressions":                          permRead,
	"GET /v1/collections/:collectionId/suppressions/:address":                 permRead,
	"DELETE /v1/collections/:collectionId/suppressions/:address":              permWrite,
	"GET /v1/collections/:collectionId/recipients/:recipientId/preferences":   permRead,
	"PUT /v1/collections/:collectionId/recipients/:recipientId/preferences":   permSend,
	"PATCH /v1/collections/:collectionId/recipients/:recipientId/preferences": permSend,

	// The signed token in the path authenticates; no bearer token is asked.
	"GET /unsubscribe/:token":  permPublic,
	"POST /unsubscribe/:token": permPublic,

	"GET /v1/envelopes":             permSuper,
	"GET /v1/envelopes/stats":       permSuper,
	"GET /v1/envelopes/:envelopeId": permSuper,
	"POST /v1/envelopes/replay":     permSuper,

	"GET /v1/feed":                     permAny,
	"POST /v1/feed/:envelopeId/ack":    permAny,
	"POST /v1/feed/reset/:DateTimeUTC": permAny,
}

// caller is one kind of requester; allowed says which permissions it holds
// on collection 1, the collection every path names.
type caller struct {
	name    string
	token   string
	allowed []perm // besides permPublic and permSigned, which ignore tokens
	status  int    // the refusal for a permission it lacks
}

// TestRoutePermissions walks every route the service registers (gin's
// Routes(), so none is forgotten) with every kind of caller and asserts
// that the router lets through exactly the callers the route's permission
// admits: 401 without a valid token, 403 with a token that lacks the right,
// and otherwise the handler's own answer (the database is empty, so that is
// a 404 or a 400, never a 401 or 403). The services behind the router do not
// check again, so this is the test of authorization.
func TestRoutePermissions(t *testing.T) {
	t.Parallel()
	api := newAPI(t, "sqlite")
	expired, err := auth.Mint(api.cfg.Auth, auth.Principal{UserID: "1", Roles: []string{auth.RoleSuperAdmin}},
		time.Minute, time.Now().Add(-time.Hour))
	require.NoError(t, err)
	in := func(roles ...string) string {
		return api.token(auth.Principal{UserID: "7", Roles: roles, Collections: []int64{1}})
	}
	callers := []caller{
		{name: "no token", status: http.StatusUnauthorized},
		{name: "garbage token", token: "not-a-jwt", status: http.StatusUnauthorized},
		{name: "expired super admin token", token: expired, status: http.StatusUnauthorized},
		{name: "token without roles", token: in(), allowed: []perm{permAny}, status: http.StatusForbidden},
		{name: "viewer", token: in(auth.RoleViewer), allowed: []perm{permAny, permRead}, status: http.StatusForbidden},
		{name: "sender", token: in(auth.RoleSender), allowed: []perm{permAny, permSend}, status: http.StatusForbidden},
		{name: "editor", token: in(auth.RoleAdmin), allowed: []perm{permAny, permRead, permWrite, permSend}, status: http.StatusForbidden},
		{name: "editor of another collection", status: http.StatusForbidden, allowed: []perm{permAny},
			token: api.token(auth.Principal{UserID: "8", Roles: []string{auth.RoleAdmin}, Collections: []int64{2}})},
		{name: "super admin", token: api.superAdmin(), allowed: []perm{permAny, permRead, permWrite, permSend, permSuper}},
	}

	registered := map[string]bool{}
	for _, rt := range api.App.HTTP.Routes() {
		key := rt.Method + " " + rt.Path
		registered[key] = true
		want, ok := routePermissions[key]
		if !ok {
			t.Errorf("route %s has no row in routePermissions: add one with the permission it needs (docs/api.md, Permissions)", key)
			continue
		}
		path := concrete(rt.Path)
		t.Run(key, func(t *testing.T) {
			for _, who := range callers {
				res := api.do(rt.Method, path, who.token, nil)
				switch {
				case want == permPublic:
					require.NotContains(t, []int{http.StatusUnauthorized, http.StatusForbidden}, res.Code, "%s: %s", who.name, res.Raw)
				case want == permSigned:
					// The token is ignored, even a super admin's: an unsigned
					// report is refused by the signature check.
					require.Equal(t, http.StatusUnauthorized, res.Code, "%s: %s", who.name, res.Raw)
					require.Equal(t, "the request is not signed", res.JSON["responseMessage"], who.name)
				case slices.Contains(who.allowed, want):
					require.NotContains(t, []int{http.StatusUnauthorized, http.StatusForbidden}, res.Code,
						"%s may use this route: %s", who.name, res.Raw)
				case who.status == http.StatusUnauthorized:
					require.Equal(t, http.StatusUnauthorized, res.Code, "%s: %s", who.name, res.Raw)
					require.Equal(t, "UNAUTHENTICATED", res.JSON["status"], who.name)
					require.NotEmpty(t, res.Header.Get("WWW-Authenticate"), who.name)
				default:
					require.Equal(t, http.StatusForbidden, res.Code, "%s may not use this route: %s", who.name, res.Raw)
					require.Equal(t, "PERMISSION_DENIED", res.JSON["status"], who.name)
				}
			}
		})
	}
	for key := range routePermissions {
		if !registered[key] && !strings.HasPrefix(key, "GET /metrics") {
			t.Errorf("routePermissions lists %s, which the service does not register", key)
		}
	}
}
