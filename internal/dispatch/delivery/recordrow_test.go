package delivery

import (
	"bytes"
	"encoding/json"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/store"
)

// TestAppendRecordRowMatchesEncodingJSON: the hand-written record document
// decodes to what encoding/json made of the same outcome, field by field
// and for awkward text (escapes, control characters, HTML, invalid UTF-8),
// so the record statement reads the same values.
func TestAppendRecordRowMatchesEncodingJSON(t *testing.T) {
	type row struct {
		ID          int64  `json:"id"`
		Attempts    int    `json:"attempts"`
		Status      string `json:"status"`
		Reason      string `json:"reason"`
		Detail      string `json:"reason_detail"`
		Provider    string `json:"provider"`
		PMID        string `json:"pmid"`
		NextAt      int64  `json:"next_at"`
		SentTime    int64  `json:"sent_time"`
		Owner       string `json:"owner"`
		LeaseBefore int64  `json:"lease_before"`
		Reconciled  string `json:"reconciled"`
		Uncount     int    `json:"uncount"`
	}
	outs := []outcome{
		{id: 1, attempts: 1, status: "sent", provider: "sandbox", providerMessageID: "sbx-1-0123456789ab", sentTime: 1709786395165},
		{id: -9, attempts: 7, status: "pending", reason: "twilio: \"quoted\" \\ back\nline\ttab\x01 <b>&amp;</b> \u2028 é",
			reasonDetail: "bad \xff utf-8", provider: "twilio", nextAttemptAt: 1 << 52, owner: "host-1/4", leaseBefore: 42,
			reconciled: "accepted", uncount: true},
		{},
	}
	for i := range outs {
		o := &outs[i]
		owner := o.owner
		if owner == "" {
			owner = "me"
		}
		u := 0
		if o.uncount {
			u = 1
		}
		want, err := json.Marshal(row{o.id, o.attempts, o.status, o.reason, o.reasonDetail, o.provider, o.providerMessageID,
			o.nextAttemptAt, o.sentTime, owner, o.leaseBefore, o.reconciled, u})
		require.NoError(t, err)
		got := appendRecordRow(nil, o, owner)
		require.True(t, json.Valid(got), "%s", got)
		var w, g map[string]any
		require.NoError(t, json.Unmarshal(want, &w))
		require.NoError(t, json.Unmarshal(got, &g))
		require.Equal(t, w, g, "outcome %d: %s", i, got)
	}
}

// The record's arrays (PostgreSQL) are the columns of recordColumns in its
// order, each holding what the JSON row (SQLite) holds for it.
func TestRecordArraysAreTheJSONRowsColumns(t *testing.T) {
	d := &Dispatcher{owner: "me"}
	outs := []outcome{
		{id: 1, attempts: 2, status: "sent", provider: "sandbox", providerMessageID: "sbx-1", nextAttemptAt: 3, sentTime: 4},
		{id: 5, attempts: 6, status: "pending", reason: "r", reasonDetail: "detail", provider: "twilio", nextAttemptAt: 7,
			owner: "host-1/4", leaseBefore: 8, reconciled: "accepted", uncount: true},
	}
	args := d.recordArrays(outs)
	require.Len(t, args, len(recordColumns))
	for i := range outs {
		var row map[string]any
		dec := json.NewDecoder(bytes.NewReader(appendRecordRow(nil, &outs[i], d.outcomeOwner(&outs[i]))))
		dec.UseNumber()
		require.NoError(t, dec.Decode(&row))
		for k, c := range recordColumns {
			var got, want string
			switch a := args[k].(type) {
			case store.Int64s:
				require.Len(t, a, len(outs))
				got, want = strconv.FormatInt(a[i], 10), string(row[c.Name].(json.Number))
			case store.Texts:
				require.Len(t, a, len(outs))
				got, want = a[i], row[c.Name].(string)
			default:
				t.Fatalf("column %s: %T", c.Name, a)
			}
			require.Equal(t, want, got, "outcome %d, column %s", i, c.Name)
		}
	}
}
