package httpapi_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/outbox"
)

// A collection's default sender goes through create, get, list and PATCH,
// and into the envelopes.
func TestCollectionDefaultSenderRoutes(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, api *testAPI) {
		su := api.superAdmin()
		res := api.do(http.MethodPost, "/v1/collections", su, map[string]any{
			"name": "Shop", "defaultFromEmail": "shop@example.com", "defaultFromName": "Example Shop",
		})
		require.Equal(t, http.StatusCreated, res.Code, "body: %s", res.Raw)
		col := entity(t, res, "collection")
		require.Equal(t, "shop@example.com", col["defaultFromEmail"])
		require.Equal(t, "Example Shop", col["defaultFromName"])
		id := int64(col["id"].(float64))

		res = api.do(http.MethodGet, collectionPath(id), su, nil)
		require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
		require.Equal(t, col, entity(t, res, "collection"))
		res = api.do(http.MethodGet, "/v1/collections", su, nil)
		require.Equal(t, []any{col}, res.JSON["collections"])

		// A name alone over the stored address is fine.
		res = api.do(http.MethodPatch, collectionPath(id), su, map[string]any{"defaultFromName": "The Shop"}, "If-Match", `"1"`)
		require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
		require.Equal(t, "shop@example.com", entity(t, res, "collection")["defaultFromEmail"])
		require.Equal(t, "The Shop", entity(t, res, "collection")["defaultFromName"])

		// Taking the address from under the name is refused and changes nothing.
		res = api.do(http.MethodPatch, collectionPath(id), su, map[string]any{"defaultFromEmail": ""})
		requireError(t, res, http.StatusBadRequest, "INVALID_ARGUMENT", "NOCOUPD0400")
		require.Equal(t, map[string]string{"defaultFromEmail": "is required when defaultFromName is set"}, details(res))
		res = api.do(http.MethodGet, collectionPath(id), su, nil)
		require.Equal(t, `"2"`, res.Header.Get("ETag"))
		require.Equal(t, "shop@example.com", entity(t, res, "collection")["defaultFromEmail"])

		// Both cleared: no default.
		res = api.do(http.MethodPatch, collectionPath(id), su, map[string]any{"defaultFromEmail": "", "defaultFromName": ""})
		require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
		require.Equal(t, "", entity(t, res, "collection")["defaultFromEmail"])
		require.Equal(t, "", entity(t, res, "collection")["defaultFromName"])

		types, envs := api.envelopes()
		require.Equal(t, []string{outbox.CollectionCreate, outbox.CollectionUpdate, outbox.CollectionUpdate}, types)
		var senders [][2]any
		for _, e := range envs {
			var p struct{ Collection map[string]any }
			require.NoError(t, json.Unmarshal(e.Payload, &p))
			senders = append(senders, [2]any{p.Collection["defaultFromEmail"], p.Collection["defaultFromName"]})
		}
		require.Equal(t, [][2]any{{"shop@example.com", "Example Shop"}, {"shop@example.com", "The Shop"}, {"", ""}}, senders)
	})
}

// Every bad sender is a 400 naming the field, on create and on PATCH; an
// event has no sender fields at all.
func TestCollectionDefaultSenderValidation(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, api *testAPI) {
		su := api.superAdmin()
		id := api.createCollection("Shop")
		const notAnAddress = "must be an email address such as noreply@example.com"
		for _, tc := range []struct {
			name string
			body map[string]any
			want map[string]string
		}{
			{"not an address", map[string]any{"defaultFromEmail": "shop"},
				map[string]string{"defaultFromEmail": notAnAddress}},
			{"address with a display name", map[string]any{"defaultFromEmail": "Shop <shop@example.com>"},
				map[string]string{"defaultFromEmail": notAnAddress}},
			{"name without address", map[string]any{"defaultFromName": "Shop"},
				map[string]string{"defaultFromEmail": "is required when defaultFromName is set"}},
			{"wrong type", map[string]any{"defaultFromEmail": 5},
				map[string]string{"defaultFromEmail": "must be a string, not number"}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				create := map[string]any{"name": "Blog"}
				for k, v := range tc.body {
					create[k] = v
				}
				res := api.do(http.MethodPost, "/v1/collections", su, create)
				requireError(t, res, http.StatusBadRequest, "INVALID_ARGUMENT", "NOCOCRT0400")
				require.Equal(t, tc.want, details(res))

				res = api.do(http.MethodPatch, collectionPath(id), su, tc.body)
				requireError(t, res, http.StatusBadRequest, "INVALID_ARGUMENT", "NOCOUPD0400")
				require.Equal(t, tc.want, details(res))
			})
		}

		res := api.do(http.MethodPost, eventsPath(id), su, map[string]any{"name": "E", "defaultFromEmail": "shop@example.com"})
		requireError(t, res, http.StatusBadRequest, "INVALID_ARGUMENT", "NOEVCRT0400")
		require.Equal(t, map[string]string{"defaultFromEmail": "is not a known field"}, details(res))

		types, _ := api.envelopes()
		require.Equal(t, []string{outbox.CollectionCreate}, types, "no refused request wrote an envelope")
	})
}
