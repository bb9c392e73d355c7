package dispatch_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/dispatch"
)

// A message is refused as not JSON exactly when it is not one JSON value,
// as json.Valid says, whatever else is wrong with it; its reason is then
// the decoder's syntax error. Parse no longer runs json.Valid itself: the
// decoder's own syntax check has to classify the same messages.
func FuzzParseRefusesAsNotJSONExactlyWhatIsNotJSON(f *testing.F) {
	for _, s := range []string{
		`{"collectionId": 1, "notification": [{"name": "A", "recipients": [{"email": "a@example.com"}]}]}`,
		`{"collectionId": 1, "notification": [`, "\x00\x01\x02", `{"collectionId": 1} {}`, `{"collectionId": 1} x`,
		`{"collectionId": "x"}`, `[1, 2]`, `123`, `"text"`, `null`, `{"collectionId": 1,}`, `{"a": tru}`, `{}]`,
		`{"collectionId": 1, "notification": [{"name": "A", "recipients": [{"macros": {"X": "\ud800"}}]}]}`,
		"{\"collectionId\": 1, \"notification\": [{\"name\": \"\xff\"}]}", `{"notification": {}}`, ` {} `, `{"a":1}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if len(bytes.TrimSpace(body)) == 0 {
			return // "message is empty", before any JSON
		}
		_, err := dispatch.Parse(body, 0)
		var p *dispatch.Problem
		notJSON := errors.As(err, &p) && p.Code == dispatch.ProblemNotJSON
		require.Equal(t, !json.Valid(body), notJSON, "%q: %v", body, err)
		if notJSON {
			var v any
			want := json.Unmarshal(body, &v)
			require.Error(t, want)
			require.Contains(t, p.Details[0].Reason, want.Error()[:min(len(want.Error()), 40)])
		}
	})
}

// BenchmarkParse parses a queue message of docs/queue.md's full model (one
// recipient with every address, a locale and macros).
func BenchmarkParse(b *testing.B) {
	body := []byte(`{"collectionId": 1, "notification": [{"name": "USER_INVITEUSER", "recipients": [
  {"tos": [{"email": "u1@example.com", "name": "User 1"}], "email": "u1@example.com", "phone": "+15550000001",
   "pushId": "device-token-1", "locale": "fr_CA", "macros": {"FNAME": "U1", "LNAME": "Example", "LINK": "https://example.com/invite?x=1&y=1"}}]}]}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := dispatch.Parse(body, 0); err != nil {
			b.Fatal(err)
		}
	}
}
