package intake

import (
	"encoding/json"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/dispatch"
	"github.com/notificationservice/notificationservice/internal/jsonenc"
	"github.com/notificationservice/notificationservice/internal/store"
)

// A delivery row written by hand has exactly the columns of
// deliveryColumns, each with the delivery's value, and the recipient as it
// was given; its strings read back as they were, whatever they hold.
func TestAppendDeliveryRowIsTheColumns(t *testing.T) {
	d := &dispatch.Delivery{NotificationID: 1, CollectionID: 2, ActionID: 3, RecipientIndex: 4, Channel: "email",
		Address: "a\"b\\c@example.com\n\t\x01<é>\u2028", Status: dispatch.StatusSkipped, Reason: "invalid \"x\"", ReasonDetail: "bad\xffutf8",
		Attempts: 5, NextAttemptAt: 6, ClaimedAt: 7, LeaseOwner: "host-1", LeaseUntil: 8, CreatedTime: 9, UpdatedTime: 10}
	rcpt := `{"email":"a@example.com","macros":{"X":"\u003c"}}`
	doc := appendDeliveryRow(nil, d, rcpt)
	var got map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(doc, &got), "%s", doc)
	var names []string
	for name := range got {
		names = append(names, name)
	}
	var want []string
	for _, c := range deliveryColumns {
		want = append(want, c.Name)
	}
	require.ElementsMatch(t, want, names)
	require.Equal(t, rcpt, string(got["recipient"]))
	var row struct {
		NotificationID, CollectionID, ActionID                         int64
		RecipientIndex, Attempts                                       int
		Channel, Address, Status, Reason, ReasonDetail, LeaseOwner     string
		NextAttemptAt, ClaimedAt, LeaseUntil, CreatedTime, UpdatedTime int64
	}
	for name, v := range got {
		var dst any
		switch name {
		case "notification_id":
			dst = &row.NotificationID
		case "collection_id":
			dst = &row.CollectionID
		case "action_id":
			dst = &row.ActionID
		case "recipient_index":
			dst = &row.RecipientIndex
		case "attempts":
			dst = &row.Attempts
		case "channel":
			dst = &row.Channel
		case "address":
			dst = &row.Address
		case "status":
			dst = &row.Status
		case "reason":
			dst = &row.Reason
		case "reason_detail":
			dst = &row.ReasonDetail
		case "lease_owner":
			dst = &row.LeaseOwner
		case "next_attempt_at":
			dst = &row.NextAttemptAt
		case "claimed_at":
			dst = &row.ClaimedAt
		case "lease_until":
			dst = &row.LeaseUntil
		case "created_time":
			dst = &row.CreatedTime
		case "updated_time":
			dst = &row.UpdatedTime
		default:
			continue
		}
		require.NoError(t, json.Unmarshal(v, dst), name)
	}
	require.Equal(t, int64(1), row.NotificationID)
	require.Equal(t, int64(2), row.CollectionID)
	require.Equal(t, int64(3), row.ActionID)
	require.Equal(t, 4, row.RecipientIndex)
	require.Equal(t, 5, row.Attempts)
	require.Equal(t, []int64{6, 7, 8, 9, 10}, []int64{row.NextAttemptAt, row.ClaimedAt, row.LeaseUntil, row.CreatedTime, row.UpdatedTime})
	require.Equal(t, []string{d.Channel, d.Address, d.Status, d.Reason, d.LeaseOwner}, []string{row.Channel, row.Address, row.Status, row.Reason, row.LeaseOwner})
	require.Equal(t, "bad\ufffdutf8", row.ReasonDetail, "invalid UTF-8 as encoding/json writes it")
}

// jsonenc.AppendString reads back as the string, for every byte below 0x80 and
// some beyond.
func TestAppendJSONString(t *testing.T) {
	var all []byte
	for c := range 0x80 {
		all = append(all, byte(c))
	}
	for _, s := range []string{"", "plain", string(all), "é ü 日本 \u2028\u2029 <&>", "\x00tail"} {
		var back string
		b := jsonenc.AppendString([]byte("x"), s)
		require.Equal(t, byte('x'), b[0])
		require.NoError(t, json.Unmarshal(b[1:], &back), "%q", b)
		require.Equal(t, s, back)
	}
}

// A notification row written by hand has exactly the columns of
// notificationColumns, its recipients as encoded, and its strings and
// numbers read back.
func TestAppendNotificationRowIsTheColumns(t *testing.T) {
	n := &dispatch.NotificationRecord{CollectionID: 2, Name: "USER_\"INVITE\"", Source: "api", IntakeScope: "api:2", IdempotencyKey: "k\n1",
		Ordinal: 3, RequestHash: "abc", Correlation: dispatch.StringMap{"orderId": "o<1>"}, Status: dispatch.NotificationAccepted,
		Reason: "r\\", EventID: 4, DeliveryCount: 5, SkippedCount: 6, CreatedBy: "7", CreatedTime: 8, TraceParent: "00-x",
		Data: dispatch.Data{"amount": 1.5}, Tenant: "t", Team: "tm", Service: "s", EntityID: "e"}
	p := &planned{note: n, recipients: `[{"email":"a@example.com"}]`}
	doc, err := appendNotificationRow(nil, p)
	require.NoError(t, err)
	var got map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(doc, &got), "%s", doc)
	var names, want []string
	for name := range got {
		names = append(names, name)
	}
	for _, c := range notificationColumns {
		want = append(want, c.Name)
	}
	require.ElementsMatch(t, want, names)
	require.Equal(t, p.recipients, string(got["recipients"]))
	str := func(name string) string {
		var s string
		require.NoError(t, json.Unmarshal(got[name], &s), name)
		return s
	}
	num := func(name string) int64 {
		var v int64
		require.NoError(t, json.Unmarshal(got[name], &v), name)
		return v
	}
	require.Equal(t, []string{n.Name, n.Source, n.IntakeScope, n.IdempotencyKey, n.RequestHash, `{"orderId":"o\u003c1\u003e"}`, n.Status, n.Reason,
		n.CreatedBy, n.TraceParent, `{"amount":1.5}`, n.Tenant, n.Team, n.Service, n.EntityID},
		[]string{str("name"), str("source"), str("intake_scope"), str("idempotency_key"), str("request_hash"), str("correlation"), str("status"), str("reason"),
			str("created_by"), str("trace_parent"), str("data"), str("tenant"), str("team"), str("service"), str("entity_id")})
	require.Equal(t, []int64{2, 3, 4, 5, 6, 8}, []int64{num("collection_id"), num("ordinal"), num("event_id"), num("delivery_count"), num("skipped_count"), num("created_time")})
}

