package outbox_test

import (
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/outbox"
)

// Every catalogued code lies in its category's range, names and codes are
// unique, and every detail type the service publishes becomes a typed event.
func TestEventTypeCatalogue(t *testing.T) {
	t.Parallel()
	ranges := map[string][2]int{
		outbox.CategorySystem: {0, 99}, outbox.CategoryDelivery: {100, 199}, outbox.CategoryConfiguration: {200, 299},
	}
	names, codes := map[string]bool{}, map[int]bool{}
	for _, et := range outbox.EventTypes() {
		r, ok := ranges[et.Category]
		require.True(t, ok, et.Name)
		require.GreaterOrEqual(t, et.Code, r[0], et.Name)
		require.LessOrEqual(t, et.Code, r[1], et.Name)
		require.False(t, names[et.Name] || codes[et.Code], "duplicate %s/%d", et.Name, et.Code)
		names[et.Name], codes[et.Code] = true, true
	}
	for _, dt := range outbox.DetailTypes() {
		_, ok, err := outbox.TypedEventFromRow(outbox.Row{EnvelopeID: "x", DetailType: dt, Detail: `{"payload":{}}`})
		require.NoError(t, err)
		require.True(t, ok, "%s has no typed event", dt)
	}
}

// TestGoldenTypedEvents pins the webhook wire format of the typed event each
// golden envelope becomes: testdata/typed/<name>.golden.json.
func TestGoldenTypedEvents(t *testing.T) {
	t.Parallel()
	for _, tc := range goldenCases() {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d, err := outbox.BuildDetail(tc.change, goldenEnvelopeID, time.UnixMilli(tc.at))
			require.NoError(t, err)
			detail, err := json.Marshal(d)
			require.NoError(t, err)
			ev, ok, err := outbox.TypedEventFromRow(outbox.Row{
				EnvelopeID: goldenEnvelopeID, DetailType: tc.change.DetailType, CollectionID: tc.change.CollectionID,
				Detail: string(detail), CreatedAt: tc.at,
			})
			require.NoError(t, err)
			require.True(t, ok)
			raw, err := json.Marshal(ev)
			require.NoError(t, err)
			requireGolden(t, filepath.Join("typed", tc.name), json.RawMessage(raw))
		})
	}
}
