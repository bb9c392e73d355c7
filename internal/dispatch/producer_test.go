package dispatch_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/actions"
	"github.com/notificationservice/notificationservice/internal/dispatch"
	"github.com/notificationservice/notificationservice/internal/dispatch/intake"
	"github.com/notificationservice/notificationservice/internal/dispatch/planning"
	"github.com/notificationservice/notificationservice/internal/testdb"
)

func TestParseProducer(t *testing.T) {
	t.Parallel()
	headers := func(kv ...string) func(string) string {
		m := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return func(name string) string { return m[name] }
	}
	p, ids, err := dispatch.ParseProducer(headers("tenant", " dodici ", "team", "team-inventory", "service", "inventory-manager",
		"entity-id", "e-1", "correlation-ids", `{ "order_id": "o-1", "customer_id": "c-1" }`))
	require.NoError(t, err)
	require.Equal(t, dispatch.Producer{Tenant: "dodici", Team: "team-inventory", Service: "inventory-manager", EntityID: "e-1"}, p)
	require.Equal(t, map[string]string{"order_id": "o-1", "customer_id": "c-1"}, ids)

	p, ids, err = dispatch.ParseProducer(headers())
	require.NoError(t, err)
	require.Zero(t, p)
	require.Nil(t, ids)
	_, ids, err = dispatch.ParseProducer(headers("correlation-ids", "{}"))
	require.NoError(t, err)
	require.Nil(t, ids)

	for _, tc := range []struct{ header, value string }{
		{"tenant", strings.Repeat("t", 129)},
		{"team", "a\x00"},
		{"service", "\xff"},
		{"entity-id", strings.Repeat("e", 256)},
		{"correlation-ids", "[]"},
		{"correlation-ids", "null"},
		{"correlation-ids", `{"order_id": 1}`},
		{"correlation-ids", `{"order_id": null}`},
		{"correlation-ids", `{"": "x"}`},
		{"correlation-ids", `{"k": "` + strings.Repeat("v", 257) + `"}`},
		{"correlation-ids", `{"k": "\u0000"}`},
		{"correlation-ids", "{" + strings.Repeat(`"k":"v",`, 3) + `"x": "y"} trailing`},
	} {
		_, _, err := dispatch.ParseProducer(headers(tc.header, tc.value))
		var prob *dispatch.Problem
		require.True(t, errors.As(err, &prob), "%s: %q", tc.header, tc.value)
		require.Equal(t, dispatch.ProblemHeader, prob.Code)
		require.Len(t, prob.Details, 1)
		require.Equal(t, tc.header, prob.Details[0].Field, "%s: %q", tc.header, tc.value)
	}
}

// inputs is a BatchRule that records what planning is given.
type inputs struct{ seen []planning.Input }

func (r *inputs) ForBatch(_ context.Context, ins []planning.Input) (planning.Rule, error) {
	r.seen = append(r.seen, ins...)
	return planning.Condition{}, nil
}

// A submission's producer headers reach planning.Input (the rule engine's
// conditions read Tenant and EntityID) and the stored notification.
func TestProducerReachesPlanningAndTheNotification(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		cid, _ := seedRule(t, db, "USER_INVITEUSER", emailAction())
		rec := &inputs{}
		in := intake.New(db, actions.NewRules(db), nil, nil, nil, intake.WithPlanner(planning.New(rec)))
		producer := dispatch.Producer{Tenant: "dodici", Team: "team-inventory", Service: "inventory-manager", EntityID: "e-1"}
		out, err := in.Submit(context.Background(), []intake.Submission{{Source: intake.SourceQueue, Producer: producer,
			Correlation: map[string]string{"order_id": "o-1"},
			Request:     request(t, cid, `{"collectionId": CID, "notification": [{"name": "USER_INVITEUSER", "recipients": [{"email": "a@example.com"}]}]}`)}})
		require.NoError(t, err)
		require.Len(t, rec.seen, 1)
		got := rec.seen[0]
		require.Equal(t, "dodici", got.Tenant)
		require.Equal(t, "team-inventory", got.Team)
		require.Equal(t, "inventory-manager", got.Service)
		require.Equal(t, "e-1", got.EntityID)

		var n dispatch.NotificationRecord
		require.NoError(t, db.Take(&n, out[0].Notifications[0].ID).Error)
		require.Equal(t, producer, dispatch.Producer{Tenant: n.Tenant, Team: n.Team, Service: n.Service, EntityID: n.EntityID})
		require.Equal(t, "o-1", n.Correlation["order_id"])
	})
}
