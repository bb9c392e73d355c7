package httpapi_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
)

// A collection's timezone and quietHours go through create, get and PATCH
// (null clears the window); bad ones are a 400 naming the field.
func TestCollectionTimezoneRoutes(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, api *testAPI) {
		su := api.superAdmin()
		res := api.do(http.MethodPost, "/v1/collections", su, map[string]any{
			"name": "Shop", "timezone": "Europe/Paris", "quietHours": map[string]any{"start": "21:00", "end": "08:00"},
		})
		require.Equal(t, http.StatusCreated, res.Code, "body: %s", res.Raw)
		col := entity(t, res, "collection")
		require.Equal(t, "Europe/Paris", col["timezone"])
		require.Equal(t, map[string]any{"start": "21:00", "end": "08:00"}, col["quietHours"])
		id := int64(col["id"].(float64))
		res = api.do(http.MethodGet, collectionPath(id), su, nil)
		require.Equal(t, col, entity(t, res, "collection"))

		res = api.do(http.MethodPatch, collectionPath(id), su, map[string]any{"quietHours": nil})
		require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
		require.Nil(t, entity(t, res, "collection")["quietHours"])
		require.Equal(t, "Europe/Paris", entity(t, res, "collection")["timezone"])

		res = api.do(http.MethodPost, "/v1/collections", su, map[string]any{"name": "Plain"})
		require.Equal(t, http.StatusCreated, res.Code, "body: %s", res.Raw)
		require.Equal(t, "UTC", entity(t, res, "collection")["timezone"])

		for _, tc := range []struct {
			method, path string
			body         map[string]any
			code, field  string
		}{
			{http.MethodPost, "/v1/collections", map[string]any{"name": "X", "timezone": "Europe/Atlantis"}, "NOCOCRT0400", "timezone"},
			{http.MethodPost, "/v1/collections", map[string]any{"name": "X", "quietHours": map[string]any{"start": "21:00", "end": "8"}}, "NOCOCRT0400", "quietHours.end"},
			{http.MethodPatch, collectionPath(id), map[string]any{"quietHours": map[string]any{"start": "21:00", "end": "21:00"}}, "NOCOUPD0400", "quietHours.end"},
			{http.MethodPatch, collectionPath(id), map[string]any{"timezone": "Local"}, "NOCOUPD0400", "timezone"},
		} {
			res := api.do(tc.method, tc.path, su, tc.body)
			requireError(t, res, http.StatusBadRequest, "INVALID_ARGUMENT", tc.code)
			require.Contains(t, details(res), tc.field, "body: %s", res.Raw)
		}
		res = api.do(http.MethodPost, "/v1/collections", su, map[string]any{"name": "X", "quietHours": "21:00-08:00"})
		requireError(t, res, http.StatusBadRequest, "INVALID_ARGUMENT", "NOCOCRT0400")
	})
}
