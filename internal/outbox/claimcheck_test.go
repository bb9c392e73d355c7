package outbox_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/actions"
	"github.com/notificationservice/notificationservice/internal/dispatch"
	"github.com/notificationservice/notificationservice/internal/outbox"
	"github.com/notificationservice/notificationservice/internal/outbox/eventbridgetest"
	"github.com/notificationservice/notificationservice/internal/testdb"
)

// hugeAction is an action whose inline template alone is over 256 KB.
func hugeAction() outbox.Change {
	a := actions.Action{
		ID: 7, CollectionID: 1, Name: "Monthly statement", Status: actions.StatusActive, EventID: 3,
		ConfigName: actions.ConfigEmail, Template: strings.Repeat("<p>{{FNAME}}</p>", 20000),
		UpdatedTime: 1709786405337, CreatedTime: 1709786405337,
	}
	return outbox.Change{DetailType: outbox.ActionCreate, EntityID: "7", CollectionID: 1,
		Payload: map[string]any{"action": a}, Actor: seedActor}
}

// hugeSend is a send to 5,000 recipients, as an API caller may make.
func hugeSend() outbox.Change {
	rs := make([]dispatch.Recipient, 5000)
	for i := range rs {
		rs[i] = dispatch.Recipient{Email: fmt.Sprintf("user%04d@example.com", i), Macros: dispatch.Macros{"FNAME": "Someone with a long name"}}
	}
	return outbox.Change{DetailType: outbox.NotificationsSend, EntityID: "USER_INVITEUSER", CollectionID: 772,
		Payload: map[string]any{"notification": dispatch.Notification{Name: "USER_INVITEUSER", Recipients: rs}},
		Actor:   seedActor, Href: "/v1/collections/772/notifications/5120"}
}

// An envelope too large for EventBridge is published as a claim check:
// the catalogue's envelope fields, the entity's identifying fields, and a
// reference to fetch the rest. The golden files pin the shape.
func TestGoldenClaimCheckEnvelopes(t *testing.T) {
	t.Parallel()
	for name, c := range map[string]outbox.Change{
		"action_create_claim_check":      hugeAction(),
		"notifications_send_claim_check": hugeSend(),
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			const at = 1709786405347
			full, err := outbox.BuildDetail(c, goldenEnvelopeID, time.UnixMilli(at))
			require.NoError(t, err)
			fullJSON, err := json.Marshal(full)
			require.NoError(t, err)
			require.Greater(t, len(fullJSON), outbox.MaxBatchBytes, "the case must be over the limit")

			detail, err := outbox.EncodeDetail(c, goldenEnvelopeID, time.UnixMilli(at), nil)
			require.NoError(t, err)
			e := outbox.EntryFromRow(outbox.Row{EnvelopeID: goldenEnvelopeID, DetailType: c.DetailType, Detail: detail, CreatedAt: at},
				"notificationservice", "default")
			require.LessOrEqual(t, e.Size()+outbox.MaxSourceBytes, outbox.MaxBatchBytes)

			var d outbox.Detail
			require.NoError(t, json.Unmarshal([]byte(detail), &d))
			require.NotNil(t, d.ClaimCheck)
			wantHref := c.Href
			if wantHref == "" {
				wantHref = "/v1/collections/1/actions/7" // derived from the detail type and ids
			}
			require.Equal(t, outbox.ClaimCheck{Href: wantHref, Reason: "too_large", Size: len(fullJSON)}, *d.ClaimCheck)
			require.Equal(t, c.EntityID, d.ID)
			require.Equal(t, c.DetailType, d.EventType)

			requireGolden(t, name, goldenEntryOf(e))
		})
	}
}

// A detail that fits is sent whole: the claim check is only for what
// EventBridge would refuse.
func TestEnvelopesThatFitCarryTheEntity(t *testing.T) {
	t.Parallel()
	c := hugeAction()
	a := c.Payload.(map[string]any)["action"].(actions.Action)
	a.Template = strings.Repeat("x", outbox.MaxBatchBytes-2048)
	c.Payload = map[string]any{"action": a}
	detail, err := outbox.EncodeDetail(c, goldenEnvelopeID, time.UnixMilli(1709786405347), nil)
	require.NoError(t, err)
	require.NotContains(t, detail, "claimCheck")
	require.Contains(t, detail, a.Template)
}

// Through the relay and the real aws-sdk-go-v2 client: the oversized action
// is published (as its claim check), not parked, and the call is within
// EventBridge's limits.
func TestRelayPublishesOversizedChangesAsClaimChecks(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		t.Parallel()
		fake := eventbridgetest.New(t)
		w := outbox.NewWriter(nil, nil)
		ids := record(t, db, w, change(1), hugeAction(), hugeSend(), change(2))
		start(t, outbox.NewRelay(db, newSink(t, fake, time.Second), testConfig(), discard()))
		allAccepted(t, fake, ids)
		allPublished(t, db, ids)
		require.Empty(t, fake.Violations())

		byID := map[string]eventbridgetest.Entry{}
		for _, e := range fake.Accepted() {
			byID[e.EnvelopeID()] = e
		}
		for i, href := range map[int]string{1: "/v1/collections/1/actions/7", 2: "/v1/collections/772/notifications/5120"} {
			e := byID[ids[i]]
			require.LessOrEqual(t, e.Size(), outbox.MaxBatchBytes)
			var d struct {
				ID         string         `json:"id"`
				Payload    map[string]any `json:"payload"`
				ClaimCheck map[string]any `json:"claimCheck"`
			}
			require.NoError(t, json.Unmarshal([]byte(e.Detail), &d))
			require.Equal(t, href, d.ClaimCheck["href"])
			require.Equal(t, "too_large", d.ClaimCheck["reason"])
			require.Greater(t, d.ClaimCheck["size"], float64(outbox.MaxBatchBytes))
			if i == 1 {
				require.Equal(t, "7", d.ID)
				require.Equal(t, map[string]any{"id": float64(7), "collectionId": float64(1), "eventId": float64(3), "name": "Monthly statement",
					"status": "ACTIVE", "configName": "SendEmailConfig", "createdTime": float64(1709786405337), "updatedTime": float64(1709786405337)},
					d.Payload["action"])
			}
		}
		require.NotContains(t, byID[ids[0]].Detail, "claimCheck")
		for _, r := range allRows(t, db) {
			require.Nil(t, r.ParkedAt, r.EnvelopeID)
		}
	})
}