// The deliveries' arrays (PostgreSQL) are the columns of deliveryColumns in
// its order, each holding what the JSON row (SQLite) holds for it.
func TestDeliveryArraysAreTheJSONRowsColumns(t *testing.T) {
	ds := []*dispatch.Delivery{
		{NotificationID: 1, CollectionID: 2, ActionID: 3, RecipientIndex: 4, Channel: "email", Address: "a@example.com",
			Status: dispatch.StatusSkipped, Reason: "invalid", ReasonDetail: "detail", Attempts: 5, NextAttemptAt: 6, ClaimedAt: 7,
			LeaseOwner: "host-1", LeaseUntil: 8, CreatedTime: 9, UpdatedTime: 10},
		{NotificationID: 11, CollectionID: 12, ActionID: 13, RecipientIndex: 14, Channel: "sms", Address: "+15551230000",
			Status: dispatch.StatusPending, Reason: "r2", ReasonDetail: "d2", Attempts: 15, NextAttemptAt: 16, ClaimedAt: 17,
			LeaseOwner: "host-2", LeaseUntil: 18, CreatedTime: 19, UpdatedTime: 20},
	}
	rcpts := []string{`{"email":"a@example.com"}`, `{"phone":"+15551230000"}`}
	args := deliveryArrays(ds, rcpts)
	require.Len(t, args, len(deliveryColumns))
	for i, d := range ds {
		compareArraysToRow(t, appendDeliveryRow(nil, d, rcpts[i]), deliveryColumns, args, i, len(ds))
	}
}

// The notifications' arrays (PostgreSQL) are the columns of
// notificationColumns in its order, each holding what the JSON row (SQLite)
// holds for it.
func TestNotificationArraysAreTheJSONRowsColumns(t *testing.T) {
	ps := []*planned{
		{note: &dispatch.NotificationRecord{CollectionID: 2, Name: "USER_INVITEUSER", Source: "api", IntakeScope: "api:2", IdempotencyKey: "k1",
			Ordinal: 3, RequestHash: "abc", Correlation: dispatch.StringMap{"orderId": "o1"}, Status: dispatch.NotificationAccepted,
			Reason: "r", EventID: 4, DeliveryCount: 5, SkippedCount: 6, CreatedBy: "7", CreatedTime: 8, TraceParent: "00-x",
			Data: dispatch.Data{"amount": 1.5}, Tenant: "t", Team: "tm", Service: "s", EntityID: "e"},
			recipients: `[{"email":"a@example.com"}]`},
		{note: &dispatch.NotificationRecord{CollectionID: 12, Name: "N2", Source: "queue", IntakeScope: "queue", IdempotencyKey: "k2",
			Ordinal: 13, RequestHash: "def", Status: dispatch.NotificationAccepted, EventID: 14, DeliveryCount: 15, SkippedCount: 16,
			CreatedBy: "17", CreatedTime: 18, Tenant: "t2", Team: "tm2", Service: "s2", EntityID: "e2"},
			recipients: `[{"phone":"+15551230000"}]`},
	}
	args, err := notificationArrays(ps)
	require.NoError(t, err)
	require.Len(t, args, len(notificationColumns))
	for i, p := range ps {
		doc, err := appendNotificationRow(nil, p)
		require.NoError(t, err)
		compareArraysToRow(t, doc, notificationColumns, args, i, len(ps))
	}
}

// compareArraysToRow checks that element i of each of args (n elements
// each) is what the JSON row doc holds for the column of cols at the
// array's position.
func compareArraysToRow(t *testing.T, doc []byte, cols []store.Column, args []any, i, n int) {
	t.Helper()
	var row map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(doc, &row))
	for k, c := range cols {
		var got, want string
		switch a := args[k].(type) {
		case store.Int64s:
			require.Len(t, a, n)
			got, want = strconv.FormatInt(a[i], 10), string(row[c.Name])
		case store.Texts:
			require.Len(t, a, n)
			got = a[i]
			if c.PGType == "json" { // embedded as is
				want = string(row[c.Name])
			} else {
				require.NoError(t, json.Unmarshal(row[c.Name], &want), c.Name)
			}
		default:
			t.Fatalf("column %s: %T", c.Name, a)
		}
		require.Equal(t, want, got, "row %d, column %s", i, c.Name)
	}
}
