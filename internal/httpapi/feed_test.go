package httpapi_test

import (
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/auth"
)

// feedIDs reads one page of the consumer's feed and returns the events' ids
// (each checked to be detail.envelopeId) and the page's nextCursor.
func (a *testAPI) feedIDs(token, query string) ([]string, string) {
	a.t.Helper()
	res := a.do(http.MethodGet, "/v1/feed?"+query, token, nil)
	require.Equal(a.t, http.StatusOK, res.Code, "body: %s", res.Raw)
	require.ElementsMatch(a.t, []string{"events", "nextCursor"}, keys(res.JSON))
	ids := []string{}
	for _, e := range res.JSON["events"].([]any) {
		ev := e.(map[string]any)
		require.ElementsMatch(a.t, []string{"version", "id", "detail-type", "source", "account", "time", "region", "resources", "detail"}, keys(ev))
		require.Equal(a.t, ev["id"], ev["detail"].(map[string]any)["envelopeId"], "the event id is detail.envelopeId")
		require.Equal(a.t, ev["detail-type"], ev["detail"].(map[string]any)["eventType"])
		ids = append(ids, ev["id"].(string))
	}
	return ids, res.JSON["nextCursor"].(string)
}

func (a *testAPI) feedAck(token, consumer, envelopeID string) response {
	a.t.Helper()
	return a.do(http.MethodPost, "/v1/feed/"+envelopeID+"/ack?consumer="+consumer, token, nil)
}

// The feed through the API: pages, acks per consumer, a reset to a time, and
// each token seeing only the collections it may read.
func TestFeedRoutes(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, a *testAPI) {
		admin := a.superAdmin()
		c1 := a.createCollection("feed-one")
		a.createEvent(c1, "USER_INVITEUSER")
		c2 := a.createCollection("feed-two")
		all, _ := a.feedIDs(admin, "consumer=ops")
		require.Len(t, all, 3)

		// Visibility: a viewer of c1 sees c1's two envelopes, a sender
		// (who may not read) none; the filter is silent, not a 403.
		viewer := a.token(auth.Principal{UserID: "2", Roles: []string{auth.RoleViewer}, Collections: []int64{c1}})
		mine, _ := a.feedIDs(viewer, "consumer=viewer")
		require.Equal(t, all[:2], mine)
		sender := a.token(auth.Principal{UserID: "3", Roles: []string{auth.RoleSender}, Collections: []int64{c2}})
		none, _ := a.feedIDs(sender, "consumer=sender")
		require.Empty(t, none)
		requireError(t, a.feedAck(viewer, "viewer", all[2]), http.StatusNotFound, "NOT_FOUND", "NOFDACK0404")

		// Pages: limit 2 then the cursor; reading acknowledges nothing.
		page, next := a.feedIDs(admin, "consumer=ops&limit=2")
		require.Equal(t, all[:2], page)
		require.NotEmpty(t, next)
		page, next = a.feedIDs(admin, "consumer=ops&limit=2&cursor="+next)
		require.Equal(t, all[2:], page)
		require.Empty(t, next)

		// Acks are per consumer.
		res := a.feedAck(admin, "ops", all[0])
		require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
		require.Equal(t, all[0], res.JSON["envelopeId"])
		_, err := time.Parse(time.RFC3339, res.JSON["earliestUnprocessed"].(string))
		require.NoError(t, err)
		left, _ := a.feedIDs(admin, "consumer=ops")
		require.Equal(t, all[1:], left)
		other, _ := a.feedIDs(admin, "consumer=audit")
		require.Equal(t, all, other)
		for _, id := range all[1:] {
			res = a.feedAck(admin, "ops", id)
		}
		require.Nil(t, res.JSON["earliestUnprocessed"])
		left, _ = a.feedIDs(admin, "consumer=ops")
		require.Empty(t, left)

		// Reset from the epoch: everything is unprocessed again.
		res = a.do(http.MethodPost, "/v1/feed/reset/1970-01-01T00:00:00Z?consumer=ops", admin, nil)
		require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
		require.Equal(t, map[string]any{"consumer": "ops", "since": "1970-01-01T00:00:00Z", "reset": float64(3)}, res.JSON)
		left, _ = a.feedIDs(admin, "consumer=ops")
		require.Equal(t, all, left)

		// A category narrows a consumer to one entity.
		colls, _ := a.feedIDs(admin, "consumer=colls&category=collection")
		require.Equal(t, []string{all[0], all[2]}, colls)
	})
}

// Every bad input is a 400 naming its field; an unknown envelope is a 404;
// no token is a 401.
func TestFeedRoutesValidation(t *testing.T) {
	t.Parallel()
	a := newAPI(t, "sqlite")
	admin := a.superAdmin()
	for _, tc := range []struct {
		method, path, code, field string
	}{
		{http.MethodGet, "/v1/feed", "NOFDLST0400", "consumer"},
		{http.MethodGet, "/v1/feed?consumer=" + url.QueryEscape("no spaces"), "NOFDLST0400", "consumer"},
		{http.MethodGet, "/v1/feed?consumer=ok&limit=0", "NOFDLST0400", "limit"},
		{http.MethodGet, "/v1/feed?consumer=ok&limit=1001", "NOFDLST0400", "limit"},
		{http.MethodGet, "/v1/feed?consumer=ok&limit=ten", "NOFDLST0400", "limit"},
		{http.MethodGet, "/v1/feed?consumer=ok&cursor=bogus", "NOFDLST0400", "cursor"},
		{http.MethodGet, "/v1/feed?consumer=ok&category=nope", "NOFDLST0400", "category"},
		{http.MethodGet, "/v1/feed?consumer=ok&since=1", "NOFDLST0400", "since"},
		{http.MethodPost, "/v1/feed/some-id/ack", "NOFDACK0400", "consumer"},
		{http.MethodPost, "/v1/feed/reset/2024-03-07T04:40:05Z", "NOFDRST0400", "consumer"},
		{http.MethodPost, "/v1/feed/reset/yesterday?consumer=ok", "NOFDRST0400", "DateTimeUTC"},
		{http.MethodPost, "/v1/feed/reset/1709786405347?consumer=ok", "NOFDRST0400", "DateTimeUTC"},
		{http.MethodPost, "/v1/feed/reset/2024-03-07?consumer=ok", "NOFDRST0400", "DateTimeUTC"},
	} {
		t.Run(fmt.Sprintf("%s %s", tc.method, tc.path), func(t *testing.T) {
			res := a.do(tc.method, tc.path, admin, nil)
			requireError(t, res, http.StatusBadRequest, "INVALID_ARGUMENT", tc.code)
			require.Contains(t, details(res), tc.field, "body: %s", res.Raw)
		})
	}
	requireError(t, a.feedAck(admin, "ok", "00000000-0000-4000-8000-000000000000"), http.StatusNotFound, "NOT_FOUND", "NOFDACK0404")
	requireError(t, a.do(http.MethodGet, "/v1/feed?consumer=ok", "", nil), http.StatusUnauthorized, "UNAUTHENTICATED", "NOFDLST0401")
	res := a.do(http.MethodPost, "/v1/feed/reset/2024-03-07T06:40:05%2B02:00?consumer=ok", admin, nil)
	require.Equal(t, http.StatusOK, res.Code, "an offset is accepted: %s", res.Raw)
	require.Equal(t, "2024-03-07T04:40:05Z", res.JSON["since"], "and converted to UTC")
}
