package dispatch_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/actions"
	"github.com/notificationservice/notificationservice/internal/auth"
	"github.com/notificationservice/notificationservice/internal/dispatch/intake"
	"github.com/notificationservice/notificationservice/internal/outbox"
	"github.com/notificationservice/notificationservice/internal/testdb"
)

// BenchmarkIntakeSubmit measures the intake alone, per message: a batch of
// 100 seed-shaped messages (the full recipient: tos, email, phone, pushId,
// locale, macros) for an event with an email, an SMS and a push action,
// submitted as the REST send submits them (an actor, so each accepted
// notification records its notifications/send envelope). No workers: the
// deliveries stay pending. allocs/op and B/op are per message. Batches of
// 8 are what the queue and the REST group commit give at 1,000 a second,
// where a batch's round trips count; batches of 100, a backlog's.
func BenchmarkIntakeSubmit(b *testing.B) {
	for _, n := range []int{8, 100} {
		b.Run(fmt.Sprint("batch=", n), func(b *testing.B) { benchmarkIntakeSubmit(b, n) })
	}
}

func benchmarkIntakeSubmit(b *testing.B, batch int) {
	db, _ := testdb.Postgres(b)
	push := actions.Action{Name: "Invite push", ConfigName: actions.ConfigPush, Config: actions.Config{Content: actions.Content{Subject: "Hi", Body: "Hi {{FNAME}}"}}}
	cid, _ := seedRule(b, db, "USER_INVITEUSER", emailAction(), smsAction(), push)
	in := intake.New(db, actions.NewRules(db), outbox.NewWriter(nil, nil), nil, nil)
	actor := &auth.Principal{UserID: "bench", Roles: []string{auth.RoleSender}, Channel: "api"}
	ctx := context.Background()
	subs := make([]intake.Submission, batch)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += batch {
		b.StopTimer()
		for j := range subs {
			k := i + j
			subs[j] = intake.Submission{Source: intake.SourceAPI, Key: fmt.Sprint("k", k), Actor: actor,
				Correlation: map[string]string{"orderId": fmt.Sprint("o", k)},
				Request: request(b, cid, fmt.Sprintf(`{"collectionId": CID, "notification": [{"name": "USER_INVITEUSER", "recipients": [
  {"tos": [{"email": "u%d@example.com", "name": "User %d"}], "email": "u%d@example.com", "phone": "+1555%07d",
   "pushId": "device-token-%d", "locale": "fr_CA", "macros": {"FNAME": "U%d", "LNAME": "Example", "LINK": "https://example.com/invite?x=<%d>&y=1"}}]}]}`,
					k, k, k, k, k, k, k))}
		}
		b.StartTimer()
		_, err := in.Submit(ctx, subs)
		require.NoError(b, err)
	}
}
