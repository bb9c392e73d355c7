package outbox_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/outbox"
)

// TestEntryCheckParksOnlyWhatEventBridgeRefuses: the detail must be one
// JSON object, whatever whitespace surrounds it; every other JSON value,
// and what is not JSON, is refused with its reason.
func TestEntryCheckParksOnlyWhatEventBridgeRefuses(t *testing.T) {
	t.Parallel()
	entry := func(detail string) outbox.Entry {
		return outbox.Entry{Source: "notificationservice", DetailType: "notificationservice/action/create", Detail: detail}
	}
	for detail, want := range map[string]string{
		`{"id":"1"}`:              "",
		" \n\t{\"id\":\"1\"}\r\n": "",
		`{}`:                      "",
		`["id"]`:                  "not a JSON object",
		`"id"`:                    "not a JSON object",
		`42`:                      "not a JSON object",
		`null`:                    "not a JSON object",
		` [{}]`:                   "not a JSON object",
		``:                        "not valid JSON",
		`   `:                     "not valid JSON",
		`{"id": "1", `:            "not valid JSON",
		`{"id":"1"} {}`:           "not valid JSON",
		"{\"id\":\"\xff\"}":       "not valid JSON",
	} {
		err := entry(detail).Check()
		if want == "" {
			require.NoError(t, err, "%q", detail)
			continue
		}
		require.ErrorIs(t, err, outbox.ErrUnpublishable, "%q", detail)
		require.Contains(t, err.Error(), want, "%q", detail)
	}
	big := entry(`{"blob":"` + strings.Repeat("x", outbox.MaxBatchBytes) + `"}`)
	require.ErrorContains(t, big.Check(), "262144")
}
