package httpapi_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/auth"
)

// publicRoutes need no token: health, the contract, and provider webhooks
// (which authenticate by signature).
func isPublic(path string) bool {
	return !strings.HasPrefix(path, "/v1/") || strings.HasPrefix(path, "/v1/webhooks/")
}

// TestEveryRouteNeedsAToken walks every registered route, so a route added
// later is covered without editing this test: no token gives 401, a bad token
// 401, and a valid token without rights 403.
func TestEveryRouteNeedsAToken(t *testing.T) {
	t.Parallel()
	api := newAPI(t, "sqlite")
	// A viewer of collection 999 only: valid, but with no right on collection 1
	// and no right to write anywhere.
	outsider := api.token(auth.Principal{UserID: "7", Roles: []string{auth.RoleViewer}, Collections: []int64{999}})
	noRoles := api.token(auth.Principal{UserID: "8"})

	routes := api.App.HTTP.Routes()
	require.NotEmpty(t, routes)
	for _, rt := range routes {
		if isPublic(rt.Path) {
			continue
		}
		path := concrete(rt.Path)
		t.Run(rt.Method+" "+rt.Path, func(t *testing.T) {
			res := api.do(rt.Method, path, "", nil)
			require.Equal(t, http.StatusUnauthorized, res.Code, "no token: %s", res.Raw)
			require.Equal(t, "UNAUTHENTICATED", res.JSON["status"])
			require.NotEmpty(t, res.Header.Get("WWW-Authenticate"))

			res = api.do(rt.Method, path, "not-a-jwt", nil)
			require.Equal(t, http.StatusUnauthorized, res.Code, "bad token: %s", res.Raw)

			forbidden := outsider
			if rt.Method == http.MethodGet && (rt.Path == "/v1/collections") || strings.HasPrefix(rt.Path, "/v1/feed") {
				// Listing collections and the event feed are open to every
				// caller; they show only the caller's collections.
				return
			}
			res = api.do(rt.Method, path, forbidden, nil)
			require.Equal(t, http.StatusForbidden, res.Code, "outsider: %s", res.Raw)
			require.Equal(t, "PERMISSION_DENIED", res.JSON["status"])

			res = api.do(rt.Method, path, noRoles, nil)
			require.Equal(t, http.StatusForbidden, res.Code, "no roles: %s", res.Raw)
		})
	}
}

// concrete fills path parameters with 1.
func concrete(path string) string {
	parts := strings.Split(path, "/")
	for i, p := range parts {
		if strings.HasPrefix(p, ":") || strings.HasPrefix(p, "*") {
			parts[i] = "1"
		}
	}
	return strings.Join(parts, "/")
}

func TestOnBehalfOfNeedsSuperAdmin(t *testing.T) {
	t.Parallel()
	api := newAPI(t, "sqlite")
	admin := api.token(auth.Principal{Roles: []string{auth.RoleAdmin}, Collections: []int64{1}})
	res := api.do(http.MethodGet, "/v1/collections", admin, nil, "X-Act-On-Behalf-Of-User", "42")
	requireError(t, res, http.StatusForbidden, "PERMISSION_DENIED", "NOCOLST0403")

	res = api.do(http.MethodGet, "/v1/collections", api.superAdmin(), nil, "X-Act-On-Behalf-Of-User", "x")
	requireError(t, res, http.StatusBadRequest, "INVALID_ARGUMENT", "NOCOLST0400")
	require.Contains(t, details(res), "X-Act-On-Behalf-Of-User")
}
