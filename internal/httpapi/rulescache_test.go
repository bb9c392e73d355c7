package httpapi_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/testdb"
)

// The intake reads a collection's preferences and suppression list for every
// batch, except for a collection the service knows has neither stored
// (invalidate.Absent, kept by the invalidation bus): docs/rules.md,
// "Reading the rules' data".

// ruleReads counts the statements on db that touch the preferences or the
// suppressions table, from now until the test ends.
func ruleReads(t *testing.T, db *gorm.DB) (prefs, supp *atomic.Int64) {
	t.Helper()
	prefs, supp = new(atomic.Int64), new(atomic.Int64)
	testdb.InjectError(t, db, func(stmt *gorm.Statement) error {
		sql := stmt.SQL.String()
		if strings.Contains(sql, "preferences") || stmt.Table == "preferences" {
			prefs.Add(1)
		}
		if strings.Contains(sql, "suppressions") || stmt.Table == "suppressions" {
			supp.Add(1)
		}
		return nil
	})
	return prefs, supp
}

// sendTo posts one USER_INVITEUSER notification to email through api and
// returns the reason its delivery was planned with ("" when it is to be sent).
func sendTo(t *testing.T, api *testAPI, cid int64, email string) string {
	t.Helper()
	body := fmt.Sprintf(`{"notification": [{"name": "USER_INVITEUSER", "recipients": [{"id": %q, "email": %q, "macros": {"FNAME": "x"}}]}]}`, email, email)
	res := api.do(http.MethodPost, fmt.Sprintf("/v1/collections/%d/notifications", cid), api.superAdmin(), body,
		"Idempotency-Key", testdb.Name("k"))
	require.Equal(t, http.StatusAccepted, res.Code, "body: %s", res.Raw)
	nid := int64(res.JSON["notifications"].([]any)[0].(map[string]any)["id"].(float64))
	var reasons []string
	require.NoError(t, api.DB.Raw(`SELECT reason FROM deliveries WHERE notification_id = ?`, nid).Scan(&reasons).Error)
	require.Len(t, reasons, 1)
	return reasons[0]
}

func TestRuleReadsSkipCollectionsWithNothingStored(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, api *testAPI) {
		// Counting registers gorm callbacks, which must not race the
		// service's components: before serve.
		prefs, supp := ruleReads(t, api.DB)
		api.serve(t) // the bus live: on PostgreSQL once its listener connected
		cid, _ := seedInvite(t, api)

		// The first batch asks whether the collection has any; the next
		// reads nothing.
		require.Equal(t, "", sendTo(t, api, cid, "ann@example.com"))
		require.EqualValues(t, 1, prefs.Load(), "one EXISTS on preferences")
		require.EqualValues(t, 1, supp.Load(), "one EXISTS on suppressions")
		require.Equal(t, "", sendTo(t, api, cid, "ann@example.com"))
		require.EqualValues(t, 1, prefs.Load(), "no preferences read for a collection known to have none")
		require.EqualValues(t, 1, supp.Load(), "no suppressions read for a collection known to have none")

		// An entry added on this instance is read by the very next send.
		heard := api.App.Invalidation.Received()
		res := api.do(http.MethodPost, suppressionsPath(cid), api.superAdmin(), map[string]any{"address": "ann@example.com", "channel": "email"})
		require.Equal(t, http.StatusCreated, res.Code, "body: %s", res.Raw)
		require.Equal(t, "suppressed", sendTo(t, api, cid, "ann@example.com"))
		res = api.do(http.MethodPut, prefsPath(cid, "bob@example.com"), api.superAdmin(), `{"channels": {"email": false}}`)
		require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
		require.Equal(t, "opted_out", sendTo(t, api, cid, "bob@example.com"))

		// A collection with entries is read for every batch, without asking
		// again whether it has any. (On PostgreSQL the bus's echo of the two
		// additions evicts once more when it arrives: wait for it first.)
		if api.cfg.Database.Postgres() {
			require.Eventually(t, func() bool { return api.App.Invalidation.Received() >= heard+2 }, 5*time.Second, 5*time.Millisecond)
			require.Equal(t, "", sendTo(t, api, cid, "dee@example.com"))
		}
		p, s := prefs.Load(), supp.Load()
		require.Equal(t, "", sendTo(t, api, cid, "cy@example.com"))
		require.Equal(t, p+1, prefs.Load())
		require.Equal(t, s+1, supp.Load())
	})
}

func TestRuleReadsLearnOfEntriesAddedOnAnotherInstance(t *testing.T) {
	t.Parallel()
	a := newAPI(t, "postgres")
	b := a.another(t)
	prefs, supp := ruleReads(t, b.DB) // before serve: see above
	a.serve(t)
	b.serve(t)
	cid, _ := seedInvite(t, a)

	// B learns that the collection has nothing stored.
	require.Equal(t, "", sendTo(t, b, cid, "ann@example.com"))
	before := prefs.Load() + supp.Load()
	require.Equal(t, "", sendTo(t, b, cid, "ann@example.com"))
	require.Equal(t, before, prefs.Load()+supp.Load(), "B skips both reads")

	// Entries added through A reach B's cache through the bus.
	heard := b.App.Invalidation.Received()
	res := a.do(http.MethodPost, suppressionsPath(cid), a.superAdmin(), map[string]any{"address": "ann@example.com", "channel": "email"})
	require.Equal(t, http.StatusCreated, res.Code, "body: %s", res.Raw)
	res = a.do(http.MethodPut, prefsPath(cid, "bob@example.com"), a.superAdmin(), `{"channels": {"email": false}}`)
	require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
	require.Eventually(t, func() bool { return b.App.Invalidation.Received() >= heard+2 }, 5*time.Second, 5*time.Millisecond,
		"B never heard of the additions")
	require.Equal(t, "suppressed", sendTo(t, b, cid, "ann@example.com"))
	require.Equal(t, "opted_out", sendTo(t, b, cid, "bob@example.com"))
}

// The cache serves nothing while the bus cannot promise to deliver every
// change: with the listener down, every batch reads as before.
func TestRuleReadsWithoutTheBusReadEveryBatch(t *testing.T) {
	t.Parallel()
	api := newAPI(t, "postgres") // components not run: the listener never connects
	require.False(t, api.App.Invalidation.Live())
	cid, _ := seedInvite(t, api)
	prefs, supp := ruleReads(t, api.DB)
	for range 3 {
		require.Equal(t, "", sendTo(t, api, cid, "ann@example.com"))
	}
	require.EqualValues(t, 3, prefs.Load())
	require.EqualValues(t, 3, supp.Load())
}
